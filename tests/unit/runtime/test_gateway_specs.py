"""Tests of the relay and gateway container specs, the socket volume and the token secret."""

from __future__ import annotations

from devaipod.relay import parse_map
from devaipod.runtime.gateway_specs import (
    BROKER_DOOR,
    DEFAULT_DOORS,
    EGRESS_DOOR,
    SOCKET_DIR,
    GatewayDoor,
    gateway_container,
    relay_container,
    secret_file,
    socket_volume,
    token_secret,
)
from devaipod.runtime.plan import Role

LABELS = {"devaipod.session": "devaipod-demo"}


def test_door_maps_parse_as_relay_maps() -> None:
    for door in DEFAULT_DOORS:
        relay_map = parse_map(door.relay_map())
        assert relay_map.host == "127.0.0.1"
        assert relay_map.port == door.port
        assert str(relay_map.socket_path) == f"{SOCKET_DIR}/{door.name}.sock"
    assert BROKER_DOOR.port != EGRESS_DOOR.port


def test_relay_container_hardened_in_agent_netns() -> None:
    volume = socket_volume("devaipod-demo", LABELS)
    spec = relay_container(
        "devaipod-demo-relay",
        "localhost/devaipod-gateway:x",
        network="--network=container:devaipod-demo-agent",
        volume=volume,
        labels=LABELS,
    )
    assert spec.role == Role.RELAY
    assert spec.has_flag("--network=container:devaipod-demo-agent")
    assert spec.has_flag("--cap-drop=ALL")
    assert spec.has_flag("--security-opt=no-new-privileges")
    assert spec.has_flag("--read-only")
    assert spec.has_flag("--init")
    assert spec.option_values("--volume") == [f"devaipod-demo-sockets:{SOCKET_DIR}:ro"]
    assert sorted(spec.option_values("--label")) == [
        "devaipod.role=relay",
        "devaipod.session=devaipod-demo",
    ]
    assert not spec.option_values("--secret")
    assert spec.command == (
        "-v", "relay",
        "--map", BROKER_DOOR.relay_map(),
        "--map", EGRESS_DOOR.relay_map(),
    )  # fmt: skip


def test_relay_container_in_pod() -> None:
    spec = relay_container(
        "r",
        "img",
        network="--pod=devaipod-demo-agent",
        volume=socket_volume("devaipod-demo", LABELS),
        labels=LABELS,
        doors=[GatewayDoor("broker", 9000)],
    )
    assert spec.has_flag("--pod=devaipod-demo-agent")
    assert not any(option.startswith("--network") for option in spec.options)
    assert spec.command == ("-v", "relay", "--map", f"127.0.0.1:9000={SOCKET_DIR}/broker.sock")


def test_gateway_container_secret_as_file() -> None:
    volume = socket_volume("devaipod-demo", LABELS)
    secret = token_secret("devaipod-demo", LABELS)
    spec = gateway_container(
        "devaipod-demo-gateway",
        "localhost/devaipod-gateway:x",
        volume=volume,
        secret=secret,
        labels=LABELS,
        command=["broker", "--token-file", secret_file(secret)],
    )
    assert spec.role == Role.GATEWAY
    assert spec.option_values("--secret") == ["devaipod-demo-forge-token"]
    assert secret_file(secret) == "/run/secrets/devaipod-demo-forge-token"
    assert secret.target_env is None
    assert not spec.option_values("--env")
    assert not any(option.startswith(("-e", "--env")) for option in spec.options)
    assert spec.option_values("--volume") == [f"devaipod-demo-sockets:{SOCKET_DIR}"]
    assert spec.has_flag("--cap-drop=ALL")
    assert not any(option.startswith("--network") for option in spec.options)
    assert not spec.option_values("--entrypoint")
    assert spec.command[-1] == "/run/secrets/devaipod-demo-forge-token"


def test_gateway_container_network_and_entrypoint() -> None:
    spec = gateway_container(
        "g",
        "img",
        volume=socket_volume("s", {}),
        secret=token_secret("s", {}),
        labels={},
        command=["-c", "pass"],
        network="--network=none",
        entrypoint="/opt/devaipod/bin/python",
    )
    assert spec.has_flag("--network=none")
    assert spec.option_values("--entrypoint") == ["/opt/devaipod/bin/python"]
    assert spec.option_values("--label") == ["devaipod.role=gateway"]


def test_socket_volume_and_secret_names() -> None:
    volume = socket_volume("devaipod-demo", LABELS)
    secret = token_secret("devaipod-demo", LABELS)
    assert volume.name == "devaipod-demo-sockets"
    assert volume.purpose == "gateway-sockets"
    assert volume.labels == LABELS
    assert secret.name == "devaipod-demo-forge-token"
    assert secret.purpose == "forge-token"
    assert secret.engine_args()[-1] == "-"
