"""Hostile request heads sent to the egress proxy over loopback."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import pytest

from devaipod.broker.audit import AuditLog, read_entries
from devaipod.egress.allowlist import build_allowlist
from devaipod.egress.proxy import start_egress_proxy

CREDENTIAL = "egress-credential-for-tests"


async def _send(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def test_escape_in_connect_host_logged_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The CONNECT target is agent-chosen; an ESC in it reached the proxy's log raw.
    caplog.set_level(logging.DEBUG, logger="devaipod.egress")
    audit = AuditLog(tmp_path / "audit.jsonl", "egress-test")
    server, port = await start_egress_proxy(
        host="127.0.0.1", port=0, allowlist=build_allowlist(include_defaults=False),
        credential=CREDENTIAL, audit=audit,
    )
    token = base64.b64encode(f"agent:{CREDENTIAL}".encode())
    try:
        reply = await _send(port, b"CONNECT \x1b]0;owned\x07x.test:443 HTTP/1.1\r\n"
                            b"Proxy-Authorization: Basic " + token + b"\r\n\r\n")
    finally:
        server.close()
        await server.wait_closed()
        audit.close()

    assert reply.startswith(b"HTTP/1.1 403")
    messages = [record.getMessage() for record in caplog.records]
    assert any("owned" in message for message in messages)
    assert not any("\x1b" in message or "\x07" in message for message in messages)
    assert read_entries(tmp_path / "audit.jsonl")[0]["decision"] == "deny"
