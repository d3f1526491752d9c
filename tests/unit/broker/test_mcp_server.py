"""Tests of the broker's /mcp tools and mounted /api gate, in process against the fake forge."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from mcp import MCPError

from devaipod.broker.api_gate import ApiGateService
from devaipod.broker.api_policy import ScopedRepo
from devaipod.broker.audit import AuditLog, read_entries, verify_chain
from devaipod.broker.mcp_server import ForgeTools, McpTarget, create_mcp_server
from devaipod.broker.server import BrokerConfig, RunningBroker, start_broker
from devaipod.config import ForgeKind, parse_config
from support.fake_forge import FakeForge, RecordedRequest
from support.forge_api_cases import (
    OUTPUT_BRANCH,
    PULL_REQUEST,
    REPO,
    allowed_pull_request_body,
    session_scope,
)
from support.mcp_client import TOOL_NAMES, mcp_session, result_json, result_text

CREDENTIAL = "session-credential-for-mcp-tests-0123456789"
KINDS: list[ForgeKind] = ["github", "gitlab", "forgejo"]


@dataclass
class BrokerUnderTest:
    kind: ForgeKind
    forge: FakeForge
    broker: RunningBroker
    audit_path: Path
    theirs: int
    pinning_requests: int  # requests the broker sent at start-up to pin forge facts

    def requests_since_start(self) -> list[RecordedRequest]:
        return self.forge.requests[self.pinning_requests :]

    @property
    def mcp_url(self) -> str:
        return f"{self.broker.url}/mcp"

    @property
    def api_base(self) -> str:
        return f"{self.broker.url}/api/{self.forge.host}"

    def repo_api_path(self) -> str:
        return "/projects/101" if self.kind == "gitlab" else f"/repos/{REPO[self.kind]}"

    def audit_entries(self, kind: str) -> list[dict[str, object]]:
        return [entry for entry in read_entries(self.audit_path) if entry["kind"] == kind]


def forge_config_text(kind: ForgeKind, forge: FakeForge) -> str:
    return f'[forges."{forge.host}"]\nkind = "{kind}"\napi_url = "{forge.api_url}"\n'


@pytest.fixture(params=KINDS)
async def running(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[BrokerUnderTest]:
    kind: ForgeKind = request.param
    async with FakeForge(kind) as forge:
        forge.add_repo(REPO[kind])
        forge.add_issue(REPO[kind], "Crash on start", "It crashes.", labels=["bug"])
        forge.add_issue(REPO[kind], "Unrelated", "Not for the agent.")
        forge.add_pull_request(REPO[kind], "Human PR", head="feature", base="main")
        theirs = forge.add_comment(REPO[kind], 1, "Please fix", author="alice")

        audit_path = tmp_path / "audit.jsonl"
        audit = AuditLog(audit_path, "mcp-test", secrets=[forge.token, CREDENTIAL])
        config = BrokerConfig(
            scope=session_scope(kind, forge.host),
            session="mcp-test",
            session_credential=CREDENTIAL,
            upstream_token=forge.token,
            audit_log=audit,
            state_dir=tmp_path / "state",
            forge_config=parse_config(forge_config_text(kind, forge), "test config"),
        )
        broker = await start_broker(config)
        try:
            yield BrokerUnderTest(kind, forge, broker, audit_path, theirs.id,
                                  len(forge.requests))
        finally:
            await broker.stop()
            audit.close()


async def test_mcp_tools_reach_fake_forge(running: BrokerUnderTest) -> None:
    forge = running.forge
    repo = REPO[running.kind]
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        tools = await session.list_tools()
        assert {tool.name for tool in tools.tools} == TOOL_NAMES

        issue = result_json(await session.call_tool("get_issue", {}))
        assert issue["title"] == "Crash on start"

        comments = result_json(await session.call_tool("list_comments", {}))
        assert [comment["body"] for comment in comments] == ["Please fix"]

        created = result_json(await session.call_tool("comment", {"body": "Working on it"}))
        mine = created["id"]
        assert forge.comments[mine].body == "Working on it"
        assert forge.comments[mine].number == 1

        edited = await session.call_tool("update_comment", {"comment_id": mine, "body": "Done"})
        assert not edited.is_error, result_text(edited)
        assert forge.comments[mine].body == "Done"

        pull = await session.call_tool("create_pull_request",
                                       {"title": "Fix crash", "body": "Closes #1"})
        assert not pull.is_error, result_text(pull)

    created_pull = forge.pull_requests(repo)[-1]
    assert created_pull.head == OUTPUT_BRANCH
    assert created_pull.base == "main"
    if running.kind == "github":
        assert created_pull.draft is True
    elif running.kind == "gitlab":
        assert created_pull.title == "Draft: Fix crash"
    else:
        assert created_pull.title == "WIP: Fix crash"


async def test_mcp_audit_lines_have_kind_mcp(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        await session.call_tool("get_issue", {})
        await session.call_tool("comment", {"body": "hello"})

    entries = running.audit_entries("mcp")
    operations = [(entry["operation"], entry["phase"]) for entry in entries]
    assert ("read-issue", "complete") in operations or ("read-pull-request", "complete") \
        in operations
    assert ("create-comment", "request") in operations
    assert ("create-comment", "response") in operations
    assert running.audit_entries("api") == []
    assert verify_chain(running.audit_path).ok


async def test_mcp_foreign_comment_edit_denied(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        result = await session.call_tool("update_comment",
                                         {"comment_id": running.theirs, "body": "pwned"})

    assert result.is_error
    assert "devaipod broker denied this request" in result_text(result)
    assert running.forge.comments[running.theirs].body == "Please fix"
    assert running.forge.writes() == []
    denials = [entry for entry in running.audit_entries("mcp") if entry["decision"] == "deny"]
    assert len(denials) == 1
    assert str(denials[0]["reason"]) in result_text(result)


async def test_mcp_foreign_comment_minimize_denied(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        result = await session.call_tool("minimize_comment",
                                         {"comment_id": running.theirs, "reason": "spam"})

    assert result.is_error
    assert "devaipod broker denied this request" in result_text(result)
    assert running.forge.writes() == []


async def test_mcp_minimize_own_comment(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        mine = result_json(await session.call_tool("comment", {"body": "stale"}))["id"]
        result = await session.call_tool("minimize_comment",
                                         {"comment_id": mine, "reason": "outdated"})

    if running.kind == "github":
        assert not result.is_error, result_text(result)
        assert running.forge.comments[mine].minimized_reason == "outdated"
    else:
        assert result.is_error
        assert "devaipod broker denied this request" in result_text(result)
        assert running.forge.comments[mine].minimized_reason is None


async def test_mcp_comment_cannot_target_other_issue(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools["comment"].input_schema["properties"]) == {"body"}
        await session.call_tool("comment", {"body": "sneaky", "number": 2, "issue": 2})

    assert running.forge.comments_on(REPO[running.kind], 2) == []
    bodies = [comment.body for comment in running.forge.comments_on(REPO[running.kind], 1)]
    assert "sneaky" in bodies


async def test_mcp_second_pull_request_denied(running: BrokerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {CREDENTIAL}"}
    pulls = "merge_requests" if running.kind == "gitlab" else "pulls"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{running.api_base}{running.repo_api_path()}/{pulls}",
                             json=allowed_pull_request_body(running.kind),
                             headers=headers) as response:
            assert response.status == 201

    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        result = await session.call_tool("create_pull_request", {"title": "Again"})

    assert result.is_error
    assert "at most 1" in result_text(result)
    assert len(running.forge.pull_requests(REPO[running.kind])) == 2


async def test_mcp_non_draft_pull_request_denied(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        result = await session.call_tool("create_pull_request",
                                         {"title": "Ready", "draft": False})

    assert result.is_error
    assert "requires a draft" in result_text(result)
    assert running.forge.writes() == []
    assert any(entry["decision"] == "deny" for entry in running.audit_entries("mcp"))


@pytest.mark.parametrize("credential", [None, "wrong-credential"])
async def test_mcp_rejects_bad_credential(running: BrokerUnderTest, credential: str | None
                                          ) -> None:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "comment", "arguments": {"body": "x"}}}
    async with aiohttp.ClientSession() as http:
        async with http.post(running.mcp_url, data=json.dumps(request),
                             headers=headers) as response:
            assert response.status == 401
            assert "Bearer" in response.headers["WWW-Authenticate"]

    assert running.requests_since_start() == []
    denials = running.audit_entries("mcp")
    assert len(denials) == 1
    assert denials[0]["decision"] == "deny"
    assert "session credential" in str(denials[0]["reason"])


async def test_mcp_client_without_credential_fails(running: BrokerUnderTest) -> None:
    with pytest.raises(BaseExceptionGroup) as caught:
        async with mcp_session(running.mcp_url, None):
            pass

    assert caught.group_contains(MCPError)
    assert running.requests_since_start() == []


async def test_mounted_api_gate_serves_rest(running: BrokerUnderTest) -> None:
    issue_path = {"github": "issues/1", "gitlab": "issues/1", "forgejo": "issues/1"}[running.kind]
    url = f"{running.api_base}{running.repo_api_path()}/{issue_path}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
            assert response.status == 200
            assert (await response.json())["title"] == "Crash on start"
        async with http.get(url) as response:
            assert response.status == 401
        async with http.get(url.replace("issues/1", "issues/2"),
                            headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
            assert response.status == 403

    api_entries = running.audit_entries("api")
    assert [entry["decision"] for entry in api_entries] == ["allow", "deny", "deny"]


async def test_mounted_gate_accepts_private_token(running: BrokerUnderTest) -> None:
    url = f"{running.api_base}{running.repo_api_path()}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"PRIVATE-TOKEN": CREDENTIAL}) as response:
            assert response.status == 200
        async with http.get(url, headers={"PRIVATE-TOKEN": "wrong"}) as response:
            assert response.status == 401

    recorded = running.requests_since_start()
    assert len(recorded) == 1
    assert all(CREDENTIAL not in " ".join(r.headers.values()) for r in recorded)


async def test_git_routes_still_need_credential(running: BrokerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.broker.url}/git/{running.forge.host}/{REPO[running.kind]}"
                            ".git/info/refs?service=git-upload-pack") as response:
            assert response.status == 401
            assert "Basic" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("kind", KINDS)
async def test_pull_request_target_uses_pull_paths(tmp_path: Path, kind: ForgeKind) -> None:
    async with FakeForge(kind) as forge:
        forge.add_repo(REPO[kind])
        forge.add_issue(REPO[kind], "Crash on start")
        forge.add_issue(REPO[kind], "Other")
        forge.add_pull_request(REPO[kind], "Human PR", head="feature", base="main")
        # Only the pull request stays attached, with read and comment but not edit-own.
        scope = session_scope(kind, forge.host)
        scope = scope.model_copy(update={"attachedContexts": scope.attachedContexts[1:]})
        audit = AuditLog(tmp_path / "audit.jsonl", "mcp-test")
        config = BrokerConfig(
            scope=scope, session="mcp-test", session_credential=CREDENTIAL,
            upstream_token=forge.token, audit_log=audit, state_dir=tmp_path / "state",
            forge_config=parse_config(forge_config_text(kind, forge), "test config"),
        )
        broker = await start_broker(config)
        try:
            async with mcp_session(f"{broker.url}/mcp", CREDENTIAL) as session:
                pull = result_json(await session.call_tool("get_issue", {}))
                created = result_json(await session.call_tool("comment", {"body": "on PR"}))
                edit = await session.call_tool("update_comment",
                                               {"comment_id": created["id"], "body": "x"})
        finally:
            await broker.stop()
            audit.close()

    assert pull.get("iid", pull.get("number")) == PULL_REQUEST[kind]
    assert pull["title"] == "Human PR"
    comment = forge.comments[created["id"]]
    assert comment.number == PULL_REQUEST[kind]
    assert comment.on_merge_request is (kind == "gitlab")
    assert edit.is_error
    assert "devaipod broker denied this request" in result_text(edit)
    assert comment.body == "on PR"


def test_mcp_server_leaves_root_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    target = McpTarget(host="127.0.0.1:1", kind="github",
                       repo=ScopedRepo(path="octo/hello"), number=1, is_pull_request=False)

    create_mcp_server(ForgeTools(ApiGateService({}, AuditLog.__new__(AuditLog)), target))

    assert root.handlers == []
    assert root.level == logging.WARNING


async def test_mcp_list_comments_reads_all_pages(running: BrokerUnderTest) -> None:
    for index in range(120):
        running.forge.add_comment(REPO[running.kind], 1, f"note {index}", author="bob")

    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        comments = result_json(await session.call_tool("list_comments", {}))

    bodies = [comment["body"] for comment in comments]
    assert bodies == ["Please fix"] + [f"note {index}" for index in range(120)]
    pages = [request for request in running.requests_since_start() if request.method == "GET"]
    assert len(pages) == (3 if running.kind == "forgejo" else 2)
    if running.kind == "gitlab":
        assert all("sort=asc" in request.query for request in pages)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_mcp_declines_stream_methods(running: BrokerUnderTest, method: str) -> None:
    headers = {"Authorization": f"Bearer {CREDENTIAL}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.request(method, running.mcp_url, headers=headers) as response:
            assert response.status == 405
            assert response.headers["Allow"] == "POST"


async def test_mcp_invalid_json_rpc_error(running: BrokerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {CREDENTIAL}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as http:
        async with http.post(running.mcp_url, data=b"{not json", headers=headers) as response:
            assert response.status == 400
            reply = await response.json()

    assert reply["error"]["code"] == -32700
    assert running.requests_since_start() == []


async def test_rest_edits_comment_from_mcp(running: BrokerUnderTest) -> None:
    async with mcp_session(running.mcp_url, CREDENTIAL) as session:
        mine = result_json(await session.call_tool("comment", {"body": "via MCP"}))["id"]

    if running.kind == "gitlab":
        method, path = "PUT", f"{running.repo_api_path()}/issues/1/notes/{mine}"
    else:
        method, path = "PATCH", f"{running.repo_api_path()}/issues/comments/{mine}"
    headers = {"Authorization": f"Bearer {CREDENTIAL}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, running.api_base + path, json={"body": "via REST"},
                                headers=headers) as response:
            assert response.status == 200

    assert running.forge.comments[mine].body == "via REST"
    kinds = [entry["kind"] for entry in read_entries(running.audit_path)
             if entry.get("operation") in ("create-comment", "edit-comment")]
    assert kinds == ["mcp", "mcp", "api", "api"]


async def _raw_status(running: BrokerUnderTest, method: str, path: str, header: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.broker.port)
    try:
        writer.write(method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: broker\r\n"
                     + header + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    return int(status_line.split(b" ")[1])


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer \xff\xfe", b"Authorization: token \xc3", b"PRIVATE-TOKEN: \xff"],
)
async def test_non_utf8_credential_rejected_401(running: BrokerUnderTest, header: bytes) -> None:
    # A credential that is not UTF-8 reached hmac.compare_digest through str.encode(),
    # which raised, so the broker answered 500 and wrote no audit line.
    git_path = (f"/git/{running.forge.host}/{REPO[running.kind]}.git/info/refs"
                "?service=git-upload-pack")
    api_path = f"/api/{running.forge.host}{running.repo_api_path()}"
    git_header = header if header.startswith(b"Authorization") else b"Authorization: Bearer \xff"

    assert await _raw_status(running, "GET", git_path, git_header) == 401
    assert await _raw_status(running, "GET", api_path, header) == 401
    assert await _raw_status(running, "POST", "/mcp", header) == 401

    assert running.requests_since_start() == []
    for kind in ("git-fetch", "api", "mcp"):
        denials = running.audit_entries(kind)
        assert [entry["decision"] for entry in denials] == ["deny"], kind


async def test_encoded_escape_in_api_host_logged_escaped(
    running: BrokerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    # The host segment is percent-decoded before the gate looks it up, so %1b became ESC.
    caplog.set_level(logging.DEBUG, logger="devaipod.broker")
    url = f"{running.broker.url}/api/%1b%5d0;owned%07/repos/octo/hello"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
            assert response.status == 404

    messages = [record.getMessage() for record in caplog.records]
    assert any("owned" in message for message in messages)
    assert not any("\x1b" in message or "\x07" in message for message in messages)
