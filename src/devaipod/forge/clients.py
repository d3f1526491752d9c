"""Host-side REST clients for GitHub, GitLab and Forgejo: issues, pull requests, default branch.

`run URL` uses them before the session starts to write the task prompt (title,
body, labels, comments) and to resolve the default branch and pull request head.
"""

from __future__ import annotations

import logging
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from devaipod.config import ForgeKind, ForgeSettings, UserConfig
from devaipod.errors import DevaipodError, UserError
from devaipod.forge.tokens import ForgeToken, discover_token, environment_variables
from devaipod.forge.urls import ForgeUrl, api_base_url

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
# Comment lists longer than this many pages are cut off (an estimate of what a prompt needs).
MAX_PAGES = 20
USER_AGENT = "devaipod"


class ForgeApiError(DevaipodError):
    """A forge API request failed for a reason other than bad input."""


@dataclass(frozen=True)
class Comment:
    """A comment on an issue or pull request (GitLab: a user note)."""

    id: int
    author: str
    body: str
    created_at: str | None = None


@dataclass(frozen=True)
class RepositoryInfo:
    """The repository facts a session needs at start."""

    id: int
    default_branch: str


@dataclass(frozen=True)
class IssueDetails:
    """An issue or pull/merge request, with its comments."""

    number: int
    title: str
    body: str
    labels: list[str]
    state: str
    author: str
    url: str
    is_pull_request: bool
    comments: list[Comment] = field(default_factory=list)
    head_branch: str | None = None  # pull requests only
    base_branch: str | None = None
    head_in_same_repository: bool | None = None


def auth_headers(kind: ForgeKind, token: str) -> dict[str, str]:
    """Return the header that carries `token` to a forge of `kind`."""
    if kind == "gitlab":
        return {"PRIVATE-TOKEN": token}
    if kind == "forgejo":
        return {"Authorization": f"token {token}"}
    return {"Authorization": f"Bearer {token}"}


class ForgeClient(ABC):
    """Read-only REST client for one forge; the caller owns the aiohttp session."""

    kind: ForgeKind

    def __init__(self, api_base: str, token: ForgeToken | None, session: aiohttp.ClientSession,
                 *, host: str) -> None:
        self.api_base = api_base.rstrip("/")
        self.token = token
        self.session = session
        self.host = host

    @abstractmethod
    async def repository(self, repo_path: str) -> RepositoryInfo:
        """Return the repository's numeric id and default branch."""

    @abstractmethod
    async def issue(self, repo_path: str, number: int) -> IssueDetails:
        """Return an issue with its comments."""

    @abstractmethod
    async def pull_request(self, repo_path: str, number: int) -> IssueDetails:
        """Return a pull/merge request with its comments and branches."""

    async def item(self, forge_url: ForgeUrl) -> IssueDetails:
        """Return the issue or pull request that `forge_url` points at."""
        if forge_url.number is None:
            raise UserError(f"{forge_url.repo_url} is not an issue or pull request URL",
                            fix="pass an issue or pull request URL")
        if forge_url.item == "pull_request":
            return await self.pull_request(forge_url.repo_path, forge_url.number)
        return await self.issue(forge_url.repo_path, forge_url.number)

    async def get_json(self, path: str, query: dict[str, str] | None = None) -> Any:
        """GET `path` (percent-encoded, relative to the API base) and return its JSON."""
        data, _ = await self._get(self._url(path, query))
        return data

    async def get_all(self, path: str, query: dict[str, str]) -> list[Any]:
        """GET a list, following `Link: rel="next"` on the same origin up to MAX_PAGES."""
        items: list[Any] = []
        url: URL | None = self._url(path, query)
        pages = 0
        while url is not None and pages < MAX_PAGES:
            data, response_links = await self._get(url)
            if not isinstance(data, list):
                raise ForgeApiError(f"forge {self.host} returned no list for {path}")
            items.extend(data)
            pages += 1
            url = self._next_page(response_links)
        if url is not None:
            log.warning("stopped reading %s on %s after %d pages", path, self.host, MAX_PAGES)
        return items

    @contextmanager
    def _expect_shape(self, what: str) -> Iterator[None]:
        """Turn a forge reply of another shape than documented into a ForgeApiError."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise ForgeApiError(
                f"forge {self.host} returned {what} in an unexpected shape "
                f"({type(error).__name__})",
                fix="check that the config file names the right forge kind and api_url",
            ) from None

    def _url(self, path: str, query: dict[str, str] | None) -> URL:
        text = self.api_base + path
        if query:
            text += "?" + urllib.parse.urlencode(query)
        return URL(text, encoded=True)

    def _next_page(self, links: Any) -> URL | None:
        next_link = links.get("next") if links else None
        if not next_link:
            return None
        url = URL(str(next_link["url"]))
        if url.origin() != URL(self.api_base).origin():
            log.warning("ignoring a pagination link to another origin on %s", self.host)
            return None
        return url

    async def _get(self, url: URL) -> tuple[Any, Any]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.kind == "github":
            headers["Accept"] = "application/vnd.github+json"
            headers["X-GitHub-Api-Version"] = "2022-11-28"
        if self.token is not None:
            headers.update(auth_headers(self.kind, self.token.value))

        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status >= 300:
                    self._raise_for_status(response.status, url)
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    raise ForgeApiError(
                        f"GET {url.path} on {self.host} returned a body that is not JSON",
                        fix="check the forge's api_url in the config file",
                    ) from None
                return data, response.links
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ForgeApiError(
                f"forge API request to {self.host} failed: {type(error).__name__}: {error}",
                fix="check the network and the forge's api_url in the config file",
            ) from error

    def _raise_for_status(self, status: int, url: URL) -> None:
        where = f"GET {url.path} on {self.host}"
        source = self.token.source if self.token is not None else "no token"
        if status in (401, 403):
            raise UserError(
                f"{where} was rejected with HTTP {status} (token from {source})",
                fix=f"set a valid token for {self.host}, for example in "
                f"{_token_hint(self.kind, self.host)}",
            )
        if status == 404:
            raise UserError(
                f"{where} returned 404: the repository or item does not exist, or the token "
                f"({source}) cannot see it",
                fix="check the URL, or use a token with read access to the repository",
            )
        if 300 <= status < 400:
            raise ForgeApiError(
                f"{where} returned redirect {status}, so the repository may have moved",
                fix="use the repository's current URL",
            )
        raise ForgeApiError(f"{where} failed with HTTP {status}")


class GitHubClient(ForgeClient):
    """GitHub and GitHub Enterprise Server REST API v3."""

    kind: ForgeKind = "github"
    comment_page_params: ClassVar[Mapping[str, str]] = {"per_page": "100"}

    async def repository(self, repo_path: str) -> RepositoryInfo:
        data = await self.get_json(f"/repos/{_quote_path(repo_path)}")
        with self._expect_shape(f"repository {repo_path}"):
            return RepositoryInfo(id=int(data["id"]), default_branch=str(data["default_branch"]))

    async def issue(self, repo_path: str, number: int) -> IssueDetails:
        base = f"/repos/{_quote_path(repo_path)}/issues/{number}"
        data = await self.get_json(base)
        comments = await self.get_all(f"{base}/comments", dict(self.comment_page_params))
        with self._expect_shape(f"issue {number} of {repo_path}"):
            return _owner_repo_issue(data, comments)

    async def pull_request(self, repo_path: str, number: int) -> IssueDetails:
        issue = await self.issue(repo_path, number)
        pull = await self.get_json(f"/repos/{_quote_path(repo_path)}/pulls/{number}")
        with self._expect_shape(f"pull request {number} of {repo_path}"):
            return _with_branches(issue, pull, repo_path)


class ForgejoClient(GitHubClient):
    """Forgejo and Gitea REST API v1: GitHub's paths for these reads, with its own paging."""

    kind: ForgeKind = "forgejo"
    comment_page_params: ClassVar[Mapping[str, str]] = {"limit": "50"}


class GitLabClient(ForgeClient):
    """GitLab REST API v4; projects are addressed by their URL-encoded full path."""

    kind: ForgeKind = "gitlab"

    async def repository(self, repo_path: str) -> RepositoryInfo:
        data = await self.get_json(f"/projects/{_quote_segment(repo_path)}")
        with self._expect_shape(f"project {repo_path}"):
            return RepositoryInfo(id=int(data["id"]), default_branch=str(data["default_branch"]))

    async def issue(self, repo_path: str, number: int) -> IssueDetails:
        base = f"/projects/{_quote_segment(repo_path)}/issues/{number}"
        data = await self.get_json(base)
        notes = await self._notes(f"{base}/notes")
        with self._expect_shape(f"issue {number} of {repo_path}"):
            return _gitlab_item(data, notes, is_merge_request=False)

    async def pull_request(self, repo_path: str, number: int) -> IssueDetails:
        base = f"/projects/{_quote_segment(repo_path)}/merge_requests/{number}"
        data = await self.get_json(base)
        notes = await self._notes(f"{base}/notes")
        with self._expect_shape(f"merge request {number} of {repo_path}"):
            return _gitlab_item(data, notes, is_merge_request=True)

    async def _notes(self, path: str) -> list[Comment]:
        notes = await self.get_all(path, {"per_page": "100", "sort": "asc",
                                          "order_by": "created_at"})
        with self._expect_shape(f"the notes at {path}"):
            return [
                Comment(id=int(note["id"]), author=str(note["author"]["username"]),
                        body=str(note.get("body") or ""), created_at=note.get("created_at"))
                for note in notes
                if not note.get("system")
            ]


def client_for(
    forge_url: ForgeUrl,
    settings: ForgeSettings,
    token: ForgeToken | None,
    session: aiohttp.ClientSession,
) -> ForgeClient:
    """Return the REST client for the forge serving `forge_url`."""
    classes: dict[ForgeKind, type[ForgeClient]] = {
        "github": GitHubClient, "gitlab": GitLabClient, "forgejo": ForgejoClient,
    }
    return classes[forge_url.kind](api_base_url(forge_url, settings), token, session,
                                   host=forge_url.host)


@dataclass(frozen=True)
class ForgeContext:
    """What `run URL` reads from the forge before the session starts."""

    repository: RepositoryInfo
    item: IssueDetails | None  # None for a repository URL
    token_source: str | None  # where the host token came from, None when reading without one


async def fetch_forge_context(
    forge_url: ForgeUrl,
    config: UserConfig,
    *,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> ForgeContext:
    """Discover the host's token and read the repository and the issue or pull request.

    Without a token, public repositories are read anonymously. Raises UserError
    when the forge rejects the request or the item does not exist.
    """
    settings = config.forge_settings(forge_url.host)
    if settings is None:
        raise UserError(f"unknown forge host {forge_url.host!r}",
                        fix="declare it in the config file's [forges] table")
    token = discover_token(forge_url.kind, forge_url.host, settings, env=env)
    if token is None:
        log.info("no token found for %s; reading without one", forge_url.host)

    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = client_for(forge_url, settings, token, session)
        repository = await client.repository(forge_url.repo_path)
        item = await client.item(forge_url) if forge_url.number is not None else None
    return ForgeContext(repository=repository, item=item,
                        token_source=token.source if token is not None else None)


def _owner_repo_issue(data: dict[str, Any], comments: list[dict[str, Any]]) -> IssueDetails:
    """Build IssueDetails from a GitHub or Forgejo issue and its comments."""
    return IssueDetails(
        number=int(data["number"]),
        title=str(data.get("title") or ""),
        body=str(data.get("body") or ""),
        labels=[str(label["name"]) for label in data.get("labels") or []],
        state=str(data.get("state") or ""),
        author=str((data.get("user") or {}).get("login", "")),
        url=str(data.get("html_url") or ""),
        is_pull_request=bool(data.get("pull_request")),
        comments=[
            Comment(id=int(comment["id"]), author=str((comment.get("user") or {}).get("login", "")),
                    body=str(comment.get("body") or ""), created_at=comment.get("created_at"))
            for comment in comments
        ],
    )


def _with_branches(issue: IssueDetails, pull: dict[str, Any], repo_path: str) -> IssueDetails:
    head = pull.get("head") or {}
    base = pull.get("base") or {}
    head_repo = (head.get("repo") or {}).get("full_name")
    same = None if head_repo is None else str(head_repo).casefold() == repo_path.casefold()
    return IssueDetails(
        number=issue.number, title=issue.title, body=issue.body, labels=issue.labels,
        state=issue.state, author=issue.author, url=issue.url, is_pull_request=True,
        comments=issue.comments, head_branch=head.get("ref"), base_branch=base.get("ref"),
        head_in_same_repository=same,
    )


def _gitlab_item(data: dict[str, Any], notes: list[Comment], *, is_merge_request: bool
                 ) -> IssueDetails:
    same = None
    if is_merge_request and "source_project_id" in data:
        same = data.get("source_project_id") == data.get("target_project_id")
    state = str(data.get("state") or "")
    return IssueDetails(
        number=int(data["iid"]),
        title=str(data.get("title") or ""),
        body=str(data.get("description") or ""),
        labels=[str(label) for label in data.get("labels") or []],
        state="open" if state == "opened" else state,
        author=str((data.get("author") or {}).get("username", "")),
        url=str(data.get("web_url") or ""),
        is_pull_request=is_merge_request,
        comments=notes,
        head_branch=data.get("source_branch") if is_merge_request else None,
        base_branch=data.get("target_branch") if is_merge_request else None,
        head_in_same_repository=same,
    )


def _quote_path(repo_path: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in repo_path.split("/"))


def _quote_segment(repo_path: str) -> str:
    return urllib.parse.quote(repo_path, safe="")


def _token_hint(kind: ForgeKind, host: str) -> str:
    hint = "$" + " or $".join(environment_variables(kind, host))
    if kind == "gitlab" and host != "gitlab.com":
        hint += f" with $GITLAB_HOST={host}"
    return hint
