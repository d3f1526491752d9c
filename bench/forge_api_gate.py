"""Benchmark: latency and throughput of an allowed forge API call through the devaipod API gate
versus straight to the same forge.

Everything runs on 127.0.0.1: the fake GitHub API (tests/support/fake_forge.py) and the
gate (its aiohttp sub-app, with a real fsynced audit log) each in their own process, and
an aiohttp client in this process. The call is `GET /repos/octo/hello/issues/1`, which
the session's scope allows. Latency is measured with one request at a time, alternating
direct and gated blocks; throughput with CONCURRENCY clients sharing REQUESTS requests.
Run from the repository root:

    .venv/bin/python bench/forge_api_gate.py --requests 2000 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from devaipod.broker.api_gate import ApiGate, ForgeUpstream, create_api_app  # noqa: E402
from devaipod.broker.audit import AuditLog  # noqa: E402
from support.fake_forge import FakeForge  # noqa: E402
from support.forge_api_cases import session_context  # noqa: E402

CREDENTIAL = "bench-session-credential-0123456789"
ISSUE_PATH = "/repos/octo/hello/issues/1"
WARM_UP = 50
LATENCY_ROUNDS = 4


def _serve_forge(ready: Connection) -> None:
    async def main() -> None:
        forge = FakeForge("github")
        await forge.start()
        forge.add_repo("octo/hello")
        forge.add_issue("octo/hello", "Crash on start", "Steps to reproduce", labels=["bug"])
        # The bench sends thousands of requests; recording them all would only cost memory.
        forge.requests = _DiscardingList()
        ready.send((forge.port, forge.token))
        await asyncio.Event().wait()

    asyncio.run(main())


class _DiscardingList(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        return None


def _serve_gate(forge_port: int, token: str, audit_path: str, ready: Connection) -> None:
    async def main() -> None:
        host = f"127.0.0.1:{forge_port}"
        gate = ApiGate(
            context=session_context("github", host),
            upstream=ForgeUpstream(api_base=f"http://{host}", token=token),
        )
        audit = AuditLog(Path(audit_path), "bench", secrets=[token, CREDENTIAL])
        root = web.Application()
        root.add_subapp("/api", create_api_app({host: gate}, audit_log=audit,
                                               session_credential=CREDENTIAL))
        runner = web.AppRunner(root, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.send(int(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


async def _timed_get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    async with http.get(url, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url} returned {response.status}")
    return time.perf_counter() - start


async def _latencies(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
                     count: int) -> list[float]:
    return [await _timed_get(http, url, headers) for _ in range(count)]


async def _throughput(url: str, headers: dict[str, str], requests: int,
                      concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await _timed_get(http, url, headers)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - start)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


async def _run(forge_port: int, token: str, gate_port: int, requests: int,
               concurrency: int) -> None:
    direct_url = f"http://127.0.0.1:{forge_port}{ISSUE_PATH}"
    gate_url = f"http://127.0.0.1:{gate_port}/api/127.0.0.1:{forge_port}{ISSUE_PATH}"
    direct_headers = {"Authorization": f"Bearer {token}"}
    gate_headers = {"Authorization": f"Bearer {CREDENTIAL}"}

    direct: list[float] = []
    gated: list[float] = []
    async with aiohttp.ClientSession() as http:
        await _latencies(http, direct_url, direct_headers, WARM_UP)
        await _latencies(http, gate_url, gate_headers, WARM_UP)
        per_round = max(1, requests // LATENCY_ROUNDS)
        for _ in range(LATENCY_ROUNDS):
            direct += await _latencies(http, direct_url, direct_headers, per_round)
            gated += await _latencies(http, gate_url, gate_headers, per_round)

    direct_rps = await _throughput(direct_url, direct_headers, requests, concurrency)
    gated_rps = await _throughput(gate_url, gate_headers, requests, concurrency)

    print(f"load average (1 min): {os.getloadavg()[0]:.2f}, CPUs: {os.cpu_count()}")
    print(f"sequential latency, {len(direct)} requests per path (ms):")
    print("| path | p50 | p99 |")
    print("|---|---:|---:|")
    for name, values in (("direct", direct), ("through the gate", gated)):
        p50 = _percentile(values, 0.50) * 1000
        p99 = _percentile(values, 0.99) * 1000
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")
    added_p50 = (_percentile(gated, 0.50) - _percentile(direct, 0.50)) * 1000
    added_p99 = (_percentile(gated, 0.99) - _percentile(direct, 0.99)) * 1000
    print(f"added by the gate: p50 {added_p50:.2f} ms, p99 {added_p99:.2f} ms")
    print(f"throughput with {concurrency} concurrent clients, {requests} requests per path:")
    print(f"| direct | {direct_rps:.0f} req/s |")
    print(f"| through the gate | {gated_rps:.0f} req/s | {gated_rps / direct_rps:.2f}x direct |")
    print(f"mean sequential latency: direct {statistics.mean(direct) * 1000:.2f} ms, "
          f"through the gate {statistics.mean(gated) * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per path for each measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="concurrent clients in the throughput run (default 50)")
    parser.add_argument("--audit-dir", default=None,
                        help="directory for the gate's audit log (default: a temporary "
                        "directory; /dev/shm shows the cost without disk fsync)")
    args = parser.parse_args()

    context = multiprocessing.get_context("fork")
    forge_ready, forge_send = context.Pipe(duplex=False)
    gate_ready, gate_send = context.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="devaipod-bench-", dir=args.audit_dir) as temp:
        forge = context.Process(target=_serve_forge, args=(forge_send,), daemon=True)
        forge.start()
        try:
            forge_port, token = forge_ready.recv()
            audit_path = str(Path(temp) / "audit.jsonl")
            gate = context.Process(target=_serve_gate,
                                   args=(forge_port, token, audit_path, gate_send), daemon=True)
            gate.start()
            try:
                gate_port = gate_ready.recv()
                asyncio.run(_run(forge_port, token, gate_port, args.requests, args.concurrency))
                lines = sum(1 for _ in open(audit_path, encoding="utf-8"))
                print(f"audit lines written by the gate: {lines}, in {audit_path}")
            finally:
                gate.terminate()
                gate.join()
        finally:
            forge.terminate()
            forge.join()


if __name__ == "__main__":
    main()
