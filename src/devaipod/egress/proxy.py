"""The egress proxy: an asyncio HTTP proxy that serves CONNECT tunnels and absolute-form
http:// requests for clients holding the session credential, to allowlisted hosts only.

Names are resolved here and the proxy connects to the checked address itself, so a
second lookup by anyone else (DNS rebinding) cannot change where a tunnel goes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.egress.addresses import IPAddress, canonical_address
from devaipod.egress.allowlist import Allowlist
from devaipod.egress.http_head import (
    AbsoluteTarget,
    ChunkedBodyTracker,
    HeadError,
    RequestHead,
    credential_matches,
    parse_absolute_target,
    parse_request_head,
    split_authority,
)
from devaipod.egress.transfer import CHUNK_SIZE, TransferMonitor

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

_REASON_PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

# Header fields that describe one hop, so the proxy does not pass them upstream.
# Transfer-Encoding stays because the body is forwarded in its original framing.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
        "host",
    }
)


@dataclass(frozen=True)
class ProxyLimits:
    """Limits of the egress proxy. Times are in seconds, sizes in bytes."""

    # A tunnel or forwarded request with no bytes in either direction for this long closes.
    idle_timeout: float = 300.0
    # No tunnel or forwarded request lasts longer than this, busy or not.
    max_duration: float = 3600.0
    # Time allowed for the client to send the whole request head.
    head_timeout: float = 30.0
    # Time allowed for DNS resolution and for each TCP connection attempt upstream.
    resolve_timeout: float = 10.0
    connect_timeout: float = 10.0
    # Request head limits: total size and number of header fields. Upstream response heads
    # are limited by the upstream reader's buffer (CHUNK_SIZE, 256 KiB).
    max_head_bytes: int = 32 * 1024
    max_header_count: int = 100
    # Client connections served at once; more are rejected with 503 and closed.
    max_connections: int = 256


async def resolve_system(name: str, port: int) -> list[IPAddress]:
    """Resolve a host name with the system resolver, returning unique TCP addresses."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for info in infos:
        address = canonical_address(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def static_resolver(
    table: Mapping[str, Sequence[IPAddress]], fallback: Resolver | None = resolve_system
) -> Resolver:
    """Return a resolver that looks names up in `table`, keyed by normalised name.

    Other names go to `fallback`; with no fallback they fail to resolve.
    """

    async def resolve(name: str, port: int) -> Sequence[IPAddress]:
        if name in table:
            return list(table[name])
        if fallback is None:
            raise OSError(f"no address for {name}")
        return await fallback(name, port)

    return resolve


def _plain_response(status: int, text: str, extra_headers: Sequence[tuple[str, str]] = ()) -> bytes:
    body = (text.rstrip("\n") + "\n").encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASON_PHRASES.get(status, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    lines += [
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Denied(Exception):
    """A request the proxy rejects with an error status and records in the audit log."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        audit: bool = True,
        decision: Literal["allow", "deny"] = "deny",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.audit = audit
        self.decision: Literal["allow", "deny"] = decision
        self.headers = headers


@dataclass
class _Request:
    connection_id: int
    peer: str
    method: str = "-"
    host: str = "-"
    port: int = 0


class EgressProxy:
    """Serve one listening socket's clients: authenticate, check, connect, relay, audit."""

    def __init__(
        self,
        *,
        allowlist: Allowlist,
        credential: str,
        audit: AuditLog,
        resolver: Resolver | None = None,
        limits: ProxyLimits | None = None,
    ) -> None:
        if not credential:
            raise ValueError("the egress proxy needs a non-empty session credential")
        self.allowlist = allowlist
        self.limits = limits or ProxyLimits()
        self._credential = credential
        self._audit = audit
        self._resolver: Resolver = resolver or resolve_system
        self._connection_ids = itertools.count(1)
        self._active = 0
        self._audit_failed = False

    async def handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one client connection: one CONNECT tunnel or one forwarded request."""
        peername = writer.get_extra_info("peername")
        request = _Request(connection_id=next(self._connection_ids), peer=str(peername))
        self._active += 1
        log.debug("egress connection %d opened from %s", request.connection_id, request.peer)
        try:
            await self._serve(request, reader, writer)
        except _Denied as denial:
            await self._answer_denial(request, writer, denial)
        except (ConnectionError, asyncio.IncompleteReadError) as error:
            log.info("egress connection %d ended early: %s", request.connection_id, error)
        except Exception:
            log.exception("egress connection %d failed", request.connection_id)
        finally:
            self._active -= 1
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            log.debug("egress connection %d closed", request.connection_id)

    async def _serve(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._active > self.limits.max_connections:
            raise _Denied(503, "too many connections through the egress proxy", audit=False)
        head = await self._read_head(reader)
        request.method = head.method
        if self._audit_failed:
            raise _Denied(503, "the audit log cannot be written, so egress is closed", audit=False)

        # The target is parsed before the credential check so that a 407 audit line
        # names the host and port too.
        target: AbsoluteTarget | None = None
        try:
            if head.method == "CONNECT":
                request.host, request.port = split_authority(head.target, default_port=None)
            else:
                target = parse_absolute_target(head.target)
                request.host, request.port = target.host, target.port
        except HeadError as error:
            raise _Denied(error.status, error.message) from error
        self._authenticate(head)
        if target is not None:
            # Reject ambiguous body framing before any upstream connection is made.
            self._body_framing(head)

        upstream_reader, upstream_writer, address = await self._open_checked(request)
        if target is None:
            await self._tunnel(request, address, reader, writer, upstream_reader, upstream_writer)
            return
        await self._forward(
            request,
            head,
            target.authority,
            target.origin_form,
            address,
            reader,
            writer,
            upstream_reader,
            upstream_writer,
        )

    async def _read_head(self, reader: asyncio.StreamReader) -> RequestHead:
        try:
            data = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), timeout=self.limits.head_timeout
            )
        except asyncio.LimitOverrunError as error:
            raise _Denied(
                431, f"request head larger than {self.limits.max_head_bytes} bytes", audit=False
            ) from error
        except TimeoutError as error:
            raise _Denied(
                400,
                f"request head not received within {self.limits.head_timeout:g} s",
                audit=False,
            ) from error
        try:
            return parse_request_head(data, max_headers=self.limits.max_header_count)
        except HeadError as error:
            raise _Denied(error.status, error.message, audit=False) from error

    def _authenticate(self, head: RequestHead) -> None:
        challenge = [
            ("Proxy-Authenticate", 'Basic realm="devaipod egress"'),
            ("Proxy-Authenticate", 'Bearer realm="devaipod egress"'),
        ]
        values = head.get_all("Proxy-Authorization")
        if not values:
            raise _Denied(407, "missing proxy credential", headers=challenge)
        if len(values) > 1 or not credential_matches(values[0], self._credential):
            raise _Denied(407, "invalid proxy credential", headers=challenge)

    async def _open_checked(
        self, request: _Request
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, IPAddress]:
        """Check the host, resolve it, check every address, and connect to one of them."""
        decision = self.allowlist.check_host(request.host, request.port)
        if not decision.allowed:
            raise _Denied(403, decision.reason)

        if decision.address is not None:
            addresses: Sequence[IPAddress] = [decision.address]
        else:
            assert decision.name is not None
            request.host = decision.name
            addresses = await self._resolve(decision.name, request.port)
            # Every address must pass: a name that also resolves to an internal address
            # is denied as a whole rather than filtered.
            for address in addresses:
                reason = self.allowlist.check_resolved(decision.name, address, request.port)
                if reason is not None:
                    raise _Denied(403, reason)

        last_error: Exception | None = None
        for address in addresses:
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        str(address),
                        request.port,
                        limit=CHUNK_SIZE,
                        flags=socket.AI_NUMERICHOST,
                    ),
                    timeout=self.limits.connect_timeout,
                )
            except (OSError, TimeoutError) as error:
                last_error = error
                log.info(
                    "egress connection %d: connecting to %s port %d failed: %s",
                    request.connection_id,
                    address,
                    request.port,
                    error,
                )
                continue
            return upstream_reader, upstream_writer, address
        raise _Denied(
            502,
            f"could not connect to {request.host!r} port {request.port}: {last_error}",
            decision="allow",
        )

    async def _resolve(self, name: str, port: int) -> Sequence[IPAddress]:
        try:
            addresses = await asyncio.wait_for(
                self._resolver(name, port), timeout=self.limits.resolve_timeout
            )
        except TimeoutError as error:
            raise _Denied(504, f"resolving {name} timed out", decision="allow") from error
        except OSError as error:
            raise _Denied(502, f"resolving {name} failed: {error}", decision="allow") from error
        if not addresses:
            raise _Denied(502, f"{name} has no address", decision="allow")
        return [canonical_address(address) for address in addresses]

    async def _tunnel(
        self,
        request: _Request,
        address: IPAddress,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        log.info(
            "egress connection %d: tunnel to %r port %d (%s) opened",
            request.connection_id,
            request.host,
            request.port,
            address,
        )
        monitor = TransferMonitor(
            idle_timeout=self.limits.idle_timeout, max_duration=self.limits.max_duration
        )
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            outcome = await monitor.supervise(
                monitor.copy(reader, upstream_writer, outbound=True),
                monitor.copy(upstream_reader, writer, outbound=False),
            )
        except ConnectionError as error:
            # The client left before the tunnel started; the tunnel is still recorded.
            outcome = f"error: {type(error).__name__}: {error}"
        finally:
            upstream_writer.close()
        log.info(
            "egress connection %d: tunnel to %r port %d closed (%s), %d bytes out, %d in",
            request.connection_id,
            request.host,
            request.port,
            outcome,
            monitor.bytes_out,
            monitor.bytes_in,
        )
        await self._record(
            request,
            "allow",
            f"tunnel {outcome}",
            address=str(address),
            bytes_out=monitor.bytes_out,
            bytes_in=monitor.bytes_in,
            duration_seconds=round(monitor.elapsed(), 3),
        )

    async def _forward(
        self,
        request: _Request,
        head: RequestHead,
        authority: str,
        origin_form: str,
        address: IPAddress,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        """Forward one absolute-form request with its body, then relay the response."""
        monitor = TransferMonitor(
            idle_timeout=self.limits.idle_timeout, max_duration=self.limits.max_duration
        )
        response_status: list[int] = []
        try:
            body_length, chunked = self._body_framing(head)
            upstream_head = _upstream_head(head, authority, origin_form)
            monitor.bytes_out += len(upstream_head)
            upstream_writer.write(upstream_head)
            # The exchange ends with the response, even if the client is still sending.
            outcome = await monitor.supervise(
                self._relay_response(monitor, upstream_reader, writer, response_status),
                self._send_body(monitor, reader, upstream_writer, body_length, chunked),
                ends_with_first=True,
            )
        finally:
            upstream_writer.close()
        status = response_status[0] if response_status else None
        log.info(
            "egress connection %d: %s to %r port %d answered %s (%s)",
            request.connection_id,
            head.method,
            request.host,
            request.port,
            status,
            outcome,
        )
        await self._record(
            request,
            "allow",
            f"request forwarded, {outcome}",
            address=str(address),
            upstream_status=status,
            bytes_out=monitor.bytes_out,
            bytes_in=monitor.bytes_in,
            duration_seconds=round(monitor.elapsed(), 3),
        )

    @staticmethod
    def _body_framing(head: RequestHead) -> tuple[int, bool]:
        """Return (content length, chunked) and reject ambiguous framing (request smuggling)."""
        transfer_encodings = head.get_all("Transfer-Encoding")
        lengths = head.get_all("Content-Length")
        if transfer_encodings and lengths:
            raise _Denied(400, "both Transfer-Encoding and Content-Length present")
        if transfer_encodings:
            if [value.lower() for value in transfer_encodings] != ["chunked"]:
                raise _Denied(400, "only Transfer-Encoding: chunked is supported")
            return 0, True
        if not lengths:
            return 0, False
        if len(set(lengths)) != 1 or not lengths[0].isascii() or not lengths[0].isdigit():
            raise _Denied(400, "invalid Content-Length")
        return int(lengths[0]), False

    @staticmethod
    async def _send_body(
        monitor: TransferMonitor,
        reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
        length: int,
        chunked: bool,
    ) -> None:
        await upstream_writer.drain()
        tracker = ChunkedBodyTracker() if chunked else None
        remaining = length
        while (tracker is not None and not tracker.done) or (tracker is None and remaining):
            data = await reader.read(CHUNK_SIZE if tracker else min(CHUNK_SIZE, remaining))
            if not data:
                raise ConnectionError("client closed the connection inside the request body")
            if tracker is not None:
                # Bytes after the body's end would be a second request: they are dropped.
                data = data[: tracker.feed(data)]
            else:
                remaining -= len(data)
            monitor.touch()
            monitor.bytes_out += len(data)
            upstream_writer.write(data)
            await upstream_writer.drain()

    async def _relay_response(
        self,
        monitor: TransferMonitor,
        upstream_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response_status: list[int],
    ) -> None:
        # Interim 1xx heads (100 Continue) are passed on; the first final status is recorded.
        while True:
            try:
                head = await upstream_reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as error:
                raise ConnectionError("upstream response head too large") from error
            monitor.touch()
            status = _response_status(head)
            monitor.bytes_in += len(head)
            writer.write(head)
            if not 100 <= status < 200 or status == 101:
                response_status.append(status)
                break
        await monitor.copy(upstream_reader, writer, outbound=False)

    async def _answer_denial(
        self, request: _Request, writer: asyncio.StreamWriter, denial: _Denied
    ) -> None:
        log.info(
            # %r: the host is the client's text and may carry control characters.
            "egress connection %d from %s: %s %r port %d answered %d: %s",
            request.connection_id,
            request.peer,
            request.method,
            request.host,
            request.port,
            denial.status,
            denial.reason,
        )
        if denial.audit:
            await self._record(request, denial.decision, denial.reason, status=denial.status)
        try:
            writer.write(_plain_response(denial.status, denial.reason, denial.headers))
            await writer.drain()
        except ConnectionError:
            pass

    async def _record(
        self,
        request: _Request,
        decision: Literal["allow", "deny"],
        reason: str,
        **extra: object,
    ) -> None:
        fields: dict[str, Any] = {
            "host": request.host[:300],
            "port": request.port,
            "method": request.method[:20],
            "connection": request.connection_id,
            **extra,
        }
        try:
            await asyncio.to_thread(
                self._audit.record, kind="egress", decision=decision, reason=reason, **fields
            )
        except AuditWriteError as error:
            # From now on every request is rejected, since it could not be recorded.
            self._audit_failed = True
            log.error(
                "egress connection %d: audit log write failed, closing egress: %s",
                request.connection_id,
                error,
            )


def _response_status(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError("malformed upstream status line")
    return int(parts[1])


def _upstream_head(head: RequestHead, authority: str, origin_form: str) -> bytes:
    """Build the origin-form request head sent upstream, without hop-by-hop fields."""
    connection_tokens = {
        token.strip().lower()
        for value in head.get_all("Connection") + head.get_all("Proxy-Connection")
        for token in value.split(",")
    }
    lines = [f"{head.method} {origin_form} HTTP/1.1", f"Host: {authority}"]
    for name, value in head.headers:
        lowered = name.lower()
        if lowered in _HOP_BY_HOP or lowered in connection_tokens:
            continue
        lines.append(f"{name}: {value}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def start_egress_proxy(
    *,
    host: str,
    port: int,
    allowlist: Allowlist,
    credential: str,
    audit: AuditLog,
    resolver: Resolver | None = None,
    limits: ProxyLimits | None = None,
    unix_socket: Path | None = None,
) -> tuple[asyncio.Server, int]:
    """Start the egress proxy on host:port (port 0 picks a free one); return server and port.

    With `unix_socket`, the proxy listens on that socket path instead, and the port is 0.
    """
    proxy = EgressProxy(
        allowlist=allowlist,
        credential=credential,
        audit=audit,
        resolver=resolver,
        limits=limits,
    )
    if unix_socket is not None:
        server = await asyncio.start_unix_server(
            proxy.handle_client, str(unix_socket), limit=proxy.limits.max_head_bytes
        )
        log.info("egress proxy listening on unix:%s", unix_socket)
        return server, 0
    server = await asyncio.start_server(
        proxy.handle_client, host, port, limit=proxy.limits.max_head_bytes
    )
    bound_port = int(server.sockets[0].getsockname()[1])
    log.info(
        "egress proxy listening on %s port %d with %d allowlist entries",
        host,
        bound_port,
        len(allowlist.entries),
    )
    return server, bound_port
