"""Tests of the run summary read from audit logs, hand-written and written by a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from devaipod.broker.audit import AuditLog, read_entries
from devaipod.broker.server import BrokerConfig, RunningBroker, start_broker
from devaipod.config import ForgeKind, parse_config
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope
from devaipod.session.delivery import (
    CreatedComment,
    Delivery,
    PullRequest,
    Push,
    summarise_delivery,
)
from support.fake_forge import FakeForge
from support.git_server import GitHttpServer, create_bare_repo, isolated_git_env, run_git
from support.mcp_client import mcp_session, result_json

CREDENTIAL = "session-credential-for-delivery-tests-0123"
REPO = {"github": "octo/hello", "gitlab": "group/sub/hello", "forgejo": "octo/hello"}
KINDS: list[ForgeKind] = ["github", "gitlab", "forgejo"]
OID_A = "a" * 40
OID_B = "b" * 40


def _push_line(ref: str, new_oid: str, reason: str = "upstream accepted the update",
               status: int | None = 200) -> dict[str, object]:
    return {"kind": "git-push", "decision": "allow", "reason": reason, "ref": ref,
            "old_oid": "0" * 40, "new_oid": new_oid, "upstream_status": status}


def _api_line(operation: str, status: int, phase: str = "response",
              **fields: object) -> dict[str, object]:
    return {"kind": "api", "decision": "allow", "reason": "forge response",
            "operation": operation, "phase": phase, "upstream_status": status, **fields}


def test_summary_of_empty_log() -> None:
    assert summarise_delivery([]) == Delivery()
    assert summarise_delivery([]).to_json() == {
        "pushes": [], "pull_requests": [], "comments": [], "denied": 0}


def test_summary_keeps_last_push_per_ref() -> None:
    entries = [
        _push_line("refs/heads/devaipod/issue-1", OID_A),
        _push_line("refs/heads/other", OID_A),
        _push_line("refs/heads/devaipod/issue-1", OID_B),
    ]

    delivery = summarise_delivery(entries)

    assert delivery.pushes == [Push("refs/heads/devaipod/issue-1", OID_B),
                               Push("refs/heads/other", OID_A)]


def test_summary_skips_unaccepted_pushes() -> None:
    entries: list[dict[str, object]] = [
        # The decision line written before forwarding has no upstream status.
        {"kind": "git-push", "decision": "allow", "reason": "fast-forward of the output branch",
         "ref": "refs/heads/x", "new_oid": OID_A},
        _push_line("refs/heads/x", OID_A, reason="upstream rejected the update: hook declined"),
        _push_line("refs/heads/x", OID_A, reason="upstream accepted the update (unpack error)"),
        _push_line("refs/heads/x", OID_A, status=500),
    ]

    delivery = summarise_delivery(entries)

    assert delivery.pushes == [Push("refs/heads/x", OID_A)]
    assert summarise_delivery(entries[:2]).pushes == []
    assert summarise_delivery(entries[3:]).pushes == []


def test_summary_drops_deleted_comments() -> None:
    entries = [
        _api_line("create-comment", 201, comment_id=5, comment_url="https://f/i/1#c5"),
        _api_line("create-comment", 201, comment_id=6),
        _api_line("delete-comment", 204, comment_id=5),
    ]

    assert summarise_delivery(entries).comments == [CreatedComment(6, None)]


def test_summary_ignores_failed_creates() -> None:
    entries = [
        _api_line("create-comment", 422, comment_id=5),
        _api_line("create-pull-request", 201, phase="request", pull_request_number=2),
        _api_line("create-pull-request", 201, pull_request_number=True),
        _api_line("create-comment", 201),
        _api_line("delete-comment", 404, comment_id=6),
        _api_line("create-comment", 201, comment_id=6),
    ]

    delivery = summarise_delivery(entries)

    assert delivery.pull_requests == []
    assert delivery.comments == [CreatedComment(6, None)]


def test_summary_counts_denials_of_every_kind() -> None:
    entries = [{"kind": kind, "decision": "deny", "reason": "no"}
               for kind in ("git-push", "git-fetch", "api", "mcp", "egress")]
    entries.append({"kind": "api", "decision": "allow", "reason": "read"})

    assert summarise_delivery(entries).denied == 5


def test_delivery_json_matches_run_shape() -> None:
    delivery = Delivery(
        pushes=[Push("refs/heads/devaipod/issue-1", OID_A)],
        pull_requests=[PullRequest(4, "https://github.com/o/r/pull/4")],
        comments=[CreatedComment(9, None)],
        denied=2,
    )

    assert json.loads(json.dumps(delivery.to_json())) == {
        "pushes": [{"ref": "refs/heads/devaipod/issue-1", "new_oid": OID_A}],
        "pull_requests": [{"number": 4, "url": "https://github.com/o/r/pull/4"}],
        "comments": [{"id": 9, "url": None}],
        "denied": 2,
    }


# --- audit lines written by a real broker ------------------------------------------------


@dataclass
class Session:
    kind: ForgeKind
    forge: FakeForge
    upstream: GitHttpServer
    broker: RunningBroker
    audit_path: Path
    host: str
    work: Path

    @property
    def api_base(self) -> str:
        return f"{self.broker.url}/api/{self.host}"

    def repo_api_path(self) -> str:
        if self.kind == "gitlab":
            return "/projects/" + REPO[self.kind].replace("/", "%2F")
        return f"/repos/{REPO[self.kind]}"

    def comments_path(self, number: int) -> str:
        section = "notes" if self.kind == "gitlab" else "comments"
        return f"{self.repo_api_path()}/issues/{number}/{section}"

    def comment_path(self, comment_id: int) -> str:
        if self.kind == "gitlab":
            return f"{self.repo_api_path()}/issues/1/notes/{comment_id}"
        return f"{self.repo_api_path()}/issues/comments/{comment_id}"

    async def api(self, http: aiohttp.ClientSession, method: str, path: str,
                  body: object = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {CREDENTIAL}"}
        async with http.request(method, self.api_base + path, json=body,
                                headers=headers) as response:
            text = await response.read()
            return response.status, json.loads(text) if text else None

    async def git(self, *args: str, check: bool = True) -> str:
        env = isolated_git_env()
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {CREDENTIAL}"})
        if check:
            completed = await asyncio.to_thread(run_git, *args, cwd=self.work, env=env)
            return completed.stdout.strip()
        process = await asyncio.create_subprocess_exec(
            "git", *args, cwd=self.work, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await process.communicate()
        return ""

    async def commit(self, name: str) -> str:
        (self.work / name).write_text(f"{name}\n")
        await self.git("add", name)
        await self.git("commit", "--quiet", "-m", f"Add {name}")
        return await self.git("rev-parse", "HEAD")


@pytest.fixture(params=KINDS)
async def session(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Session]:
    kind: ForgeKind = request.param
    repos = tmp_path / "repos"
    bare = create_bare_repo(repos, f"{REPO[kind]}.git")
    work = tmp_path / "work"
    run_git("clone", "--quiet", str(bare), str(work))

    with GitHttpServer(repos, "forge-token-for-delivery-tests") as git:
        async with FakeForge(kind, token="forge-token-for-delivery-tests") as forge:
            forge.add_repo(REPO[kind], default_branch="main")
            forge.add_issue(REPO[kind], "Greeting is missing", "Add a greeting.")
            forge.add_issue(REPO[kind], "Unrelated", "Not for the agent.")

            # The forge's web host is the git server; its API is the fake forge.
            host = f"127.0.0.1:{git.port}"
            config = parse_config(
                f'[forges."{host}"]\nkind = "{kind}"\napi_url = "{forge.api_url}"\n', "test")
            section = "-/issues" if kind == "gitlab" else "issues"
            scope = derive_scope(parse_forge_url(f"{git.base_url}/{REPO[kind]}/{section}/1",
                                                 config))
            audit_path = tmp_path / "audit.jsonl"
            audit = AuditLog(audit_path, "delivery", secrets=[forge.token, CREDENTIAL])
            broker = await start_broker(BrokerConfig(
                scope=scope, session="delivery", session_credential=CREDENTIAL,
                upstream_token=forge.token, audit_log=audit, state_dir=tmp_path / "state",
                forge_config=config))
            try:
                yield Session(kind, forge, git, broker, audit_path, host, work)
            finally:
                await broker.stop()
                audit.close()


async def test_summary_of_real_broker_session(session: Session) -> None:
    remote = f"{session.broker.url}/git/{session.host}/{REPO[session.kind]}.git"
    branch = "refs/heads/devaipod/issue-1"
    await session.commit("first.txt")
    await session.git("push", "--quiet", remote, f"HEAD:{branch}")
    head = await session.commit("second.txt")
    await session.git("push", "--quiet", remote, f"HEAD:{branch}")
    await session.git("push", "--quiet", remote, "HEAD:refs/heads/main", check=False)

    async with aiohttp.ClientSession() as http:
        status, kept = await session.api(http, "POST", session.comments_path(1), {"body": "On it"})
        assert status == 201
        status, removed = await session.api(http, "POST", session.comments_path(1),
                                            {"body": "Oops"})
        assert status == 201
        assert isinstance(removed, dict)
        status, _ = await session.api(http, "DELETE", session.comment_path(removed["id"]))
        assert status == 204
        status, _ = await session.api(http, "POST", session.comments_path(2), {"body": "x"})
        assert status == 403

    async with mcp_session(f"{session.broker.url}/mcp", CREDENTIAL) as mcp:
        pull = result_json(await mcp.call_tool("create_pull_request",
                                               {"title": "Add a greeting", "body": "Closes #1"}))

    delivery = summarise_delivery(read_entries(session.audit_path))

    assert delivery.pushes == [Push(branch, head)]
    assert isinstance(kept, dict)
    assert [comment.id for comment in delivery.comments] == [kept["id"]]
    assert delivery.comments[0].url == kept.get("html_url")
    number = pull["iid"] if session.kind == "gitlab" else pull["number"]
    url = pull["web_url"] if session.kind == "gitlab" else pull["html_url"]
    assert delivery.pull_requests == [PullRequest(number, url)]
    assert [p.number for p in session.forge.pull_requests(REPO[session.kind])] == [number]
    assert delivery.denied == 2  # the push to main, the comment on the other issue
