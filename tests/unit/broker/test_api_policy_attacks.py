"""Attacks on the forge API gate's policy that once got past it or crashed it."""

from __future__ import annotations

import json

import pytest

from devaipod.broker.api_policy import ApiRequest, Decision, SessionState, decide
from devaipod.config import ForgeKind
from support.forge_api_cases import PROJECT_ID, allowed_pull_request_body, session_context

HOST = "forge.test:3000"


def _post(kind: ForgeKind, path: str, raw: bytes) -> Decision:
    request = ApiRequest(method="POST", raw_path=path, query="",
                         headers=[("Content-Type", "application/json")], body=raw)
    return decide(session_context(kind, HOST), SessionState(), request)


def _pulls_path(kind: ForgeKind) -> str:
    if kind == "gitlab":
        return f"/projects/{PROJECT_ID}/merge_requests"
    return "/repos/octo/hello/pulls"


@pytest.mark.parametrize("kind", ["github", "gitlab", "forgejo"])
def test_deeply_nested_body_is_denied(kind: ForgeKind) -> None:
    # A body nested deeper than Python's recursion limit used to escape as RecursionError,
    # so the agent got an HTTP 500 and no audit line.
    raw = b'{"body":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    decision = _post(kind, "/repos/octo/hello/issues/1/comments", raw)

    assert not decision.allowed
    assert "JSON" in decision.reason


@pytest.mark.parametrize(("kind", "prefix"), [("gitlab", "Draft: "), ("forgejo", "WIP: ")])
@pytest.mark.parametrize("title", [" WIP: Fix", "\tDraft: Fix", "\n[wip] Fix", " (Draft) Fix"])
def test_draft_prefix_after_whitespace_still_added(kind: ForgeKind, prefix: str, title: str
                                                   ) -> None:
    # The forges look for the draft marker at the very start of the title, so a marker
    # after leading whitespace does not make the request a draft.
    body = allowed_pull_request_body(kind) | {"title": title}

    decision = _post(kind, _pulls_path(kind), json.dumps(body).encode())

    assert decision.allowed, decision.reason
    assert decision.upstream is not None and decision.upstream.body is not None
    sent = json.loads(decision.upstream.body)
    assert sent["title"].startswith(prefix)


@pytest.mark.parametrize("value", ["1\n", "asc\n"])
def test_query_value_with_newline_is_denied(value: str) -> None:
    name = "sort" if value.startswith("asc") else "page"
    request = ApiRequest(method="GET", raw_path=f"/projects/{PROJECT_ID}/issues/1/notes",
                         query=f"{name}={value.replace(chr(10), '%0A')}", headers=[], body=b"")

    decision = decide(session_context("gitlab", HOST), SessionState(), request)

    assert not decision.allowed


QUICK_ACTION_TEXTS = [
    "/merge",
    "Done.\n/approve",
    "Looks good\n  /ready",
    "text\r/move other/project",
    "a\n/target_branch release",
]


@pytest.mark.parametrize("text", QUICK_ACTION_TEXTS)
@pytest.mark.parametrize("section", ["issues/1", "merge_requests/1"])
def test_gitlab_note_quick_action_denied(text: str, section: str) -> None:
    # GitLab runs quick actions found at the start of a note's lines, so a comment could
    # merge, approve or move the item, none of which the scope grants.
    decision = _post("gitlab", f"/projects/{PROJECT_ID}/{section}/notes",
                     json.dumps({"body": text}).encode())

    assert not decision.allowed
    assert "quick action" in decision.reason


@pytest.mark.parametrize("text", QUICK_ACTION_TEXTS)
def test_gitlab_edited_note_quick_action_denied(text: str) -> None:
    context = session_context("gitlab", HOST)
    state = SessionState()
    created = _post("gitlab", f"/projects/{PROJECT_ID}/issues/1/notes", b'{"body":"hi"}')
    state.finish(created, 201, {"id": 77})
    request = ApiRequest(method="PUT", raw_path=f"/projects/{PROJECT_ID}/issues/1/notes/77",
                         query="", headers=[("Content-Type", "application/json")],
                         body=json.dumps({"body": text}).encode())

    decision = decide(context, state, request)

    assert not decision.allowed
    assert "quick action" in decision.reason


@pytest.mark.parametrize("text", QUICK_ACTION_TEXTS)
def test_gitlab_merge_request_quick_action_denied(text: str) -> None:
    # A new merge request's description runs quick actions too, such as /ready (no longer
    # a draft) or /target_branch (another base than the one checked).
    body = allowed_pull_request_body("gitlab") | {"description": text}

    decision = _post("gitlab", _pulls_path("gitlab"), json.dumps(body).encode())

    assert not decision.allowed
    assert "quick action" in decision.reason


@pytest.mark.parametrize("kind", ["github", "forgejo"])
def test_slash_line_allowed_without_quick_actions(kind: ForgeKind) -> None:
    decision = _post(kind, "/repos/octo/hello/issues/1/comments",
                     json.dumps({"body": "Run it as\n/usr/bin/env python3"}).encode())

    assert decision.allowed, decision.reason


def test_gitlab_note_slash_inside_line_allowed() -> None:
    decision = _post("gitlab", f"/projects/{PROJECT_ID}/issues/1/notes",
                     json.dumps({"body": "See src/a.py and the /merge docs"}).encode())

    assert decision.allowed, decision.reason
