"""A real session on podman: the agent's hardening, network isolation, and what the host runs."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.sessions import (
    CONNECT_SCRIPT,
    connect_from,
    labelled_objects,
    make_fixture_repo,
    podman,
    remove_session_objects,
    run_devaipod,
    snapshot_tree,
    tcp_server,
    wait_for_agent_exit,
)

pytestmark = pytest.mark.e2e

HOOK_NAMES = (
    "post-checkout",
    "reference-transaction",
    "post-merge",
    "pre-auto-gc",
    "post-index-change",
    "pre-commit",
)


@dataclass
class RunningSession:
    name: str
    env: dict[str, str]
    repo: Path
    repo_before: dict[str, tuple[int, bytes]]
    marker: Path


def agent_script(marker: Path) -> str:
    """Return the scripted agent: edit, commit, then plant hooks aimed at the host."""
    hooks = " ".join(HOOK_NAMES)
    return (
        "echo 'edited by agent' >> README && "
        "git add README && git commit -qm 'agent edit' && "
        f"for h in {hooks}; do "
        f"printf '#!/bin/sh\\necho ran >> {marker}\\n' > .git/hooks/$h && chmod +x .git/hooks/$h; "
        "done && "
        'git config core.fsmonitor "$PWD/.git/hooks/post-checkout" && '
        "echo agent-finished"
    )


@pytest.fixture(scope="module")
def session(
    podman_env: dict[str, str], test_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSession]:
    root = tmp_path_factory.mktemp("isolation")
    repo = make_fixture_repo(root / "project")
    marker = root / "hook-ran-on-host"
    env = {**podman_env, "DEVAIPOD_STATE_DIR": str(root / "state")}
    env["DEVAIPOD_CONFIG"] = str(root / "no-config.toml")
    name = f"devaipod-iso-{secrets.token_hex(3)}"
    before = snapshot_tree(repo)
    try:
        result = run_devaipod(
            "up",
            str(repo),
            "edit the README",
            "--image",
            test_image,
            "--name",
            name,
            "--agent",
            f"sh -c {json.dumps(agent_script(marker))}",
            env=env,
        )
        assert result.stdout.strip() == name
        wait_for_agent_exit(name, env)
        yield RunningSession(name, env, repo, before, marker)
    finally:
        remove_session_objects(name)


def inspect(container: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(podman("container", "inspect", container).stdout)
    return data[0]


def test_agent_committed_in_session(session: RunningSession) -> None:
    log = podman(
        "exec",
        f"{session.name}-workspace",
        "git",
        "-C",
        "/workspaces/project",
        "log",
        "--format=%s",
    )

    assert log.stdout.split("\n")[:2] == ["agent edit", "initial"]


def test_agent_exit_status_reported(session: RunningSession) -> None:
    status = json.loads(run_devaipod("status", session.name, "--json", env=session.env).stdout)

    assert status["state"] == "running"
    assert status["agentProgram"] == {"running": False, "exitCode": 0}, status
    assert "agent-finished" in run_devaipod("logs", session.name, env=session.env).stdout


def test_agent_inspect_shows_hardening(session: RunningSession) -> None:
    info = inspect(f"{session.name}-agent")
    host = info["HostConfig"]
    config = info["Config"]

    assert config["User"] == "dev"
    # The gateway is on by default: the agent shares the pod's namespace, made with
    # --network none, with the relay.
    assert host["NetworkMode"] == f"container:{_pod_infra(session)['Id']}"
    assert _pod_infra(session)["HostConfig"]["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["Init"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["CapAdd"] in (None, [])
    assert host["PidsLimit"] == 2048
    assert host["Memory"] == 4 * 1024**3
    assert host["Privileged"] is False
    assert info["EffectiveCaps"] in (None, [])
    assert config["Labels"]["devaipod.role"] == "agent"
    assert config["Labels"]["devaipod.session"] == session.name


def test_agent_mounts_only_session_volumes(session: RunningSession) -> None:
    mounts = inspect(f"{session.name}-agent")["Mounts"]

    named = {mount["Destination"]: mount for mount in mounts if mount["Type"] == "volume"}
    assert set(named) == {"/workspaces/project", "/home/dev"}
    assert named["/workspaces/project"]["Name"] == f"{session.name}-code"
    assert named["/home/dev"]["Name"] == f"{session.name}-agent-home"
    assert [m for m in mounts if m["Type"] == "bind"] == []


def test_agent_process_has_no_privileges(session: RunningSession) -> None:
    status = podman("exec", f"{session.name}-agent", "cat", "/proc/self/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)

    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapBnd"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Uid"].split()[0] == "1000"


def test_agent_root_filesystem_read_only(session: RunningSession) -> None:
    result = podman("exec", f"{session.name}-agent", "touch", "/usr/devaipod-probe", check=False)

    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_agent_has_loopback_only(session: RunningSession) -> None:
    links = podman("exec", f"{session.name}-agent", "ip", "-o", "link").stdout.splitlines()

    assert [line.split(":")[1].strip() for line in links] == ["lo"]


def test_agent_reaches_no_outside_server(session: RunningSession) -> None:
    gateway = json.loads(podman("network", "inspect", "podman").stdout)[0]["subnets"][0]["gateway"]
    network = f"devaipod-test-other-{secrets.token_hex(3)}"
    peer = f"{network}-server"
    try:
        podman("network", "create", network)
        podman(
            "run",
            "-d",
            "--init",
            f"--name={peer}",
            f"--network={network}",
            _image_of(session),
            "python3",
            "-m",
            "http.server",
            "8000",
        )
        peer_ip = _container_ip(peer, network)
        with tcp_server("0.0.0.0") as any_address, tcp_server(gateway) as bridge_only:
            targets = [
                f"{gateway}:{any_address.port}",
                f"{_host_address()}:{any_address.port}",
                f"{gateway}:{bridge_only.port}",
                f"{peer_ip}:8000",
            ]
            control_peer = _connect_on_network(network, session, f"{peer_ip}:8000")
            control = connect_from(f"{session.name}-workspace", targets[:3])

            outcomes = connect_from(f"{session.name}-agent", targets)
    finally:
        podman("rm", "--force", "--time=0", peer, check=False)
        podman("network", "rm", "--force", network, check=False)

    # The servers are reachable from an ordinary container, so the test can fail.
    assert all(value.startswith("connected") for value in control.values()), control
    assert control_peer.startswith("connected"), control_peer
    for target in targets:
        assert outcomes[target].startswith("failed"), (target, outcomes[target])


def test_no_engine_socket_in_agent(session: RunningSession) -> None:
    found = podman(
        "exec",
        f"{session.name}-agent",
        "sh",
        "-c",
        "find / -xdev \\( -name '*.sock' -o -name 'podman*' -type s \\) 2>/dev/null; "
        "ls /run/podman /var/run/docker.sock /run/docker.sock /run/user 2>/dev/null; true",
    )

    assert found.stdout.strip() == ""
    assert "CONTAINER_HOST" not in podman("exec", f"{session.name}-agent", "env").stdout


def test_host_repository_unchanged(session: RunningSession) -> None:
    run_devaipod("status", session.name, env=session.env)

    assert snapshot_tree(session.repo) == session.repo_before


def test_planted_hooks_not_run_on_host(session: RunningSession) -> None:
    hooks = podman(
        "exec", f"{session.name}-agent", "ls", "/workspaces/project/.git/hooks"
    ).stdout.split()
    assert set(HOOK_NAMES) <= set(hooks)

    refused = run_devaipod("delete", session.name, env=session.env, check=False)
    run_devaipod("status", session.name, env=session.env)
    run_devaipod("list", env=session.env)

    assert refused.returncode == 2
    assert "1 commit(s) that exist nowhere else" in refused.stderr
    assert not session.marker.exists()
    assert labelled_objects(session.name)["containers"] != []


def test_stop_start_keep_work(session: RunningSession) -> None:
    run_devaipod("stop", session.name, env=session.env)
    stopped = json.loads(run_devaipod("status", session.name, "--json", env=session.env).stdout)
    run_devaipod("start", session.name, env=session.env)
    started = json.loads(run_devaipod("status", session.name, "--json", env=session.env).stdout)
    log = podman(
        "exec",
        f"{session.name}-workspace",
        "git",
        "-C",
        "/workspaces/project",
        "log",
        "--format=%s",
    ).stdout

    assert stopped["state"] == "stopped"
    assert {c["state"] for c in stopped["containers"]} == {"exited"}
    assert started["state"] == "running"
    assert "agent edit" in log.splitlines()


def test_delete_force_leaves_nothing(session: RunningSession) -> None:
    run_devaipod("delete", "--force", session.name.removeprefix("devaipod-"), env=session.env)

    assert labelled_objects(session.name) == {
        "containers": [],
        "volumes": [],
        "networks": [],
        "secrets": [],
    }
    assert snapshot_tree(session.repo) == session.repo_before
    assert not session.marker.exists()
    assert podman("pod", "exists", f"{session.name}-pod", check=False).returncode == 1


def _pod_infra(session: RunningSession) -> dict[str, Any]:
    pod = json.loads(podman("pod", "inspect", f"{session.name}-pod").stdout)
    pod = pod[0] if isinstance(pod, list) else pod
    return inspect(str(pod["InfraContainerID"]))


def _image_of(session: RunningSession) -> str:
    return str(inspect(f"{session.name}-agent")["ImageName"])


def _container_ip(container: str, network: str) -> str:
    networks = inspect(container)["NetworkSettings"]["Networks"]
    return str(networks[network]["IPAddress"])


def _host_address() -> str:
    """Return the host's first non-loopback IPv4 address (a host service bound to 0.0.0.0)."""
    routes = podman_free_command(["ip", "-4", "-o", "addr", "show", "scope", "global"])
    for line in routes.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("10.88."):
            return address
    raise AssertionError("no global IPv4 address on the host")


def podman_free_command(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _connect_on_network(network: str, session: RunningSession, target: str) -> str:
    """Connect to `target` from a throwaway container on `network` (the control case).

    Retries for a few seconds because the peer's server may still be starting.
    """
    outcome = ""
    for _attempt in range(10):
        completed = podman(
            "run",
            "--rm",
            f"--network={network}",
            _image_of(session),
            "python3",
            "-c",
            CONNECT_SCRIPT,
            target,
        )
        outcome = str(json.loads(completed.stdout)[target])
        if outcome.startswith("connected"):
            break
        time.sleep(0.5)
    return outcome
