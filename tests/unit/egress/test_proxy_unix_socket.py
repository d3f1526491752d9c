"""The egress proxy served on a unix socket, as in the session gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devaipod.broker.audit import AuditLog
from devaipod.egress.allowlist import build_allowlist
from devaipod.egress.proxy import start_egress_proxy


async def test_unix_socket_proxy_requires_credential(tmp_path: Path) -> None:
    socket_path = tmp_path / "egress.sock"
    audit = AuditLog(tmp_path / "audit.jsonl", "test")
    server, port = await start_egress_proxy(
        host="",
        port=0,
        allowlist=build_allowlist(extra_allow=["example.test"], include_defaults=False),
        credential="session-credential",
        audit=audit,
        unix_socket=socket_path,
    )
    try:
        assert port == 0
        assert socket_path.is_socket()
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()
        assert status_line.split(b" ")[1] == b"407"
    finally:
        server.close()
        await server.wait_closed()
