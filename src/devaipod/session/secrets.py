"""devcontainer.json `secrets`: where each declared secret's value comes from.

A podman secret of the same name wins. Without one, the host variable of that name is
copied into a secret owned by the session. The value reaches the workspace only, as a file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from devaipod.errors import UserError
from devaipod.runtime.engine import Engine
from devaipod.runtime.planner import WorkspaceSecret, workspace_secret_name

log = logging.getLogger(__name__)

_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve_workspace_secrets(
    engine: Engine, session: str, names: Iterable[str], host_env: Mapping[str, str]
) -> tuple[tuple[WorkspaceSecret, ...], dict[str, bytes]]:
    """Return the declared secrets and the values of those copied from `host_env`.

    The values are keyed by the session secret that will hold them. Raises UserError
    naming every secret found neither in the engine's store nor in `host_env`, with the
    command that creates it.
    """
    found: list[WorkspaceSecret] = []
    values: dict[str, bytes] = {}
    missing: list[str] = []
    for name in names:
        if not _SECRET_NAME.match(name):
            raise UserError(
                f"invalid devcontainer.json secret name {name!r}: not a variable name",
                fix="use letters, digits and underscores",
            )
        if _store_has(engine, name):
            log.info("devcontainer secret %s comes from the engine's secret store", name)
            found.append(WorkspaceSecret(name, from_store=True))
        elif name in host_env:
            log.info("devcontainer secret %s comes from the host environment", name)
            found.append(WorkspaceSecret(name, from_store=False))
            values[workspace_secret_name(session, name)] = host_env[name].encode()
        else:
            missing.append(name)
    if missing:
        commands = "; ".join(
            f'printf %s "$VALUE" | {engine.program} secret create {name} -' for name in missing
        )
        raise UserError(
            f"devcontainer.json declares the secret(s) {', '.join(missing)}, found neither "
            f"as a {engine.program} secret nor in the environment",
            fix=f"create them: {commands} (or export them before `devaipod up`)",
        )
    return tuple(found), values


def _store_has(engine: Engine, name: str) -> bool:
    # `secret inspect` prints the secret's metadata, never its value.
    # NOTE: podman only. Docker keeps secrets for swarm services alone: `docker run` has no
    # `--secret` option and a secret's value cannot be read back, so a docker engine must
    # skip this lookup and take the value from the host environment.
    return engine.run_engine(["secret", "inspect", name], check=False).returncode == 0
