"""End-to-end tests of the egress proxy with real clients (curl, aiohttp, raw sockets)
against loopback HTTPS, HTTP and echo servers whose names an injected resolver maps.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from devaipod.broker.audit import AuditLog, read_entries, verify_chain
from devaipod.egress.addresses import IPAddress
from devaipod.egress.allowlist import build_allowlist
from devaipod.egress.environment import proxy_environment
from devaipod.egress.proxy import ProxyLimits, start_egress_proxy, static_resolver
from support.egress_targets import (
    GREETING,
    Certificate,
    make_certificate,
    running_app,
    running_echo_server,
)

pytestmark = pytest.mark.e2e

CREDENTIAL = "test-session-credential-0123456789"
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def proxy_authorization(password: str = CREDENTIAL) -> bytes:
    token = base64.b64encode(f"agent:{password}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n".encode()


@dataclass
class Setup:
    proxy_port: int
    https_port: int
    http_port: int
    echo_port: int
    unlisted_echo_port: int
    audit_path: Path
    audit: AuditLog
    certificate: Certificate
    resolver_calls: list[str]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def egress_entries(self) -> list[dict[str, object]]:
        return [entry for entry in read_entries(self.audit_path) if entry["kind"] == "egress"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"), ["models.test"])


async def start_setup(
    tmp_path: Path,
    certificate: Certificate,
    limits: ProxyLimits | None = None,
    extra_table: dict[str, Sequence[IPAddress]] | None = None,
) -> AsyncIterator[Setup]:
    async with (
        running_app(certificate.server_context()) as https_port,
        running_app() as http_port,
        running_echo_server() as echo_port,
        running_echo_server() as unlisted_echo_port,
    ):
        # The test servers' names resolve to loopback, and their exact addresses and
        # ports are listed, which the rule against internal addresses requires.
        allowlist = build_allowlist(
            scope_allow=[
                f"models.test:{https_port}",
                f"127.0.0.1:{https_port}",
                f"models.test:{http_port}",
                f"127.0.0.1:{http_port}",
                f"echo.test:{echo_port}",
                f"127.0.0.1:{echo_port}",
                f"loopback-name.test:{unlisted_echo_port}",
                f"mixed.test:{echo_port}",
            ],
        )
        table: dict[str, Sequence[IPAddress]] = {
            "models.test": [LOOPBACK],
            "echo.test": [LOOPBACK],
            "loopback-name.test": [LOOPBACK],
            "mixed.test": [LOOPBACK, ipaddress.ip_address("10.0.0.1")],
            **(extra_table or {}),
        }
        resolve_table = static_resolver(table, fallback=None)
        resolver_calls: list[str] = []

        async def counting_resolver(name: str, port: int) -> Sequence[IPAddress]:
            resolver_calls.append(name)
            return await resolve_table(name, port)

        audit_path = tmp_path / "audit.jsonl"
        audit = AuditLog(audit_path, "egress-test", secrets=[CREDENTIAL])
        server, proxy_port = await start_egress_proxy(
            host="127.0.0.1",
            port=0,
            allowlist=allowlist,
            credential=CREDENTIAL,
            audit=audit,
            resolver=counting_resolver,
            limits=limits,
        )
        try:
            yield Setup(
                proxy_port=proxy_port,
                https_port=https_port,
                http_port=http_port,
                echo_port=echo_port,
                unlisted_echo_port=unlisted_echo_port,
                audit_path=audit_path,
                audit=audit,
                certificate=certificate,
                resolver_calls=resolver_calls,
            )
        finally:
            server.close()
            await server.wait_closed()
            audit.close()


@pytest.fixture
async def setup(tmp_path: Path, certificate: Certificate) -> AsyncIterator[Setup]:
    async for value in start_setup(tmp_path, certificate):
        yield value


async def send_head(port: int, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    status = int(head.split(b" ", 2)[1])
    body = b""
    if status != 200:
        body = await asyncio.wait_for(reader.read(), timeout=10)
    return status, head.decode("latin-1"), body


async def connect_through(
    setup: Setup, target: str, authorization: bytes | None = None
) -> tuple[int, str, bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    auth = proxy_authorization() if authorization is None else authorization
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n".encode() + auth + b"\r\n"
    reader, writer = await send_head(setup.proxy_port, head)
    status, response_head, body = await read_response(reader)
    return status, response_head, body, reader, writer


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass


async def wait_for_entries(setup: Setup, count: int) -> list[dict[str, object]]:
    # Tunnel lines are written when the proxy notices the close, slightly after the client.
    for _ in range(100):
        entries = setup.egress_entries()
        if len(entries) >= count:
            return entries
        await asyncio.sleep(0.05)
    return setup.egress_entries()


async def run_curl(*arguments: str) -> tuple[int, bytes, bytes]:
    curl = shutil.which("curl")
    assert curl is not None, "curl is not installed (apt-get install -y curl)"
    process = await asyncio.create_subprocess_exec(
        curl,
        "--silent",
        "--show-error",
        "--max-time",
        "20",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout, stderr


# --- allowed traffic --------------------------------------------------------------------


async def test_curl_https_through_connect(setup: Setup) -> None:
    code, stdout, stderr = await run_curl(
        "--proxy",
        setup.proxy_url,
        "--proxy-user",
        f"agent:{CREDENTIAL}",
        "--cacert",
        str(setup.certificate.cert_path),
        f"https://models.test:{setup.https_port}/",
    )
    assert code == 0, stderr
    assert stdout == GREETING

    entries = await wait_for_entries(setup, 1)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["decision"] == "allow"
    assert entry["method"] == "CONNECT"
    assert entry["host"] == "models.test"
    assert entry["port"] == setup.https_port
    # curl may end TLS with a reset instead of a FIN.
    assert entry["reason"] in ("tunnel closed", "tunnel reset")
    assert isinstance(entry["bytes_in"], int) and entry["bytes_in"] > len(GREETING)
    assert isinstance(entry["bytes_out"], int) and entry["bytes_out"] > 0


async def test_curl_bearer_credential_accepted(setup: Setup) -> None:
    code, stdout, stderr = await run_curl(
        "--proxy",
        setup.proxy_url,
        "--proxy-header",
        f"Proxy-Authorization: Bearer {CREDENTIAL}",
        "--cacert",
        str(setup.certificate.cert_path),
        f"https://models.test:{setup.https_port}/",
    )
    assert code == 0, stderr
    assert stdout == GREETING


async def test_curl_uses_proxy_environment(setup: Setup) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is not installed (apt-get install -y curl)"
    environment = {"PATH": os.environ.get("PATH", "")}
    environment.update(proxy_environment(setup.proxy_port, CREDENTIAL))
    process = await asyncio.create_subprocess_exec(
        curl,
        "--silent",
        "--show-error",
        "--max-time",
        "20",
        "--cacert",
        str(setup.certificate.cert_path),
        f"https://models.test:{setup.https_port}/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    assert stdout == GREETING
    entries = await wait_for_entries(setup, 1)
    assert entries[0]["decision"] == "allow"
    assert entries[0]["host"] == "models.test"


async def test_aiohttp_https_through_connect(setup: Setup) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"https://models.test:{setup.https_port}/",
            proxy=setup.proxy_url,
            proxy_headers={"Proxy-Authorization": aiohttp.encode_basic_auth("agent", CREDENTIAL)},
            ssl=setup.certificate.client_context(),
        ) as response:
            assert response.status == 200
            assert await response.read() == GREETING
    entries = await wait_for_entries(setup, 1)
    assert entries[0]["decision"] == "allow"
    assert entries[0]["host"] == "models.test"


# With aiohttp 3.14, proxy_headers did not reach the proxy on a plain http:// request (the
# proxy returned 407), so this test uses proxy_auth, which aiohttp marks deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_aiohttp_plain_http_forwarding(setup: Setup) -> None:
    payload = bytes(range(256)) * 1000
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"http://models.test:{setup.http_port}/echo",
            data=payload,
            proxy=setup.proxy_url,
            proxy_auth=aiohttp.BasicAuth("agent", CREDENTIAL),
        ) as response:
            assert response.status == 200
            assert await response.read() == payload

    entries = await wait_for_entries(setup, 1)
    entry = entries[0]
    assert entry["decision"] == "allow"
    assert entry["method"] == "POST"
    assert entry["upstream_status"] == 200
    assert isinstance(entry["bytes_out"], int) and entry["bytes_out"] > len(payload)
    assert isinstance(entry["bytes_in"], int) and entry["bytes_in"] > len(payload)


async def test_plain_http_chunked_body(setup: Setup) -> None:
    head = (
        (
            f"POST http://models.test:{setup.http_port}/echo HTTP/1.1\r\n"
            f"Host: ignored.test\r\nTransfer-Encoding: chunked\r\n"
        ).encode()
        + proxy_authorization()
        + b"\r\n"
    )
    body = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    reader, writer = await send_head(setup.proxy_port, head + body)
    try:
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        await close_writer(writer)
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"hello, world")


async def test_plain_http_pipelined_request_dropped(tmp_path: Path) -> None:
    received = bytearray()
    request_seen = asyncio.Event()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Collect what arrives until the sender pauses, then answer with an empty 200.
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), timeout=0.5)
            except TimeoutError:
                break
            if not data:
                break
            received.extend(data)
        request_seen.set()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    recorder = await asyncio.start_server(record, "127.0.0.1", 0)
    recorder_port = int(recorder.sockets[0].getsockname()[1])
    audit = AuditLog(tmp_path / "audit.jsonl", "egress-test")
    proxy, proxy_port = await start_egress_proxy(
        host="127.0.0.1",
        port=0,
        allowlist=build_allowlist(scope_allow=[f"127.0.0.1:{recorder_port}"]),
        credential=CREDENTIAL,
        audit=audit,
    )
    try:
        head = (
            (
                f"POST http://127.0.0.1:{recorder_port}/upload HTTP/1.1\r\nContent-Length: 5\r\n"
            ).encode()
            + proxy_authorization()
            + b"\r\n"
        )
        pipelined = b"GET http://other.test/ HTTP/1.1\r\n\r\n"
        reader, writer = await send_head(proxy_port, head + b"hello" + pipelined)
        try:
            response = await asyncio.wait_for(reader.read(), timeout=10)
        finally:
            await close_writer(writer)
        await asyncio.wait_for(request_seen.wait(), timeout=10)
    finally:
        proxy.close()
        await proxy.wait_closed()
        recorder.close()
        await recorder.wait_closed()
        audit.close()

    assert response.startswith(b"HTTP/1.1 200")
    assert received.startswith(b"POST /upload HTTP/1.1\r\n")
    assert received.endswith(b"\r\n\r\nhello")
    assert b"other.test" not in received


async def test_plain_http_strips_hop_headers(setup: Setup) -> None:
    head = (
        (
            f"GET http://models.test:{setup.http_port}/headers HTTP/1.1\r\n"
            f"Host: spoofed.test\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
            f"X-Keep: 2\r\nProxy-Connection: keep-alive\r\n"
        ).encode()
        + proxy_authorization()
        + b"\r\n"
    )
    reader, writer = await send_head(setup.proxy_port, head)
    try:
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        await close_writer(writer)
    assert response.startswith(b"HTTP/1.1 200")
    received = response.partition(b"\r\n\r\n")[2].decode().splitlines()
    assert f"Host: models.test:{setup.http_port}" in received
    assert "X-Keep: 2" in received
    assert "Connection: close" in received
    assert not any(line.startswith("X-Drop") for line in received)
    assert not any(line.lower().startswith("proxy-") for line in received)


async def test_raw_tunnel_byte_counts(setup: Setup) -> None:
    status, _, _, reader, writer = await connect_through(setup, f"echo.test:{setup.echo_port}")
    assert status == 200
    payload = b"x" * 300_000
    writer.write(payload)
    await writer.drain()
    received = await asyncio.wait_for(reader.readexactly(len(payload)), timeout=10)
    assert received == payload
    await close_writer(writer)

    entries = await wait_for_entries(setup, 1)
    assert entries[0]["bytes_out"] == len(payload)
    assert entries[0]["bytes_in"] == len(payload)
    assert entries[0]["address"] == "127.0.0.1"


async def test_tunnel_resolves_name_once(setup: Setup) -> None:
    status, _, _, _, writer = await connect_through(setup, f"echo.test:{setup.echo_port}")
    assert status == 200
    await close_writer(writer)
    assert setup.resolver_calls == ["echo.test"]


async def test_listed_ip_literal_allowed(setup: Setup) -> None:
    # 2130706433 is 127.0.0.1 spelled as one decimal number; that address is listed.
    status, _, _, _, writer = await connect_through(setup, f"2130706433:{setup.echo_port}")
    await close_writer(writer)
    assert status == 200
    assert setup.resolver_calls == []


# --- denials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("other.test:{echo}", 403, "host other.test is not in the allowlist"),
        ("api.anthropic.com.evil.test:443", 403, "not in the allowlist"),
        ("2130706433:{unlisted}", 403, "IP address 127.0.0.1 port {unlisted} is not in"),
        ("[::ffff:127.0.0.1]:{unlisted}", 403, "IP address 127.0.0.1"),
        ("0x7f.1:{unlisted}", 403, "IP address 127.0.0.1"),
        ("[::1]:{unlisted}", 403, "IP address ::1"),
        ("loopback-name.test:{unlisted}", 403, "resolves to 127.0.0.1, a loopback address"),
        ("mixed.test:{echo}", 403, "resolves to 10.0.0.1, a private address"),
        ("api.anthropic.com:80", 403, "port 80 is not allowed for host api.anthropic.com"),
        ("models.test:443", 403, "port 443 is not allowed for host models.test"),
        ("bad..name.test:443", 403, "empty label"),
        ("echo.test", 400, "missing port"),
    ],
)
async def test_connect_denials_audited(setup: Setup, target: str, status: int, reason: str) -> None:
    ports = {"echo": setup.echo_port, "unlisted": setup.unlisted_echo_port}
    target = target.format(**ports)
    reason = reason.format(**ports)

    got_status, head, body, _, writer = await connect_through(setup, target)
    await close_writer(writer)
    assert got_status == status
    assert reason in body.decode()
    assert "Connection: close" in head

    entries = await wait_for_entries(setup, 1)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["decision"] == "deny"
    assert entry["status"] == status
    assert reason in str(entry["reason"])
    expected_port = int(target.rpartition(":")[2]) if status == 403 else 0
    assert entry["port"] == expected_port


async def test_curl_denied_name_gets_403(setup: Setup) -> None:
    code, _, stderr = await run_curl(
        "--proxy",
        setup.proxy_url,
        "--proxy-user",
        f"agent:{CREDENTIAL}",
        "https://other.test/",
    )
    assert code != 0
    assert b"403" in stderr
    entries = await wait_for_entries(setup, 1)
    assert entries[0]["host"] == "other.test"
    assert entries[0]["port"] == 443
    assert entries[0]["decision"] == "deny"


async def test_plain_http_denied_port_80(setup: Setup) -> None:
    head = b"GET http://api.anthropic.com/v1/models HTTP/1.1\r\n" + proxy_authorization() + b"\r\n"
    reader, writer = await send_head(setup.proxy_port, head)
    status, _, body = await read_response(reader)
    await close_writer(writer)
    assert status == 403
    assert b"port 80 is not allowed" in body
    entries = await wait_for_entries(setup, 1)
    assert entries[0]["port"] == 80
    assert entries[0]["method"] == "GET"


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (b"", "missing proxy credential"),
        (proxy_authorization("wrong-credential"), "invalid proxy credential"),
        (b"Proxy-Authorization: Bearer wrong\r\n", "invalid proxy credential"),
        (b"Proxy-Authorization: Digest x\r\n", "invalid proxy credential"),
        (proxy_authorization() * 2, "invalid proxy credential"),
    ],
)
async def test_credential_required_407(setup: Setup, authorization: bytes, reason: str) -> None:
    status, head, body, _, writer = await connect_through(
        setup, f"echo.test:{setup.echo_port}", authorization
    )
    await close_writer(writer)
    assert status == 407
    assert 'Proxy-Authenticate: Basic realm="devaipod egress"' in head
    assert reason in body.decode()
    assert setup.resolver_calls == []

    entries = await wait_for_entries(setup, 1)
    assert entries[0]["decision"] == "deny"
    assert entries[0]["reason"] == reason
    assert entries[0]["host"] == "echo.test"
    assert entries[0]["port"] == setup.echo_port


async def test_curl_without_credential_407(setup: Setup) -> None:
    code, _, stderr = await run_curl(
        "--proxy",
        setup.proxy_url,
        "--cacert",
        str(setup.certificate.cert_path),
        f"https://models.test:{setup.https_port}/",
    )
    assert code != 0
    assert b"407" in stderr


async def test_oversized_head_rejected_431(setup: Setup) -> None:
    head = (
        f"CONNECT echo.test:{setup.echo_port} HTTP/1.1\r\nX-Pad: {'a' * 40_000}\r\n\r\n"
    ).encode()
    reader, writer = await send_head(setup.proxy_port, head)
    status, _, _ = await read_response(reader)
    await close_writer(writer)
    assert status == 431


async def test_too_many_headers_rejected(setup: Setup) -> None:
    head = b"CONNECT echo.test:1 HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n"
    reader, writer = await send_head(setup.proxy_port, head)
    status, _, _ = await read_response(reader)
    await close_writer(writer)
    assert status == 431


async def test_origin_form_request_rejected(setup: Setup) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: models.test\r\n" + proxy_authorization() + b"\r\n"
    reader, writer = await send_head(setup.proxy_port, head)
    status, _, body = await read_response(reader)
    await close_writer(writer)
    assert status == 400
    assert b"absolute" in body


async def test_audit_failure_closes_egress(setup: Setup) -> None:
    setup.audit.close()
    first, _, _, _, writer = await connect_through(setup, "other.test:443")
    await close_writer(writer)
    assert first == 403

    second, _, body, _, writer = await connect_through(setup, f"echo.test:{setup.echo_port}")
    await close_writer(writer)
    assert second == 503
    assert b"audit log" in body


async def test_credential_absent_from_logs(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="devaipod")
    for authorization in (proxy_authorization(), proxy_authorization(CREDENTIAL + "x")):
        _, _, _, _, writer = await connect_through(
            setup, f"echo.test:{setup.echo_port}", authorization
        )
        await close_writer(writer)
    await wait_for_entries(setup, 2)
    assert CREDENTIAL not in caplog.text
    assert CREDENTIAL not in setup.audit_path.read_text()
    assert verify_chain(setup.audit_path).ok


# --- time limits ------------------------------------------------------------------------


async def test_idle_tunnel_closed(tmp_path: Path, certificate: Certificate) -> None:
    limits = ProxyLimits(idle_timeout=0.5, max_duration=30)
    async for setup in start_setup(tmp_path, certificate, limits):
        status, _, _, reader, writer = await connect_through(setup, f"echo.test:{setup.echo_port}")
        assert status == 200
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        elapsed = asyncio.get_running_loop().time() - started
        await close_writer(writer)
        assert 0.4 < elapsed < 3

        entries = await wait_for_entries(setup, 1)
        assert entries[0]["reason"] == "tunnel idle timeout"


async def test_busy_tunnel_time_limit(tmp_path: Path, certificate: Certificate) -> None:
    limits = ProxyLimits(idle_timeout=5, max_duration=1.0)
    async for setup in start_setup(tmp_path, certificate, limits):
        status, _, _, reader, writer = await connect_through(setup, f"echo.test:{setup.echo_port}")
        assert status == 200
        started = asyncio.get_running_loop().time()
        closed = False
        while asyncio.get_running_loop().time() - started < 5:
            writer.write(b"ping")
            await writer.drain()
            if await asyncio.wait_for(reader.read(4), timeout=5) == b"":
                closed = True
                break
            await asyncio.sleep(0.1)
        elapsed = asyncio.get_running_loop().time() - started
        await close_writer(writer)
        assert closed
        assert 0.9 < elapsed < 3

        entries = await wait_for_entries(setup, 1)
        assert entries[0]["reason"] == "tunnel time limit"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: -1\r\n",
    ],
)
async def test_ambiguous_body_framing_rejected(setup: Setup, framing: bytes) -> None:
    head = (
        f"POST http://models.test:{setup.http_port}/echo HTTP/1.1\r\n".encode()
        + framing
        + proxy_authorization()
        + b"\r\n"
    )
    reader, writer = await send_head(setup.proxy_port, head)
    status, _, _ = await read_response(reader)
    await close_writer(writer)
    assert status == 400
    # Rejected before resolution, so no upstream connection was attempted.
    assert setup.resolver_calls == []


async def test_expect_continue_request_forwarded(setup: Setup) -> None:
    code, stdout, stderr = await run_curl(
        "--proxy",
        setup.proxy_url,
        "--proxy-user",
        f"agent:{CREDENTIAL}",
        "--header",
        "Expect: 100-continue",
        "--data-binary",
        "x" * 2048,
        f"http://models.test:{setup.http_port}/echo",
    )
    assert code == 0, stderr
    assert stdout == b"x" * 2048
    entries = await wait_for_entries(setup, 1)
    assert entries[0]["upstream_status"] == 200


async def test_connection_limit_rejects_extra(tmp_path: Path, certificate: Certificate) -> None:
    async for setup in start_setup(tmp_path, certificate, ProxyLimits(max_connections=1)):
        status, _, _, _, first = await connect_through(setup, f"echo.test:{setup.echo_port}")
        assert status == 200
        try:
            reader, second = await send_head(setup.proxy_port, b"")
            response = await asyncio.wait_for(reader.read(), timeout=10)
            await close_writer(second)
            assert response.startswith(b"HTTP/1.1 503")
        finally:
            await close_writer(first)
