"""`devaipod broker`: run the credential broker standalone, outside a session's gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from pathlib import Path

import click

from devaipod import output
from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.broker.forge_endpoints import with_api_urls
from devaipod.broker.server import (
    DEFAULT_UPSTREAM_USERNAME,
    BrokerConfig,
    RunningBroker,
    serve_until_signal,
)
from devaipod.cli.egress_cmd import (
    broker_egress_allowlist,
    serve_with_egress_proxy,
)
from devaipod.cli.egress_cmd import (
    parse_listen_address as parse_egress_listen,
)
from devaipod.config import load_config
from devaipod.egress.addresses import IPAddress, parse_host_address
from devaipod.errors import UserError
from devaipod.logs import state_dir as devaipod_state_dir
from devaipod.scope.model import load_scope

log = logging.getLogger(__name__)

TOKEN_ENV = "DEVAIPOD_FORGE_TOKEN"


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` (or `[IPV6]:PORT`) into host and port; port 0 picks a free one."""
    host, separator, port_text = value.rpartition(":")
    if not separator or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UserError(
            f"invalid --listen address {value!r}",
            fix="write it as HOST:PORT, for example 127.0.0.1:8080 (port 0 picks a free port)",
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def parse_unix_listen_address(value: str) -> Path | None:
    """Return the socket path of a `unix:PATH` listen address, or None for HOST:PORT."""
    if not value.startswith("unix:"):
        return None
    path = Path(value.removeprefix("unix:"))
    if not path.name:
        raise UserError(
            f"invalid --listen address {value!r}",
            fix="write it as unix:PATH, for example unix:/run/devaipod/sockets/broker.sock",
        )
    return path


def parse_forge_api_urls(values: tuple[str, ...]) -> dict[str, str]:
    """Split each `--forge-api-url HOST=URL` value into a host and its API base URL."""
    api_urls: dict[str, str] = {}
    for value in values:
        host, separator, url = value.partition("=")
        if not separator or not host.strip() or not url.strip():
            raise UserError(
                f"invalid --forge-api-url value {value!r}",
                fix="write it as HOST=URL, for example git.example.com=https://git.example.com/api/v4",
            )
        api_urls[host.strip()] = url.strip()
    return api_urls


def read_forge_token(token_file: Path | None) -> str:
    """Return the upstream token from `--token-file` or the DEVAIPOD_FORGE_TOKEN variable."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            raise UserError(
                f"cannot read token file {token_file}: {error.strerror}",
                fix="pass a readable file containing only the forge token",
            ) from error
        if not token:
            raise UserError(
                f"token file {token_file} is empty", fix="write the forge token into it"
            )
        return token

    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UserError(
            "no forge token given",
            fix=f"set {TOKEN_ENV} or pass --token-file FILE",
        )
    return token


def load_or_create_credential(path: Path) -> str:
    """Return the session credential stored in `path`, creating a random one (mode 0600)."""
    try:
        credential = path.read_text().strip()
    except FileNotFoundError:
        credential = ""
    except OSError as error:
        raise UserError(
            f"cannot read credential file {path}: {error.strerror}",
            fix="pass a readable --credential-file, or a path where a new one can be written",
        ) from error
    if credential:
        return credential

    credential = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(credential + "\n")
    os.chmod(path, 0o600)
    log.info("wrote a new session credential to %s", path)
    return credential


@click.command("broker")
@click.option(
    "--scope",
    "scope_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scope YAML file: the repositories and the branch the agent may push.",
)
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    help="HOST:PORT to listen on (port 0 picks a free port and prints it), or unix:PATH "
    "for a unix socket.",
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Audit log file (JSON lines, appended).  [default: audit.jsonl in --state-dir]",
)
@click.option(
    "--credential-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Session credential file; created with a random credential (mode 0600) if missing. "
    " [default: credential in --state-dir]",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the forge token.  [default: the {TOKEN_ENV} environment variable]",
)
@click.option(
    "--session", default="standalone", show_default=True, help="Session name in the audit log."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for mirrors and spooled pushes.  [default: broker/SESSION in devaipod's "
    "state directory]",
)
@click.option(
    "--upstream-user",
    default=DEFAULT_UPSTREAM_USERNAME,
    show_default=True,
    help="User name sent with the forge token (HTTP Basic) to the upstream.",
)
@click.option(
    "--egress-listen",
    metavar="HOST:PORT",
    help="Also serve the egress proxy on HOST:PORT (port 0 picks a free port) or on unix:PATH, "
    "with the same session credential and audit log.",
)
@click.option(
    "--egress-allow",
    multiple=True,
    metavar="ENTRY",
    help="Extra egress allowlist entry (HOST, *.DOMAIN or IP, optionally :PORT; 443 when "
    "omitted), added to the model API hosts, the config file's [network] allow and the "
    "scope's network.allow. Repeatable.",
)
@click.option(
    "--egress-host-address",
    "egress_host_addresses",
    multiple=True,
    metavar="ADDRESS",
    help="An address of the machine that runs the broker's container. The egress proxy "
    "denies names that resolve to it, as it does for its own addresses. Repeatable.",
)
@click.option(
    "--forge-api-url",
    "forge_api_urls",
    multiple=True,
    metavar="HOST=URL",
    help="REST API base URL of forge HOST (HOST[:PORT] as in web URLs), overriding the config "
    "file's api_url. Used when the scope attaches an issue or pull request, or opens one. "
    "Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ready line as one JSON object.")
def broker(
    scope_file: Path,
    listen: str,
    audit_log: Path | None,
    credential_file: Path | None,
    token_file: Path | None,
    session: str,
    state_dir: Path | None,
    upstream_user: str,
    egress_listen: str | None,
    egress_allow: tuple[str, ...],
    egress_host_addresses: tuple[str, ...],
    forge_api_urls: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run the credential broker until interrupted (Ctrl-C or SIGTERM).

    Agents clone and push through http://HOST:PORT/git/<host>/<path>.git with the
    session credential as HTTP Basic password or Bearer token; the broker forwards
    allowed requests to the scope's repositories with the forge token. When the scope
    attaches an issue or pull request, or its output opens one, the broker also serves
    the forge API gate at /api/<host>/<API path>; with an attached issue or pull request
    also MCP tools at /mcp (streamable HTTP, Bearer credential).
    """
    unix_socket = parse_unix_listen_address(listen)
    host, port = ("", 0) if unix_socket is not None else parse_listen_address(listen)
    scope = load_scope(scope_file)
    forge_api_overrides = parse_forge_api_urls(forge_api_urls)
    # The config file matters only for the forge endpoints.
    forge_config = (
        with_api_urls(load_config(), forge_api_overrides) if scope.uses_forge_api else None
    )
    egress_address: tuple[str, int] | Path | None = None
    if egress_listen:
        egress_address = parse_unix_listen_address(egress_listen) or parse_egress_listen(
            egress_listen, "--egress-listen"
        )
    host_addresses = [parse_egress_host_address(text) for text in egress_host_addresses]
    egress_allowlist = (
        broker_egress_allowlist(scope, egress_allow, host_addresses) if egress_listen else None
    )
    token = read_forge_token(token_file)

    broker_dir = state_dir or (devaipod_state_dir() / "broker" / session)
    credential_path = credential_file or broker_dir / "credential"
    audit_path = audit_log or broker_dir / "audit.jsonl"
    credential = load_or_create_credential(credential_path)

    try:
        audit = AuditLog(audit_path, session, secrets=[token, credential])
    except AuditWriteError as error:
        raise UserError(str(error), fix="pass a writable --audit-log FILE") from error

    config = BrokerConfig(
        scope=scope,
        session=session,
        session_credential=credential,
        upstream_token=token,
        audit_log=audit,
        state_dir=broker_dir,
        upstream_username=upstream_user,
        forge_config=forge_config,
    )

    # Filled in once the egress proxy listens, which is before the broker starts.
    egress_listening: list[str] = []

    def announce(running: RunningBroker) -> None:
        if as_json:
            ready = {
                "event": "listening",
                "url": running.url,
                "host": running.host if unix_socket is None else None,
                "port": running.port if unix_socket is None else None,
                "unix_socket": str(unix_socket) if unix_socket is not None else None,
                "session": session,
                "credential_file": str(credential_path),
                "audit_log": str(audit_path),
            }
            if egress_listening:
                ready["egress_proxy"] = egress_listening[0]
            if running.forge_endpoints and running.unix_socket is None:
                ready["api_url"] = f"{running.url}/api"
                ready["mcp_url"] = f"{running.url}/mcp"
            elif running.forge_endpoints:
                ready["api_path"] = "/api"
                ready["mcp_path"] = "/mcp"
            output.result(json.dumps(ready))
        else:
            if egress_listening:
                output.result(f"egress proxy listening on {egress_listening[0]}")
            output.result(f"listening on {running.url}")
            if running.forge_endpoints:
                output.info(f"forge API gate at /api/<host>/... and MCP tools at /mcp "
                            f"on {running.url}")
            output.info(
                f"session {session}; credential in {credential_path}; audit log {audit_path}"
            )

    serving = serve_until_signal(config, host, port, announce, unix_socket=unix_socket)
    if egress_address is None or egress_allowlist is None:
        asyncio.run(serving)
        return
    asyncio.run(
        serve_with_egress_proxy(
            serving,
            listen=egress_address,
            allowlist=egress_allowlist,
            credential=credential,
            audit=audit,
            on_listening=egress_listening.append,
        )
    )


def parse_egress_host_address(text: str) -> IPAddress:
    """Parse one `--egress-host-address` value; raise UserError when it is no IP address."""
    try:
        return parse_host_address(text, "--egress-host-address")
    except ValueError as error:
        raise UserError(
            str(error), fix="pass an IPv4 or IPv6 address such as 192.0.2.10"
        ) from error
