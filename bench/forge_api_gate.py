"""Benchmark: latency and throughput of an allowed forge API call through the devaipod broker
versus straight to the same forge.

Everything runs on 127.0.0.1, each server in its own process: the fake GitHub API
(tests/support/fake_forge.py); the whole broker as a session runs it (`start_broker`
with a scope that attaches issue 1, a forge config whose `api_url` is the fake forge,
the session credential and a real fsynced audit log), reached at /api/<host>/...;
the same broker on a unix socket behind `devaipod.relay`, the path an agent's request
takes in a session (relay in the agent's pod, broker in the gateway); and the API gate
sub-app alone. An aiohttp client in this process calls `GET /repos/octo/hello/issues/1`,
which the scope allows, along the four paths in the same run. Latency is measured with
one request at a time, throughput with CONCURRENCY clients sharing REQUESTS requests
per path, both in alternating blocks.
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
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from devaipod.broker.api_gate import ApiGate, ForgeUpstream, create_api_app  # noqa: E402
from devaipod.broker.audit import AuditLog  # noqa: E402
from devaipod.broker.server import BrokerConfig, start_broker  # noqa: E402
from devaipod.config import parse_config  # noqa: E402
from devaipod.relay import Relay, RelayMap  # noqa: E402
from support.fake_forge import FakeForge  # noqa: E402
from support.forge_api_cases import session_context, session_scope  # noqa: E402

CREDENTIAL = "bench-session-credential-0123456789"
ISSUE_PATH = "/repos/octo/hello/issues/1"
WARM_UP = 50
LATENCY_ROUNDS = 4
THROUGHPUT_ROUNDS = 2
START_TIMEOUT_SECONDS = 60


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


def _serve_broker(forge_port: int, token: str, audit_path: str, state_dir: str,
                  unix_socket: str | None, ready: Connection) -> None:
    async def main() -> None:
        host = f"127.0.0.1:{forge_port}"
        forge_config = parse_config(
            f'[forges."{host}"]\nkind = "github"\napi_url = "http://{host}"\n', "bench config")
        audit = AuditLog(Path(audit_path), "bench", secrets=[token, CREDENTIAL])
        config = BrokerConfig(
            scope=session_scope("github", host), session="bench",
            session_credential=CREDENTIAL, upstream_token=token, audit_log=audit,
            state_dir=Path(state_dir), forge_config=forge_config,
        )
        socket_path = Path(unix_socket) if unix_socket is not None else None
        broker = await start_broker(config, unix_socket=socket_path)
        if not broker.forge_endpoints:
            raise RuntimeError("the broker serves no forge endpoints for the bench scope")
        ready.send(broker.port)
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_relay(socket_path: str, ready: Connection) -> None:
    async def main() -> None:
        relay = Relay([RelayMap(host="127.0.0.1", port=0, socket_path=Path(socket_path))])
        await relay.start()
        ready.send(relay.bound_maps()[0].port)
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


@dataclass(frozen=True)
class Route:
    """One way to the forge's issue: its URL and the credential it takes."""

    name: str
    url: str
    headers: dict[str, str]


async def _run(routes: list[Route], requests: int, concurrency: int) -> None:
    latencies: dict[str, list[float]] = {route.name: [] for route in routes}
    async with aiohttp.ClientSession() as http:
        for route in routes:
            await _latencies(http, route.url, route.headers, WARM_UP)
        per_round = max(1, requests // LATENCY_ROUNDS)
        for _ in range(LATENCY_ROUNDS):
            for route in routes:
                latencies[route.name] += await _latencies(http, route.url, route.headers,
                                                          per_round)

    # Throughput too runs in alternating blocks, so that a change in machine load during
    # the run hits every path alike. A path's rate is its requests over its summed time.
    seconds: dict[str, float] = {route.name: 0.0 for route in routes}
    per_block = max(concurrency, requests // THROUGHPUT_ROUNDS)
    for _ in range(THROUGHPUT_ROUNDS):
        for route in routes:
            rate = await _throughput(route.url, route.headers, per_block, concurrency)
            seconds[route.name] += per_block / rate
    rates = {name: per_block * THROUGHPUT_ROUNDS / total for name, total in seconds.items()}

    direct = latencies[routes[0].name]
    direct_p50 = _percentile(direct, 0.50)
    direct_p99 = _percentile(direct, 0.99)
    direct_rps = rates[routes[0].name]
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}, CPUs: {os.cpu_count()}")
    print(f"sequential latency, {len(direct)} requests per path (ms); throughput with "
          f"{concurrency} concurrent clients, {per_block * THROUGHPUT_ROUNDS} requests "
          "per path:")
    print("| path | p50 ms | p99 ms | added p50 ms | added p99 ms | mean ms | req/s "
          "| vs direct |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for route in routes:
        values = latencies[route.name]
        p50 = _percentile(values, 0.50)
        p99 = _percentile(values, 0.99)
        print(f"| {route.name} | {p50 * 1000:.2f} | {p99 * 1000:.2f} "
              f"| {(p50 - direct_p50) * 1000:.2f} | {(p99 - direct_p99) * 1000:.2f} "
              f"| {statistics.mean(values) * 1000:.2f} | {rates[route.name]:.0f} "
              f"| {rates[route.name] / direct_rps:.2f}x |")


def _start_server(context: multiprocessing.context.ForkContext, target: Callable[..., None],
                  *args: object) -> tuple[multiprocessing.process.BaseProcess, Any]:
    """Start `target(*args, ready)` in a child process; return it and what it sent on `ready`."""
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, send), daemon=True)
    process.start()
    try:
        if not receive.poll(START_TIMEOUT_SECONDS):
            raise RuntimeError(f"{target.__name__} did not start within "
                               f"{START_TIMEOUT_SECONDS} s")
        return process, receive.recv()
    except BaseException:
        process.terminate()
        process.join()
        raise


def _audit_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _ in handle)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per path for each measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="concurrent clients in the throughput run (default 50)")
    parser.add_argument("--audit-dir", default=None,
                        help="directory for the audit logs and the broker's state (default: "
                        "a temporary directory; /dev/shm shows the cost without disk fsync)")
    args = parser.parse_args()

    context = multiprocessing.get_context("fork")
    processes: list[multiprocessing.process.BaseProcess] = []
    with tempfile.TemporaryDirectory(prefix="devaipod-bench-", dir=args.audit_dir) as temp:
        gate_audit = Path(temp) / "gate-audit.jsonl"
        broker_audit = Path(temp) / "broker-audit.jsonl"
        session_audit = Path(temp) / "session-audit.jsonl"
        broker_socket = Path(temp) / "broker.sock"
        try:
            forge, (forge_port, token) = _start_server(context, _serve_forge)
            processes.append(forge)
            gate, gate_port = _start_server(context, _serve_gate, forge_port, token,
                                            str(gate_audit))
            processes.append(gate)
            broker, broker_port = _start_server(context, _serve_broker, forge_port, token,
                                                str(broker_audit), str(Path(temp) / "state"),
                                                None)
            processes.append(broker)
            session_broker, _ = _start_server(context, _serve_broker, forge_port, token,
                                              str(session_audit),
                                              str(Path(temp) / "session-state"),
                                              str(broker_socket))
            processes.append(session_broker)
            relay, relay_port = _start_server(context, _serve_relay, str(broker_socket))
            processes.append(relay)

            host = f"127.0.0.1:{forge_port}"
            routes = [
                Route("direct", f"http://{host}{ISSUE_PATH}",
                      {"Authorization": f"Bearer {token}"}),
                Route("relay + broker on unix socket",
                      f"http://127.0.0.1:{relay_port}/api/{host}{ISSUE_PATH}",
                      {"Authorization": f"Bearer {CREDENTIAL}"}),
                Route("broker on TCP", f"http://127.0.0.1:{broker_port}/api/{host}{ISSUE_PATH}",
                      {"Authorization": f"Bearer {CREDENTIAL}"}),
                Route("gate sub-app", f"http://127.0.0.1:{gate_port}/api/{host}{ISSUE_PATH}",
                      {"Authorization": f"Bearer {CREDENTIAL}"}),
            ]
            asyncio.run(_run(routes, args.requests, args.concurrency))
            print(f"audit lines: relay + broker {_audit_lines(session_audit)}, "
                  f"broker on TCP {_audit_lines(broker_audit)}, "
                  f"gate sub-app {_audit_lines(gate_audit)}")
        finally:
            for process in reversed(processes):
                process.terminate()
                process.join()

if __name__ == "__main__":
    main()
