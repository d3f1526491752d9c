"""The scripted agent's pure helpers: MCP response parsing and pull request bodies per forge."""

from __future__ import annotations

import json

import pytest

from support.scripted_agent import Agent, is_upstream_failure, mcp_messages

PARAMS = {"kind": "github", "repo_path": "group/sub/hello", "target_branch": "devaipod/issue-1",
          "default_branch": "main", "issue": 1, "item_section": "merge_requests"}


def agent(kind: str) -> Agent:
    return Agent({**PARAMS, "kind": kind}, {"DEVAIPOD_FORGE_API_URL": "http://127.0.0.1:1/api"})


def test_mcp_messages_json_body() -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}).encode()

    assert mcp_messages(body, "application/json") == [{"jsonrpc": "2.0", "id": 1, "result": {}}]


def test_mcp_messages_event_stream() -> None:
    body = (b"event: message\r\ndata: {\"jsonrpc\": \"2.0\", \"method\": \"notifications/x\"}"
            b"\r\n\r\nevent: message\r\ndata: {\"jsonrpc\": \"2.0\", \"id\": 2}\r\n\r\n")

    messages = mcp_messages(body, "text/event-stream; charset=utf-8")

    assert [message.get("id") for message in messages] == [None, 2]


def test_mcp_messages_invalid_body() -> None:
    assert mcp_messages(b"<html>", "text/html") == []


@pytest.mark.parametrize(("kind", "draft", "expected_keys"), [
    ("github", True, {"head", "base", "title", "body", "draft"}),
    ("gitlab", True, {"source_branch", "target_branch", "title", "description", "draft"}),
    ("forgejo", True, {"head", "base", "title", "body"}),
    ("forgejo", False, {"head", "base", "title", "body", "draft"}),
])
def test_pull_request_body_per_forge(kind: str, draft: bool, expected_keys: set[str]) -> None:
    body = agent(kind).pull_request_body("Title", draft=draft)

    assert set(body) == expected_keys


def test_gitlab_comment_paths_use_section() -> None:
    gitlab = agent("gitlab")

    assert gitlab.comments_api(1) == "/projects/group%2Fsub%2Fhello/merge_requests/1/notes"
    assert gitlab.comments_api(2, "issues") == "/projects/group%2Fsub%2Fhello/issues/2/notes"
    assert gitlab.comment_api(1, 7) == "/projects/group%2Fsub%2Fhello/merge_requests/1/notes/7"


def test_upstream_failure_texts() -> None:
    assert is_upstream_failure("remote: upstream request failed\nfatal: ...")
    assert is_upstream_failure("the request failed with HTTP 502: forge request failed")
    assert not is_upstream_failure("! [remote rejected] HEAD -> main (devaipod: only ...)")
