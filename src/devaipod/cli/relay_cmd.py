"""`devaipod relay`: forward TCP ports on loopback to the gateway's unix sockets."""

from __future__ import annotations

import asyncio
import json

import click

from devaipod import output
from devaipod.relay import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    Relay,
    RelayMap,
    parse_map,
    run_until_signal,
)


@click.command("relay")
@click.option(
    "--map",
    "maps",
    multiple=True,
    required=True,
    metavar="HOST:PORT=SOCKET",
    help="Listen on TCP HOST:PORT and forward each connection to the unix socket SOCKET "
    "(absolute path; port 0 picks a free port). Repeatable.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CONNECTIONS,
    show_default=True,
    help="Connections relayed at once, over all maps; more are closed at once.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for a unix socket to accept before closing the TCP connection.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ready line as one JSON object.")
def relay(
    maps: tuple[str, ...], max_connections: int, connect_timeout: float, as_json: bool
) -> None:
    """Relay TCP connections to unix sockets until interrupted (Ctrl-C or SIGTERM).

    Runs in the agent's loopback-only network namespace, so that the agent reaches the
    gateway's broker and egress proxy at 127.0.0.1. It checks nothing itself.
    """
    relay_maps = [parse_map(text) for text in maps]
    instance = Relay(relay_maps, max_connections=max_connections, connect_timeout=connect_timeout)

    def announce(bound: list[RelayMap]) -> None:
        if as_json:
            ready = {
                "event": "listening",
                "maps": [
                    {"host": m.host, "port": m.port, "socket": str(m.socket_path)} for m in bound
                ],
            }
            output.result(json.dumps(ready))
            return
        for relay_map in bound:
            output.result(f"relaying {relay_map.describe()}")

    asyncio.run(run_until_signal(instance, announce))
