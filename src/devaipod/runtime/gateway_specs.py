"""Plan pieces for a session's gateway side: the socket volume, the token secret, relay and gateway.

The relay joins the agent's loopback-only network namespace and forwards each door's
loopback port to the unix socket that the gateway serves in the shared socket volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devaipod.runtime.plan import LABEL_ROLE, ContainerSpec, Role, SecretSpec, VolumeSpec

SOCKET_DIR = "/run/devaipod/sockets"
SECRETS_DIR = "/run/secrets"
SOCKET_VOLUME_PURPOSE = "gateway-sockets"
TOKEN_SECRET_PURPOSE = "forge-token"


@dataclass(frozen=True)
class GatewayDoor:
    """One service the agent reaches at 127.0.0.1:`port`, served by the gateway on a socket."""

    name: str
    port: int

    @property
    def socket_path(self) -> str:
        """Return the unix socket's path inside the relay and gateway containers."""
        return f"{SOCKET_DIR}/{self.name}.sock"

    def relay_map(self) -> str:
        """Return the `devaipod relay --map` value for this door."""
        return f"127.0.0.1:{self.port}={self.socket_path}"


# NOTE: the port numbers are a proposal; the session planner and the agent's proxy
# environment must use the same ones.
BROKER_DOOR = GatewayDoor("broker", 8417)
EGRESS_DOOR = GatewayDoor("egress", 3128)
DEFAULT_DOORS = (BROKER_DOOR, EGRESS_DOOR)


def socket_volume(session: str, labels: dict[str, str]) -> VolumeSpec:
    """Return the volume that contains the gateway's unix sockets, shared with the relay only."""
    return VolumeSpec(name=f"{session}-sockets", purpose=SOCKET_VOLUME_PURPOSE, labels=dict(labels))


def token_secret(session: str, labels: dict[str, str]) -> SecretSpec:
    """Return the engine secret that contains the forge token, mounted as a file in the gateway."""
    return SecretSpec(
        name=f"{session}-forge-token", purpose=TOKEN_SECRET_PURPOSE, labels=dict(labels)
    )


def secret_file(secret: SecretSpec) -> str:
    """Return where the gateway container reads `secret` (podman's default mount path)."""
    return f"{SECRETS_DIR}/{secret.name}"


def relay_container(
    name: str,
    image: str,
    *,
    network: str,
    volume: VolumeSpec,
    labels: dict[str, str],
    doors: Sequence[GatewayDoor] = DEFAULT_DOORS,
) -> ContainerSpec:
    """Return the relay container, hardened, in the agent's network namespace.

    `network` is `--network=container:AGENT` or `--pod=POD` for a `--network none` pod.
    The relay then has the agent's loopback only, so it must not be given any network.
    """
    options = [
        *_labels(labels, Role.RELAY),
        network,
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--read-only",
        "--init",
        # Read-only: connecting to a unix socket needs no write access to the file system
        # (Linux checks EROFS on files, directories and links only), so the relay cannot
        # replace the gateway's sockets.
        f"--volume={volume.name}:{SOCKET_DIR}:ro",
    ]
    command = ["-v", "relay"]
    for door in doors:
        command += ["--map", door.relay_map()]
    return ContainerSpec(
        name=name, role=Role.RELAY, image=image, options=tuple(options), command=tuple(command)
    )


def gateway_container(
    name: str,
    image: str,
    *,
    volume: VolumeSpec,
    secret: SecretSpec,
    labels: dict[str, str],
    command: Sequence[str],
    network: str | None = None,
    entrypoint: str | None = None,
) -> ContainerSpec:
    """Return the gateway container: the socket volume, and the token secret as a file.

    `command` is given to the image's `devaipod` entrypoint. The secret is mounted at
    `secret_file(secret)` and never set as an environment variable, so `inspect` does not
    show it. `network` is an option such as `--network=NAME`; the engine's default network
    is used when it is None, because the gateway must reach the forge. `entrypoint`
    replaces the image's `devaipod` entrypoint when given.
    """
    options = [
        *_labels(labels, Role.GATEWAY),
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--init",
        f"--secret={secret.name}",
        f"--volume={volume.name}:{SOCKET_DIR}",
    ]
    if network is not None:
        options.append(network)
    if entrypoint is not None:
        options.append(f"--entrypoint={entrypoint}")
    return ContainerSpec(
        name=name, role=Role.GATEWAY, image=image, options=tuple(options), command=tuple(command)
    )


def _labels(labels: dict[str, str], role: Role) -> list[str]:
    merged = {**labels, LABEL_ROLE: role.value}
    return [f"--label={key}={value}" for key, value in sorted(merged.items())]
