"""Loopback servers that stand in for model APIs behind the egress proxy: an HTTPS and an
HTTP aiohttp app with a self-signed certificate, and a raw TCP echo server.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

GREETING = b"hello from the test model API\n"


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate (PEM) for the given DNS names, usable as its own CA."""

    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_path))


def make_certificate(directory: Path, names: list[str]) -> Certificate:
    """Create a self-signed certificate with `openssl req` for `names` (valid one day)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    alt_names = ",".join(f"DNS:{name}" for name in names)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key_path),
            "-out",
            str(cert_path),
            "-subj",
            f"/CN={names[0]}",
            "-addext",
            f"subjectAltName={alt_names}",
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert_path=cert_path, key_path=key_path)


def _make_app() -> web.Application:
    async def greet(request: web.Request) -> web.Response:
        return web.Response(body=GREETING, content_type="text/plain")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, content_type="application/octet-stream")

    async def headers(request: web.Request) -> web.Response:
        # The raw header lines as received, to show what a proxy forwarded.
        lines = [
            f"{name.decode('latin-1')}: {value.decode('latin-1')}"
            for name, value in request.raw_headers
        ]
        return web.Response(text="\n".join(lines), content_type="text/plain")

    async def stream(request: web.Request) -> web.StreamResponse:
        # GET /bytes/N sends N zero bytes, for transfers larger than memory comfortably holds.
        total = int(request.match_info["count"])
        response = web.StreamResponse()
        response.content_length = total
        await response.prepare(request)
        block = b"\0" * (256 * 1024)
        remaining = total
        while remaining:
            piece = block[: min(len(block), remaining)]
            await response.write(piece)
            remaining -= len(piece)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/", greet)
    app.router.add_post("/echo", echo)
    app.router.add_get("/headers", headers)
    app.router.add_get("/bytes/{count:\\d+}", stream)
    return app


@asynccontextmanager
async def running_app(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve the test app on 127.0.0.1 (HTTPS when given a context); yield its port."""
    runner = web.AppRunner(_make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_echo_server() -> AsyncIterator[int]:
    """Serve a TCP echo on 127.0.0.1; yield its port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
