"""A fake GitHub, GitLab or Forgejo REST API for tests, on 127.0.0.1 with in-memory state.

`FakeForge(kind)` serves the REST paths devaipod uses with the payload shapes
the forges document, checks the token, and records every request it receives
(before any check), so tests can assert what reached the forge and what did not.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

ForgeKind = Literal["github", "gitlab", "forgejo"]
Json = dict[str, Any]

DEFAULT_TOKEN = "fake-forge-token-0123456789"
DEFAULT_LOGIN = "devaipod-bot"

# GitHub's ReportedContentClassifiers enum values.
MINIMIZE_CLASSIFIERS = {"SPAM", "ABUSE", "OFF_TOPIC", "OUTDATED", "DUPLICATE", "RESOLVED"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request exactly as the fake forge received it."""

    method: str
    raw_path: str  # path without the query, still percent-encoded
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def is_write(self) -> bool:
        """Whether the method changes state on a real forge."""
        return self.method not in ("GET", "HEAD", "OPTIONS")


@dataclass
class FakeComment:
    """An issue comment (GitHub, Forgejo) or a note (GitLab)."""

    id: int
    number: int  # the issue, PR or MR it belongs to
    on_merge_request: bool  # GitLab only: the note is on a merge request
    body: str
    author: str
    created_at: str
    updated_at: str
    minimized_reason: str | None = None

    @property
    def node_id(self) -> str:
        """The GraphQL global id (GitHub)."""
        return f"IC_fake{self.id}"


@dataclass
class FakeIssue:
    """An issue, or a pull/merge request when `is_pull_request` is set."""

    number: int
    title: str
    body: str
    author: str
    labels: list[str] = field(default_factory=list)
    state: str = "open"
    is_pull_request: bool = False
    head: str | None = None
    base: str | None = None
    draft: bool = False
    created_at: str = ""


@dataclass
class FakeRepo:
    """A repository (GitHub, Forgejo) or project (GitLab)."""

    id: int
    path: str  # "owner/repo" or "group/sub/project", as created
    default_branch: str = "main"
    private: bool = False
    issues: dict[int, FakeIssue] = field(default_factory=dict)
    merge_requests: dict[int, FakeIssue] = field(default_factory=dict)  # GitLab only
    next_number: int = 1
    next_merge_request: int = 1


class FakeForge:
    """An aiohttp server that behaves like one forge's REST API (and GitHub's GraphQL)."""

    def __init__(
        self,
        kind: ForgeKind,
        *,
        token: str = DEFAULT_TOKEN,
        login: str = DEFAULT_LOGIN,
        anonymous_reads: bool = False,
        bind_host: str = "127.0.0.1",
        web_root: str | None = None,
    ) -> None:
        self.kind: ForgeKind = kind
        # The address to listen on: loopback, or a test host such as podman's bridge address.
        self.bind_host = bind_host
        # The web URL root to show in links, when the web side (git) is on another port.
        self.web_root = web_root
        self.users: dict[str, str] = {token: login}  # token -> login
        self.token = token
        self.login = login
        self.anonymous_reads = anonymous_reads
        self.requests: list[RecordedRequest] = []
        self.repos: dict[str, FakeRepo] = {}  # key: lower-cased path
        self.comments: dict[int, FakeComment] = {}
        self._comment_repo: dict[int, str] = {}
        self._next_repo_id = 101
        self._next_comment_id = 5001
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> FakeForge:
        """Start serving on `bind_host` (127.0.0.1 unless given) at a free port."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_host, 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        return self

    async def stop(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeForge:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        """The `HOST:PORT` key of this forge, as in the config file's `[forges]` tables."""
        return f"{self.bind_host}:{self.port}"

    @property
    def web_url(self) -> str:
        """The root of the forge's web URLs (issue and repository links)."""
        return self.web_root or f"http://{self.host}"

    @property
    def api_url(self) -> str:
        """The REST API base URL: the root (GitHub), `/api/v4` (GitLab) or `/api/v1` (Forgejo)."""
        suffix = {"github": "", "gitlab": "/api/v4", "forgejo": "/api/v1"}[self.kind]
        return f"http://{self.host}{suffix}"

    @property
    def graphql_url(self) -> str:
        """GitHub's GraphQL endpoint."""
        return f"http://{self.host}/graphql"

    def writes(self) -> list[RecordedRequest]:
        """Return the recorded requests whose method changes state."""
        return [request for request in self.requests if request.is_write]

    # --- state set-up -----------------------------------------------------------------

    def add_user(self, login: str, token: str) -> None:
        """Add a user who authenticates with `token`."""
        self.users[token] = login

    def add_repo(
        self, path: str, *, default_branch: str = "main", private: bool = False
    ) -> FakeRepo:
        """Create a repository (GitHub, Forgejo) or project (GitLab) at `path`."""
        repo = FakeRepo(id=self._next_repo_id, path=path, default_branch=default_branch,
                        private=private)
        self._next_repo_id += 1
        self.repos[path.lower()] = repo
        return repo

    def add_issue(
        self, repo_path: str, title: str, body: str = "", *, author: str = "alice",
        labels: list[str] | None = None,
    ) -> FakeIssue:
        """Create an issue; GitHub and Forgejo number issues and PRs in one sequence."""
        repo = self.repos[repo_path.lower()]
        issue = FakeIssue(number=repo.next_number, title=title, body=body, author=author,
                          labels=list(labels or []), created_at=_now())
        repo.next_number += 1
        repo.issues[issue.number] = issue
        return issue

    def add_pull_request(
        self, repo_path: str, title: str, *, head: str, base: str, body: str = "",
        author: str = "alice", draft: bool = False,
    ) -> FakeIssue:
        """Create a pull request (GitHub, Forgejo) or merge request (GitLab)."""
        repo = self.repos[repo_path.lower()]
        return self._create_pull_request(repo, title, body, head, base, author, draft)

    def add_comment(
        self, repo_path: str, number: int, body: str, *, author: str = "alice",
        on_merge_request: bool = False,
    ) -> FakeComment:
        """Add a comment (note) by `author` to issue or PR `number`."""
        repo = self.repos[repo_path.lower()]
        return self._create_comment(repo, number, body, author, on_merge_request)

    def comments_on(self, repo_path: str, number: int, *, on_merge_request: bool = False
                    ) -> list[FakeComment]:
        """Return the comments of issue or PR `number`, oldest first."""
        key = repo_path.lower()
        return [
            comment for comment_id, comment in sorted(self.comments.items())
            if self._comment_repo[comment_id] == key and comment.number == number
            and comment.on_merge_request == on_merge_request
        ]

    def pull_requests(self, repo_path: str) -> list[FakeIssue]:
        """Return the repository's pull or merge requests."""
        repo = self.repos[repo_path.lower()]
        if self.kind == "gitlab":
            return list(repo.merge_requests.values())
        return [issue for issue in repo.issues.values() if issue.is_pull_request]

    def _create_pull_request(
        self, repo: FakeRepo, title: str, body: str, head: str, base: str, author: str,
        draft: bool,
    ) -> FakeIssue:
        if self.kind == "gitlab":
            number = repo.next_merge_request
            repo.next_merge_request += 1
        else:
            number = repo.next_number
            repo.next_number += 1
        pull = FakeIssue(number=number, title=title, body=body, author=author,
                         is_pull_request=True, head=head, base=base, draft=draft,
                         created_at=_now())
        if self.kind == "gitlab":
            repo.merge_requests[number] = pull
        else:
            repo.issues[number] = pull
        return pull

    def _create_comment(
        self, repo: FakeRepo, number: int, body: str, author: str, on_merge_request: bool
    ) -> FakeComment:
        now = _now()
        comment = FakeComment(id=self._next_comment_id, number=number,
                              on_merge_request=on_merge_request, body=body, author=author,
                              created_at=now, updated_at=now)
        self._next_comment_id += 1
        self.comments[comment.id] = comment
        self._comment_repo[comment.id] = repo.path.lower()
        return comment

    # --- request handling -------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, query = request.raw_path.partition("?")
        body = await request.read()
        self.requests.append(RecordedRequest(
            method=request.method, raw_path=raw_path, query=query,
            headers={name: value for name, value in request.headers.items()}, body=body,
        ))

        user = self._authenticate(request)
        if user is None and not (self.anonymous_reads and request.method == "GET"):
            return self._error(401, "Bad credentials" if self.kind == "github" else
                               "401 Unauthorized")

        handlers = {"github": self._github, "gitlab": self._gitlab, "forgejo": self._forgejo}
        try:
            return await handlers[self.kind](request, raw_path, body, user)
        except _ForgeError as error:
            return self._error(error.status, error.message)

    def _authenticate(self, request: web.Request) -> str | None:
        authorization = request.headers.get("Authorization", "")
        scheme, _, value = authorization.partition(" ")
        accepted = {"github": ("bearer", "token"), "gitlab": ("bearer",),
                    "forgejo": ("token", "bearer")}[self.kind]
        if scheme.lower() in accepted and value.strip() in self.users:
            return self.users[value.strip()]
        private_token = request.headers.get("PRIVATE-TOKEN")
        if self.kind == "gitlab" and private_token in self.users:
            return self.users[private_token]
        return None

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)

    def _repo(self, path: str, user: str | None) -> FakeRepo:
        repo = self.repos.get(path.lower())
        if repo is None or (repo.private and user is None):
            message = "404 Project Not Found" if self.kind == "gitlab" else "Not Found"
            raise _ForgeError(404, message)
        return repo

    def _issue(self, repo: FakeRepo, number: int) -> FakeIssue:
        issue = repo.issues.get(number)
        if issue is None:
            raise _ForgeError(404, "Not Found" if self.kind != "gitlab" else "404 Not found")
        return issue

    def _own_comment(self, repo: FakeRepo, comment_id: int, user: str | None) -> FakeComment:
        comment = self.comments.get(comment_id)
        if comment is None or self._comment_repo[comment_id] != repo.path.lower():
            raise _ForgeError(404, "Not Found")
        if comment.author != user:
            raise _ForgeError(403, "Must have admin rights to Repository.")
        return comment

    # --- GitHub -----------------------------------------------------------------------

    async def _github(
        self, request: web.Request, raw_path: str, body: bytes, user: str | None
    ) -> web.StreamResponse:
        method = request.method
        if raw_path == "/graphql" and method == "POST":
            return self._github_graphql(body, user)

        segments = _segments(raw_path)
        if len(segments) < 3 or segments[0] != "repos":
            raise _ForgeError(404, "Not Found")
        repo = self._repo(f"{segments[1]}/{segments[2]}", user)
        rest = segments[3:]

        match (method, rest):
            case ("GET", []):
                return web.json_response(self._github_repo_json(repo))
            case ("GET", ["issues", number]):
                issue = self._issue(repo, _int(number))
                return web.json_response(self._github_issue_json(repo, issue))
            case ("GET", ["issues", number, "comments"]):
                issue = self._issue(repo, _int(number))
                comments = self.comments_on(repo.path, issue.number)
                return _paginated(request, [self._github_comment_json(repo, c) for c in comments],
                                  "per_page", 30)
            case ("POST", ["issues", number, "comments"]):
                issue = self._issue(repo, _int(number))
                payload = _json_body(body, required=("body",))
                comment = self._create_comment(repo, issue.number, str(payload["body"]),
                                               _writer(user), False)
                return web.json_response(self._github_comment_json(repo, comment), status=201)
            case ("GET", ["issues", "comments", comment_id]):
                comment = self._comment_in_repo(repo, _int(comment_id))
                return web.json_response(self._github_comment_json(repo, comment))
            case ("PATCH", ["issues", "comments", comment_id]):
                comment = self._own_comment(repo, _int(comment_id), user)
                payload = _json_body(body, required=("body",))
                comment.body = str(payload["body"])
                comment.updated_at = _now()
                return web.json_response(self._github_comment_json(repo, comment))
            case ("DELETE", ["issues", "comments", comment_id]):
                comment = self._own_comment(repo, _int(comment_id), user)
                self._delete_comment(comment.id)
                return web.Response(status=204)
            case ("GET", ["pulls", number]):
                pull = self._issue(repo, _int(number))
                if not pull.is_pull_request:
                    raise _ForgeError(404, "Not Found")
                return web.json_response(self._github_pull_json(repo, pull))
            case ("POST", ["pulls"]):
                payload = _json_body(body, required=("head", "base"))
                if "title" not in payload and "issue" not in payload:
                    raise _ForgeError(422, "Validation Failed: title is missing")
                pull = self._create_pull_request(
                    repo, str(payload.get("title", "")), str(payload.get("body") or ""),
                    str(payload["head"]), str(payload["base"]), _writer(user),
                    bool(payload.get("draft", False)),
                )
                return web.json_response(self._github_pull_json(repo, pull), status=201)
        raise _ForgeError(404, "Not Found")

    def _github_graphql(self, body: bytes, user: str | None) -> web.Response:
        payload = _json_body(body, required=("query",))
        query = str(payload["query"])
        variables = payload.get("variables") or {}
        if "minimizeComment" not in query:
            return web.json_response({"errors": [{"message": "unsupported query in fake forge"}]})

        values = [str(value) for value in variables.values()] if isinstance(variables, dict) else []
        inline_subject = re.search(r'subjectId:\s*"([^"]+)"', query)
        inline_classifier = re.search(
            r"classifier:\s*(" + "|".join(sorted(MINIMIZE_CLASSIFIERS)) + r")\b", query
        )
        subject = inline_subject.group(1) if inline_subject else next(
            (value for value in values if value.startswith("IC_")), None)
        classifier = inline_classifier.group(1) if inline_classifier else next(
            (value for value in values if value in MINIMIZE_CLASSIFIERS), None)

        comment = next((c for c in self.comments.values() if c.node_id == subject), None)
        if comment is None or classifier not in MINIMIZE_CLASSIFIERS:
            message = f"Could not resolve to a node with the global id of '{subject}'"
            return web.json_response({"data": {"minimizeComment": None},
                                      "errors": [{"message": message}]})
        if comment.author != user:
            return web.json_response({"data": {"minimizeComment": None},
                                      "errors": [{"message": "FORBIDDEN"}]})
        comment.minimized_reason = str(classifier).lower()
        return web.json_response({"data": {"minimizeComment": {"minimizedComment": {
            "isMinimized": True, "minimizedReason": comment.minimized_reason}}}})

    def _github_user(self, login: str) -> Json:
        return {"login": login, "id": _user_id(login), "type": "User"}

    def _github_repo_json(self, repo: FakeRepo) -> Json:
        owner = repo.path.split("/")[0]
        return {
            "id": repo.id, "node_id": f"R_fake{repo.id}", "name": repo.path.split("/")[1],
            "full_name": repo.path, "owner": self._github_user(owner), "private": repo.private,
            "html_url": f"{self.web_url}/{repo.path}", "url": f"{self.api_url}/repos/{repo.path}",
            "clone_url": f"{self.web_url}/{repo.path}.git", "default_branch": repo.default_branch,
        }

    def _github_issue_json(self, repo: FakeRepo, issue: FakeIssue) -> Json:
        section = "pull" if issue.is_pull_request else "issues"
        data: Json = {
            "id": repo.id * 100000 + issue.number, "node_id": f"I_fake{repo.id}_{issue.number}",
            "number": issue.number, "title": issue.title, "body": issue.body,
            "state": issue.state, "user": self._github_user(issue.author),
            "labels": [{"id": _user_id(name), "name": name, "color": "ededed"}
                       for name in issue.labels],
            "comments": len(self.comments_on(repo.path, issue.number)),
            "html_url": f"{self.web_url}/{repo.path}/{section}/{issue.number}",
            "url": f"{self.api_url}/repos/{repo.path}/issues/{issue.number}",
            "created_at": issue.created_at, "updated_at": issue.created_at,
        }
        if issue.is_pull_request:
            data["pull_request"] = {
                "url": f"{self.api_url}/repos/{repo.path}/pulls/{issue.number}",
                "html_url": f"{self.web_url}/{repo.path}/pull/{issue.number}",
            }
            data["draft"] = issue.draft
        return data

    def _github_comment_json(self, repo: FakeRepo, comment: FakeComment) -> Json:
        return {
            "id": comment.id, "node_id": comment.node_id, "body": comment.body,
            "user": self._github_user(comment.author),
            "html_url": f"{self.web_url}/{repo.path}/issues/{comment.number}"
                        f"#issuecomment-{comment.id}",
            "url": f"{self.api_url}/repos/{repo.path}/issues/comments/{comment.id}",
            "issue_url": f"{self.api_url}/repos/{repo.path}/issues/{comment.number}",
            "created_at": comment.created_at, "updated_at": comment.updated_at,
        }

    def _github_pull_json(self, repo: FakeRepo, pull: FakeIssue) -> Json:
        return {
            "id": repo.id * 100000 + pull.number, "node_id": f"PR_fake{repo.id}_{pull.number}",
            "number": pull.number, "title": pull.title, "body": pull.body, "state": pull.state,
            "draft": pull.draft, "user": self._github_user(pull.author),
            "head": {"ref": pull.head, "label": f"{repo.path.split('/')[0]}:{pull.head}",
                     "repo": {"full_name": repo.path}},
            "base": {"ref": pull.base, "label": f"{repo.path.split('/')[0]}:{pull.base}",
                     "repo": {"full_name": repo.path}},
            "html_url": f"{self.web_url}/{repo.path}/pull/{pull.number}",
            "url": f"{self.api_url}/repos/{repo.path}/pulls/{pull.number}",
            "created_at": pull.created_at,
        }

    # --- GitLab -----------------------------------------------------------------------

    async def _gitlab(
        self, request: web.Request, raw_path: str, body: bytes, user: str | None
    ) -> web.StreamResponse:
        method = request.method
        raw_segments = raw_path.strip("/").split("/")
        if raw_segments[:3] != ["api", "v4", "projects"] or len(raw_segments) < 4:
            raise _ForgeError(404, "404 Not Found")
        project_id = urllib.parse.unquote(raw_segments[3])
        repo = self._gitlab_project(project_id, user)
        rest = [urllib.parse.unquote(segment) for segment in raw_segments[4:]]

        match (method, rest):
            case ("GET", []):
                return web.json_response(self._gitlab_project_json(repo))
            case ("GET", ["issues", number]):
                issue = self._issue(repo, _int(number))
                return web.json_response(self._gitlab_issue_json(repo, issue))
            case ("GET", ["merge_requests", number]):
                return web.json_response(self._gitlab_mr_json(repo, self._gitlab_mr(repo, number)))
            case ("POST", ["merge_requests"]):
                payload = _json_body(body, required=("source_branch", "target_branch", "title"))
                title = str(payload["title"])
                draft = bool(re.match(r"^\s*(\[draft\]|\(draft\)|draft:)", title, re.IGNORECASE))
                pull = self._create_pull_request(
                    repo, title, str(payload.get("description") or ""),
                    str(payload["source_branch"]), str(payload["target_branch"]),
                    _writer(user), draft,
                )
                return web.json_response(self._gitlab_mr_json(repo, pull), status=201)
            case (_, [("issues" | "merge_requests") as section, number, "notes", *note]):
                on_mr = section == "merge_requests"
                item = self._gitlab_mr(repo, number) if on_mr else self._issue(repo, _int(number))
                return self._gitlab_notes(request, repo, item, on_mr, note, body, user)
        raise _ForgeError(404, "404 Not Found")

    def _gitlab_notes(
        self, request: web.Request, repo: FakeRepo, item: FakeIssue, on_mr: bool,
        note: list[str], body: bytes, user: str | None,
    ) -> web.StreamResponse:
        method = request.method
        if not note and method == "GET":
            notes = self.comments_on(repo.path, item.number, on_merge_request=on_mr)
            return _paginated(request, [self._gitlab_note_json(n) for n in notes], "per_page", 20)
        if not note and method == "POST":
            payload = _json_body(body, required=("body",))
            created = self._create_comment(repo, item.number, str(payload["body"]),
                                           _writer(user), on_mr)
            return web.json_response(self._gitlab_note_json(created), status=201)
        if len(note) != 1:
            raise _ForgeError(404, "404 Not Found")

        comment = self.comments.get(_int(note[0]))
        if (comment is None or comment.number != item.number
                or comment.on_merge_request != on_mr):
            raise _ForgeError(404, "404 Note Not Found")
        if method == "GET":
            return web.json_response(self._gitlab_note_json(comment))
        if comment.author != user:
            raise _ForgeError(403, "403 Forbidden")
        if method == "PUT":
            payload = _json_body(body, required=("body",))
            comment.body = str(payload["body"])
            comment.updated_at = _now()
            return web.json_response(self._gitlab_note_json(comment))
        if method == "DELETE":
            self._delete_comment(comment.id)
            return web.Response(status=204)
        raise _ForgeError(405, "405 Method Not Allowed")

    def _gitlab_project(self, project_id: str, user: str | None) -> FakeRepo:
        if project_id.isdigit():
            for repo in self.repos.values():
                if repo.id == int(project_id):
                    return self._repo(repo.path, user)
        return self._repo(project_id, user)

    def _gitlab_mr(self, repo: FakeRepo, number: str) -> FakeIssue:
        pull = repo.merge_requests.get(_int(number))
        if pull is None:
            raise _ForgeError(404, "404 Not found")
        return pull

    def _gitlab_user(self, login: str) -> Json:
        return {"id": _user_id(login), "username": login, "name": login, "state": "active"}

    def _gitlab_project_json(self, repo: FakeRepo) -> Json:
        namespace, name = repo.path.rsplit("/", 1)
        return {
            "id": repo.id, "name": name, "path": name, "path_with_namespace": repo.path,
            "namespace": {"full_path": namespace, "path": namespace.split("/")[-1]},
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "web_url": f"{self.web_url}/{repo.path}",
            "http_url_to_repo": f"{self.web_url}/{repo.path}.git",
        }

    def _gitlab_issue_json(self, repo: FakeRepo, issue: FakeIssue) -> Json:
        return {
            "id": repo.id * 100000 + issue.number, "iid": issue.number, "project_id": repo.id,
            "title": issue.title, "description": issue.body,
            "state": "opened" if issue.state == "open" else issue.state,
            "labels": list(issue.labels), "author": self._gitlab_user(issue.author),
            "user_notes_count": len(self.comments_on(repo.path, issue.number)),
            "web_url": f"{self.web_url}/{repo.path}/-/issues/{issue.number}",
            "created_at": issue.created_at,
        }

    def _gitlab_mr_json(self, repo: FakeRepo, pull: FakeIssue) -> Json:
        return {
            "id": repo.id * 100000 + pull.number, "iid": pull.number, "project_id": repo.id,
            "title": pull.title, "description": pull.body,
            "state": "opened" if pull.state == "open" else pull.state,
            "draft": pull.draft, "work_in_progress": pull.draft,
            "source_branch": pull.head, "target_branch": pull.base,
            "source_project_id": repo.id, "target_project_id": repo.id,
            "labels": list(pull.labels), "author": self._gitlab_user(pull.author),
            "web_url": f"{self.web_url}/{repo.path}/-/merge_requests/{pull.number}",
            "created_at": pull.created_at,
        }

    def _gitlab_note_json(self, note: FakeComment) -> Json:
        return {
            "id": note.id, "body": note.body, "author": self._gitlab_user(note.author),
            "system": False, "noteable_type": "MergeRequest" if note.on_merge_request else "Issue",
            "noteable_iid": note.number, "created_at": note.created_at,
            "updated_at": note.updated_at, "internal": False,
        }

    # --- Forgejo ----------------------------------------------------------------------

    async def _forgejo(
        self, request: web.Request, raw_path: str, body: bytes, user: str | None
    ) -> web.StreamResponse:
        method = request.method
        segments = _segments(raw_path)
        if segments[:3] != ["api", "v1", "repos"] or len(segments) < 5:
            raise _ForgeError(404, "Not Found")
        repo = self._repo(f"{segments[3]}/{segments[4]}", user)
        rest = segments[5:]

        match (method, rest):
            case ("GET", []):
                return web.json_response(self._forgejo_repo_json(repo))
            case ("GET", ["issues", number]):
                issue = self._issue(repo, _int(number))
                return web.json_response(self._forgejo_issue_json(repo, issue))
            case ("GET", ["issues", number, "comments"]):
                issue = self._issue(repo, _int(number))
                comments = self.comments_on(repo.path, issue.number)
                return _paginated(request, [self._forgejo_comment_json(repo, c) for c in comments],
                                  "limit", 50)
            case ("POST", ["issues", number, "comments"]):
                issue = self._issue(repo, _int(number))
                payload = _json_body(body, required=("body",))
                comment = self._create_comment(repo, issue.number, str(payload["body"]),
                                               _writer(user), False)
                return web.json_response(self._forgejo_comment_json(repo, comment), status=201)
            case ("GET", ["issues", "comments", comment_id]):
                comment = self._comment_in_repo(repo, _int(comment_id))
                return web.json_response(self._forgejo_comment_json(repo, comment))
            case ("PATCH", ["issues", "comments", comment_id]):
                comment = self._own_comment(repo, _int(comment_id), user)
                payload = _json_body(body, required=("body",))
                comment.body = str(payload["body"])
                comment.updated_at = _now()
                return web.json_response(self._forgejo_comment_json(repo, comment))
            case ("DELETE", ["issues", "comments", comment_id]):
                comment = self._own_comment(repo, _int(comment_id), user)
                self._delete_comment(comment.id)
                return web.Response(status=204)
            case ("GET", ["pulls", number]):
                pull = self._issue(repo, _int(number))
                if not pull.is_pull_request:
                    raise _ForgeError(404, "Not Found")
                return web.json_response(self._forgejo_pull_json(repo, pull))
            case ("POST", ["pulls"]):
                payload = _json_body(body, required=("head", "base", "title"))
                title = str(payload["title"])
                draft = bool(re.match(r"^\s*(wip:|\[wip\])", title, re.IGNORECASE))
                pull = self._create_pull_request(
                    repo, title, str(payload.get("body") or ""), str(payload["head"]),
                    str(payload["base"]), _writer(user), draft,
                )
                return web.json_response(self._forgejo_pull_json(repo, pull), status=201)
        raise _ForgeError(404, "Not Found")

    def _forgejo_user(self, login: str) -> Json:
        return {"id": _user_id(login), "login": login, "username": login, "full_name": login}

    def _forgejo_repo_json(self, repo: FakeRepo) -> Json:
        owner, name = repo.path.split("/")
        return {
            "id": repo.id, "name": name, "full_name": repo.path,
            "owner": self._forgejo_user(owner), "private": repo.private,
            "default_branch": repo.default_branch, "html_url": f"{self.web_url}/{repo.path}",
            "clone_url": f"{self.web_url}/{repo.path}.git",
        }

    def _forgejo_issue_json(self, repo: FakeRepo, issue: FakeIssue) -> Json:
        section = "pulls" if issue.is_pull_request else "issues"
        return {
            "id": repo.id * 100000 + issue.number, "number": issue.number, "title": issue.title,
            "body": issue.body, "state": issue.state, "user": self._forgejo_user(issue.author),
            "labels": [{"id": _user_id(name), "name": name, "color": "ededed"}
                       for name in issue.labels],
            "comments": len(self.comments_on(repo.path, issue.number)),
            "html_url": f"{self.web_url}/{repo.path}/{section}/{issue.number}",
            "pull_request": {"merged": False, "draft": issue.draft}
            if issue.is_pull_request else None,
            "repository": {"id": repo.id, "name": repo.path.split("/")[1],
                           "owner": repo.path.split("/")[0], "full_name": repo.path},
            "created_at": issue.created_at,
        }

    def _forgejo_comment_json(self, repo: FakeRepo, comment: FakeComment) -> Json:
        return {
            "id": comment.id, "body": comment.body, "user": self._forgejo_user(comment.author),
            "html_url": f"{self.web_url}/{repo.path}/issues/{comment.number}"
                        f"#issuecomment-{comment.id}",
            "issue_url": f"{self.web_url}/{repo.path}/issues/{comment.number}",
            "pull_request_url": "", "created_at": comment.created_at,
            "updated_at": comment.updated_at,
        }

    def _forgejo_pull_json(self, repo: FakeRepo, pull: FakeIssue) -> Json:
        owner = repo.path.split("/")[0]
        return {
            "id": repo.id * 100000 + pull.number, "number": pull.number, "title": pull.title,
            "body": pull.body, "state": pull.state, "draft": pull.draft,
            "user": self._forgejo_user(pull.author),
            "head": {"ref": pull.head, "label": f"{owner}:{pull.head}",
                     "repo": {"full_name": repo.path}},
            "base": {"ref": pull.base, "label": f"{owner}:{pull.base}",
                     "repo": {"full_name": repo.path}},
            "html_url": f"{self.web_url}/{repo.path}/pulls/{pull.number}",
            "created_at": pull.created_at,
        }

    # --- shared helpers ---------------------------------------------------------------

    def _comment_in_repo(self, repo: FakeRepo, comment_id: int) -> FakeComment:
        comment = self.comments.get(comment_id)
        if comment is None or self._comment_repo[comment_id] != repo.path.lower():
            raise _ForgeError(404, "Not Found")
        return comment

    def _delete_comment(self, comment_id: int) -> None:
        del self.comments[comment_id]
        del self._comment_repo[comment_id]


@contextmanager
def fake_forge_in_thread(kind: ForgeKind, **options: Any) -> Iterator[FakeForge]:
    """Run a FakeForge on its own event loop in a background thread.

    For synchronous tests, such as e2e tests that run devaipod as a subprocess. Set
    up state with the `add_*` methods before the code under test sends requests.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"fake-{kind}-forge", daemon=True)
    thread.start()
    forge = FakeForge(kind, **options)
    try:
        asyncio.run_coroutine_threadsafe(forge.start(), loop).result(timeout=30)
        yield forge
    finally:
        asyncio.run_coroutine_threadsafe(forge.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


class _ForgeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _segments(raw_path: str) -> list[str]:
    return [urllib.parse.unquote(segment) for segment in raw_path.strip("/").split("/")]


def _int(text: str) -> int:
    if not text.isdigit():
        raise _ForgeError(404, "Not Found")
    return int(text)


def _user_id(login: str) -> int:
    return sum(ord(char) * (index + 1) for index, char in enumerate(login))


def _writer(user: str | None) -> str:
    if user is None:
        raise _ForgeError(401, "Requires authentication")
    return user


def _json_body(body: bytes, *, required: tuple[str, ...]) -> Json:
    try:
        payload = json.loads(body or b"null")
    except ValueError as error:
        raise _ForgeError(400, "Problems parsing JSON") from error
    if not isinstance(payload, dict):
        raise _ForgeError(400, "Problems parsing JSON")
    missing = [name for name in required if name not in payload]
    if missing:
        raise _ForgeError(422, f"Validation Failed: missing {', '.join(missing)}")
    return payload


def _paginated(request: web.Request, items: list[Json], size_param: str,
               default_size: int) -> web.Response:
    """Return one page of `items` with a `Link: rel="next"` header when more follow."""
    size = int(request.query.get(size_param, default_size) or default_size)
    page = int(request.query.get("page", 1) or 1)
    start = (page - 1) * size
    response = web.json_response(items[start : start + size])
    if start + size < len(items):
        query = dict(request.query)
        query["page"] = str(page + 1)
        query[size_param] = str(size)
        next_url = request.url.with_query(query)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response
