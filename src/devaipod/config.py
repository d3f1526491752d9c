"""The user's devaipod config file: forge hosts, agent environment, egress, agents, gateway.

TOML at `platformdirs.user_config_dir("devaipod")/config.toml`, or the path in
`DEVAIPOD_CONFIG`. A missing file is an empty config, and unknown keys are errors.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devaipod.errors import UserError

log = logging.getLogger(__name__)

ForgeKind = Literal["github", "gitlab", "forgejo"]
FORGE_KINDS: tuple[ForgeKind, ...] = ("github", "gitlab", "forgejo")

# A forge table key: a host name or address, optionally with a port.
_HOST_KEY = re.compile(r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$")
_DEFAULT_PORT_SUFFIXES = (":443", ":80")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ForgeSettings(_Strict):
    """One `[forges."HOST[:PORT]"]` table: which forge software serves that host."""

    kind: ForgeKind
    api_url: str | None = None
    token_secret: str | None = None
    # Sub-path under which the forge's web UI is installed, such as "/git" for
    # https://example.com/git/owner/repo. Only Forgejo and GitLab installs use it.
    path_prefix: str | None = None

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/?#@]+(/[^?#]*)?$", value):
            raise ValueError("must be an http:// or https:// URL without user, query or fragment")
        return value.rstrip("/")

    @field_validator("path_prefix")
    @classmethod
    def _check_path_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        stripped = value.strip("/")
        if not stripped:
            return None
        segments = stripped.split("/")
        if any(segment in ("", ".", "..") for segment in segments) or "%" in stripped:
            raise ValueError("must be a plain path such as /git")
        return "/" + stripped


class EnvSettings(_Strict):
    """The `[env]` table: variables passed into the agent's environment."""

    allowlist: list[str] = Field(default_factory=list)
    vars: dict[str, str] = Field(default_factory=dict)


class NetworkSettings(_Strict):
    """The `[network]` table: extra egress destinations allowed for every session."""

    allow: list[str] = Field(default_factory=list)


class GatewaySettings(_Strict):
    """The `[gateway]` table: how the gateway container's image is built."""

    # Image with python3 >= 3.11 that devaipod is installed onto; DEVAIPOD_GATEWAY_BASE_IMAGE
    # overrides it, and docker.io/library/python:3.11-slim is used when neither is set.
    base_image: str | None = None


class AgentSettings(_Strict):
    """One `[agents.NAME]` table: overrides for an agent adapter."""

    # NOTE: the agent adapters own these keys; add fields here as they need them.
    command: str | list[str] | None = None
    image: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class UserConfig(_Strict):
    """The whole config file."""

    forges: dict[str, ForgeSettings] = Field(default_factory=dict)
    env: EnvSettings = Field(default_factory=EnvSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    agents: dict[str, AgentSettings] = Field(default_factory=dict)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    @field_validator("forges")
    @classmethod
    def _normalise_forge_keys(cls, value: dict[str, ForgeSettings]) -> dict[str, ForgeSettings]:
        normalised: dict[str, ForgeSettings] = {}
        for key, settings in value.items():
            host = normalise_host_key(key)
            if host in normalised:
                raise ValueError(f"host {key!r} is declared twice")
            normalised[host] = settings
        return normalised

    def forge_settings(self, host: str) -> ForgeSettings | None:
        """Return the settings for normalised `host` (`HOST[:PORT]`): declared, else well known."""
        declared = self.forges.get(host)
        if declared is not None:
            return declared
        return WELL_KNOWN_FORGES.get(host)


WELL_KNOWN_FORGES: dict[str, ForgeSettings] = {
    "github.com": ForgeSettings(kind="github", api_url="https://api.github.com"),
    "gitlab.com": ForgeSettings(kind="gitlab"),
    "codeberg.org": ForgeSettings(kind="forgejo"),
    "gitea.com": ForgeSettings(kind="forgejo"),
}


def normalise_host_key(key: str) -> str:
    """Return `key` as a forge table key: lower case, no trailing dot, no port 443 or 80.

    Raises ValueError when `key` is not `HOST` or `HOST:PORT`.
    """
    host = key.strip().lower()
    if host.endswith(_DEFAULT_PORT_SUFFIXES):
        host = host.rsplit(":", 1)[0]
    host, _, port = host.partition(":") if not host.startswith("[") else (host, "", "")
    host = host.rstrip(".")
    normalised = f"{host}:{port}" if port else host
    if not _HOST_KEY.match(normalised):
        raise ValueError(f"forge key {key!r} is not HOST or HOST:PORT (no scheme, user or path)")
    return normalised


def config_path() -> Path:
    """Return the config file's path: `DEVAIPOD_CONFIG`, else the XDG config directory."""
    override = os.environ.get("DEVAIPOD_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("devaipod")) / "config.toml"


def load_config(path: Path | None = None) -> UserConfig:
    """Read and validate the config file; a missing file gives the defaults.

    Raises UserError naming the file and the key when the file is invalid.
    """
    path = path if path is not None else config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        log.debug("no config file at %s; using defaults", path)
        return UserConfig()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(
            f"cannot read config file {path}: {error}",
            fix="make the file readable UTF-8 text, or point DEVAIPOD_CONFIG at another file",
        ) from error
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> UserConfig:
    """Parse TOML `text` into a UserConfig; `source` names the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(
            f"invalid TOML in {source}: {error}", fix="correct the syntax at that line"
        ) from error

    try:
        return UserConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = _format_key_path(first["loc"])
        raise UserError(
            f"invalid config in {source}: {key}: {_describe_error(first)}",
            fix=_config_fix(first["type"], key),
        ) from error


def _format_key_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in location:
        text = str(item)
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif re.match(r"^[A-Za-z0-9_-]+$", text):
            parts.append(text)
        else:
            parts.append(f'"{text}"')
    return ".".join(parts) or "(top level)"


def _describe_error(error: object) -> str:
    assert isinstance(error, dict)
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "literal_error" and error["loc"][-1] == "kind":
        return f"invalid kind {error['input']!r}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _config_fix(error_type: str, key: str) -> str:
    if error_type == "extra_forbidden":
        return f"remove or correct the key {key}"
    if key.endswith(".kind"):
        return 'use kind = "github", "gitlab" or "forgejo"'
    return f"correct the value of {key}"
