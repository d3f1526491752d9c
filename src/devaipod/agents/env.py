"""The environment handed to the agent: only variables the user allowed, never forge tokens.

A host variable `DEVAIPOD_AGENT_FOO=x` reaches the agent as `FOO=x`. Names listed in
the user's configuration are passed from the host environment under their own name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from devaipod.errors import UserError

log = logging.getLogger(__name__)

AGENT_ENV_PREFIX = "DEVAIPOD_AGENT_"

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


def agent_environment(
    host_env: Mapping[str, str], allowed_names: Iterable[str] = ()
) -> dict[str, str]:
    """Return the variables the agent receives, from `DEVAIPOD_AGENT_*` and `allowed_names`.

    Raises UserError when a forge token name is requested, so the mistake is visible
    instead of silently dropped.
    """
    selected: dict[str, str] = {}

    for name in allowed_names:
        _check_name(name, source=f"allowed variable {name}")
        if name in host_env:
            selected[name] = host_env[name]
        else:
            log.info("allowed agent variable %s is not set on the host", name)

    for host_name, value in host_env.items():
        if not host_name.startswith(AGENT_ENV_PREFIX) or host_name == AGENT_ENV_PREFIX:
            continue
        name = host_name[len(AGENT_ENV_PREFIX) :]
        _check_name(name, source=host_name)
        selected[name] = value

    return selected


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
