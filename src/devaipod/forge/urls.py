"""Parse forge URLs (issue, pull request, merge request, repository, clone) into a ForgeUrl.

Covers GitHub and GitHub Enterprise, GitLab (nested groups, paths split at `/-/`),
Forgejo/Gitea, and clone URLs in https, scp-like and `ssh://` form.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Literal

import idna

from devaipod.config import ForgeKind, ForgeSettings, UserConfig, config_path
from devaipod.errors import UserError

ItemKind = Literal["issue", "pull_request"]

# Owner, group, repository and project names on all three forges use only these characters.
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_NUMBER = re.compile(r"^[0-9]{1,10}$")
_SCP_LIKE = re.compile(
    r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[^@/:\s\[\]]+|\[[^\]\s]+\]):(?P<path>.*)$"
)
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}


@dataclass(frozen=True)
class ForgeUrl:
    """A repository on a forge, and optionally one issue or pull/merge request in it."""

    kind: ForgeKind
    host: str  # HOST[:PORT], lower case, the key of the host's `[forges]` table
    scheme: Literal["https", "http"]  # web and API scheme; ssh clone URLs map to https
    repo_path: str  # "owner/repo" or GitLab "group/sub/project"
    item: ItemKind | None = None
    number: int | None = None
    path_prefix: str = ""  # sub-path of the web UI, "" or "/git"

    @property
    def owner(self) -> str:
        """The owner or namespace: everything before the last path segment."""
        return self.repo_path.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        """The repository or project name: the last path segment."""
        return self.repo_path.rsplit("/", 1)[1]

    @property
    def web_base(self) -> str:
        """The web UI root, such as `https://gitlab.example.com/git`."""
        return f"{self.scheme}://{self.host}{self.path_prefix}"

    @property
    def repo_url(self) -> str:
        """The repository's web URL."""
        return f"{self.web_base}/{self.repo_path}"

    @property
    def clone_url(self) -> str:
        """The repository's HTTPS (or, for local forges, HTTP) clone URL."""
        return f"{self.repo_url}.git"

    @property
    def item_url(self) -> str | None:
        """The issue or pull/merge request's canonical web URL, or None for a repository URL."""
        if self.item is None or self.number is None:
            return None
        if self.kind == "gitlab":
            section = "issues" if self.item == "issue" else "merge_requests"
            return f"{self.repo_url}/-/{section}/{self.number}"
        if self.kind == "github":
            section = "issues" if self.item == "issue" else "pull"
        else:
            section = "issues" if self.item == "issue" else "pulls"
        return f"{self.repo_url}/{section}/{self.number}"

    def without_item(self) -> ForgeUrl:
        """Return the same repository with no issue or pull request."""
        return ForgeUrl(self.kind, self.host, self.scheme, self.repo_path, None, None,
                        self.path_prefix)


def parse_forge_url(url: str, config: UserConfig | None = None) -> ForgeUrl:
    """Parse an issue, pull/merge request, repository or clone URL.

    The host must be well known (github.com, gitlab.com, codeberg.org, gitea.com)
    or declared in the config file. Plain http is kept only for declared hosts
    (such as a local test forge); well-known hosts are always reached over https.
    Raises UserError naming the URL and the fix.
    """
    config = config if config is not None else UserConfig()
    text = url.strip()
    if not text:
        raise UserError(
            "the forge URL is empty", fix="pass an issue, pull request or repository URL"
        )
    if any(ord(char) < 0x21 or char == "\\" for char in text):
        raise _invalid(url, "it contains spaces, control characters or backslashes")

    scheme, host, raw_path = _split_url(url, text)
    settings = _forge_settings(url, host, config)
    segments = _path_segments(url, raw_path)
    segments = _strip_path_prefix(url, segments, settings)

    if settings.kind == "gitlab":
        repo_segments, item, number = _parse_gitlab_path(url, segments)
    else:
        repo_segments, item, number = _parse_owner_repo_path(url, segments, settings.kind)

    for segment in repo_segments:
        if not _NAME.match(segment) or segment in (".", ".."):
            raise _invalid(url, f"{segment!r} is not a valid owner, group or repository name")

    return ForgeUrl(
        kind=settings.kind,
        host=host,
        scheme="http" if scheme == "http" and host in config.forges else "https",
        repo_path="/".join(repo_segments),
        item=item,
        number=number,
        path_prefix=settings.path_prefix or "",
    )


def api_base_url(forge_url: ForgeUrl, settings: ForgeSettings) -> str:
    """Return the REST API base URL of the forge serving `forge_url` (no trailing slash)."""
    if settings.api_url:
        return settings.api_url
    if forge_url.kind == "github":
        if forge_url.host == "github.com":
            return "https://api.github.com"
        return f"{forge_url.scheme}://{forge_url.host}/api/v3"
    version = "v4" if forge_url.kind == "gitlab" else "v1"
    return f"{forge_url.web_base}/api/{version}"


def graphql_url(rest_base: str) -> str:
    """Return GitHub's GraphQL endpoint for a REST API base URL.

    github.com serves both under api.github.com; GitHub Enterprise Server serves
    REST at `/api/v3` and GraphQL at `/api/graphql`.
    """
    if rest_base.endswith("/api/v3"):
        return rest_base.removesuffix("/api/v3") + "/api/graphql"
    return rest_base + "/graphql"


def _split_url(url: str, text: str) -> tuple[str, str, str]:
    """Return (scheme, host key, raw path) for an http(s), ssh:// or scp-like URL."""
    if "://" not in text:
        scp = _SCP_LIKE.match(text)
        if scp is None:
            raise _invalid(url, "it is neither an https:// URL nor a git@host:owner/repo address")
        host = _normalise_host(url, scp["host"], None, "ssh")
        return "ssh", host, "/" + scp["path"].lstrip("/")

    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise _invalid(url, f"it cannot be parsed ({error})") from error

    scheme = parts.scheme.lower()
    if scheme not in ("https", "http", "ssh"):
        raise _invalid(url, f"the scheme {scheme!r} is not supported (use https, http or ssh)")
    if "@" in parts.netloc and scheme != "ssh":
        raise _invalid(url, "it contains a user name or password")
    if scheme == "ssh" and parts.password is not None:
        raise _invalid(url, "it contains a password")
    if not parts.hostname:
        raise _invalid(url, "it has no host")

    # An ssh port is the SSH daemon's, not the web server's, so it is not part of the host key.
    host = _normalise_host(url, parts.hostname, None if scheme == "ssh" else port, scheme)
    return scheme, host, parts.path


def _normalise_host(url: str, hostname: str, port: int | None, scheme: str) -> str:
    host = hostname.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        if not re.match(r"^[0-9a-f:.]+$", host):
            raise _invalid(url, f"the host {hostname!r} is invalid")
        host = f"[{host}]"
    elif not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise _invalid(url, f"the host {hostname!r} is invalid ({error})") from error
    elif not re.match(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$", host):
        raise _invalid(url, f"the host {hostname!r} is invalid")

    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        return f"{host}:{port}"
    return host


def _forge_settings(url: str, host: str, config: UserConfig) -> ForgeSettings:
    settings = config.forge_settings(host)
    if settings is not None:
        return settings
    raise UserError(
        f"unknown forge host {host!r} in {_shown(url)!r}",
        fix=f'add to {config_path()} the table [forges."{host}"] with the line '
        f'kind = "github" (or "gitlab" or "forgejo")',
    )


def _path_segments(url: str, raw_path: str) -> list[str]:
    """Split a raw URL path into percent-decoded segments, rejecting path tricks."""
    path = raw_path.strip("/")
    if not path:
        return []
    segments: list[str] = []
    for raw_segment in path.split("/"):
        if raw_segment == "":
            raise _invalid(url, "its path contains an empty segment (//)")
        try:
            segment = urllib.parse.unquote(raw_segment, errors="strict")
        except UnicodeDecodeError as error:
            raise _invalid(url, f"the path segment {raw_segment!r} is not UTF-8") from error
        if "/" in segment or "\\" in segment:
            raise _invalid(url, f"the path segment {raw_segment!r} contains an encoded slash")
        if segment in (".", ".."):
            raise _invalid(url, "its path contains a . or .. segment")
        segments.append(segment)
    return segments


def _strip_path_prefix(url: str, segments: list[str], settings: ForgeSettings) -> list[str]:
    if not settings.path_prefix:
        return segments
    prefix = settings.path_prefix.strip("/").split("/")
    if segments[: len(prefix)] != prefix:
        raise _invalid(
            url, f"the path does not start with the forge's prefix {settings.path_prefix}"
        )
    return segments[len(prefix) :]


def _parse_owner_repo_path(
    url: str, segments: list[str], kind: ForgeKind
) -> tuple[list[str], ItemKind | None, int | None]:
    """Parse GitHub and Forgejo paths: owner/repo, then optionally issues/N or pull(s)/N."""
    if len(segments) < 2:
        raise _invalid(url, "the path does not name an owner and a repository")
    owner, repo = segments[0], segments[1]
    rest = segments[2:]
    if not rest:
        return [owner, repo.removesuffix(".git")], None, None

    pull_section = "pull" if kind == "github" else "pulls"
    if len(rest) >= 2 and rest[0] in ("issues", pull_section):
        number = _parse_number(url, rest[1])
        item: ItemKind = "issue" if rest[0] == "issues" else "pull_request"
        return [owner, repo], item, number
    raise _invalid(url, f"it is not a repository, issues/N or {pull_section}/N URL")


def _parse_gitlab_path(
    url: str, segments: list[str]
) -> tuple[list[str], ItemKind | None, int | None]:
    """Parse GitLab paths: the project path, then `/-/issues|merge_requests|work_items/N`.

    Older links without `/-/` (`group/project/issues/N`) are accepted too.
    """
    if "-" in segments:
        separator = segments.index("-")
        project, rest = segments[:separator], segments[separator + 1 :]
    else:
        project, rest = segments, []
        for index in range(2, len(segments) - 1):
            is_item = segments[index] in ("issues", "merge_requests")
            if is_item and _NUMBER.match(segments[index + 1]):
                project, rest = segments[:index], segments[index:]
                break

    if len(project) < 2:
        raise _invalid(url, "the path does not name a group and a project")
    if not rest:
        if "-" in segments:
            raise _invalid(url, "nothing follows /-/ (expected issues/N or merge_requests/N)")
        return [*project[:-1], project[-1].removesuffix(".git")], None, None

    if len(rest) >= 2 and rest[0] in ("issues", "work_items", "merge_requests"):
        number = _parse_number(url, rest[1])
        item: ItemKind = "pull_request" if rest[0] == "merge_requests" else "issue"
        return project, item, number
    raise _invalid(url, "it is not a project, issues/N, merge_requests/N or work_items/N URL")


def _parse_number(url: str, text: str) -> int:
    if not _NUMBER.match(text) or int(text) == 0:
        raise _invalid(url, f"{text!r} is not an issue or pull request number")
    return int(text)


def _shown(url: str) -> str:
    """Return `url` as messages show it: no query, no fragment, and no secret in a user part.

    An http(s) user part is hidden whole, because forges accept a token as the user name.
    Other forms keep a user name such as `git` and lose a password.
    """
    text = url.strip().partition("#")[0].partition("?")[0]
    scheme, separator, rest = text.partition("://") if "://" in text else ("", "", text)
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return text
    user, _, host = authority.rpartition("@")
    if ":" in user or scheme.lower() in ("http", "https"):
        user = "***"
    return f"{scheme}{separator}{user}@{host}{slash}{path}"


def _invalid(url: str, reason: str) -> UserError:
    return UserError(
        f"invalid forge URL {_shown(url)!r}: {reason}",
        fix="pass a URL such as https://github.com/OWNER/REPO/issues/N, "
        "https://gitlab.com/GROUP/PROJECT/-/merge_requests/N or git@HOST:OWNER/REPO.git",
    )
