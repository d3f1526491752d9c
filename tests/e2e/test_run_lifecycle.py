"""`devaipod run` on real podman: a timed-out agent, a bad token, and the session commands after."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.forge_host import ForgeHost, forge_host
from support.sessions import labelled_objects, podman, remove_session_objects, run_devaipod

pytestmark = pytest.mark.e2e


@pytest.fixture
def host(tmp_path: Path, test_image: str, podman_env: dict[str, str]) -> Iterator[ForgeHost]:
    with forge_host("forgejo", tmp_path / "forge", test_image,
                    files={"README.md": "# hello\n"}) as served:
        yield served


@pytest.fixture
def session_name(podman_env: dict[str, str]) -> Iterator[str]:
    name = f"devaipod-runlc-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_session_objects(name)


def test_run_timeout_stops_session(
    host: ForgeHost, podman_env: dict[str, str], test_image: str, tmp_path: Path,
    session_name: str,
) -> None:
    env = host.run_env(podman_env, test_image, tmp_path / "state")

    completed = run_devaipod(
        "run", host.issue_url(), "--agent", "sleep 300", "--name", session_name,
        "--image", test_image, "--network", "none", "--timeout", "3", "--json",
        env=env, check=False,
    )  # fmt: skip

    assert completed.returncode == 1, completed.stderr
    result = json.loads(completed.stdout)
    assert result["session"] == session_name
    assert result["agent_exit_code"] is None
    assert result["pushes"] == []
    assert "did not finish within 3 s" in completed.stderr
    status = json.loads(run_devaipod("status", "--json", session_name, env=env).stdout)
    assert status["state"] == "stopped"
    assert all(container["state"] == "exited" for container in status["containers"])
    listed = run_devaipod("list", env=env).stdout
    assert session_name in listed
    for container in labelled_objects(session_name)["containers"]:
        assert host.token not in podman("container", "inspect", container).stdout

    run_devaipod("delete", session_name, env=env)

    assert labelled_objects(session_name) == {
        "containers": [], "volumes": [], "networks": [], "secrets": []
    }
    pods = podman("pod", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{session_name}-pod" not in pods


def test_run_rejected_token_creates_nothing(
    host: ForgeHost, podman_env: dict[str, str], test_image: str, tmp_path: Path,
    session_name: str,
) -> None:
    env = host.run_env(podman_env, test_image, tmp_path / "state")
    env["FORGEJO_TOKEN"] = "e2e-wrong-token-" + secrets.token_hex(8)

    completed = run_devaipod(
        "run", host.issue_url(), "--agent", "true", "--name", session_name,
        "--image", test_image, env=env, check=False,
    )  # fmt: skip

    assert completed.returncode == 2, completed.stderr
    assert "rejected with HTTP 401" in completed.stderr
    assert env["FORGEJO_TOKEN"] not in completed.stderr
    assert labelled_objects(session_name) == {
        "containers": [], "volumes": [], "networks": [], "secrets": []
    }
    assert not (tmp_path / "state" / "sessions" / session_name).exists()


def test_run_registers_mcp_in_home(
    host: ForgeHost, podman_env: dict[str, str], test_image: str, tmp_path: Path,
    session_name: str,
) -> None:
    env = host.run_env(podman_env, test_image, tmp_path / "state")
    with host.config_file.open("a") as config:
        # The opencode adapter, with a command the test image has.
        config.write('\n[agents.opencode]\ncommand = "true"\n')

    run_devaipod(
        "run", host.issue_url(), "--agent", "opencode", "--name", session_name,
        "--image", test_image, "--timeout", "60", env=env,
    )  # fmt: skip

    volume = f"{session_name}-agent-home"
    home = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())
    registration = home / ".config" / "opencode" / "opencode.json"
    assert (registration.stat().st_mode & 0o777) == 0o600
    server = json.loads(registration.read_text())["mcp"]["devaipod"]
    assert server["url"] == "http://127.0.0.1:8417/mcp"
    assert server["headers"]["Authorization"].startswith("Bearer ")
    assert host.token not in registration.read_text()
    # The image's own home files were copied into the volume before the registration.
    assert (home / ".profile").is_file()


# Opens a pull request over the broker's REST gate and appends the HTTP status to a file in
# the code volume, so each run of the agent leaves one line.
PULL_REQUEST_AGENT = """\
import json, os, subprocess, urllib.error, urllib.request
subprocess.run(["git", "commit", "--quiet", "--allow-empty", "-m", "Greet"], check=True)
subprocess.run(["git", "push", "--quiet"], check=False)
request = urllib.request.Request(
    os.environ["DEVAIPOD_FORGE_API_URL"] + "/repos/octo/hello/pulls",
    data=json.dumps({"head": os.environ["BRANCH"], "base": "main", "title": "Greet"}).encode(),
    headers={"Authorization": "Bearer " + os.environ["DEVAIPOD_BROKER_TOKEN"],
             "Content-Type": "application/json"},
    method="POST",
)
try:
    status = urllib.request.urlopen(request, timeout=60).status
except urllib.error.HTTPError as error:
    status = error.code
with open(".git/pull-request-statuses", "a") as statuses:
    statuses.write(f"{status}\\n")
"""


def test_run_restart_keeps_pull_limit(
    tmp_path: Path, test_image: str, podman_env: dict[str, str], session_name: str
) -> None:
    with forge_host("forgejo", tmp_path / "forge", test_image,
                    files={"README.md": "# hello\n", "pr.py": PULL_REQUEST_AGENT}) as host:
        env = host.run_env(podman_env, test_image, tmp_path / "state")
        env["DEVAIPOD_AGENT_BRANCH"] = f"devaipod/issue-{host.issue}"

        run_devaipod(
            "run", host.issue_url(), "--agent", "python3 pr.py", "--name", session_name,
            "--image", test_image, "--network", "none", "--timeout", "120", env=env,
        )  # fmt: skip
        # `start` runs the headless agent again, so it requests a second pull request
        # from a restarted gateway, which must still count the first one.
        run_devaipod("stop", session_name, env=env)
        run_devaipod("start", session_name, env=env)
        statuses: list[str] = []
        for _ in range(120):
            read = podman("exec", f"{session_name}-agent", "cat", ".git/pull-request-statuses",
                          check=False)
            statuses = read.stdout.split()
            if len(statuses) >= 2:
                break
            time.sleep(0.5)

        assert statuses == ["201", "403"]
        created = [request for request in host.forge.writes()
                   if request.raw_path.endswith("/pulls")]
        assert len(created) == 1
        run_devaipod("delete", "--force", session_name, env=env)


def test_run_repository_url_opens_pull(
    tmp_path: Path, test_image: str, podman_env: dict[str, str], session_name: str
) -> None:
    with forge_host("forgejo", tmp_path / "forge", test_image,
                    files={"README.md": "# hello\n", "pr.py": PULL_REQUEST_AGENT}) as host:
        env = host.run_env(podman_env, test_image, tmp_path / "state")
        env["DEVAIPOD_AGENT_BRANCH"] = "devaipod/work"

        completed = run_devaipod(
            "run", f"{host.web_url}/{host.repo_path}.git", "Tidy the README",
            "--agent", "python3 pr.py", "--name", session_name, "--image", test_image,
            "--network", "none", "--timeout", "120", "--json", env=env,
        )  # fmt: skip

        result = json.loads(completed.stdout)
        assert result["branch"] == "devaipod/work"
        assert [push["ref"] for push in result["pushes"]] == ["refs/heads/devaipod/work"]
        assert len(result["pull_requests"]) == 1
        created = [request for request in host.forge.writes()
                   if request.raw_path.endswith("/pulls")]
        assert len(created) == 1
        run_devaipod("delete", session_name, env=env)
