"""`devaipod egress-proxy`: run the allowlisting egress proxy on its own, outside a session."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

import click

from devaipod import output
from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.config import load_config
from devaipod.egress.addresses import (
    InvalidHostError,
    IPAddress,
    discover_local_addresses,
    parse_ip_literal,
)
from devaipod.egress.allowlist import Allowlist, build_allowlist, normalize_name
from devaipod.egress.proxy import ProxyLimits, Resolver, start_egress_proxy, static_resolver
from devaipod.errors import UserError
from devaipod.scope.model import Scope

log = logging.getLogger(__name__)


def parse_listen_address(text: str, option: str = "--listen") -> tuple[str, int]:
    """Parse `HOST:PORT` or `[IPV6]:PORT` for a listening socket (port 0 picks a free one)."""
    host, colon, port_text = text.rpartition(":")
    if not colon or host == "":
        raise UserError(
            f"invalid {option} value {text!r}", fix="give HOST:PORT, e.g. 127.0.0.1:3128"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UserError(
            f"invalid port in {option} value {text!r}", fix="use a port number from 0 to 65535"
        )
    return host, int(port_text)


def load_credential(path: Path) -> str:
    """Read the session credential from a file (surrounding whitespace is dropped)."""
    try:
        credential = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise UserError(
            f"cannot read credential file {path}: {error.strerror}",
            fix="pass a readable file containing the session credential",
        ) from error
    if not credential:
        raise UserError(
            f"credential file {path} is empty", fix="write the session credential into it"
        )
    return credential


def parse_resolve_entries(entries: tuple[str, ...]) -> dict[str, list[IPAddress]]:
    """Parse `NAME=ADDRESS` options into a static resolution table keyed by normalised name."""
    table: dict[str, list[IPAddress]] = {}
    for entry in entries:
        name_text, equals, address_text = entry.partition("=")
        fix = "give NAME=ADDRESS, e.g. models.test=127.0.0.1"
        if not equals:
            raise UserError(f"invalid --resolve value {entry!r}", fix=fix)
        try:
            name = normalize_name(name_text)
            address = parse_ip_literal(address_text)
        except InvalidHostError as error:
            raise UserError(f"invalid --resolve value {entry!r}: {error}", fix=fix) from error
        if address is None:
            raise UserError(f"--resolve value {entry!r} has no IP address", fix=fix)
        table.setdefault(name, []).append(address)
    return table


def broker_egress_allowlist(
    scope: Scope, extra_allow: tuple[str, ...], host_addresses: Iterable[IPAddress] = ()
) -> Allowlist:
    """Build the broker's egress allowlist: the model API defaults, the config file's
    `[network] allow`, the scope's `network.allow` and `--egress-allow` entries.

    `host_addresses` join this machine's own addresses as internal ones, so that a broker
    in a container also denies names that resolve to the container host.
    """
    config = load_config()
    return build_allowlist(
        config_allow=config.network.allow,
        scope_allow=scope.network.allow,
        extra_allow=extra_allow,
        local_addresses=discover_local_addresses() | frozenset(host_addresses),
    )


async def serve_with_egress_proxy(
    main: Coroutine[Any, Any, None],
    *,
    listen: tuple[str, int] | Path,
    allowlist: Allowlist,
    credential: str,
    audit: AuditLog,
    on_listening: Callable[[str], None],
) -> None:
    """Start the egress proxy, report its address, run `main`, then stop the proxy.

    `listen` is (HOST, PORT), or the path of a unix socket.
    """
    unix_socket = listen if isinstance(listen, Path) else None
    host, port = ("", 0) if isinstance(listen, Path) else listen
    try:
        server, bound_port = await start_egress_proxy(
            host=host,
            port=port,
            allowlist=allowlist,
            credential=credential,
            audit=audit,
            unix_socket=unix_socket,
        )
    except OSError as error:
        main.close()
        raise UserError(
            f"cannot listen on {host}:{port} for the egress proxy: {error.strerror}",
            fix="choose a free address and port for --egress-listen",
        ) from error
    if unix_socket is not None:
        on_listening(f"unix:{unix_socket}")
    else:
        shown_host = f"[{host}]" if ":" in host else host
        on_listening(f"{shown_host}:{bound_port}")
    try:
        await main
    finally:
        server.close()
        await server.wait_closed()
        log.info("egress proxy on %s port %d stopped", host, bound_port)


async def _serve(
    host: str,
    port: int,
    allowlist: Allowlist,
    credential: str,
    audit: AuditLog,
    resolver: Resolver | None,
    limits: ProxyLimits,
) -> None:
    server, bound_port = await start_egress_proxy(
        host=host,
        port=port,
        allowlist=allowlist,
        credential=credential,
        audit=audit,
        resolver=resolver,
        limits=limits,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    shown_host = f"[{host}]" if ":" in host else host
    output.result(f"listening on {shown_host}:{bound_port}")
    async with server:
        await stop.wait()
    log.info("egress proxy on %s port %d stopped", host, bound_port)


@click.command("egress-proxy")
@click.option(
    "--listen",
    "listen",
    required=True,
    metavar="HOST:PORT",
    help="Address to listen on; port 0 picks a free port (printed when ready).",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="ENTRY",
    help="Allowlist entry: HOST, *.DOMAIN or IP, optionally :PORT (443 when "
    "omitted). Repeatable; added to the default model API hosts.",
)
@click.option("--no-default-allow", is_flag=True, help="Leave out the default model API hosts.")
@click.option(
    "--credential-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File holding the session credential clients must present.",
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Audit log file (JSON lines, hash-chained); appended to if it exists.",
)
@click.option(
    "--session",
    default="egress-proxy",
    show_default=True,
    help="Session name written into each audit line.",
)
@click.option(
    "--resolve",
    "resolve",
    multiple=True,
    metavar="NAME=ADDRESS",
    help="Resolve NAME to ADDRESS instead of asking DNS. Repeatable.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Seconds without traffic before a connection closes.",
)
@click.option(
    "--max-duration",
    type=click.FloatRange(min=0.1),
    default=3600.0,
    show_default=True,
    help="Maximum seconds a tunnel or request may last.",
)
def egress_proxy(
    listen: str,
    allow: tuple[str, ...],
    no_default_allow: bool,
    credential_file: Path,
    audit_log: Path,
    session: str,
    resolve: tuple[str, ...],
    idle_timeout: float,
    max_duration: float,
) -> None:
    """Run the egress proxy: CONNECT and http:// forwarding to allowlisted hosts only.

    Clients authenticate with the credential as the Proxy-Authorization Basic
    password or Bearer token. Every denial and every closed tunnel is written
    to the audit log. Stops on SIGINT or SIGTERM.
    """
    host, port = parse_listen_address(listen)
    credential = load_credential(credential_file)
    allowlist = build_allowlist(
        extra_allow=allow,
        include_defaults=not no_default_allow,
        local_addresses=discover_local_addresses(),
    )
    table = parse_resolve_entries(resolve)
    resolver = static_resolver(table) if table else None
    limits = ProxyLimits(idle_timeout=idle_timeout, max_duration=max_duration)
    try:
        audit = AuditLog(audit_log, session, secrets=[credential])
    except AuditWriteError as error:
        raise UserError(str(error), fix="pass a writable --audit-log path") from error

    try:
        asyncio.run(_serve(host, port, allowlist, credential, audit, resolver, limits))
    except OSError as error:
        raise UserError(
            f"cannot listen on {listen}: {error.strerror}", fix="choose a free address and port"
        ) from error
    finally:
        audit.close()
