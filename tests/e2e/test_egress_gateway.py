"""The gateway's egress proxy in a real `devaipod up --network proxy` session, probed by the agent.

The test servers run on the host, bound only to its address on podman's default bridge,
which `host.containers.internal` names in the gateway's /etc/hosts.
"""

from __future__ import annotations

import json
import secrets
import shlex
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.egress_targets import make_certificate
from support.forge_host import bridge_sleeper
from support.git_server import isolated_git_env
from support.sessions import (
    labelled_objects,
    make_fixture_repo,
    podman,
    remove_session_objects,
    run_devaipod,
    wait_for_agent_exit,
)

pytestmark = pytest.mark.e2e

HOST_NAME = "host.containers.internal"
# Listed in devcontainer.json without a port, so only port 443 is allowed for it.
MODEL_NAME = "models.devaipod.test"
RESULTS = "/tmp/egress-results"

# The agent's probe, run from the workspace folder. Each argument is `KIND TARGET`.
# KIND `connect` sends CONNECT to the proxy, then a GET over TLS checked with the test
# CA. `http` sends a plain HTTP GET through the proxy variables, and `direct` opens TCP
# without the proxy. It prints one JSON object of raw outcomes for the test to judge.
PROBE = """\
import base64, json, os, socket, ssl, sys, urllib.error, urllib.parse, urllib.request

proxy = urllib.parse.urlsplit(os.environ["https_proxy"])
credential = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
context = ssl.create_default_context(cafile="cert.pem")


def read_head(sock):
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def connect(target):
    sock = socket.create_connection((proxy.hostname, proxy.port), timeout=20)
    sock.sendall(
        f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n"
        f"Proxy-Authorization: Basic {credential}\\r\\n\\r\\n".encode()
    )
    head = read_head(sock)
    status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "no answer"
    if status != "200":
        sock.close()
        return f"status {status}"
    tls = context.wrap_socket(sock, server_hostname="host.containers.internal")
    tls.sendall(b"GET / HTTP/1.0\\r\\nHost: test\\r\\n\\r\\n")
    response = b""
    while chunk := tls.recv(65536):
        response += chunk
    tls.close()
    return "page " + response.split(b"\\r\\n\\r\\n", 1)[1].decode().strip()


def http(target):
    try:
        body = urllib.request.urlopen(f"http://{target}/", timeout=20).read()
        return "page " + body.decode().strip()
    except urllib.error.HTTPError as error:
        return f"status {error.code}"


def direct(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return "connected"
    except OSError as error:
        return f"failed {type(error).__name__}"


outcomes = {}
for argument in sys.argv[1:]:
    kind, target = argument.split(" ", 1)
    try:
        outcomes[argument] = {"connect": connect, "http": http, "direct": direct}[kind](target)
    except Exception as error:
        outcomes[argument] = f"error {type(error).__name__}: {error}"
print(json.dumps(outcomes))
"""


@dataclass(frozen=True)
class BridgeServers:
    """The host's test servers on the bridge address: one HTTPS and two plain HTTP."""

    address: str
    tls_port: int
    plain_port: int
    listed_plain_port: int
    page: str
    certificate: Path


class _PageHandler(BaseHTTPRequestHandler):
    page = ""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        body = f"{self.page}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def page_server(address: str, page: str, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """Serve `page` on `address` (HTTPS with `tls`) in a thread; yield the port."""
    handler = type("Handler", (_PageHandler,), {"page": page})
    server = ThreadingHTTPServer((address, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def bridge_servers(test_image: str, tmp_path: Path) -> Iterator[BridgeServers]:
    # The bridge address exists on the host only while a container is attached to the
    # bridge, so a sleeping container keeps it for the whole test.
    with bridge_sleeper(test_image) as address, ExitStack() as stack:
        certificate = make_certificate(tmp_path, [HOST_NAME])
        page = f"page-{secrets.token_hex(8)}"
        tls_port = stack.enter_context(page_server(address, page, certificate.server_context()))
        plain_port = stack.enter_context(page_server(address, page))
        listed_plain_port = stack.enter_context(page_server(address, page))
        yield BridgeServers(
            address, tls_port, plain_port, listed_plain_port, page, certificate.cert_path
        )


@pytest.fixture
def env(podman_env: dict[str, str], test_image: str, tmp_path: Path) -> dict[str, str]:
    return {
        **podman_env,
        "DEVAIPOD_STATE_DIR": str(tmp_path / "state"),
        "DEVAIPOD_CONFIG": str(tmp_path / "config.toml"),
        "DEVAIPOD_GATEWAY_BASE_IMAGE": test_image,
    }


@pytest.fixture
def session_name() -> Iterator[str]:
    name = f"devaipod-egress-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_session_objects(name)


def project_with_probe(root: Path, image: str, certificate: Path) -> Path:
    """Create a project whose devcontainer allows MODEL_NAME and that carries the probe."""
    repo = make_fixture_repo(root / "project")
    (repo / ".devcontainer").mkdir()
    config = {"image": image, "customizations": {"devaipod": {"allowedDomains": [MODEL_NAME]}}}
    (repo / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    (repo / "probe.py").write_text(PROBE)
    (repo / "cert.pem").write_bytes(certificate.read_bytes())
    git_env = isolated_git_env()
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=git_env)
    subprocess.run(["git", "commit", "-qm", "probe"], cwd=repo, check=True, env=git_env)
    return repo


def egress_entries(session: str, env: dict[str, str]) -> list[dict[str, Any]]:
    lines = run_devaipod("audit", session, "--json", env=env).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    return [entry for entry in entries if entry["kind"] == "egress"]


def test_session_proxy_allows_and_denies(
    env: dict[str, str],
    test_image: str,
    tmp_path: Path,
    session_name: str,
    bridge_servers: BridgeServers,
) -> None:
    servers = bridge_servers
    address = servers.address
    # The HTTPS server is listed by address and by name. The name resolves to the host,
    # which the listed address makes acceptable. The first plain server is listed by
    # name only, so resolving to the host denies it. The second is listed by both.
    Path(env["DEVAIPOD_CONFIG"]).write_text(
        "[network]\nallow = [\n"
        f'  "{address}:{servers.tls_port}",\n'
        f'  "{HOST_NAME}:{servers.tls_port}",\n'
        f'  "{HOST_NAME}:{servers.plain_port}",\n'
        f'  "{HOST_NAME}:{servers.listed_plain_port}",\n'
        f'  "{address}:{servers.listed_plain_port}",\n'
        "]\n"
    )
    repo = project_with_probe(tmp_path, test_image, servers.certificate)
    probes = {
        "listed address": f"connect {address}:{servers.tls_port}",
        "name of listed address": f"connect {HOST_NAME}:{servers.tls_port}",
        "plain to listed address": f"http {HOST_NAME}:{servers.listed_plain_port}",
        "name resolving to host": f"connect {HOST_NAME}:{servers.plain_port}",
        "plain name resolving to host": f"http {HOST_NAME}:{servers.plain_port}",
        "unlisted address": f"connect {address}:{servers.plain_port}",
        "allowed name, other port": f"connect {MODEL_NAME}:8443",
        "unlisted name": "connect unlisted.devaipod.test:443",
        "without proxy": f"direct {address}:{servers.tls_port}",
    }
    arguments = " ".join(shlex.quote(probe) for probe in probes.values())
    agent_command = f"python3 probe.py {arguments} > {RESULTS} 2>&1"

    run_devaipod(
        "up", str(repo), "--name", session_name, "--network", "proxy",
        "--agent", f"sh -c {shlex.quote(agent_command)}", "probe the egress proxy",
        env=env, timeout=600,
    )  # fmt: skip
    wait_for_agent_exit(session_name, env, timeout=180)
    output = podman("exec", f"{session_name}-agent", "cat", RESULTS).stdout
    outcomes = {label: json.loads(output)[probe] for label, probe in probes.items()}
    # The control: the server the proxy refuses for its name is reachable from the
    # gateway itself, under that name, so the refusal is the proxy's decision.
    reached = podman(
        "exec", f"{session_name}-gateway", "python3", "-c",
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
        f"http://{HOST_NAME}:{servers.plain_port}/",
    )  # fmt: skip
    entries = egress_entries(session_name, env)
    hosts = podman("exec", f"{session_name}-gateway", "getent", "hosts", HOST_NAME).stdout

    # podman maps the name to the host's bridge address, which the servers listen on.
    assert hosts.split()[0] == address
    assert reached.stdout.strip() == servers.page
    assert outcomes["listed address"] == f"page {servers.page}", output
    assert outcomes["name of listed address"] == f"page {servers.page}", output
    assert outcomes["plain to listed address"] == f"page {servers.page}", output
    assert outcomes["name resolving to host"] == "status 403", output
    assert outcomes["plain name resolving to host"] == "status 403", output
    assert outcomes["unlisted address"] == "status 403", output
    assert outcomes["allowed name, other port"] == "status 403", output
    assert outcomes["unlisted name"] == "status 403", output
    assert outcomes["without proxy"].startswith("failed "), output

    def reasons(decision: str, host: str, port: int) -> list[str]:
        return [
            entry["reason"]
            for entry in entries
            if (entry["decision"], entry["host"], entry["port"]) == (decision, host, port)
        ]

    to_host = reasons("deny", HOST_NAME, servers.plain_port)
    assert len(to_host) == 2, entries
    for reason in to_host:
        assert f"resolves to {address}" in reason
        assert "private address" in reason
    [unlisted_address] = reasons("deny", address, servers.plain_port)
    assert "not in the allowlist" in unlisted_address
    [other_port] = reasons("deny", MODEL_NAME, 8443)
    assert "port 8443 is not allowed" in other_port
    [unlisted_name] = reasons("deny", "unlisted.devaipod.test", 443)
    assert "not in the allowlist" in unlisted_name
    tunnels = [
        entry
        for entry in entries
        if entry["decision"] == "allow" and entry["port"] == servers.tls_port
    ]
    assert {entry["host"] for entry in tunnels} == {address, HOST_NAME}
    for tunnel in tunnels:
        assert tunnel["address"] == address
        assert tunnel["bytes_out"] > 0
        assert tunnel["bytes_in"] > len(servers.page)
    run_devaipod("audit", session_name, "--verify", env=env)

    run_devaipod("delete", "--force", session_name, env=env)
    assert labelled_objects(session_name)["containers"] == []
