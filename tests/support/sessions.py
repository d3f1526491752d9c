"""Helpers for session e2e tests: fixture projects, the CLI, TCP servers, cleanup by label."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.git_server import isolated_git_env

SESSION_LABEL = "devaipod.session"


def make_fixture_repo(path: Path) -> Path:
    """Create a git repository with one commit at `path` and return it."""
    path.mkdir(parents=True)
    env = isolated_git_env()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    (path / "README").write_text("fixture project\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hello')\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "initial"], cwd=path, check=True, env=env)
    return path


def snapshot_tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Return every file and directory under `root` with its mode and bytes (directories: b"")."""
    entries: dict[str, tuple[int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        entries[str(path.relative_to(root))] = (info.st_mode, content)
    return entries


def run_devaipod(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the devaipod CLI in a subprocess and return its result."""
    completed = subprocess.run(
        [sys.executable, "-m", "devaipod", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and completed.returncode != 0:
        log_tail = ""
        state_dir = env.get("DEVAIPOD_STATE_DIR")
        if state_dir and (Path(state_dir) / "devaipod.log").exists():
            log_tail = (Path(state_dir) / "devaipod.log").read_text()[-3000:]
        raise AssertionError(
            f"devaipod {' '.join(args)} exited {completed.returncode}\n"
            f"stdout: {completed.stdout}\nstderr: {completed.stderr}\nlog: {log_tail}"
        )
    return completed


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run podman with the test process environment (CONTAINERS_CONF set by `podman_env`)."""
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, env=dict(os.environ)
    )


def labelled_objects(session: str) -> dict[str, list[str]]:
    """Return the names of every container, volume, network and secret labelled with `session`."""
    label = f"label={SESSION_LABEL}={session}"
    containers = json.loads(podman("ps", "-a", "--format=json", f"--filter={label}").stdout or "[]")
    volumes = json.loads(
        podman("volume", "ls", "--format=json", f"--filter={label}").stdout or "[]"
    )
    networks = json.loads(
        podman("network", "ls", "--format=json", f"--filter={label}").stdout or "[]"
    )
    secret_names = podman("secret", "ls", "--noheading", "--format={{.Name}}").stdout.split()
    secrets: list[str] = []
    if secret_names:
        # Inspect one by one: other test suites may remove their secrets meanwhile.
        for name in secret_names:
            inspected = podman("secret", "inspect", name, check=False)
            if inspected.returncode != 0:
                continue
            for row in json.loads(inspected.stdout):
                if (row["Spec"].get("Labels") or {}).get(SESSION_LABEL) == session:
                    secrets.append(row["Spec"]["Name"])
    return {
        "containers": [row["Names"][0] for row in containers],
        "volumes": [row["Name"] for row in volumes],
        "networks": [row["name"] for row in networks],
        "secrets": secrets,
    }


def remove_session_objects(session: str) -> None:
    """Remove everything labelled with `session`, whatever state a test left it in."""
    objects = labelled_objects(session)
    for name in objects["containers"]:
        podman("rm", "--force", "--time=0", name, check=False)
    for name in objects["volumes"]:
        podman("volume", "rm", "--force", name, check=False)
    for name in objects["networks"]:
        podman("network", "rm", "--force", name, check=False)
    for name in objects["secrets"]:
        podman("secret", "rm", name, check=False)
    # The session's pod has no label; it is found by its name.
    podman("pod", "rm", "--force", "--ignore", f"{session}-pod", check=False)


def wait_for_agent_exit(session: str, env: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    """Poll `devaipod status --json` until the agent program has exited; return the status."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = json.loads(run_devaipod("status", session, "--json", env=env).stdout)
        program = status.get("agentProgram")
        if program is not None and not program["running"]:
            return status
        time.sleep(0.5)
    raise AssertionError(f"agent of {session} still running after {timeout} s: {status}")


class TcpServer:
    """A TCP listener on a thread that accepts, writes one line and counts connections."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                try:
                    conn.sendall(b"reached\n")
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting and close the socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@contextmanager
def tcp_server(host: str) -> Iterator[TcpServer]:
    """Run a `TcpServer` on `host` for the duration of the block."""
    server = TcpServer(host)
    try:
        yield server
    finally:
        server.close()


CONNECT_SCRIPT = """
import json, socket, sys
results = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        conn = socket.create_connection((host, int(port)), timeout=3)
    except OSError as error:
        results[target] = "failed:" + type(error).__name__
        continue
    conn.settimeout(1)
    try:
        greeting = conn.recv(16).decode(errors="replace").strip()
    except OSError:
        greeting = ""
    conn.close()
    results[target] = "connected:" + greeting
print(json.dumps(results))
"""


def connect_from(container: str, targets: list[str]) -> dict[str, str]:
    """Try a TCP connection to each `host:port` from inside `container`; return the outcomes."""
    completed = podman("exec", container, "python3", "-c", CONNECT_SCRIPT, *targets)
    return dict(json.loads(completed.stdout))
