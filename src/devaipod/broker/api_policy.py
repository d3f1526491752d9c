"""The forge API gate's policy: normalise an agent's REST request and match it against the scope.

Pure functions, no I/O. `decide` returns a Decision with the canonical request to
send upstream, rebuilt from the checked values, so the forge receives exactly
what was checked. `SessionState` records the comments and pull requests this
session created, which are the only ones the agent may edit, delete or minimise.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from devaipod.broker.api_normalise import (
    Denied,
    normalise_headers,
    normalise_path,
    normalise_query,
    parse_json_body,
)
from devaipod.config import ForgeKind, UserConfig, config_path
from devaipod.errors import UserError
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.model import RepoOutput, Scope

Permission = Literal["read", "comment", "edit-own", "minimize-own"]


# GitHub's ReportedContentClassifiers values.
MINIMIZE_CLASSIFIERS = frozenset(
    {"SPAM", "ABUSE", "OFF_TOPIC", "OUTDATED", "DUPLICATE", "RESOLVED"}
)
# The broker's own verb for GitHub's minimizeComment: the agent names the comment, the
# broker builds the GraphQL mutation.
MINIMIZE_VERB = "devaipod-minimize"
MINIMIZE_MUTATION = (
    "mutation($subjectId: ID!, $classifier: ReportedContentClassifiers!) { "
    "minimizeComment(input: {subjectId: $subjectId, classifier: $classifier}) { "
    "minimizedComment { isMinimized minimizedReason } } }"
)

_PULL_REQUEST_KEYS: dict[ForgeKind, frozenset[str]] = {
    "github": frozenset({"title", "body", "head", "base", "draft"}),
    "forgejo": frozenset({"title", "body", "head", "base"}),
    "gitlab": frozenset({"source_branch", "target_branch", "title", "description", "draft"}),
}
# Title prefixes that mark a draft: GitLab recognises "Draft:", "[Draft]" and "(Draft)";
# Forgejo and Gitea treat "WIP:" and "[WIP]" as work in progress by default. A marker
# counts only at the very start of the title, so the gate does not rely on a forge
# skipping leading whitespace.
_GITLAB_DRAFT_TITLE = re.compile(r"(draft:|\[draft\]|\(draft\))", re.IGNORECASE)
_FORGEJO_DRAFT_TITLE = re.compile(r"(wip:|\[wip\])", re.IGNORECASE)
# GitLab runs a quick action (`/merge`, `/approve`, `/ready`, `/move`, `/target_branch`...)
# that starts a line of a note, also when the note comes through the REST API. Such lines are
# denied, because they would act beyond the operation checked.
# NOTE: that a new merge request's description runs them too is assumed from GitLab's web UI,
# so descriptions are checked the same way. Leading spaces are denied to be safe.
_GITLAB_QUICK_ACTION = re.compile(r"^\s*/[A-Za-z_]")
# Numbers in canonical form only: "007" is denied rather than forwarded as another spelling.
_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,9})$")


# --- inputs and outputs -----------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """An agent's request as received: the path is relative to the forge's API base."""

    method: str
    raw_path: str  # percent-encoded, without the query
    query: str  # raw query string, without "?"
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class UpstreamRequest:
    """The canonical request to send to the forge; the forwarder adds the token."""

    method: str
    path: str  # percent-encoded, relative to the API base; "" for the GraphQL endpoint
    query: str
    headers: Mapping[str, str]
    body: bytes | None
    endpoint: Literal["rest", "graphql"] = "rest"


@dataclass(frozen=True)
class Decision:
    """The policy's verdict on one request."""

    allowed: bool
    reason: str
    operation: str
    repository: str | None = None
    canonical_path: str | None = None
    upstream: UpstreamRequest | None = None
    number: int | None = None  # the issue, PR or MR the operation acts on
    on_merge_request: bool = False  # GitLab: `number` is a merge request iid
    comment_id: int | None = None


@dataclass(frozen=True)
class ScopedRepo:
    """A repository the session may use, with the issues and pull requests attached to it."""

    path: str  # canonical "owner/repo" or "group/sub/project", as the scope spells it
    output: RepoOutput | None = None
    default_branch: str | None = None  # resolved at session start
    project_id: int | None = None  # GitLab numeric project id, pinned at session start
    issues: Mapping[int, frozenset[Permission]] = field(default_factory=dict)
    pull_requests: Mapping[int, frozenset[Permission]] = field(default_factory=dict)


@dataclass(frozen=True)
class GateContext:
    """The policy input for one forge host: its kind and the scoped repositories."""

    kind: ForgeKind
    host: str
    repos: tuple[ScopedRepo, ...]

    def find_repo(self, path: str) -> ScopedRepo | None:
        """Return the scoped repository named `path`, compared without case."""
        folded = path.casefold()
        for repo in self.repos:
            if repo.path.casefold() == folded:
                return repo
        return None

    def find_project_id(self, project_id: int) -> ScopedRepo | None:
        """Return the GitLab project whose pinned numeric id is `project_id`."""
        for repo in self.repos:
            if repo.project_id is not None and repo.project_id == project_id:
                return repo
        return None


def build_gate_context(
    scope: Scope,
    host: str,
    config: UserConfig,
    *,
    default_branches: Mapping[str, str] | None = None,
    project_ids: Mapping[str, int] | None = None,
) -> GateContext:
    """Collect the scope's repositories and attached contexts on forge `host`.

    `default_branches` and `project_ids` map repository paths to values resolved
    at session start. Raises UserError for URLs on hosts the config does not know.
    """
    settings = config.forge_settings(host)
    if settings is None:
        raise UserError(
            f"unknown forge host {host!r}",
            fix=f'add to {config_path()} the table [forges."{host}"] with the line '
            'kind = "github" (or "gitlab" or "forgejo")',
        )
    default_branches = {key.casefold(): value for key, value in (default_branches or {}).items()}
    project_ids = {key.casefold(): value for key, value in (project_ids or {}).items()}

    outputs: dict[str, tuple[str, RepoOutput | None]] = {}
    for repo_scope in scope.repos:
        url = parse_forge_url(repo_scope.input.url, config)
        if url.host == host:
            outputs.setdefault(url.repo_path.casefold(), (url.repo_path, repo_scope.output))

    issues: dict[str, dict[int, frozenset[Permission]]] = {}
    pulls: dict[str, dict[int, frozenset[Permission]]] = {}
    for attached in scope.attachedContexts:
        url = parse_forge_url(attached.url, config)
        if url.host != host or url.number is None:
            continue
        key = url.repo_path.casefold()
        outputs.setdefault(key, (url.repo_path, None))
        table = issues if url.item == "issue" else pulls
        granted = table.setdefault(key, {}).get(url.number, frozenset())
        table[key][url.number] = granted | frozenset(attached.permissions)

    repos = tuple(
        ScopedRepo(
            path=path,
            output=output,
            default_branch=default_branches.get(key),
            project_id=project_ids.get(key),
            issues=issues.get(key, {}),
            pull_requests=pulls.get(key, {}),
        )
        for key, (path, output) in outputs.items()
    )
    return GateContext(kind=settings.kind, host=host, repos=repos)


@dataclass(frozen=True)
class OwnComment:
    """A comment (GitLab: note) that this session created."""

    number: int
    on_merge_request: bool
    node_id: str | None  # GitHub's GraphQL id, needed to minimise it


@dataclass
class SessionState:
    """The comments and pull requests this session created, updated from forge responses.

    `to_json` and `from_json` let the broker keep it across restarts, so that the
    agent can still edit its earlier comments and maxPullRequests keeps counting.
    """

    own_comments: dict[tuple[str, int], OwnComment] = field(default_factory=dict)
    pull_requests: dict[str, list[int]] = field(default_factory=dict)
    pending_pull_requests: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Return the created comments and pull requests as JSON-ready data.

        Reservations of requests in flight are left out: after a restart their
        outcome is unknown to the broker.
        """
        return {
            "comments": [
                {"repository": repo, "id": comment_id, "number": comment.number,
                 "on_merge_request": comment.on_merge_request, "node_id": comment.node_id}
                for (repo, comment_id), comment in sorted(self.own_comments.items())
            ],
            "pull_requests": {repo: list(numbers) for repo, numbers in self.pull_requests.items()},
        }

    @classmethod
    def from_json(cls, data: object) -> SessionState:
        """Rebuild a state saved by `to_json`; raises ValueError when `data` has another shape."""
        if not isinstance(data, dict):
            raise ValueError("the saved gate state is not a JSON object")
        state = cls()
        try:
            for entry in data.get("comments", []):
                key = (str(entry["repository"]).casefold(), int(entry["id"]))
                node_id = entry.get("node_id")
                state.own_comments[key] = OwnComment(
                    number=int(entry["number"]),
                    on_merge_request=bool(entry["on_merge_request"]),
                    node_id=str(node_id) if node_id is not None else None,
                )
            for repo, numbers in dict(data.get("pull_requests", {})).items():
                state.pull_requests[str(repo).casefold()] = [int(number) for number in numbers]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"the saved gate state is invalid: {error}") from error
        return state

    def own_comment(self, repo: ScopedRepo, comment_id: int) -> OwnComment | None:
        """Return the comment if this session created it in `repo`."""
        return self.own_comments.get((repo.path.casefold(), comment_id))

    def pull_request_count(self, repo: ScopedRepo) -> int:
        """Count pull requests created or being created in `repo` by this session."""
        key = repo.path.casefold()
        return len(self.pull_requests.get(key, [])) + self.pending_pull_requests.get(key, 0)

    def owns_pull_request(self, repo: ScopedRepo, number: int) -> bool:
        """Return True when this session created pull/merge request `number` in `repo`."""
        return number in self.pull_requests.get(repo.path.casefold(), [])

    def begin(self, decision: Decision) -> None:
        """Reserve a pull request slot for an allowed create, before the request is sent.

        Call it right after `decide`, with no await in between, so two concurrent
        requests cannot both pass the `maxPullRequests` check.
        """
        if decision.allowed and decision.operation == "create-pull-request":
            key = (decision.repository or "").casefold()
            self.pending_pull_requests[key] = self.pending_pull_requests.get(key, 0) + 1

    def finish(self, decision: Decision, status: int | None, payload: object) -> None:
        """Record what the forge created (from its JSON `payload`) and release reservations."""
        if not decision.allowed or decision.repository is None:
            return
        key = decision.repository.casefold()
        succeeded = status is not None and 200 <= status < 300
        data = payload if isinstance(payload, dict) else {}

        if decision.operation == "create-pull-request":
            self.pending_pull_requests[key] = max(0, self.pending_pull_requests.get(key, 0) - 1)
            number = data.get("iid", data.get("number"))
            if succeeded and isinstance(number, int):
                self.pull_requests.setdefault(key, []).append(number)
        elif decision.operation == "create-comment" and succeeded:
            comment_id = data.get("id")
            node_id = data.get("node_id")
            if isinstance(comment_id, int) and decision.number is not None:
                self.own_comments[(key, comment_id)] = OwnComment(
                    number=decision.number,
                    on_merge_request=decision.on_merge_request,
                    node_id=node_id if isinstance(node_id, str) else None,
                )
        elif decision.operation == "delete-comment" and succeeded:
            if decision.comment_id is not None:
                self.own_comments.pop((key, decision.comment_id), None)


# --- the normalised request ---------------------------------------------------------


@dataclass(frozen=True)
class _Normalised:
    method: str
    segments: list[str]
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None


# --- the decision -----------------------------------------------------------------------


def decide(
    context: GateContext, state: SessionState, request: ApiRequest
) -> Decision:
    """Check one agent request against the scope; deny anything not explicitly allowed."""
    try:
        method = request.method.upper()
        if method not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            raise Denied(f"method {request.method!r} is not allowed")
        is_write = method != "GET"
        normalised = _Normalised(
            method=method,
            segments=normalise_path(context.kind, request.raw_path),
            query=normalise_query(context.kind, request.query, is_write=is_write),
            headers=normalise_headers(request.headers),
            body=parse_json_body(method, request.headers, request.body),
        )
        if context.kind == "gitlab":
            return _decide_gitlab(context, state, normalised)
        return _decide_owner_repo(context, state, normalised)
    except Denied as denied:
        return Decision(allowed=False, reason=denied.reason, operation=denied.operation)


def _decide_owner_repo(context: GateContext, state: SessionState, request: _Normalised
                       ) -> Decision:
    """Decide a GitHub or Forgejo request (`/repos/{owner}/{repo}/...`)."""
    segments = request.segments
    if segments == ["graphql"]:
        raise Denied("raw GraphQL is denied; minimise an own comment with POST "
                     f"/repos/OWNER/REPO/issues/comments/ID/{MINIMIZE_VERB}", "graphql")
    if len(segments) < 3 or segments[0] != "repos":
        raise Denied("no rule allows this path")

    repo = context.find_repo(f"{segments[1]}/{segments[2]}")
    if repo is None:
        raise Denied(f"repository {segments[1]}/{segments[2]} is not in the scope")
    rest = segments[3:]
    method = request.method
    issue = _item_permissions(context, repo, on_merge_request=False)

    match (method, rest):
        case ("GET", []):
            return _allow(context, repo, request, "read-repository", rest)
        case ("GET", ["issues", number]):
            item = _number(number)
            if "read" not in issue(item) and not state.owns_pull_request(repo, item):
                raise Denied(f"issue {item} is not attached to the session", "read-issue")
            return _allow(context, repo, request, "read-issue", rest, number=item)
        case ("GET", ["issues", number, "comments"]):
            item = _require(issue(_number(number)), "read", "list-comments", _number(number))
            return _allow(context, repo, request, "list-comments", rest, number=item)
        case ("POST", ["issues", number, "comments"]):
            item = _require(issue(_number(number)), "comment", "create-comment", _number(number))
            body = _comment_body(context.kind, request.body, "create-comment")
            return _allow(context, repo, request, "create-comment", rest, number=item, body=body)
        case ("GET", ["issues", "comments", comment_id]):
            own = _own_comment(state, repo, comment_id, "read-comment")
            return _allow(context, repo, request, "read-comment", rest, number=own[1].number,
                          comment_id=own[0])
        case ("PATCH", ["issues", "comments", comment_id]):
            comment_number, comment = _own_comment(state, repo, comment_id, "edit-comment")
            _require(issue(comment.number), "edit-own", "edit-comment", comment.number)
            body = _comment_body(context.kind, request.body, "edit-comment")
            return _allow(context, repo, request, "edit-comment", rest, number=comment.number,
                          comment_id=comment_number, body=body)
        case ("DELETE", ["issues", "comments", comment_id]):
            comment_number, comment = _own_comment(state, repo, comment_id, "delete-comment")
            _require(issue(comment.number), "edit-own", "delete-comment", comment.number)
            return _allow(context, repo, request, "delete-comment", rest, number=comment.number,
                          comment_id=comment_number)
        case ("POST", ["issues", "comments", comment_id, verb]) if verb == MINIMIZE_VERB:
            return _minimize(context, state, repo, request, comment_id, issue)
        case ("GET", ["pulls", number]):
            item = _number(number)
            attached = "read" in repo.pull_requests.get(item, frozenset())
            if not attached and not state.owns_pull_request(repo, item):
                raise Denied(f"pull request {item} is not attached to the session",
                             "read-pull-request")
            return _allow(context, repo, request, "read-pull-request", rest, number=item)
        case ("POST", ["pulls"]):
            body = _pull_request_body(context.kind, state, repo, request.body)
            return _allow(context, repo, request, "create-pull-request", rest, body=body)
    raise Denied(f"no rule allows {method} on this path")


def _decide_gitlab(context: GateContext, state: SessionState, request: _Normalised) -> Decision:
    """Decide a GitLab request (`/projects/:id/...`, id numeric or the URL-encoded path)."""
    segments = request.segments
    if len(segments) < 2 or segments[0] != "projects":
        raise Denied("no rule allows this path")

    project = segments[1]
    if _NUMBER.fullmatch(project):
        repo = context.find_project_id(int(project))
        if repo is None:
            raise Denied(f"project id {project} is not the pinned id of a scoped project")
    else:
        repo = context.find_repo(project)
        if repo is None:
            raise Denied(f"project {project} is not in the scope")
    rest = segments[2:]
    method = request.method

    match (method, rest):
        case ("GET", []):
            return _allow(context, repo, request, "read-repository", rest)
        case ("POST", ["merge_requests"]):
            body = _pull_request_body(context.kind, state, repo, request.body)
            return _allow(context, repo, request, "create-pull-request", rest, body=body)
        case ("GET", [("issues" | "merge_requests") as section, number]):
            on_mr = section == "merge_requests"
            item = _number(number)
            permissions = _item_permissions(context, repo, on_merge_request=on_mr)(item)
            owned = on_mr and state.owns_pull_request(repo, item)
            operation = "read-pull-request" if on_mr else "read-issue"
            if "read" not in permissions and not owned:
                noun = "merge request" if on_mr else "issue"
                raise Denied(f"{noun} {item} is not attached to the session", operation)
            return _allow(context, repo, request, operation, rest, number=item,
                          on_merge_request=on_mr)
        case (_, [("issues" | "merge_requests") as section, number, "notes", *note]):
            return _gitlab_note(context, state, repo, request, section == "merge_requests",
                                _number(number), note)
    raise Denied(f"no rule allows {method} on this path")


def _gitlab_note(
    context: GateContext, state: SessionState, repo: ScopedRepo, request: _Normalised,
    on_mr: bool, item: int, note: list[str],
) -> Decision:
    rest = ["merge_requests" if on_mr else "issues", str(item), "notes", *note]
    permissions = _item_permissions(context, repo, on_merge_request=on_mr)(item)
    method = request.method

    match (method, note):
        case ("POST", [_, verb]) if verb == MINIMIZE_VERB:
            raise Denied("gitlab has no API to minimise a note; edit or delete it",
                         "minimize-comment")
        case ("GET", []):
            _require(permissions, "read", "list-comments", item)
            return _allow(context, repo, request, "list-comments", rest, number=item,
                          on_merge_request=on_mr)
        case ("POST", []):
            _require(permissions, "comment", "create-comment", item)
            body = _comment_body(context.kind, request.body, "create-comment")
            return _allow(context, repo, request, "create-comment", rest, number=item,
                          on_merge_request=on_mr, body=body)
        case ("GET", [note_id]):
            _require(permissions, "read", "read-comment", item)
            return _allow(context, repo, request, "read-comment", rest, number=item,
                          on_merge_request=on_mr, comment_id=_number(note_id))
        case ("PUT" | "DELETE", [note_id]):
            operation = "edit-comment" if method == "PUT" else "delete-comment"
            comment_id, comment = _own_comment(state, repo, note_id, operation)
            if comment.number != item or comment.on_merge_request != on_mr:
                raise Denied(f"note {comment_id} belongs to another issue or merge request",
                             operation)
            _require(permissions, "edit-own", operation, item)
            edited = None
            if method == "PUT":
                edited = _comment_body(context.kind, request.body, operation)
            return _allow(context, repo, request, operation, rest, number=item,
                          on_merge_request=on_mr, comment_id=comment_id, body=edited)
    raise Denied(f"no rule allows {method} on this note path")


def _minimize(
    context: GateContext, state: SessionState, repo: ScopedRepo, request: _Normalised,
    comment_id: str, issue: _PermissionLookup,
) -> Decision:
    """Build GitHub's minimizeComment mutation for an own comment; other forges have none."""
    operation = "minimize-comment"
    if context.kind != "github":
        raise Denied(f"{context.kind} has no API to minimise a comment; edit or delete it",
                     operation)
    comment_number, comment = _own_comment(state, repo, comment_id, operation)
    _require(issue(comment.number), "minimize-own", operation, comment.number)
    if comment.node_id is None:
        raise Denied(f"the GraphQL id of comment {comment_number} is unknown", operation)

    body = request.body or {}
    if set(body) - {"classifier"}:
        raise Denied(f"minimise body keys {sorted(set(body) - {'classifier'})} are not allowed",
                     operation)
    classifier = body.get("classifier", "OUTDATED")
    if classifier not in MINIMIZE_CLASSIFIERS:
        raise Denied(f"classifier {classifier!r} is not one of {sorted(MINIMIZE_CLASSIFIERS)}",
                     operation)

    graphql = {"query": MINIMIZE_MUTATION,
               "variables": {"subjectId": comment.node_id, "classifier": classifier}}
    upstream = UpstreamRequest(
        method="POST", path="", query="",
        headers={"content-type": "application/json", "accept": "application/json"},
        body=_encode_json(graphql), endpoint="graphql",
    )
    canonical = f"/repos/{repo.path}/issues/comments/{comment_number}/{MINIMIZE_VERB}"
    return Decision(allowed=True, reason=f"minimise own comment {comment_number}",
                    operation=operation, repository=repo.path, canonical_path=canonical,
                    upstream=upstream, number=comment.number, comment_id=comment_number)


# --- rule helpers -----------------------------------------------------------------------


_PermissionLookup = Callable[[int], frozenset[Permission]]


def _item_permissions(
    context: GateContext, repo: ScopedRepo, *, on_merge_request: bool
) -> _PermissionLookup:
    """Return a lookup from issue/PR number to the permissions attached to it.

    GitHub and Forgejo number issues and pull requests in one sequence, so a PR's
    conversation comments use the issue endpoints; GitLab keeps them apart.
    """
    def lookup(number: int) -> frozenset[Permission]:
        if context.kind == "gitlab":
            table = repo.pull_requests if on_merge_request else repo.issues
            return table.get(number, frozenset())
        return repo.issues.get(number, frozenset()) | repo.pull_requests.get(number, frozenset())
    return lookup


def _require(permissions: frozenset[Permission], permission: Permission, operation: str,
             number: int) -> int:
    if permission not in permissions:
        if not permissions:
            raise Denied(f"#{number} is not attached to the session", operation)
        raise Denied(f"the scope does not grant {permission!r} on #{number}", operation)
    return number


def _number(text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise Denied(f"{text!r} is not a number")
    return int(text)


def _own_comment(state: SessionState, repo: ScopedRepo, text: str, operation: str
                 ) -> tuple[int, OwnComment]:
    comment_id = _number(text)
    comment = state.own_comment(repo, comment_id)
    if comment is None:
        raise Denied(f"comment {comment_id} was not created by this session", operation)
    return comment_id, comment


def _comment_body(kind: ForgeKind, body: dict[str, Any] | None, operation: str
                  ) -> dict[str, Any]:
    if body is None or set(body) != {"body"}:
        keys = sorted(body) if body else []
        raise Denied(f"a comment body must have exactly the key 'body', not {keys}", operation)
    if not isinstance(body["body"], str) or not body["body"].strip():
        raise Denied("the comment body must be a non-empty string", operation)
    _reject_quick_actions(kind, body["body"], "the comment body", operation)
    return {"body": body["body"]}


def _reject_quick_actions(kind: ForgeKind, text: str, where: str, operation: str) -> None:
    """Deny GitLab text with a line that GitLab would run as a quick action."""
    if kind != "gitlab":
        return
    for line in text.splitlines():
        if _GITLAB_QUICK_ACTION.match(line):
            raise Denied(f"{where} has a line starting with '/', which GitLab runs as a quick "
                         f"action ({line.strip()[:40]!r}); reword it so that no line starts "
                         "with '/'", operation)


def _pull_request_body(kind: ForgeKind, state: SessionState, repo: ScopedRepo,
                       body: dict[str, Any] | None) -> dict[str, Any]:
    """Check a create-PR/MR body against the scope's output and return the body to send."""
    operation = "create-pull-request"
    output = repo.output
    if output is None or not output.createPullRequest:
        raise Denied(f"the scope does not allow opening a pull request in {repo.path}", operation)
    if body is None:
        raise Denied("a pull request needs a JSON body", operation)
    unknown = sorted(set(body) - _PULL_REQUEST_KEYS[kind])
    if unknown:
        raise Denied(f"pull request body keys {unknown} are not allowed", operation)
    if state.pull_request_count(repo) >= output.maxPullRequests:
        raise Denied(f"the scope allows at most {output.maxPullRequests} pull request(s) "
                     f"in {repo.path}", operation)

    head_key, base_key, text_key = (
        ("source_branch", "target_branch", "description") if kind == "gitlab"
        else ("head", "base", "body")
    )
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise Denied("the pull request title must be a non-empty string", operation)
    text = body.get(text_key, "")
    if not isinstance(text, str):
        raise Denied(f"the pull request {text_key} must be a string", operation)
    _reject_quick_actions(kind, text, f"the merge request {text_key}", operation)

    head = body.get(head_key)
    if not isinstance(head, str) or not _is_session_branch(kind, repo, output, head):
        raise Denied(f"{head_key} {head!r} is not the session's branch {output.targetBranch!r}",
                     operation)

    expected_base = output.baseBranch or repo.default_branch
    if expected_base is None:
        raise Denied("the default branch was not resolved at session start", operation)
    if body.get(base_key) != expected_base:
        raise Denied(f"{base_key} {body.get(base_key)!r} is not {expected_base!r}", operation)

    draft = body.get("draft")
    if draft is not None and not isinstance(draft, bool):
        raise Denied("draft must be true or false", operation)
    if output.draft and draft is False:
        raise Denied("the scope requires a draft pull request", operation)
    make_draft = output.draft or draft is True

    result: dict[str, Any] = {"title": title, head_key: output.targetBranch,
                              base_key: expected_base}
    if text:
        result[text_key] = text
    if kind == "github":
        result["draft"] = make_draft
    elif kind == "gitlab" and make_draft and not _GITLAB_DRAFT_TITLE.match(title):
        result["title"] = f"Draft: {title}"
    elif kind == "forgejo" and make_draft and not _FORGEJO_DRAFT_TITLE.match(title):
        result["title"] = f"WIP: {title}"
    return result


def _is_session_branch(kind: ForgeKind, repo: ScopedRepo, output: RepoOutput, head: str) -> bool:
    """Return True when `head` is the output branch, as `branch` or GitHub/Forgejo `owner:branch`.

    Owners compare without case because both forges ignore it; branch names are exact.
    """
    if head == output.targetBranch:
        return True
    if kind == "gitlab" or ":" not in head:
        return False
    owner, _, branch = head.partition(":")
    repo_owner = repo.path.split("/", 1)[0]
    return owner.casefold() == repo_owner.casefold() and branch == output.targetBranch


def _allow(
    context: GateContext, repo: ScopedRepo, request: _Normalised, operation: str,
    rest: list[str], *, number: int | None = None, on_merge_request: bool = False,
    comment_id: int | None = None, body: dict[str, Any] | None = None,
) -> Decision:
    """Build an allowed Decision whose upstream request is rebuilt from checked values."""
    if context.kind == "gitlab":
        project = str(repo.project_id) if repo.project_id is not None else repo.path
        prefix = ["projects", project]
    else:
        owner, name = repo.path.split("/", 1)
        prefix = ["repos", owner, name]
    path = "/" + "/".join(urllib.parse.quote(segment, safe="") for segment in [*prefix, *rest])

    headers = dict(request.headers)
    payload = None
    if body is not None:
        payload = _encode_json(body)
        headers["content-type"] = "application/json"
    upstream = UpstreamRequest(
        method=request.method,
        path=path,
        query=urllib.parse.urlencode(sorted(request.query.items())),
        headers=headers, body=payload,
    )
    target = f"#{number}" if number is not None else repo.path
    return Decision(
        allowed=True, reason=f"{operation} on {target} is in the scope", operation=operation,
        repository=repo.path, canonical_path=path, upstream=upstream, number=number,
        on_merge_request=on_merge_request, comment_id=comment_id,
    )


def _encode_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
