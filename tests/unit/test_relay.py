"""Tests of the TCP-to-unix-socket relay with real sockets: unix servers in a temp dir."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from devaipod.errors import UserError
from devaipod.relay import Relay, RelayMap, parse_map

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo every byte until EOF, then half-close (the peer may still be sending)."""
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    writer.close()


@asynccontextmanager
async def unix_server(path: Path, handler: Handler) -> AsyncIterator[asyncio.Server]:
    server = await asyncio.start_unix_server(handler, str(path))
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def running_relay(*maps: RelayMap, **options: float) -> AsyncIterator[Relay]:
    relay = Relay(list(maps), **options)  # type: ignore[arg-type]
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def connect(
    relay: Relay, index: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    bound = relay.bound_maps()[index]
    return await asyncio.open_connection(bound.host, bound.port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "127.0.0.1:8080=/run/s/broker.sock",
            RelayMap("127.0.0.1", 8080, Path("/run/s/broker.sock")),
        ),
        ("[::1]:0=/tmp/x.sock", RelayMap("::1", 0, Path("/tmp/x.sock"))),
    ],
)
def test_parse_map_valid_forms(text: str, expected: RelayMap) -> None:
    assert parse_map(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:8080",
        "127.0.0.1=/x.sock",
        "localhost:8080=/x.sock",
        "127.0.0.1:99999=/x.sock",
        "127.0.0.1:http=/x.sock",
        "127.0.0.1:8080=relative.sock",
        "127.0.0.1:8080=",
        ":8080=/x.sock",
    ],
)
def test_parse_map_rejects_malformed(text: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_map(text)
    assert repr(text) in raised.value.message
    assert raised.value.fix is not None


def test_map_describe_round_trips() -> None:
    for text in ("127.0.0.1:8080=/run/a.sock", "[::1]:9=/b.sock"):
        assert parse_map(text).describe() == text


async def test_relay_two_maps_one_process(tmp_path: Path) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"second:" + await reader.read(100))
        writer.close()

    first, second = tmp_path / "a.sock", tmp_path / "b.sock"
    async with unix_server(first, echo), unix_server(second, greet):
        async with running_relay(
            RelayMap("127.0.0.1", 0, first), RelayMap("127.0.0.1", 0, second)
        ) as relay:
            bound = relay.bound_maps()
            assert all(relay_map.port != 0 for relay_map in bound)
            assert bound[0].port != bound[1].port

            reader, writer = await connect(relay, 0)
            writer.write(b"hello")
            writer.write_eof()
            assert await reader.read() == b"hello"
            writer.close()

            reader, writer = await connect(relay, 1)
            writer.write(b"hi")
            assert await reader.read() == b"second:hi"
            writer.close()


async def test_relay_passes_half_close(tmp_path: Path) -> None:
    """The client shuts down its write side; the server reads EOF and still replies."""

    async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await reader.read()  # returns only at EOF, so only if the half-close arrived
        writer.write(f"received {len(body)} bytes".encode())
        await writer.drain()
        writer.close()

    path = tmp_path / "s.sock"
    async with unix_server(path, count_then_answer):
        async with running_relay(RelayMap("127.0.0.1", 0, path)) as relay:
            reader, writer = await connect(relay)
            writer.write(b"x" * 300_000)
            await writer.drain()
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), timeout=5)
            assert answer == b"received 300000 bytes"
            writer.close()


async def test_relay_server_half_close_keeps_upload(tmp_path: Path) -> None:
    """The server half-closes first; the client can still send and the server reads it."""
    received = asyncio.get_running_loop().create_future()

    async def answer_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner")
        writer.write_eof()
        received.set_result(await reader.read())
        writer.close()

    path = tmp_path / "s.sock"
    async with unix_server(path, answer_first):
        async with running_relay(RelayMap("127.0.0.1", 0, path)) as relay:
            reader, writer = await connect(relay)
            assert await asyncio.wait_for(reader.read(), timeout=5) == b"banner"
            writer.write(b"late upload")
            writer.write_eof()
            assert await asyncio.wait_for(received, timeout=5) == b"late upload"
            writer.close()


async def test_relay_applies_backpressure(tmp_path: Path) -> None:
    """With a server that does not read, the client blocks well before sending everything."""
    total = 64 * 1024 * 1024
    start_reading = asyncio.Event()
    digest = asyncio.get_running_loop().create_future()

    async def slow_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await start_reading.wait()
        hasher = hashlib.sha256()
        size = 0
        while chunk := await reader.read(65536):
            hasher.update(chunk)
            size += len(chunk)
        digest.set_result((size, hasher.hexdigest()))
        writer.close()

    block = bytes(range(256)) * 4096  # 1 MiB
    expected = hashlib.sha256()
    for _ in range(total // len(block)):
        expected.update(block)

    path = tmp_path / "s.sock"
    async with unix_server(path, slow_sink):
        async with running_relay(RelayMap("127.0.0.1", 0, path)) as relay:
            _, writer = await connect(relay)
            sent = 0

            async def send_all() -> None:
                nonlocal sent
                while sent < total:
                    writer.write(block)
                    await writer.drain()
                    sent += len(block)
                writer.write_eof()

            sender = asyncio.create_task(send_all())
            await asyncio.sleep(1.0)
            # Kernel socket buffers and the relay's chunks took about 5 MiB when measured
            # on Linux loopback. Without backpressure the relay would have read all 64 MiB.
            assert sent < total // 2
            assert not sender.done()

            start_reading.set()
            await asyncio.wait_for(sender, timeout=30)
            size, hexdigest = await asyncio.wait_for(digest, timeout=30)
            assert size == total
            assert hexdigest == expected.hexdigest()
            writer.close()


async def test_relay_connection_limit_rejects_extra(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devaipod.relay")
    path = tmp_path / "s.sock"
    async with unix_server(path, echo):
        async with running_relay(RelayMap("127.0.0.1", 0, path), max_connections=1) as relay:
            first_reader, first_writer = await connect(relay)
            first_writer.write(b"one")
            assert await first_reader.readexactly(3) == b"one"
            assert relay.active_connections == 1

            second_reader, second_writer = await connect(relay)
            with pytest.raises(ConnectionResetError):
                second_writer.write(b"two")
                await second_writer.drain()
                if await second_reader.read() == b"":
                    raise ConnectionResetError("closed without data")
            assert relay.rejected_connections == 1
            assert "relay connection 2 rejected" in caplog.text
            second_writer.close()

            first_writer.write_eof()
            assert await first_reader.read() == b""
            first_writer.close()
            for _ in range(50):
                if relay.active_connections == 0:
                    break
                await asyncio.sleep(0.02)
            assert relay.active_connections == 0

            third_reader, third_writer = await connect(relay)
            third_writer.write(b"three")
            third_writer.write_eof()
            assert await third_reader.read() == b"three"
            third_writer.close()


async def test_relay_missing_socket_closes_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devaipod.relay")
    path = tmp_path / "absent.sock"
    async with running_relay(RelayMap("127.0.0.1", 0, path)) as relay:
        reader, writer = await connect(relay)
        try:
            data = await asyncio.wait_for(reader.read(), timeout=5)
        except ConnectionResetError:
            data = b""
        assert data == b""
        writer.close()
    assert "relay connection 1 from 127.0.0.1:" in caplog.text
    assert f"cannot connect to {path}" in caplog.text


async def test_relay_gateway_started_later_works(tmp_path: Path) -> None:
    """Sockets are connected per connection, so the gateway may start after the relay."""
    path = tmp_path / "late.sock"
    async with running_relay(RelayMap("127.0.0.1", 0, path)) as relay:
        reader, writer = await connect(relay)
        try:
            assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        except ConnectionResetError:
            pass
        writer.close()

        async with unix_server(path, echo):
            reader, writer = await connect(relay)
            writer.write(b"now")
            writer.write_eof()
            assert await reader.read() == b"now"
            writer.close()


async def test_relay_logs_open_and_close(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devaipod.relay")
    path = tmp_path / "s.sock"
    async with unix_server(path, echo):
        async with running_relay(RelayMap("127.0.0.1", 0, path)) as relay:
            reader, writer = await connect(relay)
            writer.write(b"12345")
            writer.write_eof()
            assert await reader.read() == b"12345"
            writer.close()
            for _ in range(50):
                if "relay connection 1 closed" in caplog.text:
                    break
                await asyncio.sleep(0.02)
    assert "relay listening on 127.0.0.1:" in caplog.text
    assert "relay connection 1 opened" in caplog.text
    assert f"5 bytes to {path}, 5 bytes back" in caplog.text
    assert "relay stopped listening" in caplog.text


async def test_relay_stop_closes_open_connections(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with unix_server(path, echo):
        relay = Relay([RelayMap("127.0.0.1", 0, path)])
        await relay.start()
        reader, writer = await connect(relay)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"

        await asyncio.wait_for(relay.stop(), timeout=5)
        assert relay.active_connections == 0
        try:
            remaining = await asyncio.wait_for(reader.read(), timeout=5)
        except ConnectionResetError:
            remaining = b""
        assert remaining == b""
        writer.close()


async def test_relay_bind_error_is_user_error(tmp_path: Path) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        relay = Relay([RelayMap("127.0.0.1", port, tmp_path / "s.sock")])
        with pytest.raises(UserError) as raised:
            await relay.start()
        assert f"127.0.0.1:{port}" in raised.value.message
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_relay_without_maps_is_user_error() -> None:
    with pytest.raises(UserError):
        await Relay([]).start()
