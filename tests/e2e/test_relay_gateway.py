"""End-to-end test of the agent-relay-gateway path on real podman.

A loopback-only agent container reaches an HTTP app in a gateway container only through
the relay sidecar in its network namespace and a unix socket in a shared volume.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devaipod.runtime.gateway_image import ensure_gateway_image
from devaipod.runtime.gateway_specs import (
    BROKER_DOOR,
    SOCKET_DIR,
    gateway_container,
    relay_container,
    secret_file,
    socket_volume,
    token_secret,
)
from devaipod.runtime.plan import LABEL_SESSION, ContainerSpec, VolumeSpec

pytestmark = pytest.mark.e2e

RELAY_PORT = BROKER_DOOR.port
SOCKET_PATH = BROKER_DOOR.socket_path
TEST_LABEL = "devaipod.test=relay-gateway"

# A stand-in for the broker: `devaipod broker` listens on TCP only so far. It reports
# facts about the secret file and the environment, never the secret itself.
GATEWAY_APP = """
import hashlib, os, sys
from aiohttp import web
secret_path = sys.argv[1]

async def describe(request):
    token = open(secret_path).read()
    return web.json_response({
        "app": "gateway",
        "path": request.path,
        "secret_is_file": os.path.isfile(secret_path),
        "secret_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "secret_in_env": any(token in value for value in os.environ.values()),
    })

app = web.Application()
app.router.add_get("/{tail:.*}", describe)
print("gateway app starting", flush=True)
web.run_app(app, path=sys.argv[2], print=lambda message: print(message, flush=True))
"""

AGENT_GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    sys.stdout.write(response.read().decode())
"""

AGENT_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except OSError as error:
    print(f"failed: {error}")
"""


@dataclass
class GatewaySession:
    """The names of the objects one test run created."""

    agent: str
    relay: str
    gateway: str
    volume: VolumeSpec
    secret: str
    token: str
    env: dict[str, str]
    labels: dict[str, str]


def podman(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check)


def wait_for_log(
    env: dict[str, str], container: str, text: str, *, count: int = 1, timeout: float = 30
) -> None:
    """Wait until `text` occurs `count` times in the container's logs (kept across restarts)."""
    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        completed = podman(env, "logs", container, check=False)
        logs = completed.stdout + completed.stderr
        if logs.count(text) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{container} did not log {text!r} in {timeout} s; logs:\n{logs}")


def agent_get(session: GatewaySession, path: str = "/") -> subprocess.CompletedProcess[str]:
    url = f"http://127.0.0.1:{RELAY_PORT}{path}"
    return podman(session.env, "exec", session.agent, "python3", "-c", AGENT_GET, url, check=False)


def create_and_start(env: dict[str, str], spec: ContainerSpec) -> None:
    podman(env, *spec.engine_args())
    podman(env, "start", spec.name)


def start_relay(session: GatewaySession, image: str, network: str) -> None:
    spec = relay_container(
        session.relay, image, network=network, volume=session.volume, labels=session.labels,
        doors=[BROKER_DOOR],
    )  # fmt: skip
    create_and_start(session.env, spec)
    wait_for_log(session.env, session.relay, "relaying 127.0.0.1:")


@pytest.fixture(scope="module")
def gateway_image(podman_env: dict[str, str], test_image: str) -> str:
    """The gateway image built on the Debian test image (reused while inputs are unchanged)."""
    return ensure_gateway_image(test_image).name


@pytest.fixture(scope="module")
def session(
    podman_env: dict[str, str], test_image: str, gateway_image: str
) -> Iterator[GatewaySession]:
    suffix = secrets.token_hex(4)
    name = f"devaipod-test-{suffix}"
    labels = {LABEL_SESSION: name, "devaipod.test": "relay-gateway"}
    volume = socket_volume(name, labels)
    secret = token_secret(name, labels)
    created = GatewaySession(
        agent=f"{name}-agent",
        relay=f"{name}-relay",
        gateway=f"{name}-gateway",
        volume=volume,
        secret=secret.name,
        token=f"forge-token-{secrets.token_urlsafe(24)}",
        env=podman_env,
        labels=labels,
    )
    env = podman_env
    gateway = gateway_container(
        created.gateway, gateway_image, volume=volume, secret=secret, labels=labels,
        command=["-c", GATEWAY_APP, secret_file(secret), SOCKET_PATH],
        network="--network=none", entrypoint="/opt/devaipod/bin/python",
    )  # fmt: skip
    try:
        podman(env, *volume.engine_args())
        subprocess.run(
            ["podman", *secret.engine_args()],
            input=created.token, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        create_and_start(env, gateway)
        podman(
            env, "run", "-d", "--name", created.agent, "--label", TEST_LABEL,
            "--network", "none", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            "--user", "1000:1000", "--init", test_image, "sleep", "infinity",
        )  # fmt: skip
        start_relay(created, gateway_image, f"--network=container:{created.agent}")
        wait_for_log(env, created.gateway, SOCKET_PATH)
        yield created
    finally:
        for container in (created.relay, created.agent, created.gateway):
            podman(env, "rm", "-f", "-t", "0", container, check=False)
        podman(env, "volume", "rm", "-f", created.volume.name, check=False)
        podman(env, "secret", "rm", created.secret, check=False)


@pytest.fixture
def host_server() -> Iterator[int]:
    """A TCP server on the host bound to 0.0.0.0 that accepts and closes connections."""
    listener = socket.create_server(("0.0.0.0", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def host_addresses() -> list[str]:
    """Return the host's global IPv4 addresses, the podman bridge's gateway included."""
    completed = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line.split()[3].split("/")[0] for line in completed.stdout.splitlines()]


def test_agent_reaches_gateway_through_relay(session: GatewaySession) -> None:
    completed = agent_get(session, "/git/example/repo.git/info/refs")
    assert completed.returncode == 0, completed.stderr
    reply = json.loads(completed.stdout)
    assert reply["app"] == "gateway"
    assert reply["path"] == "/git/example/repo.git/info/refs"


def test_gateway_secret_is_file_only(session: GatewaySession) -> None:
    completed = agent_get(session)
    assert completed.returncode == 0, completed.stderr
    reply = json.loads(completed.stdout)
    assert reply["secret_is_file"] is True
    assert reply["secret_sha256"] == hashlib.sha256(session.token.encode()).hexdigest()
    assert reply["secret_in_env"] is False

    inspected = podman(session.env, "inspect", session.gateway).stdout
    assert session.token not in inspected
    environment = json.loads(inspected)[0]["Config"]["Env"]
    assert not any(session.token in entry for entry in environment)
    for container in (session.agent, session.relay):
        assert session.token not in podman(session.env, "inspect", container).stdout


def test_agent_has_loopback_only(session: GatewaySession, host_server: int) -> None:
    addresses = host_addresses()
    assert addresses, "the host has no global IPv4 address to test against"
    for address in addresses:
        # The server must be reachable from outside the sandbox, or the check proves nothing.
        socket.create_connection((address, host_server), timeout=3).close()
        completed = podman(
            session.env, "exec", session.agent, "python3", "-c", AGENT_CONNECT,
            address, str(host_server),
        )  # fmt: skip
        assert completed.stdout.startswith("failed:"), (address, completed.stdout)

    links = podman(session.env, "exec", session.agent, "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def test_agent_has_no_engine_socket(session: GatewaySession) -> None:
    for path in ("/run/podman/podman.sock", "/var/run/docker.sock", "/run/docker.sock"):
        completed = podman(session.env, "exec", session.agent, "test", "-e", path, check=False)
        assert completed.returncode == 1, path


def test_agent_container_hardening(session: GatewaySession) -> None:
    agent = json.loads(podman(session.env, "inspect", session.agent).stdout)[0]
    assert agent["HostConfig"]["NetworkMode"] == "none"
    assert agent["Config"]["User"] == "1000:1000"
    assert "no-new-privileges" in agent["HostConfig"]["SecurityOpt"]
    assert agent["EffectiveCaps"] in (None, [])

    relay = json.loads(podman(session.env, "inspect", session.relay).stdout)[0]
    assert relay["HostConfig"]["NetworkMode"] == f"container:{agent['Id']}"
    assert relay["HostConfig"]["ReadonlyRootfs"] is True
    assert relay["EffectiveCaps"] in (None, [])
    assert relay["Config"]["Labels"]["devaipod.role"] == "relay"
    replaced = podman(
        session.env, "exec", session.relay, "touch", f"{SOCKET_DIR}/planted.sock", check=False
    )
    assert replaced.returncode != 0
    assert "Read-only file system" in replaced.stderr

    gateway = json.loads(podman(session.env, "inspect", session.gateway).stdout)[0]
    assert gateway["Config"]["Labels"]["devaipod.role"] == "gateway"
    assert gateway["EffectiveCaps"] in (None, [])


def test_relay_restart_after_agent_restart(session: GatewaySession, gateway_image: str) -> None:
    """A restarted agent gets a new network namespace; the relay stays in the old one."""
    podman(session.env, "restart", "-t", "0", session.agent)
    stranded = agent_get(session)
    assert stranded.returncode != 0
    assert "Connection refused" in stranded.stderr

    podman(session.env, "restart", "-t", "0", session.relay)
    wait_for_log(session.env, session.relay, "relaying 127.0.0.1:", count=2)
    completed = agent_get(session)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["app"] == "gateway"


def test_pod_relay_survives_agent_restart(
    session: GatewaySession, test_image: str, gateway_image: str
) -> None:
    """In a loopback-only pod the infra container keeps the namespace across agent restarts."""
    env = session.env
    suffix = secrets.token_hex(4)
    pod = f"devaipod-test-pod-{suffix}"
    pod_session = GatewaySession(
        agent=f"devaipod-test-pod-agent-{suffix}",
        relay=f"devaipod-test-pod-relay-{suffix}",
        gateway=session.gateway,
        volume=session.volume,
        secret=session.secret,
        token=session.token,
        env=env,
        labels=session.labels,
    )
    try:
        podman(env, "pod", "create", "--name", pod, "--label", TEST_LABEL, "--network", "none")
        podman(
            env, "run", "-d", "--pod", pod, "--name", pod_session.agent, "--label", TEST_LABEL,
            "--cap-drop=ALL", "--security-opt=no-new-privileges", "--user", "1000:1000",
            "--init", test_image, "sleep", "infinity",
        )  # fmt: skip
        start_relay(pod_session, gateway_image, f"--pod={pod}")

        completed = agent_get(pod_session)
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["app"] == "gateway"
        links = podman(env, "exec", pod_session.agent, "ip", "-o", "link").stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]

        podman(env, "restart", "-t", "0", pod_session.agent)
        after_restart = agent_get(pod_session)
        assert after_restart.returncode == 0, after_restart.stderr
        assert json.loads(after_restart.stdout)["app"] == "gateway"
    finally:
        podman(env, "pod", "rm", "-f", "-t", "0", pod, check=False)
