"""The broker's forge endpoints: the API gate at `/api/<host>/...` and the MCP tools at `/mcp`.

They are served when the scope attaches an issue or pull request or opens one
(`Scope.uses_forge_api`), and the broker knows where each forge's API lives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from devaipod.broker.api_gate import ApiGate, ApiGateService, create_api_app, prepare_gates
from devaipod.broker.audit import AuditLog
from devaipod.config import ForgeSettings, UserConfig, normalise_host_key
from devaipod.errors import UserError
from devaipod.scope.model import Scope

if TYPE_CHECKING:
    from devaipod.broker.mcp_server import McpEndpoint

log = logging.getLogger(__name__)

API_PREFIX = "/api"
MCP_PATH = "/mcp"
# Paths whose handlers check the session credential themselves: GitLab clients send
# it in PRIVATE-TOKEN, which the broker's git middleware does not read.
SELF_AUTHENTICATING_PREFIXES = (API_PREFIX + "/", MCP_PATH)
# Pinning the default branch and project id at start-up reads the forge once per
# repository; this bounds each read.
PREPARE_TIMEOUT_SECONDS = 30.0


@dataclass
class ForgeEndpoints:
    """The prepared gates, the service they share with the MCP tools, and the MCP endpoint."""

    gates: dict[str, ApiGate]
    service: ApiGateService
    mcp: McpEndpoint | None

    def install(self, app: web.Application, *, audit_log: AuditLog, session_credential: str
                ) -> None:
        """Mount the gate at /api and the MCP endpoint at /mcp on `app`, before it starts."""
        app.cleanup_ctx.append(self.service.lifetime)
        app.add_subapp(API_PREFIX, create_api_app(self.gates, audit_log=audit_log,
                                                  session_credential=session_credential,
                                                  mount_prefix=API_PREFIX,
                                                  service=self.service))
        if self.mcp is not None:
            self.mcp.install(app)


async def prepare_forge_endpoints(
    scope: Scope,
    forge_config: UserConfig,
    *,
    upstream_token: str,
    audit_log: AuditLog,
    session_credential: str,
    state_dir: Path,
) -> ForgeEndpoints:
    """Read the pinned forge facts and build the gate, its service and the MCP endpoint.

    Raises UserError when a forge host is unknown or a scoped repository cannot be read.
    """
    timeout = aiohttp.ClientTimeout(total=PREPARE_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            gates = await prepare_gates(scope, forge_config, upstream_token, http,
                                        state_dir=state_dir)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UserError(
                f"cannot reach the forge API to pin the scope's repositories: "
                f"{type(error).__name__}: {error}",
                fix="check the forge's api_url (--forge-api-url HOST=URL or the config file)",
            ) from error
    service = ApiGateService(gates, audit_log)

    # Imported here because the mcp SDK takes seconds to import, and most broker
    # starts (local mode, with no forge API) do not need it.
    from devaipod.broker.mcp_server import (
        ForgeTools,
        McpEndpoint,
        create_mcp_server,
        find_mcp_target,
    )

    target = find_mcp_target(scope, forge_config, gates)
    mcp = None
    if target is not None:
        mcp = McpEndpoint(create_mcp_server(ForgeTools(service, target)),
                          session_credential=session_credential, audit_log=audit_log)
        log.info("MCP tools target %s #%d in %s on %s",
                 "pull request" if target.is_pull_request else "issue", target.number,
                 target.repo.path, target.host)
    return ForgeEndpoints(gates=gates, service=service, mcp=mcp)


def with_api_urls(config: UserConfig, api_urls: Mapping[str, str]) -> UserConfig:
    """Return `config` with each host's `api_url` replaced by the one in `api_urls`.

    Raises UserError for a host that is neither declared in the config file nor well known.
    """
    forges = dict(config.forges)
    for raw_host, api_url in api_urls.items():
        host = normalise_host_key(raw_host)
        settings = config.forge_settings(host)
        if settings is None:
            raise UserError(
                f"unknown forge host {raw_host!r} in --forge-api-url",
                fix=f'declare it in the config file: [forges."{host}"] kind = "github" '
                '(or "gitlab" or "forgejo")',
            )
        try:
            forges[host] = ForgeSettings.model_validate({**settings.model_dump(),
                                                         "api_url": api_url})
        except ValidationError as error:
            raise UserError(
                f"invalid API URL {api_url!r} for {raw_host} in --forge-api-url: "
                f"{error.errors()[0]['msg']}",
                fix="write it as HOST=URL, for example git.example.com=https://git.example.com/api/v4",
            ) from None
    return config.model_copy(update={"forges": forges})
