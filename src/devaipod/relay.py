"""TCP-to-unix-socket relay: the agent's only way out of its loopback-only network namespace.

It listens on loopback inside the agent's namespace and copies bytes to unix sockets that
the gateway serves in a shared volume. It applies no policy, which is the gateway's job.

Where the relay runs, as measured on podman 4.3.1 (runc, netavark, rootful):

- `--network container:AGENT` works when the agent runs with `--network none`: both share
  one namespace with only `lo`, and the relay's 127.0.0.1 listener serves the agent.
- Stopping the agent leaves the relay running in the old namespace. Starting or
  restarting the agent gives it a new namespace, so connections to the relay port are
  refused until the relay is restarted too. Podman also refuses to remove the agent
  while the relay depends on it (`podman rm -f` must remove the relay first).
- A pod created with `--network none` keeps its namespace in the infra container, so the
  agent can restart or crash and the relay keeps working. `pod create` took about 0.3 s
  here, and podman 4.x builds the pause image locally.

Design chosen: on podman, the agent and the relay share a `--network none` pod, because
agent restarts then need no relay restart and `pod stop/start/rm` handles both. The
gateway and the workspace stay outside the pod. Docker has no pods, so there the relay
joins the agent with `--network container:AGENT`, and starting the agent must restart
the relay. tests/e2e/test_relay_gateway.py checks both layouts.
NOTE: session plans do not start the gateway and the relay yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devaipod.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_CONNECT_TIMEOUT = 5.0
CHUNK_SIZE = 64 * 1024
# Rejections past the connection limit are logged once per this many seconds, with a count.
_REJECT_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class RelayMap:
    """One forwarding rule: TCP `host:port` to the unix socket at `socket_path`."""

    host: str
    port: int
    socket_path: Path

    def describe(self) -> str:
        """Return the rule in the `--map` syntax."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}={self.socket_path}"


def parse_map(text: str) -> RelayMap:
    """Parse `HOST:PORT=/path/to/socket` (IPv6 hosts in brackets) into a RelayMap.

    Raises UserError naming the value when it is malformed.
    """
    fix = "write it as HOST:PORT=/absolute/socket/path, for example 127.0.0.1:8080=/run/x.sock"
    address, separator, path_text = text.partition("=")
    host, colon, port_text = address.rpartition(":")
    if not separator or not colon or not host or not path_text:
        raise UserError(f"invalid relay map {text!r}", fix=fix)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UserError(
            f"invalid relay map {text!r}: {host!r} is not an IP address", fix=fix
        ) from None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UserError(f"invalid relay map {text!r}: port {port_text!r} is not 0-65535", fix=fix)
    socket_path = Path(path_text)
    if not socket_path.is_absolute():
        raise UserError(f"invalid relay map {text!r}: {path_text!r} is not absolute", fix=fix)
    return RelayMap(host=host, port=int(port_text), socket_path=socket_path)


@dataclass
class _Counters:
    active: int = 0
    rejected: int = 0
    rejected_since_log: int = 0
    last_reject_log: float = 0.0


@dataclass
class Relay:
    """A running set of relay maps sharing one connection limit.

    Each unix socket is connected per TCP connection, so the gateway may start after the
    relay or restart under it: only connections made while it is down fail.
    """

    maps: Sequence[RelayMap]
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    _servers: list[tuple[RelayMap, asyncio.Server]] = field(default_factory=list, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False)
    _counters: _Counters = field(default_factory=_Counters, init=False)

    async def start(self) -> None:
        """Open every listener; on a bind error close the ones already open and raise."""
        if not self.maps:
            raise UserError("no relay maps given", fix="pass at least one --map HOST:PORT=SOCKET")
        try:
            for relay_map in self.maps:
                server = await asyncio.start_server(
                    functools.partial(self._accept, relay_map),
                    host=relay_map.host,
                    port=relay_map.port,
                    limit=CHUNK_SIZE,
                )
                self._servers.append((relay_map, server))
                log.info("relay listening on %s", self._describe_bound(relay_map, server))
        except OSError as error:
            await self.stop()
            raise UserError(
                f"cannot listen on {relay_map.host}:{relay_map.port}: {error.strerror}",
                fix="pick a free port, or an address that exists in this network namespace",
            ) from error

    def bound_maps(self) -> list[RelayMap]:
        """Return the maps with the ports actually bound (port 0 resolved)."""
        bound: list[RelayMap] = []
        for relay_map, server in self._servers:
            port = server.sockets[0].getsockname()[1] if server.sockets else relay_map.port
            bound.append(RelayMap(relay_map.host, port, relay_map.socket_path))
        return bound

    @property
    def active_connections(self) -> int:
        """Number of connections being relayed now."""
        return self._counters.active

    @property
    def rejected_connections(self) -> int:
        """Number of connections closed unserved because the limit was reached."""
        return self._counters.rejected

    async def stop(self) -> None:
        """Close the listeners, then cancel and wait for the open connections."""
        for relay_map, server in self._servers:
            server.close()
            log.info("relay stopped listening on %s", relay_map.describe())
        for _, server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _describe_bound(self, relay_map: RelayMap, server: asyncio.Server) -> str:
        port = server.sockets[0].getsockname()[1] if server.sockets else relay_map.port
        return RelayMap(relay_map.host, port, relay_map.socket_path).describe()

    async def _accept(
        self,
        relay_map: RelayMap,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
    ) -> None:
        connection_id = next(self._ids)
        if self._counters.active >= self.max_connections:
            self._reject(connection_id, client_writer)
            return

        self._counters.active += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay_connection(connection_id, relay_map, client_reader, client_writer)
        finally:
            self._tasks.discard(task)
            self._counters.active -= 1

    def _reject(self, connection_id: int, client_writer: asyncio.StreamWriter) -> None:
        counters = self._counters
        counters.rejected += 1
        counters.rejected_since_log += 1
        now = time.monotonic()
        if now - counters.last_reject_log >= _REJECT_LOG_INTERVAL:
            log.warning(
                "relay connection %d rejected: %d connections open (the limit); "
                "%d rejected since the last warning",
                connection_id,
                self.max_connections,
                counters.rejected_since_log,
            )
            counters.last_reject_log = now
            counters.rejected_since_log = 0
        client_writer.transport.abort()

    async def _relay_connection(
        self,
        connection_id: int,
        relay_map: RelayMap,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
    ) -> None:
        peer = client_writer.get_extra_info("peername")
        target = relay_map.socket_path
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(target), limit=CHUNK_SIZE),
                timeout=self.connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else str(error)
            log.error(
                "relay connection %d from %s: cannot connect to %s: %s",
                connection_id,
                _format_peer(peer),
                target,
                reason,
            )
            client_writer.transport.abort()
            return

        started = time.monotonic()
        log.info("relay connection %d opened: %s to %s", connection_id, _format_peer(peer), target)
        to_upstream = asyncio.create_task(_pump(client_reader, upstream_writer))
        to_client = asyncio.create_task(_pump(upstream_reader, client_writer))
        try:
            # Each direction ends on its own EOF (a half-close is passed on as write_eof),
            # so the connection lasts until both ends have finished sending, unless one
            # direction fails first.
            await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            log.info("relay connection %d closed by relay shutdown", connection_id)
            raise
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
            failure = _first_error(to_upstream, to_client)
            for writer in (client_writer, upstream_writer):
                if failure is not None:
                    writer.transport.abort()
                else:
                    writer.close()

        duration = time.monotonic() - started
        if failure is not None:
            log.warning(
                "relay connection %d to %s reset after %.3f s: %r",
                connection_id,
                target,
                duration,
                failure,
            )
            return
        log.info(
            "relay connection %d closed after %.3f s: %d bytes to %s, %d bytes back",
            connection_id,
            duration,
            to_upstream.result(),
            target,
            to_client.result(),
        )


def _first_error(*tasks: asyncio.Task[int]) -> BaseException | None:
    """Return the first failure among finished `tasks`; a cancelled one counts last."""
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            return task.exception()
    if any(task.cancelled() for task in tasks):
        return asyncio.CancelledError()
    return None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Copy `reader` to `writer` until EOF, then half-close `writer`; return the byte count.

    Waiting on `drain()` after each chunk stops reading while the peer is slow, so at
    most about two chunks per direction are buffered.
    """
    total = 0
    while True:
        chunk = await reader.read(CHUNK_SIZE)
        if not chunk:
            break
        writer.write(chunk)
        await writer.drain()
        total += len(chunk)
    if writer.can_write_eof() and not writer.is_closing():
        with contextlib.suppress(OSError):
            writer.write_eof()
    return total


def _format_peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def run_until_signal(
    relay: Relay, on_ready: Callable[[list[RelayMap]], None] | None = None
) -> None:
    """Start `relay`, call `on_ready` with the bound maps, and run until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    await relay.start()
    try:
        if on_ready is not None:
            on_ready(relay.bound_maps())
        await stop.wait()
        log.info("relay received a stop signal; closing")
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
        await relay.stop()
