"""An in-process broker in front of a recording aiohttp stand-in for a forge's git endpoint."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from devaipod.broker.audit import AuditLog
from devaipod.broker.pktline import FLUSH, encode_pkt_line
from devaipod.broker.server import BrokerConfig, RunningBroker, start_broker
from devaipod.scope.model import parse_scope

CREDENTIAL = "session-credential-for-tests"
TOKEN = "forge-token-for-tests"
TARGET_REF = "refs/heads/devaipod/unit"
ZERO_OID = "0" * 40


def basic_auth(user: str, password: str) -> str:
    """Return an HTTP Basic `Authorization` header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def empty_receive_pack_advertisement() -> bytes:
    """Return the `info/refs` body of an empty repository for git-receive-pack."""
    capabilities = b"report-status side-band-64k push-options delete-refs atomic"
    return (
        encode_pkt_line(b"# service=git-receive-pack\n")
        + FLUSH
        + encode_pkt_line(ZERO_OID.encode() + b" capabilities^{}\0" + capabilities + b"\n")
        + FLUSH
    )


@dataclass
class FakeUpstream:
    """An aiohttp stand-in for a forge's git endpoint that records what it receives."""

    status: int = 200
    requests: list[dict[str, object]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.content.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if self.status != 200:
            return web.Response(status=self.status, text=f"upstream says {TOKEN}")
        service = request.query.get("service") or request.path.rpartition("/")[2]
        if request.path.endswith("/info/refs") and service == "git-receive-pack":
            return web.Response(
                body=empty_receive_pack_advertisement(),
                content_type="application/x-git-receive-pack-advertisement",
            )
        kind = "advertisement" if request.path.endswith("/info/refs") else "result"
        return web.Response(
            body=b"upstream-body:" + body,
            content_type=f"application/x-{service}-{kind}",
        )


@dataclass
class Harness:
    broker: RunningBroker
    upstream: FakeUpstream
    upstream_port: int
    audit_path: Path
    audit: AuditLog

    def url(self, repo_path: str) -> str:
        return f"{self.broker.url}/git/127.0.0.1:{self.upstream_port}/{repo_path}"


@asynccontextmanager
async def running_harness(
    tmp_path: Path, output: dict[str, object] | None = None
) -> AsyncIterator[Harness]:
    """Start a fake upstream and a broker whose scope points at it; stop both afterwards.

    `output` adds fields to the writable repository's scope output.
    """
    upstream = FakeUpstream()
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", upstream.handle)
    upstream_runner = web.AppRunner(upstream_app, auto_decompress=False)
    await upstream_runner.setup()
    upstream_site = web.TCPSite(upstream_runner, "127.0.0.1", 0)
    await upstream_site.start()
    upstream_port = int(upstream_runner.addresses[0][1])

    scope = parse_scope(
        {
            "repos": [
                {
                    "input": {
                        "url": f"http://127.0.0.1:{upstream_port}/org/repo.git",
                        "allowHttp": True,
                    },
                    "output": {
                        "targetBranch": TARGET_REF.removeprefix("refs/heads/"),
                        **(output or {}),
                    },
                },
                {
                    "input": {
                        "url": f"http://127.0.0.1:{upstream_port}/org/read-only",
                        "allowHttp": True,
                    }
                },
            ]
        },
        "test",
    )
    audit_path = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_path, "unit", secrets=[TOKEN, CREDENTIAL])
    config = BrokerConfig(
        scope=scope,
        session="unit",
        session_credential=CREDENTIAL,
        upstream_token=TOKEN,
        audit_log=audit,
        state_dir=tmp_path / "state",
    )
    broker = await start_broker(config)
    try:
        yield Harness(broker, upstream, upstream_port, audit_path, audit)
    finally:
        await broker.stop()
        await upstream_runner.cleanup()
        audit.close()
