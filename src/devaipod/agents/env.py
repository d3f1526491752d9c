"""The environment handed to the agent: only variables the user allowed, never forge tokens.

A host variable `DEVAIPOD_AGENT_FOO=x` reaches the agent as `FOO=x`. An allowlisted name
takes the host's value, or the devcontainer's `remoteEnv`/`containerEnv` value when the
host does not set it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from devaipod.errors import UserError

log = logging.getLogger(__name__)

AGENT_ENV_PREFIX = "DEVAIPOD_AGENT_"
# devaipod's own agent variables (the task, the agent command, the broker's URLs and
# credential) start with this prefix.
RESERVED_PREFIX = "DEVAIPOD_"

# Forge credentials stay in the broker; the agent never receives them under any name.
FORGE_TOKEN_NAMES = frozenset(
    {
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "GITLAB_TOKEN",
        "GL_TOKEN",
        "GITLAB_PRIVATE_TOKEN",
        "GITEA_TOKEN",
        "FORGEJO_TOKEN",
        "DEVAIPOD_FORGE_TOKEN",
    }
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A token or secret at least this long is found inside a longer value too, such as a URL
# with the token as its password or an `Authorization` header. Forge tokens are longer
# (GitHub's ghp_ tokens have 40 characters), so only test values are shorter.
MIN_CONTAINED_SECRET = 8


def agent_environment(
    host_env: Mapping[str, str],
    allowed_names: Iterable[str] = (),
    *,
    fixed: Mapping[str, str] | None = None,
    withheld: Iterable[str] = (),
    devcontainer_env: Mapping[str, str] | None = None,
    broker_tokens: Iterable[str] = (),
) -> dict[str, str]:
    """Return the variables the agent receives.

    The sources are `fixed` (the config file's `[env.vars]` and agent settings), the
    names in `allowed_names`, and `DEVAIPOD_AGENT_*`. Later sources win. An allowed name
    takes its value from `host_env`, else from `devcontainer_env` (the devcontainer's
    `containerEnv` overlaid with `remoteEnv`), so the devcontainer only fills names the
    host does not set. Other `devcontainer_env` names never reach the agent.

    Raises UserError when a forge token would reach the agent, by name or in a value, or when
    a name in `withheld` (the devcontainer's secrets) is requested. The forge token values
    are those of the host's token variables and `broker_tokens`, the tokens the broker
    holds wherever they were found (an engine secret, the forge CLI's login). An error makes the
    mistake visible instead of silently dropping the variable. The message names the
    variable, never its value.
    """
    selected: dict[str, str] = {}
    sources: dict[str, str] = {}

    for name, value in (fixed or {}).items():
        selected[name] = value
        sources[name] = f"[env.vars] {name}"

    devcontainer = devcontainer_env or {}
    for name in allowed_names:
        _check_name(name, source=f"allowed variable {name}")
        if name in host_env:
            selected[name] = host_env[name]
            sources[name] = f"allowed variable {name}"
        elif name in devcontainer:
            selected[name] = devcontainer[name]
            sources[name] = f"allowed variable {name} (from devcontainer.json)"
        else:
            log.info(
                "allowed agent variable %s is set neither on the host nor in devcontainer.json",
                name,
            )

    for host_name, value in host_env.items():
        if not host_name.startswith(AGENT_ENV_PREFIX) or host_name == AGENT_ENV_PREFIX:
            continue
        name = host_name[len(AGENT_ENV_PREFIX) :]
        selected[name] = value
        sources[name] = host_name

    withheld_names = set(withheld)
    token_values = {
        host_env[name]: name for name in sorted(FORGE_TOKEN_NAMES) if host_env.get(name)
    }
    for token in broker_tokens:
        if token:
            token_values.setdefault(token, "that the broker holds")
    secret_values = {
        host_env[name]: name for name in sorted(withheld_names) if host_env.get(name)
    }
    for name, value in selected.items():
        source = sources[name]
        _check_name(name, source=source)
        if name in withheld_names:
            raise UserError(
                f"{source} would hand the devcontainer secret {name} to the agent",
                fix="secrets declared in devcontainer.json reach the workspace only; "
                "remove it from the agent's allowlist",
            )
        secret_name = _contained(value, secret_values)
        if secret_name is not None:
            raise UserError(
                f"{source} {_verb(value, secret_values)} the value of the devcontainer secret "
                f"{secret_name}, which would reach the agent",
                fix="secrets declared in devcontainer.json reach the workspace only; "
                "pass the agent another value",
            )
        token_name = _contained(value, token_values)
        if token_name is not None:
            raise UserError(
                f"{source} {_verb(value, token_values)} the value of the forge token "
                f"{token_name}, which would reach the agent",
                fix="forge tokens stay with the broker; pass the agent another value",
            )
    return selected


def _contained(value: str, secrets: Mapping[str, str]) -> str | None:
    """Return the name of the secret that `value` is or contains, or None.

    Secrets shorter than MIN_CONTAINED_SECRET characters count only as the whole value,
    because a short string would match inside unrelated values.
    """
    if value in secrets:
        return secrets[value]
    for secret, name in secrets.items():
        if len(secret) >= MIN_CONTAINED_SECRET and secret in value:
            return name
    return None


def _verb(value: str, secrets: Mapping[str, str]) -> str:
    return "has" if value in secrets else "contains"


def _check_name(name: str, *, source: str) -> None:
    if not _ENV_NAME.match(name):
        raise UserError(
            f"invalid agent variable name {name!r} (from {source})",
            fix="use letters, digits and underscores",
        )
    if name.upper() in FORGE_TOKEN_NAMES:
        raise UserError(
            f"{source} would hand the forge token {name} to the agent",
            fix="forge tokens stay with the broker; unset it and let the broker push",
        )
    if name == "HOME" or name.startswith(RESERVED_PREFIX):
        # The entry script exports these variables after the container starts, so one of
        # them would silently replace the value devaipod sets.
        raise UserError(
            f"{source} would replace {name}, which devaipod sets in the agent itself",
            fix=f"pass the value under another name (HOME and {RESERVED_PREFIX}* are reserved)",
        )
