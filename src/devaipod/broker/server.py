"""The broker's HTTP server: session-credential check, the git smart HTTP routes, start and stop.

The standalone `devaipod broker` command, the session gateway container and the tests
all start the broker through `start_broker`, so they run the same code.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.broker.credentials import authorization_credential
from devaipod.broker.forge_endpoints import (
    SELF_AUTHENTICATING_PREFIXES,
    ForgeEndpoints,
    prepare_forge_endpoints,
)
from devaipod.broker.git_http import GitHttpFrontend, git_kind_for_request
from devaipod.broker.mirror import basic_authorization
from devaipod.broker.upstreams import RepoMap
from devaipod.config import UserConfig
from devaipod.scope.model import Scope

log = logging.getLogger(__name__)

# The user name sent with the token in HTTP Basic auth to the upstream. GitHub accepts any
# user name with a personal access token and requires `x-access-token` for app tokens.
DEFAULT_UPSTREAM_USERNAME = "devaipod"

BROKER_REALM = "devaipod"


@dataclass(frozen=True)
class BrokerConfig:
    """Everything one broker instance serves: the scope, the secrets and where it keeps state."""

    scope: Scope
    session: str
    session_credential: str = field(repr=False)
    """The secret the agent presents (HTTP Basic password or Bearer token)."""
    upstream_token: str = field(repr=False)
    """The forge token; sent only to the scope's upstream URLs."""
    audit_log: AuditLog
    state_dir: Path
    """Mirrors and spooled pushes live here."""
    upstream_username: str = DEFAULT_UPSTREAM_USERNAME
    forge_config: UserConfig | None = None
    """Forge kinds and API URLs. With them the broker serves the forge API gate at
    /api/<host>/... when `scope.uses_forge_api`, and MCP tools at /mcp for an attached issue
    or pull request."""


def presented_credential(authorization: str | None) -> str | None:
    """Return the secret in an `Authorization` header: a Basic password or a Bearer token."""
    return authorization_credential(authorization)


def credential_matches(authorization: str | None, session_credential: str) -> bool:
    """Compare the presented credential with the session credential in constant time."""
    presented = presented_credential(authorization)
    if presented is None:
        return False
    # surrogateescape: a header that is not UTF-8 arrives with lone surrogates, and must
    # compare unequal rather than raise.
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                               session_credential.encode("utf-8"))


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="authentication required: present the session credential\n",
        headers={"WWW-Authenticate": f'Basic realm="{BROKER_REALM}"'},
    )


def _auth_middleware(
    config: BrokerConfig, forge_endpoints_served: bool = False
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check_session_credential(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        # The API gate and the MCP endpoint check the credential themselves, and also
        # accept GitLab's PRIVATE-TOKEN header.
        if forge_endpoints_served and request.path.startswith(SELF_AUTHENTICATING_PREFIXES):
            return await handler(request)
        authorization = request.headers.get("Authorization")
        if credential_matches(authorization, config.session_credential):
            return await handler(request)

        # git sends no credential until it receives a 401, so only a wrong credential is an
        # event worth auditing; a missing one is the normal first step.
        if authorization:
            log.warning(
                "rejected a wrong session credential for %s %r", request.method, request.path
            )
            try:
                config.audit_log.record(
                    kind=git_kind_for_request(request),
                    decision="deny",
                    reason="invalid session credential",
                    path=request.path,
                )
            except AuditWriteError as error:
                log.error("audit log write failed: %s", error)
        return _unauthorized()

    return check_session_credential


def create_app(config: BrokerConfig, forge: ForgeEndpoints | None = None) -> web.Application:
    """Build the broker's aiohttp application for `config`, with `forge`'s endpoints if given."""
    repo_map = RepoMap(config.scope)
    git = GitHttpFrontend(
        repo_map=repo_map,
        audit_log=config.audit_log,
        upstream_authorization=basic_authorization(config.upstream_username, config.upstream_token),
        state_dir=config.state_dir,
    )
    app = web.Application(middlewares=[_auth_middleware(config, forge is not None)])
    git.install(app)
    if forge is not None:
        forge.install(app, audit_log=config.audit_log,
                      session_credential=config.session_credential)
    return app


@dataclass
class RunningBroker:
    """A started broker; `stop()` closes the listener and waits for open requests."""

    runner: web.AppRunner
    host: str
    port: int
    session: str
    forge_endpoints: bool = False
    """Whether the forge API gate (/api) and the MCP endpoint (/mcp) are served."""
    unix_socket: Path | None = None
    """The unix socket the broker listens on instead of TCP (`host` and `port` unused)."""

    @property
    def url(self) -> str:
        """The listening address: `http://HOST:PORT`, or `unix:PATH` for a unix socket."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        log.info("broker for session %s on %s stopped", self.session, self.url)


async def start_broker(
    config: BrokerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    unix_socket: Path | None = None,
) -> RunningBroker:
    """Start the broker on `host:port` (port 0 picks a free port) and return it running.

    With `unix_socket`, the broker listens on that socket path instead, as in the session
    gateway, where the relay connects to it.
    """
    config.state_dir.mkdir(parents=True, exist_ok=True)
    forge = None
    if config.forge_config is not None and config.scope.uses_forge_api:
        forge = await prepare_forge_endpoints(
            config.scope, config.forge_config, upstream_token=config.upstream_token,
            audit_log=config.audit_log, session_credential=config.session_credential,
            state_dir=config.state_dir,
        )
    app = create_app(config, forge)
    # auto_decompress=False: gzip upload-pack bodies pass to the upstream as the client sent
    # them, with their Content-Encoding.
    runner = web.AppRunner(app, auto_decompress=False, access_log=None)
    await runner.setup()
    site: web.BaseSite
    if unix_socket is not None:
        site = web.UnixSite(runner, str(unix_socket))
    else:
        site = web.TCPSite(runner, host, port)
    await site.start()

    bound_port = port
    if unix_socket is None and runner.addresses:
        bound_port = int(runner.addresses[0][1])

    broker = RunningBroker(
        runner=runner,
        host=host,
        port=bound_port,
        session=config.session,
        forge_endpoints=forge is not None,
        unix_socket=unix_socket,
    )
    log.info("broker for session %s listening on %s", config.session, broker.url)
    return broker


async def serve_until_signal(
    config: BrokerConfig,
    host: str,
    port: int,
    on_ready: Callable[[RunningBroker], None],
    *,
    unix_socket: Path | None = None,
) -> None:
    """Run the broker until SIGINT or SIGTERM, calling `on_ready` once it listens."""
    broker = await start_broker(config, host, port, unix_socket=unix_socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        on_ready(broker)
        await stop.wait()
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
        await broker.stop()
