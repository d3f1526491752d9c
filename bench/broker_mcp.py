"""Benchmark: latency of reading the session's issue over the broker's MCP endpoint, over its
REST gate, and straight from the forge.

Everything runs on 127.0.0.1. The fake GitHub API (tests/support/fake_forge.py) runs in
a thread of this process, `devaipod broker` in its own process (with a real fsynced
audit log), and the clients in this process: the mcp SDK's streamable HTTP client calling
`get_issue` ("mcp-sdk"), aiohttp posting the same JSON-RPC `tools/call` ("mcp-http", the
server's share), and aiohttp for `GET /repos/octo/hello/issues/1` through `/api` ("rest")
and straight to the forge ("direct").
One request at a time, in alternating blocks. Run from the repository root:

    .venv/bin/python bench/broker_mcp.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

import aiohttp  # noqa: E402

from devaipod.scope.model import dump_scope  # noqa: E402
from support.fake_forge import FakeForge, fake_forge_in_thread  # noqa: E402
from support.forge_api_cases import session_scope  # noqa: E402
from support.mcp_client import mcp_session, result_json  # noqa: E402

ISSUE_PATH = "/repos/octo/hello/issues/1"
WARM_UP = 20
ROUNDS = 3


def start_broker(forge: FakeForge, work: Path) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    """Start `devaipod broker` for issue 1 of the fake forge; return it, its ready line and
    the session credential."""
    scope_file = work / "scope.yaml"
    scope_file.write_text(dump_scope(session_scope("github", forge.host)))
    config_file = work / "config.toml"
    config_file.write_text(f'[forges."{forge.host}"]\nkind = "github"\n'
                           f'api_url = "{forge.api_url}"\n')
    env = dict(os.environ, DEVAIPOD_FORGE_TOKEN=forge.token, DEVAIPOD_CONFIG=str(config_file),
               DEVAIPOD_STATE_DIR=str(work / "state"))
    process = subprocess.Popen(
        [sys.executable, "-m", "devaipod", "broker", "--scope", str(scope_file),
         "--listen", "127.0.0.1:0", "--state-dir", str(work / "broker"), "--session", "bench",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    credential = (work / "broker" / "credential").read_text().strip()
    return process, ready, credential


async def time_calls(call: Callable[[], Awaitable[None]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def describe(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{name:<9} n={len(ordered):<5} p50={p50:7.2f} ms  p99={p99:7.2f} ms"


async def run(requests: int, forge: FakeForge, ready: dict[str, str], credential: str) -> None:
    headers = {"Authorization": f"Bearer {credential}"}
    gated_url = f"{ready['api_url']}/{forge.host}{ISSUE_PATH}"
    direct_url = f"{forge.api_url}{ISSUE_PATH}"
    direct_headers = {"Authorization": f"token {forge.token}"}
    results: dict[str, list[float]] = {"direct": [], "rest": [], "mcp-http": [], "mcp-sdk": []}
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "get_issue", "arguments": {}}})
    rpc_headers = {**headers, "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}

    async with aiohttp.ClientSession() as http, mcp_session(ready["mcp_url"], credential) as mcp:

        async def direct() -> None:
            async with http.get(direct_url, headers=direct_headers) as response:
                assert response.status == 200
                await response.read()

        async def rest() -> None:
            async with http.get(gated_url, headers=headers) as response:
                assert response.status == 200
                await response.read()

        async def tool_http() -> None:
            async with http.post(ready["mcp_url"], data=rpc, headers=rpc_headers) as response:
                assert response.status == 200
                reply = await response.json()
                assert not reply["result"].get("isError"), reply

        async def tool() -> None:
            issue = result_json(await mcp.call_tool("get_issue", {}))
            assert issue["number"] == 1

        calls = {"direct": direct, "rest": rest, "mcp-http": tool_http, "mcp-sdk": tool}
        for call in calls.values():
            await time_calls(call, WARM_UP)
        for _ in range(ROUNDS):
            for name, call in calls.items():
                results[name] += await time_calls(call, requests // ROUNDS)

    for name, samples in results.items():
        print(describe(name, samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300,
                        help="requests per path, split over the rounds (default 300)")
    args = parser.parse_args()

    with fake_forge_in_thread("github") as forge, tempfile.TemporaryDirectory() as directory:
        forge.add_repo("octo/hello")
        forge.add_issue("octo/hello", "Crash on start", "Steps to reproduce", labels=["bug"])
        process, ready, credential = start_broker(forge, Path(directory))
        try:
            asyncio.run(run(args.requests, forge, ready, credential))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


if __name__ == "__main__":
    main()
