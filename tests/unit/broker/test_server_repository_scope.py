"""The broker for a repository URL's scope: the API gate opens pull requests, and MCP is off."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from devaipod.broker.audit import AuditLog, read_entries
from devaipod.broker.server import BrokerConfig, start_broker
from devaipod.config import ForgeKind, parse_config
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import REPOSITORY_BRANCH, derive_scope
from support.fake_forge import FakeForge

CREDENTIAL = "session-credential-for-repository-scope-0123"
REPO: dict[ForgeKind, str] = {"github": "octo/hello", "gitlab": "group/hello",
                              "forgejo": "octo/hello"}


def _pull_request(kind: ForgeKind) -> tuple[str, dict[str, object]]:
    if kind == "gitlab":
        return "/projects/101/merge_requests", {
            "source_branch": REPOSITORY_BRANCH, "target_branch": "main", "title": "Draft: Tidy",
        }
    body: dict[str, object] = {"head": REPOSITORY_BRANCH, "base": "main", "title": "Tidy"}
    if kind == "github":
        body["draft"] = True
    return f"/repos/{REPO[kind]}/pulls", body


@pytest.mark.parametrize("kind", ["github", "gitlab", "forgejo"])
async def test_repository_scope_opens_pull_request(tmp_path: Path, kind: ForgeKind) -> None:
    async with FakeForge(kind) as forge:
        forge.add_repo(REPO[kind])
        forge.add_issue(REPO[kind], "Crash on start")
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "{kind}"\napi_url = "{forge.api_url}"\n', "test"
        )
        scope = derive_scope(parse_forge_url(f"http://{forge.host}/{REPO[kind]}.git", config))
        audit_path = tmp_path / "audit.jsonl"
        audit = AuditLog(audit_path, "repo-scope", secrets=[forge.token, CREDENTIAL])
        broker = await start_broker(BrokerConfig(
            scope=scope, session="repo-scope", session_credential=CREDENTIAL,
            upstream_token=forge.token, audit_log=audit, state_dir=tmp_path / "state",
            forge_config=config,
        ))  # fmt: skip
        path, body = _pull_request(kind)
        headers = {"Authorization": f"Bearer {CREDENTIAL}"}
        api = f"{broker.url}/api/{forge.host}"
        issue = "/projects/101/issues/1" if kind == "gitlab" else f"/repos/{REPO[kind]}/issues/1"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(api + path, json=body, headers=headers) as created:
                    created_status = created.status
                async with http.get(api + issue, headers=headers) as read:
                    issue_status = read.status
                async with http.post(f"{broker.url}/mcp", json={}, headers=headers) as mcp:
                    mcp_status = mcp.status
        finally:
            await broker.stop()
            audit.close()

    assert created_status == 201
    assert issue_status == 403
    assert mcp_status == 404
    created_requests = [request for request in forge.writes() if request.raw_path.endswith(
        "/merge_requests" if kind == "gitlab" else "/pulls")]
    assert len(created_requests) == 1
    decisions = [entry["decision"] for entry in read_entries(audit_path)
                 if entry["kind"] == "api"]
    assert "allow" in decisions
    assert "deny" in decisions
