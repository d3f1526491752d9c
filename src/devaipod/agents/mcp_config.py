"""MCP client configuration for each agent, pointing at the broker's /mcp endpoint.

Each builder returns the snippet in the file format that agent reads, with the
endpoint URL and an `Authorization: Bearer <session credential>` header.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from devaipod.errors import UserError

DEFAULT_SERVER_NAME = "devaipod"
# goose's default is 300 s; forge calls through the broker finish well within it.
GOOSE_TIMEOUT_SECONDS = 300

ConfigFormat = Literal["json", "toml", "yaml"]


@dataclass(frozen=True)
class McpEndpointInfo:
    """The broker's MCP endpoint as the agent reaches it, and the credential it presents."""

    url: str
    credential: str = field(repr=False)
    server_name: str = DEFAULT_SERVER_NAME

    @property
    def headers(self) -> dict[str, str]:
        """The HTTP headers every MCP request carries."""
        return {"Authorization": f"Bearer {self.credential}"}


def broker_mcp_url(port: int, host: str = "127.0.0.1") -> str:
    """Return the URL of the broker's MCP endpoint at `host:port`."""
    host_part = f"[{host}]" if ":" in host else host
    return f"http://{host_part}:{port}/mcp"


@dataclass(frozen=True)
class AgentMcpConfig:
    """One agent's MCP registration: the file it reads, and the snippet to put there."""

    agent: str
    path: str  # where the agent reads it; "~" is the agent's home
    format: ConfigFormat
    data: dict[str, Any] = field(repr=False)  # the snippet as data, for merging
    text: str = field(repr=False)  # the snippet serialised in `format`
    command: tuple[str, ...] | None = field(default=None, repr=False)
    """A command that registers the server instead of writing the file, when the agent has one."""


def opencode_mcp_config(endpoint: McpEndpointInfo) -> AgentMcpConfig:
    """Return the `mcp` section of `opencode.json`, with a remote server entry.

    opencode 1.18.33 connected with it to the broker. NOTE: this is the `mcp.<name>`
    layout of opencode 1.x; opencode's v2 config moves servers to `mcp.servers.<name>`.
    """
    data: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "mcp": {
            endpoint.server_name: {
                "type": "remote",
                "url": endpoint.url,
                "headers": endpoint.headers,
                "enabled": True,
            },
        },
    }
    return AgentMcpConfig(agent="opencode", path="~/.config/opencode/opencode.json",
                          format="json", data=data, text=_json_text(data))


def claude_mcp_config(endpoint: McpEndpointInfo) -> AgentMcpConfig:
    """Return Claude Code's `.mcp.json` (project scope) with an HTTP server entry.

    `command` is the equivalent `claude mcp add --transport http` invocation, which
    writes the local scope in `~/.claude.json` instead. NOTE: Claude Code (2.1.328) lists
    a `.mcp.json` server as pending approval until the user approves it, so a headless
    session needs the command, or project servers enabled in Claude Code's settings.
    """
    data: dict[str, Any] = {
        "mcpServers": {
            endpoint.server_name: {
                "type": "http",
                "url": endpoint.url,
                "headers": endpoint.headers,
            },
        },
    }
    return AgentMcpConfig(agent="claude", path=".mcp.json", format="json", data=data,
                          text=_json_text(data), command=claude_mcp_add_command(endpoint))


def claude_mcp_add_command(endpoint: McpEndpointInfo) -> tuple[str, ...]:
    """Return the `claude mcp add` argv.

    `--header` takes several values, so it comes after the name and URL, where it cannot
    swallow them (checked with Claude Code 2.1.328).
    """
    command = ["claude", "mcp", "add", "--transport", "http", endpoint.server_name,
               endpoint.url]
    for name, value in endpoint.headers.items():
        command += ["--header", f"{name}: {value}"]
    return tuple(command)


def codex_mcp_config(endpoint: McpEndpointInfo) -> AgentMcpConfig:
    """Return the `[mcp_servers.<name>]` table for `~/.codex/config.toml`.

    Codex 0.169.0 reads it as a streamable HTTP server with a Bearer token
    (`codex mcp get devaipod --json`).

    The text is one TOML table, so it can be appended to an existing config file
    that has no table of the same name.
    """
    server: dict[str, Any] = {"url": endpoint.url, "http_headers": endpoint.headers}
    data: dict[str, Any] = {"mcp_servers": {endpoint.server_name: server}}
    headers = ", ".join(f"{_toml_key(name)} = {_toml_string(value)}"
                        for name, value in endpoint.headers.items())
    text = (
        f"[mcp_servers.{_toml_key(endpoint.server_name)}]\n"
        f"url = {_toml_string(endpoint.url)}\n"
        f"http_headers = {{ {headers} }}\n"
    )
    return AgentMcpConfig(agent="codex", path="~/.codex/config.toml", format="toml",
                          data=data, text=text)


def goose_mcp_config(endpoint: McpEndpointInfo) -> AgentMcpConfig:
    """Return the `extensions` entry for goose's `~/.config/goose/config.yaml`."""
    extension: dict[str, Any] = {
        "enabled": True,
        "type": "streamable_http",
        "name": endpoint.server_name,
        "description": "Forge tools for this session's issue or pull request, through "
        "the devaipod broker",
        "uri": endpoint.url,
        "headers": endpoint.headers,
        "envs": {},
        "env_keys": [],
        "timeout": GOOSE_TIMEOUT_SECONDS,
        "bundled": None,
    }
    data: dict[str, Any] = {"extensions": {endpoint.server_name: extension}}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return AgentMcpConfig(agent="goose", path="~/.config/goose/config.yaml", format="yaml",
                          data=data, text=text)


AIDER_NO_MCP = ("aider has no MCP client, so it gets no MCP registration; it reaches the "
                "forge only through the broker's REST gate at /api/<host>/...")


def aider_mcp_config(endpoint: McpEndpointInfo) -> None:
    """Return None: aider has no MCP client (see AIDER_NO_MCP)."""
    del endpoint
    return None


MCP_CONFIG_BUILDERS: dict[str, Callable[[McpEndpointInfo], AgentMcpConfig | None]] = {
    "opencode": opencode_mcp_config,
    "claude": claude_mcp_config,
    "codex": codex_mcp_config,
    "goose": goose_mcp_config,
    "aider": aider_mcp_config,
}


def mcp_config_for(agent: str, endpoint: McpEndpointInfo) -> AgentMcpConfig | None:
    """Return `agent`'s MCP registration, or None for an agent without an MCP client.

    Raises UserError for an agent name that has no builder.
    """
    builder = MCP_CONFIG_BUILDERS.get(agent)
    if builder is None:
        known = ", ".join(sorted(MCP_CONFIG_BUILDERS))
        raise UserError(f"unknown agent {agent!r} for MCP registration",
                        fix=f"use one of: {known}")
    return builder(endpoint)


def claude_user_mcp_config(endpoint: McpEndpointInfo) -> AgentMcpConfig:
    """Return `~/.claude.json` with the server in its top-level `mcpServers` (user scope).

    Claude Code requests approval only for project-scope servers (`.mcp.json`). It also
    keeps its own state in this file, so this one suits only a fresh agent home.
    NOTE: not checked against a Claude Code binary here; the layout is the one that
    `claude mcp add --scope user` writes.
    """
    project = claude_mcp_config(endpoint)
    return AgentMcpConfig(agent="claude", path="~/.claude.json", format="json",
                          data=project.data, text=project.text, command=project.command)


def claude_tool_permissions(endpoint: McpEndpointInfo) -> AgentMcpConfig:
    """Return `~/.claude/settings.json` allowing every tool of the broker's MCP server.

    A headless `claude --print` denies a tool call that needs approval, and the rule
    `mcp__<server>` allows all of that server's tools.
    """
    data: dict[str, Any] = {"permissions": {"allow": [f"mcp__{endpoint.server_name}"]}}
    return AgentMcpConfig(agent="claude", path="~/.claude/settings.json", format="json",
                          data=data, text=_json_text(data))


def agent_home_files(agent: str, endpoint: McpEndpointInfo) -> dict[str, bytes]:
    """Return the files that register the broker's MCP server in `agent`'s home directory.

    Keys are paths relative to the home, values the file contents. Agents without an MCP
    client (aider) and custom agent commands get {}. The files are meant for an agent
    home that has none of them yet: each replaces the whole file.
    """
    if agent == "claude":
        configs = [claude_user_mcp_config(endpoint), claude_tool_permissions(endpoint)]
    else:
        builder = MCP_CONFIG_BUILDERS.get(agent)
        config = builder(endpoint) if builder is not None else None
        configs = [config] if config is not None else []
    return {config.path.removeprefix("~/"): config.text.encode() for config in configs}


def has_mcp_client(agent: str) -> bool:
    """Return whether `agent` gets an MCP registration from `agent_home_files`."""
    probe = McpEndpointInfo(url=broker_mcp_url(1), credential="probe")
    return bool(agent_home_files(agent, probe))


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string once DEL is escaped too: both escape quotes,
    # backslashes and the other control characters the same way. Non-ASCII stays
    # literal, because TOML rejects the surrogate pairs json.dumps writes for it.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    if key and all(char.isascii() and (char.isalnum() or char in "-_") for char in key):
        return key
    return _toml_string(key)
