"""End-to-end: curl, a real HTTP client, through the forge API gate to the fake forge.

curl's `--path-as-is` sends dot segments and encodings exactly as written, so these
checks do not depend on how the test's own HTTP client builds request targets.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from devaipod.broker.api_gate import ApiGate, ForgeUpstream, create_api_app
from devaipod.broker.audit import AuditLog, read_entries, verify_chain
from support.fake_forge import FakeForge
from support.forge_api_cases import session_context

pytestmark = pytest.mark.e2e

CREDENTIAL = "e2e-session-credential-0123456789abcdef"


@dataclass
class RunningGate:
    forge: FakeForge
    base: str
    audit_path: Path


@pytest.fixture
def running_gate(tmp_path: Path) -> Iterator[RunningGate]:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed; apt-get install -y curl")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    forge = FakeForge("github")
    audit = AuditLog(tmp_path / "audit.jsonl", "e2e", secrets=[forge.token, CREDENTIAL])
    runner: web.AppRunner | None = None

    async def start() -> str:
        nonlocal runner
        await forge.start()
        forge.add_repo("octo/hello")
        forge.add_issue("octo/hello", "Crash on start", "It crashes.")
        forge.add_issue("octo/hello", "Secret roadmap", "Not for the agent.")
        gate = ApiGate(context=session_context("github", forge.host),
                       upstream=ForgeUpstream(api_base=forge.api_url, token=forge.token))
        root = web.Application()
        root.add_subapp("/api", create_api_app({forge.host: gate}, audit_log=audit,
                                               session_credential=CREDENTIAL))
        runner = web.AppRunner(root, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/api/{forge.host}"

    async def stop() -> None:
        if runner is not None:
            await runner.cleanup()
        await forge.stop()

    try:
        base = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        yield RunningGate(forge, base, tmp_path / "audit.jsonl")
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        audit.close()


def _curl(url: str, *extra: str) -> tuple[int, str]:
    completed = subprocess.run(
        ["curl", "--silent", "--path-as-is", "--max-time", "20", "--write-out", "\n%{http_code}",
         "--header", f"Authorization: Bearer {CREDENTIAL}", *extra, url],
        capture_output=True, text=True, timeout=60, check=True,
    )
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), body


def test_curl_reads_attached_issue(running_gate: RunningGate) -> None:
    status, body = _curl(f"{running_gate.base}/repos/octo/hello/issues/1")

    assert status == 200
    assert json.loads(body)["title"] == "Crash on start"
    assert len(running_gate.forge.requests) == 1


@pytest.mark.parametrize("path", [
    "/repos/octo/hello/issues/1/../2",
    "/repos/octo/hello/issues/1/%2e%2e/2",
    "/repos/octo/hello/issues/1/%2E%2E/2",
    "/repos/octo/hello/issues/1/%252e%252e/2",
    "/repos/octo/hello/issues//2",
    "/repos/octo%2Fhello/issues/2",
    "/repos/octo/hello/issues/1/..%2F2",
])
def test_curl_path_tricks_denied(running_gate: RunningGate, path: str) -> None:
    status, body = _curl(running_gate.base + path)

    assert status == 403, body
    assert "Secret roadmap" not in body
    assert running_gate.forge.requests == []


def test_curl_sudo_and_comment_denied(running_gate: RunningGate) -> None:
    sudo, _ = _curl(f"{running_gate.base}/repos/octo/hello", "--header", "Sudo: root")
    form, _ = _curl(f"{running_gate.base}/repos/octo/hello/issues/1/comments",
                    "--data", "body=hi")
    allowed, _ = _curl(f"{running_gate.base}/repos/octo/hello/issues/1/comments",
                       "--header", "Content-Type: application/json",
                       "--data", '{"body": "from curl"}')

    assert sudo == 403
    assert form == 403
    assert allowed == 201
    assert [request.method for request in running_gate.forge.requests] == ["POST"]
    assert running_gate.forge.comments_on("octo/hello", 1)[0].body == "from curl"
    assert verify_chain(running_gate.audit_path).ok
    decisions = [entry["decision"] for entry in read_entries(running_gate.audit_path)]
    assert decisions == ["deny", "deny", "allow", "allow"]
