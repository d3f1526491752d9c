"""Shared set-up and request tables for the forge API gate's policy and server tests.

Every forge gets the same session: repository `octo/hello` (GitLab:
`group/sub/hello`, project id 101) with issue 1 attached with all permissions,
pull request PR (GitHub/Forgejo 3, GitLab merge request 1) attached with read and
comment, issue 2 not attached, default branch `main`, output branch
`devaipod/issue-1`, one draft pull request allowed.

Paths contain placeholders: {theirs} is a comment by another user on issue 1,
{mine} a comment this session created on issue 1, {pr} the attached PR number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from devaipod.broker.api_policy import ApiRequest, GateContext, build_gate_context
from devaipod.config import ForgeKind, parse_config
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope
from devaipod.scope.model import AttachedContext, Scope

REPO = {"github": "octo/hello", "gitlab": "group/sub/hello", "forgejo": "octo/hello"}
PROJECT_ID = 101
PULL_REQUEST = {"github": 3, "gitlab": 1, "forgejo": 3}
OUTPUT_BRANCH = "devaipod/issue-1"


@dataclass(frozen=True)
class Case:
    """One agent request, with placeholders, and why the gate must deny it."""

    label: str
    method: str
    path: str
    body: object = None
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    raw_body: bytes | None = None
    content_type: str = "application/json"
    extra: dict[str, str] = field(default_factory=dict)

    def request(self, kind: ForgeKind, theirs: int, mine: int) -> ApiRequest:
        """Return the request with placeholders filled in."""
        path = self.path.format(theirs=theirs, mine=mine, pr=PULL_REQUEST[kind])
        headers = list(self.headers)
        body = self.raw_body if self.raw_body is not None else b""
        if self.body is not None:
            body = json.dumps(self.body).encode()
        if body:
            headers.append(("Content-Type", self.content_type))
        return ApiRequest(method=self.method, raw_path=path, query=self.query,
                          headers=headers, body=body)


def forge_config_text(kind: ForgeKind, host: str) -> str:
    """Return a config file declaring `host` as a forge of `kind`."""
    return f'[forges."{host}"]\nkind = "{kind}"\n'


def session_scope(kind: ForgeKind, host: str) -> Scope:
    """Return the derived scope for issue 1 plus the attached pull request."""
    config = parse_config(forge_config_text(kind, host), "test config")
    repo = REPO[kind]
    issue_path = "-/issues/1" if kind == "gitlab" else "issues/1"
    pull_path = {"github": "pull", "gitlab": "-/merge_requests", "forgejo": "pulls"}[kind]
    derived = derive_scope(parse_forge_url(f"http://{host}/{repo}/{issue_path}", config))
    pull_context = AttachedContext(
        type="git-pull-request",
        url=f"http://{host}/{repo}/{pull_path}/{PULL_REQUEST[kind]}",
        permissions=["read", "comment"],
        allowHttp=True,
    )
    return Scope(repos=derived.repos, attachedContexts=[*derived.attachedContexts, pull_context])


def session_context(kind: ForgeKind, host: str) -> GateContext:
    """Return the gate context of `session_scope` with the default branch and project id."""
    config = parse_config(forge_config_text(kind, host), "test config")
    return build_gate_context(
        session_scope(kind, host), host, config,
        default_branches={REPO[kind]: "main"}, project_ids={REPO[kind]: PROJECT_ID},
    )


def _pull_body(kind: ForgeKind, **changes: object) -> dict[str, object]:
    if kind == "gitlab":
        body: dict[str, object] = {"source_branch": OUTPUT_BRANCH, "target_branch": "main",
                                   "title": "Fix crash", "description": "Closes #1"}
    else:
        body = {"title": "Fix crash", "head": OUTPUT_BRANCH, "base": "main", "body": "Fixes #1"}
        if kind == "github":
            body["draft"] = True
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def allowed_pull_request_body(kind: ForgeKind) -> dict[str, object]:
    """Return a create-PR/MR body the scope allows."""
    return _pull_body(kind)


def _owner_repo_denied(kind: ForgeKind) -> list[Case]:
    """Denied requests common to GitHub and Forgejo (`/repos/{owner}/{repo}/...`)."""
    comment = {"body": "hello"}
    return [
        Case("another issue", "GET", "/repos/octo/hello/issues/2"),
        Case("another issue's comments", "GET", "/repos/octo/hello/issues/2/comments"),
        Case("comment on another issue", "POST", "/repos/octo/hello/issues/2/comments", comment),
        Case("another repository", "GET", "/repos/octo/other"),
        Case("comment in another repository", "POST", "/repos/octo/other/issues/1/comments",
             comment),
        Case("another owner", "GET", "/repos/evil/hello/issues/1"),
        Case("dot segments", "GET", "/repos/octo/hello/issues/1/../2"),
        Case("encoded dot segments", "GET", "/repos/octo/hello/issues/1/%2e%2e/2"),
        Case("encoded dot segments upper", "GET", "/repos/octo/hello/%2E%2E/other/issues/1"),
        Case("encoded slash in owner", "GET", "/repos/octo%2Fhello/issues/1"),
        Case("encoded slash in repo", "GET", "/repos/octo/hello%2F..%2Fother"),
        Case("double slash hides repo", "GET", "//repos//octo/other//issues/1"),
        Case("double encoding", "GET", "/repos/octo/hello/issues/%252e%252e/2"),
        Case("encoded backslash", "GET", "/repos/octo/hello/issues/1%5C..%5C2"),
        Case("upper-case collection", "GET", "/REPOS/octo/hello/issues/1"),
        Case("upper-case section", "GET", "/repos/octo/hello/ISSUES/1"),
        Case("case trick on another issue", "GET", "/repos/OCTO/Hello/issues/2"),
        Case("leading zero number", "GET", "/repos/octo/hello/issues/01"),
        Case("edit another user's comment", "PATCH",
             "/repos/octo/hello/issues/comments/{theirs}", {"body": "pwned"}),
        Case("delete another user's comment", "DELETE",
             "/repos/octo/hello/issues/comments/{theirs}"),
        Case("read another user's comment by id", "GET",
             "/repos/octo/hello/issues/comments/{theirs}"),
        Case("edit the issue itself", "PATCH", "/repos/octo/hello/issues/1",
             {"title": "x", "state": "closed"}),
        Case("list all issues", "GET", "/repos/octo/hello/issues", query="state=all"),
        Case("delete the repository", "DELETE", "/repos/octo/hello"),
        Case("read file contents", "GET", "/repos/octo/hello/contents/README.md"),
        Case("current user", "GET", "/user"),
        Case("unattached pull request", "GET", "/repos/octo/hello/pulls/9"),
        Case("pull from another branch", "POST", "/repos/octo/hello/pulls",
             _pull_body(kind, head="main")),
        Case("pull from a fork owner", "POST", "/repos/octo/hello/pulls",
             _pull_body(kind, head=f"evil:{OUTPUT_BRANCH}")),
        Case("pull into another base", "POST", "/repos/octo/hello/pulls",
             _pull_body(kind, base="release")),
        Case("pull with extra key", "POST", "/repos/octo/hello/pulls",
             _pull_body(kind, maintainer_can_modify=True)),
        Case("pull converting an issue", "POST", "/repos/octo/hello/pulls",
             _pull_body(kind, issue=2)),
        Case("pull in another repository", "POST", "/repos/octo/other/pulls", _pull_body(kind)),
        Case("sudo header", "GET", "/repos/octo/hello", headers=(("Sudo", "root"),)),
        Case("method override header", "POST", "/repos/octo/hello/issues/1/comments", comment,
             headers=(("X-HTTP-Method-Override", "DELETE"),)),
        Case("token query parameter", "GET", "/repos/octo/hello", query="access_token=x"),
        Case("sudo query parameter", "GET", "/repos/octo/hello/issues/1", query="sudo=admin"),
        Case("query on a write", "POST", "/repos/octo/hello/issues/1/comments", comment,
             query="page=1"),
        Case("unknown read parameter", "GET", "/repos/octo/hello/issues/1/comments",
             query="filter=all"),
        Case("form-encoded write", "POST", "/repos/octo/hello/issues/1/comments",
             raw_body=b"body=hello", content_type="application/x-www-form-urlencoded"),
        Case("duplicate JSON keys", "POST", "/repos/octo/hello/issues/1/comments",
             raw_body=b'{"body": "a", "body": "b"}'),
        Case("extra comment key", "POST", "/repos/octo/hello/issues/1/comments",
             {"body": "x", "in_reply_to": 1}),
        Case("oversized body", "POST", "/repos/octo/hello/issues/1/comments",
             {"body": "x" * (1024 * 1024 + 10)}),
        Case("body on a read", "GET", "/repos/octo/hello/issues/1", raw_body=b'{"a": 1}'),
        Case("head method", "HEAD", "/repos/octo/hello"),
    ]


def denied_cases(kind: ForgeKind) -> list[Case]:
    """Return the requests the gate must deny for `kind` (placeholders unfilled)."""
    if kind == "gitlab":
        return _gitlab_denied()
    cases = _owner_repo_denied(kind)
    if kind == "github":
        cases += [
            Case("pull not draft", "POST", "/repos/octo/hello/pulls",
                 _pull_body(kind, draft=False)),
            Case("raw GraphQL minimize", "POST", "/graphql", {
                "query": "mutation { minimizeComment(input: {subjectId: \"IC_x\", "
                         "classifier: SPAM}) { clientMutationId } }"}),
            Case("raw GraphQL mutation", "POST", "/graphql", {
                "query": "mutation { deleteIssue(input: {issueId: \"I_x\"}) "
                         "{ clientMutationId } }"}),
            Case("raw GraphQL query", "POST", "/graphql", {"query": "{ viewer { login } }"}),
            Case("minimize another user's comment", "POST",
                 "/repos/octo/hello/issues/comments/{theirs}/devaipod-minimize",
                 {"classifier": "SPAM"}),
            Case("minimize with unknown classifier", "POST",
                 "/repos/octo/hello/issues/comments/{mine}/devaipod-minimize",
                 {"classifier": "HIDDEN"}),
        ]
    else:
        cases += [
            Case("minimize on forgejo", "POST",
                 "/repos/octo/hello/issues/comments/{mine}/devaipod-minimize", {}),
            Case("one-time password header", "GET", "/repos/octo/hello",
                 headers=(("X-Forgejo-OTP", "123456"),)),
            Case("token query parameter forgejo", "GET", "/repos/octo/hello", query="token=x"),
            Case("pull with assignees", "POST", "/repos/octo/hello/pulls",
                 _pull_body(kind, assignees=["evil"])),
        ]
    return cases


def _gitlab_denied() -> list[Case]:
    project = "/projects/101"
    note = {"body": "hello"}
    return [
        Case("another project by path", "GET", "/projects/group%2Fsub%2Fother"),
        Case("another project by id", "GET", "/projects/999"),
        Case("project path with dot segment", "GET",
             "/projects/group%2Fsub%2Fhello%2F..%2Fother/issues/1"),
        Case("project path double encoded", "GET", "/projects/group%252Fsub%252Fhello"),
        Case("project path with empty segment", "GET", "/projects/group%2F%2Fsub%2Fhello"),
        Case("encoded slash outside project", "GET", f"{project}/issues/1%2Fnotes"),
        Case("another issue", "GET", f"{project}/issues/2"),
        Case("another issue's notes", "GET", f"{project}/issues/2/notes"),
        Case("note on another issue", "POST", f"{project}/issues/2/notes", note),
        Case("dot segments", "GET", f"{project}/issues/1/../2"),
        Case("edit another user's note", "PUT", f"{project}/issues/1/notes/{{theirs}}",
             {"body": "pwned"}),
        Case("delete another user's note", "DELETE", f"{project}/issues/1/notes/{{theirs}}"),
        Case("own note through another issue", "PUT", f"{project}/issues/2/notes/{{mine}}",
             {"body": "moved"}),
        Case("own note through a merge request", "DELETE",
             f"{project}/merge_requests/{{pr}}/notes/{{mine}}"),
        Case("unattached merge request", "GET", f"{project}/merge_requests/7"),
        Case("note on unattached merge request", "POST", f"{project}/merge_requests/7/notes",
             note),
        Case("internal note", "POST", f"{project}/issues/1/notes", {"body": "x", "internal": True}),
        Case("sudo header", "GET", project, headers=(("Sudo", "root"),)),
        Case("sudo query parameter", "GET", f"{project}/issues/1", query="sudo=1"),
        Case("private token query", "GET", f"{project}/issues/1/notes", query="private_token=x"),
        Case("query on a write", "POST", f"{project}/issues/1/notes", note, query="body=hi"),
        Case("form-encoded write", "POST", f"{project}/issues/1/notes", raw_body=b"body=hi",
             content_type="application/x-www-form-urlencoded"),
        Case("merge request into another project", "POST", f"{project}/merge_requests",
             _pull_body("gitlab", target_project_id=7)),
        Case("merge request removing source branch", "POST", f"{project}/merge_requests",
             _pull_body("gitlab", remove_source_branch=True)),
        Case("merge request from another branch", "POST", f"{project}/merge_requests",
             _pull_body("gitlab", source_branch="main")),
        Case("merge request into another base", "POST", f"{project}/merge_requests",
             _pull_body("gitlab", target_branch="release")),
        Case("merge request not draft", "POST", f"{project}/merge_requests",
             _pull_body("gitlab", draft=False)),
        Case("merge request via query", "POST", f"{project}/merge_requests",
             query="source_branch=x&target_branch=main&title=t"),
        Case("read repository files", "GET", f"{project}/repository/files/README.md"),
        Case("delete the project", "DELETE", project),
        Case("minimize on gitlab", "POST", f"{project}/issues/1/notes/{{mine}}/devaipod-minimize",
             {}),
        Case("list all projects", "GET", "/projects"),
        Case("leading zero iid", "GET", f"{project}/issues/001"),
        Case("upper-case section", "GET", f"{project}/ISSUES/1"),
    ]
