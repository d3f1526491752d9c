"""`devaipod broker` as a subprocess: MCP tools and the API gate in front of the fake forge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from devaipod.broker.audit import read_entries, verify_chain
from devaipod.config import ForgeKind
from devaipod.scope.model import dump_scope
from support.fake_forge import FakeForge, fake_forge_in_thread
from support.forge_api_cases import OUTPUT_BRANCH, REPO, session_scope
from support.mcp_client import TOOL_NAMES, mcp_session, result_json, result_text

pytestmark = pytest.mark.e2e

KINDS: list[ForgeKind] = ["github", "gitlab", "forgejo"]


@dataclass
class BrokerProcess:
    kind: ForgeKind
    forge: FakeForge
    ready: dict[str, object]
    credential: str
    audit_log: Path
    theirs: int

    @property
    def mcp_url(self) -> str:
        return str(self.ready["mcp_url"])

    def rest_url(self, path: str) -> str:
        return f"{self.ready['api_url']}/{self.forge.host}{path}"

    def repo_api_path(self) -> str:
        return "/projects/101" if self.kind == "gitlab" else f"/repos/{REPO[self.kind]}"


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    kind: ForgeKind = request.param
    with fake_forge_in_thread(kind) as forge:
        forge.add_repo(REPO[kind])
        forge.add_issue(REPO[kind], "Crash on start", "It crashes.")
        forge.add_issue(REPO[kind], "Unrelated", "Not for the agent.")
        forge.add_pull_request(REPO[kind], "Human PR", head="feature", base="main")
        theirs = forge.add_comment(REPO[kind], 1, "Please fix", author="alice")

        scope_file = tmp_path / "scope.yaml"
        scope_file.write_text(dump_scope(session_scope(kind, forge.host)))
        # The config file declares only the kind, so the API URL must come from
        # --forge-api-url.
        config_file = tmp_path / "config.toml"
        config_file.write_text(f'[forges."{forge.host}"]\nkind = "{kind}"\n')
        credential_file = tmp_path / "credential"
        audit_log = tmp_path / "audit.jsonl"
        stderr_file = tmp_path / "broker.stderr"

        env = dict(os.environ)
        env["DEVAIPOD_FORGE_TOKEN"] = forge.token
        env["DEVAIPOD_CONFIG"] = str(config_file)
        env["DEVAIPOD_STATE_DIR"] = str(tmp_path / "state")
        command = [
            sys.executable, "-m", "devaipod", "-vv", "broker",
            "--scope", str(scope_file),
            "--listen", "127.0.0.1:0",
            "--audit-log", str(audit_log),
            "--credential-file", str(credential_file),
            "--state-dir", str(tmp_path / "broker-state"),
            "--session", "e2e-mcp",
            "--forge-api-url", f"{forge.host}={forge.api_url}",
            "--json",
        ]
        with stderr_file.open("w") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                       text=True)
        try:
            assert process.stdout is not None
            ready_line = process.stdout.readline()
            assert ready_line, f"broker exited early:\n{stderr_file.read_text()}"
            ready = json.loads(ready_line)
            yield BrokerProcess(kind, forge, ready, credential_file.read_text().strip(),
                                audit_log, theirs.id)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def test_broker_command_serves_mcp_tools(broker: BrokerProcess) -> None:
    forge = broker.forge
    assert broker.ready["mcp_url"] == f"{broker.ready['url']}/mcp"

    async with mcp_session(broker.mcp_url, broker.credential) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == TOOL_NAMES
        issue = result_json(await session.call_tool("get_issue", {}))
        comments = result_json(await session.call_tool("list_comments", {}))
        mine = result_json(await session.call_tool("comment", {"body": "On it"}))["id"]
        edited = await session.call_tool("update_comment", {"comment_id": mine, "body": "Done"})
        foreign = await session.call_tool("update_comment",
                                          {"comment_id": broker.theirs, "body": "pwned"})
        pull = await session.call_tool("create_pull_request", {"title": "Fix crash"})

    assert issue["title"] == "Crash on start"
    assert [comment["body"] for comment in comments] == ["Please fix"]
    assert not edited.is_error, result_text(edited)
    assert forge.comments[mine].body == "Done"
    assert foreign.is_error
    assert "devaipod broker denied this request" in result_text(foreign)
    assert forge.comments[broker.theirs].body == "Please fix"
    assert not pull.is_error, result_text(pull)
    assert forge.pull_requests(REPO[broker.kind])[-1].head == OUTPUT_BRANCH

    write_methods = [request.method for request in forge.writes()]
    edit_method = "PUT" if broker.kind == "gitlab" else "PATCH"
    assert write_methods == ["POST", edit_method, "POST"]

    entries = read_entries(broker.audit_log)
    mcp_entries = [entry for entry in entries if entry["kind"] == "mcp"]
    assert {entry["operation"] for entry in mcp_entries} >= {
        "create-comment", "edit-comment", "create-pull-request"}
    assert [entry["decision"] for entry in mcp_entries].count("deny") == 1
    assert verify_chain(broker.audit_log).ok


async def test_broker_command_serves_rest_gate(broker: BrokerProcess) -> None:
    headers = {"Authorization": f"Bearer {broker.credential}"}
    notes = "notes" if broker.kind == "gitlab" else "comments"
    async with aiohttp.ClientSession() as http:
        async with http.get(broker.rest_url(f"{broker.repo_api_path()}/issues/1"),
                            headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["title"] == "Crash on start"
        async with http.post(broker.rest_url(f"{broker.repo_api_path()}/issues/2/{notes}"),
                             json={"body": "sneaky"}, headers=headers) as response:
            assert response.status == 403
            assert "denied" in (await response.json())["message"]
        async with http.get(broker.rest_url(f"{broker.repo_api_path()}/issues/1")) as response:
            assert response.status == 401

    assert broker.forge.writes() == []
    api_entries = [entry for entry in read_entries(broker.audit_log) if entry["kind"] == "api"]
    assert [entry["decision"] for entry in api_entries] == ["allow", "deny", "deny"]


async def test_broker_command_mcp_needs_credential(broker: BrokerProcess) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as http:
        async with http.post(broker.mcp_url, json=request, headers=headers) as response:
            assert response.status == 401
        headers["Authorization"] = "Bearer not-the-credential"
        async with http.post(broker.mcp_url, json=request, headers=headers) as response:
            assert response.status == 401

    denials = [entry for entry in read_entries(broker.audit_log) if entry["kind"] == "mcp"]
    assert [entry["decision"] for entry in denials] == ["deny", "deny"]
