"""Tests of the forge API gate's policy: normalisation, allowed operations and denials."""

from __future__ import annotations

import json

import pytest

from devaipod.broker.api_policy import (
    MINIMIZE_MUTATION,
    ApiRequest,
    Decision,
    OwnComment,
    SessionState,
    decide,
)
from devaipod.config import ForgeKind
from support.forge_api_cases import (
    OUTPUT_BRANCH,
    PROJECT_ID,
    PULL_REQUEST,
    Case,
    allowed_pull_request_body,
    denied_cases,
    session_context,
)

HOST = "forge.test:3000"
KINDS: list[ForgeKind] = ["github", "gitlab", "forgejo"]
MINE = 5001
THEIRS = 4000


def _state(kind: ForgeKind) -> SessionState:
    state = SessionState()
    repo = "group/sub/hello" if kind == "gitlab" else "octo/hello"
    state.own_comments[(repo, MINE)] = OwnComment(number=1, on_merge_request=False,
                                                  node_id="IC_mine")
    return state


def _decide(kind: ForgeKind, method: str, path: str, body: object = None, query: str = "",
            headers: list[tuple[str, str]] | None = None, state: SessionState | None = None
            ) -> Decision:
    raw = json.dumps(body).encode() if body is not None else b""
    all_headers = list(headers or [])
    if raw:
        all_headers.append(("Content-Type", "application/json; charset=utf-8"))
    request = ApiRequest(method=method, raw_path=path, query=query, headers=all_headers,
                         body=raw)
    return decide(session_context(kind, HOST), state or _state(kind), request)


def _repo_path(kind: ForgeKind) -> str:
    return f"/projects/{PROJECT_ID}" if kind == "gitlab" else "/repos/octo/hello"


# --- allowed operations, per forge -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_read_repository_allowed(kind: ForgeKind) -> None:
    decision = _decide(kind, "GET", _repo_path(kind))

    assert decision.allowed, decision.reason
    assert decision.operation == "read-repository"
    assert decision.upstream is not None
    assert decision.upstream.path == _repo_path(kind)
    assert decision.upstream.body is None


@pytest.mark.parametrize("kind", KINDS)
def test_read_attached_issue_allowed(kind: ForgeKind) -> None:
    decision = _decide(kind, "GET", f"{_repo_path(kind)}/issues/1")

    assert decision.allowed, decision.reason
    assert decision.operation == "read-issue"
    assert decision.number == 1


@pytest.mark.parametrize("kind", KINDS)
def test_list_issue_comments_allowed(kind: ForgeKind) -> None:
    section = "notes" if kind == "gitlab" else "comments"
    page_size = "limit" if kind == "forgejo" else "per_page"

    decision = _decide(kind, "GET", f"{_repo_path(kind)}/issues/1/{section}",
                       query=f"{page_size}=50&page=2")

    assert decision.allowed, decision.reason
    assert decision.operation == "list-comments"
    assert decision.upstream is not None
    assert decision.upstream.query == "&".join(sorted(["page=2", f"{page_size}=50"]))


@pytest.mark.parametrize("kind", KINDS)
def test_create_comment_allowed(kind: ForgeKind) -> None:
    section = "notes" if kind == "gitlab" else "comments"

    decision = _decide(kind, "POST", f"{_repo_path(kind)}/issues/1/{section}", {"body": "On it"})

    assert decision.allowed, decision.reason
    assert decision.operation == "create-comment"
    assert decision.upstream is not None
    assert decision.upstream.body == b'{"body":"On it"}'
    assert decision.upstream.headers["content-type"] == "application/json"


@pytest.mark.parametrize("kind", KINDS)
def test_comment_on_attached_pull_request(kind: ForgeKind) -> None:
    number = PULL_REQUEST[kind]
    path = (f"{_repo_path(kind)}/merge_requests/{number}/notes" if kind == "gitlab"
            else f"{_repo_path(kind)}/issues/{number}/comments")

    decision = _decide(kind, "POST", path, {"body": "Reviewed"})

    assert decision.allowed, decision.reason
    assert decision.number == number
    assert decision.on_merge_request is (kind == "gitlab")


@pytest.mark.parametrize("kind", KINDS)
def test_read_attached_pull_request(kind: ForgeKind) -> None:
    number = PULL_REQUEST[kind]
    section = "merge_requests" if kind == "gitlab" else "pulls"

    decision = _decide(kind, "GET", f"{_repo_path(kind)}/{section}/{number}")

    assert decision.allowed, decision.reason
    assert decision.operation == "read-pull-request"


@pytest.mark.parametrize("kind", KINDS)
def test_edit_own_comment_allowed(kind: ForgeKind) -> None:
    if kind == "gitlab":
        method, path = "PUT", f"{_repo_path(kind)}/issues/1/notes/{MINE}"
    else:
        method, path = "PATCH", f"{_repo_path(kind)}/issues/comments/{MINE}"

    decision = _decide(kind, method, path, {"body": "Updated"})

    assert decision.allowed, decision.reason
    assert decision.operation == "edit-comment"
    assert decision.comment_id == MINE


@pytest.mark.parametrize("kind", KINDS)
def test_delete_own_comment_allowed(kind: ForgeKind) -> None:
    path = (f"{_repo_path(kind)}/issues/1/notes/{MINE}" if kind == "gitlab"
            else f"{_repo_path(kind)}/issues/comments/{MINE}")

    decision = _decide(kind, "DELETE", path)

    assert decision.allowed, decision.reason
    assert decision.operation == "delete-comment"


def test_minimize_own_comment_builds_graphql() -> None:
    path = f"/repos/octo/hello/issues/comments/{MINE}/devaipod-minimize"

    decision = _decide("github", "POST", path, {"classifier": "RESOLVED"})

    assert decision.allowed, decision.reason
    assert decision.operation == "minimize-comment"
    assert decision.upstream is not None
    assert decision.upstream.endpoint == "graphql"
    assert decision.upstream.body is not None
    graphql = json.loads(decision.upstream.body)
    assert graphql["query"] == MINIMIZE_MUTATION
    assert graphql["variables"] == {"subjectId": "IC_mine", "classifier": "RESOLVED"}


@pytest.mark.parametrize("kind", KINDS)
def test_create_pull_request_allowed(kind: ForgeKind) -> None:
    section = "merge_requests" if kind == "gitlab" else "pulls"

    decision = _decide(kind, "POST", f"{_repo_path(kind)}/{section}",
                       allowed_pull_request_body(kind))

    assert decision.allowed, decision.reason
    assert decision.operation == "create-pull-request"
    assert decision.upstream is not None
    assert decision.upstream.body is not None
    sent = json.loads(decision.upstream.body)
    if kind == "github":
        assert sent == {"title": "Fix crash", "head": OUTPUT_BRANCH, "base": "main",
                        "body": "Fixes #1", "draft": True}
    elif kind == "gitlab":
        assert sent == {"title": "Draft: Fix crash", "source_branch": OUTPUT_BRANCH,
                        "target_branch": "main", "description": "Closes #1"}
    else:
        assert sent == {"title": "WIP: Fix crash", "head": OUTPUT_BRANCH, "base": "main",
                        "body": "Fixes #1"}


def test_github_pull_without_draft_becomes_draft() -> None:
    body = {"title": "Fix", "head": f"Octo:{OUTPUT_BRANCH}", "base": "main"}

    decision = _decide("github", "POST", "/repos/octo/hello/pulls", body)

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert decision.upstream.body is not None
    sent = json.loads(decision.upstream.body)
    assert sent["draft"] is True
    assert sent["head"] == OUTPUT_BRANCH


def test_gitlab_draft_flag_becomes_title_prefix() -> None:
    body = allowed_pull_request_body("gitlab") | {"draft": True, "title": "Draft: Fix"}

    decision = _decide("gitlab", "POST", f"/projects/{PROJECT_ID}/merge_requests", body)

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert decision.upstream.body is not None
    sent = json.loads(decision.upstream.body)
    assert sent["title"] == "Draft: Fix"
    assert "draft" not in sent


# --- normalisation -----------------------------------------------------------------------


def test_owner_repo_case_is_canonicalised() -> None:
    decision = _decide("github", "GET", "/repos/OCTO/Hello/issues/1")

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert decision.upstream.path == "/repos/octo/hello/issues/1"


def test_repeated_and_trailing_slashes_collapse() -> None:
    decision = _decide("forgejo", "GET", "//repos//octo/hello///issues/1/")

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert decision.upstream.path == "/repos/octo/hello/issues/1"


def test_percent_encoded_letters_decode_once() -> None:
    decision = _decide("github", "GET", "/repos/%6Fcto/hello/%69ssues/1")

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert decision.upstream.path == "/repos/octo/hello/issues/1"


def test_gitlab_encoded_path_maps_to_pinned_id() -> None:
    decision = _decide("gitlab", "GET", "/projects/Group%2Fsub%2FHello/issues/1")

    assert decision.allowed, decision.reason
    assert decision.repository == "group/sub/hello"
    assert decision.upstream is not None
    assert decision.upstream.path == f"/projects/{PROJECT_ID}/issues/1"


def test_agent_auth_headers_are_stripped() -> None:
    headers = [("Authorization", "Bearer session-credential"), ("PRIVATE-TOKEN", "x"),
               ("Cookie", "a=b"), ("Accept", "application/vnd.github+json"),
               ("X-GitHub-Api-Version", "2022-11-28"), ("X-Other", "dropped")]

    decision = _decide("github", "GET", "/repos/octo/hello", headers=headers)

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert dict(decision.upstream.headers) == {"accept": "application/vnd.github+json",
                                               "x-github-api-version": "2022-11-28"}


def test_own_pull_request_readable_after_create() -> None:
    state = _state("github")
    state.pull_requests["octo/hello"] = [12]

    decision = _decide("github", "GET", "/repos/octo/hello/pulls/12", state=state)

    assert decision.allowed, decision.reason


# --- denials -----------------------------------------------------------------------------


def _denied_params() -> list[tuple[ForgeKind, Case]]:
    return [(kind, case) for kind in KINDS for case in denied_cases(kind)]


@pytest.mark.parametrize(("kind", "case"), _denied_params(),
                         ids=[f"{kind}-{case.label}" for kind, case in _denied_params()])
def test_policy_denies_variant(kind: ForgeKind, case: Case) -> None:
    request = case.request(kind, theirs=THEIRS, mine=MINE)

    decision = decide(session_context(kind, HOST), _state(kind), request)

    assert not decision.allowed, f"{case.label} was allowed as {decision.operation}"
    assert decision.upstream is None
    assert decision.reason


def test_denied_table_has_forty_variants() -> None:
    assert len(_denied_params()) >= 40
    for kind in KINDS:
        assert len(denied_cases(kind)) >= 15, kind


@pytest.mark.parametrize("kind", KINDS)
def test_second_pull_request_denied(kind: ForgeKind) -> None:
    section = "merge_requests" if kind == "gitlab" else "pulls"
    state = _state(kind)
    repo = "group/sub/hello" if kind == "gitlab" else "octo/hello"
    state.pull_requests[repo] = [40]

    decision = _decide(kind, "POST", f"{_repo_path(kind)}/{section}",
                       allowed_pull_request_body(kind), state=state)

    assert not decision.allowed
    assert "at most 1" in decision.reason


def test_pending_pull_request_counts() -> None:
    state = _state("github")
    first = _decide("github", "POST", "/repos/octo/hello/pulls",
                    allowed_pull_request_body("github"), state=state)
    state.begin(first)

    second = _decide("github", "POST", "/repos/octo/hello/pulls",
                     allowed_pull_request_body("github"), state=state)

    assert first.allowed
    assert not second.allowed


def test_failed_create_releases_reservation() -> None:
    state = _state("github")
    first = _decide("github", "POST", "/repos/octo/hello/pulls",
                    allowed_pull_request_body("github"), state=state)
    state.begin(first)
    state.finish(first, 422, {"message": "Validation Failed"})

    retry = _decide("github", "POST", "/repos/octo/hello/pulls",
                    allowed_pull_request_body("github"), state=state)

    assert retry.allowed, retry.reason


def test_created_comment_becomes_own() -> None:
    state = SessionState()
    created = _decide("github", "POST", "/repos/octo/hello/issues/1/comments", {"body": "x"},
                      state=state)
    state.finish(created, 201, {"id": 777, "node_id": "IC_777"})

    edit = _decide("github", "PATCH", "/repos/octo/hello/issues/comments/777", {"body": "y"},
                   state=state)

    assert edit.allowed, edit.reason
    assert state.own_comments[("octo/hello", 777)].node_id == "IC_777"


def test_deleted_comment_is_forgotten() -> None:
    state = _state("forgejo")
    deleted = _decide("forgejo", "DELETE", f"/repos/octo/hello/issues/comments/{MINE}",
                      state=state)
    state.finish(deleted, 204, None)

    again = _decide("forgejo", "PATCH", f"/repos/octo/hello/issues/comments/{MINE}",
                    {"body": "z"}, state=state)

    assert deleted.allowed
    assert not again.allowed


def test_pull_request_context_lacks_edit_own() -> None:
    state = SessionState()
    state.own_comments[("octo/hello", 900)] = OwnComment(number=PULL_REQUEST["github"],
                                                         on_merge_request=False, node_id="n")

    decision = _decide("github", "PATCH", "/repos/octo/hello/issues/comments/900",
                       {"body": "x"}, state=state)

    assert not decision.allowed
    assert "edit-own" in decision.reason


def test_non_draft_allowed_when_scope_allows() -> None:
    from dataclasses import replace

    context = session_context("github", HOST)
    repo = context.repos[0]
    assert repo.output is not None
    output = repo.output.model_copy(update={"draft": False})
    context = replace(context, repos=(replace(repo, output=output), *context.repos[1:]))
    body = allowed_pull_request_body("github") | {"draft": False}
    request = ApiRequest("POST", "/repos/octo/hello/pulls", "",
                         [("Content-Type", "application/json")], json.dumps(body).encode())

    decision = decide(context, SessionState(), request)

    assert decision.allowed, decision.reason
    assert decision.upstream is not None
    assert decision.upstream.body is not None
    assert json.loads(decision.upstream.body)["draft"] is False


def test_session_state_json_round_trip() -> None:
    state = _state("github")
    state.pull_requests["octo/hello"] = [4]
    state.pending_pull_requests["octo/hello"] = 1

    restored = SessionState.from_json(json.loads(json.dumps(state.to_json())))

    assert restored.own_comments == state.own_comments
    assert restored.pull_requests == {"octo/hello": [4]}
    assert restored.pending_pull_requests == {}


@pytest.mark.parametrize("data", [[], {"comments": [{"id": 1}]},
                                  {"pull_requests": {"o/r": ["x"]}}])
def test_session_state_rejects_bad_json(data: object) -> None:
    with pytest.raises(ValueError):
        SessionState.from_json(data)
