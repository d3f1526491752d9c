"""Map the broker's git paths (`/git/<host>/<path>.git`) to the repositories a scope declares."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from devaipod.errors import UserError
from devaipod.scope.model import RepoScope, Scope


@dataclass(frozen=True)
class ScopedRepo:
    """One repository of the scope, as the broker serves it."""

    field_path: str
    """Position of the repository in the scope file, such as `repos[0]`."""
    scope: RepoScope
    upstream_url: str
    """The declared input URL without a trailing slash. Endpoint paths are appended to it."""
    key: str
    """`<host>/<path>` with the host lowercased and one trailing `.git` removed."""

    @property
    def can_push(self) -> bool:
        return self.scope.output is not None


def _strip_git_suffix(path: str) -> str:
    return path[: -len(".git")] if path.endswith(".git") else path


def _path_is_clean(path: str) -> bool:
    segments = path.split("/")
    return all(segment not in ("", ".", "..") for segment in segments)


def scoped_repo_from_scope(repo: RepoScope, field_path: str) -> ScopedRepo:
    """Validate one declared input URL and return how the broker serves it."""
    url = repo.input.url
    url_field = f"{field_path}.input.url"
    parts = urlsplit(url)

    if parts.scheme == "http" and not repo.input.allowHttp:
        raise UserError(
            f"{url_field}: plain http upstream {url!r} is not allowed",
            fix="use an https URL, or set allowHttp: true for a local upstream",
        )
    if parts.scheme not in ("https", "http"):
        raise UserError(
            f"{url_field}: unsupported URL scheme in {url!r}",
            fix="use an https:// repository URL",
        )
    if not parts.hostname:
        raise UserError(f"{url_field}: missing host in {url!r}", fix="use https://HOST/OWNER/REPO")
    if parts.username is not None or parts.password is not None:
        raise UserError(
            f"{url_field}: credentials in the repository URL are not allowed",
            fix="remove the user:password@ part; the broker adds the forge token itself",
        )
    if parts.query or parts.fragment:
        raise UserError(
            f"{url_field}: query or fragment in repository URL {url!r}",
            fix="use a plain https://HOST/OWNER/REPO URL",
        )

    path = _strip_git_suffix(parts.path.strip("/"))
    if not path or not _path_is_clean(path):
        raise UserError(
            f"{url_field}: invalid repository path in {url!r}",
            fix="use https://HOST/OWNER/REPO without empty, '.' or '..' segments",
        )

    host = parts.hostname.lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return ScopedRepo(
        field_path=field_path,
        scope=repo,
        upstream_url=url.rstrip("/"),
        key=f"{host}/{path}",
    )


class RepoMap:
    """The scope's repositories, looked up by the `<host>/<path>` part of a broker git URL."""

    def __init__(self, scope: Scope) -> None:
        self._repos: dict[str, ScopedRepo] = {}
        for index, repo in enumerate(scope.repos):
            scoped = scoped_repo_from_scope(repo, f"repos[{index}]")
            if scoped.key in self._repos:
                raise UserError(
                    f"repos[{index}].input.url: repository {scoped.key} is declared twice",
                    fix="declare each repository once",
                )
            self._repos[scoped.key] = scoped

    def repos(self) -> list[ScopedRepo]:
        return list(self._repos.values())

    def lookup(self, broker_repo_path: str) -> ScopedRepo | None:
        """Return the scoped repository for `<host>/<path>[.git]`, or None when out of scope."""
        # NOTE: the path compares case-sensitively, although GitHub treats owner and repository
        # names case-insensitively; the agent has to use the spelling the scope declares.
        host, _, path = broker_repo_path.partition("/")
        path = _strip_git_suffix(path)
        if not host or not path or not _path_is_clean(path):
            return None
        return self._repos.get(f"{host.lower()}/{path}")


def broker_git_path(repo: ScopedRepo) -> str:
    """Return the broker URL path under which the agent clones `repo` (`/git/<host>/<path>.git`)."""
    return f"/git/{repo.key}.git"
