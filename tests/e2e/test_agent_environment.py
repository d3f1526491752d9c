"""What reaches the agent on real podman: allowed variables only, never forge tokens or secrets.

devcontainer.json secrets reach the workspace (lifecycle commands and `exec`), as files, and
its containerEnv and remoteEnv reach the agent only for allowlisted names.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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

NO_OBJECTS: dict[str, list[str]] = {
    "containers": [],
    "volumes": [],
    "networks": [],
    "secrets": [],
}


@pytest.fixture
def env(podman_env: dict[str, str], test_image: str, tmp_path: Path) -> dict[str, str]:
    return {
        **podman_env,
        "DEVAIPOD_STATE_DIR": str(tmp_path / "state"),
        "DEVAIPOD_CONFIG": str(tmp_path / "no-config.toml"),
        "DEVAIPOD_GATEWAY_BASE_IMAGE": test_image,
    }


@pytest.fixture
def session_name() -> Iterator[str]:
    name = f"devaipod-env-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_session_objects(name)
        podman("pod", "rm", "--force", "--ignore", f"{name}-pod", check=False)
        remove_session_objects(name)


@pytest.fixture
def store_secret() -> Iterator[tuple[str, str]]:
    """A podman secret of the user's own (no session label): its name and value."""
    name = f"DEVAIPOD_E2E_STORE_{secrets.token_hex(4).upper()}"
    value = f"store-{secrets.token_hex(16)}"
    subprocess.run(
        ["podman", "secret", "create", name, "-"], input=value.encode(), check=True,
        capture_output=True,
    )  # fmt: skip
    try:
        yield name, value
    finally:
        podman("secret", "rm", name, check=False)


def project_with_config(root: Path, config: dict[str, object]) -> Path:
    repo = make_fixture_repo(root / "project")
    (repo / ".devcontainer").mkdir()
    (repo / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config, indent=2))
    git_env = isolated_git_env()
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=git_env)
    subprocess.run(["git", "commit", "-qm", "devcontainer"], cwd=repo, check=True, env=git_env)
    return repo


def agent_reads(agent: str, value: str) -> list[str]:
    """Return where inside the agent container, as the agent user, `value` can be read."""
    places: list[str] = []
    if value in podman("exec", agent, "env").stdout:
        places.append("environment")
    environ = podman("exec", agent, "sh", "-c", "cat /proc/*/environ 2>/dev/null; true").stdout
    if value in environ:
        places.append("/proc/*/environ")
    # The value travels on stdin, so it is in no command line. Exit 2 only means some
    # files were unreadable to the agent user.
    found = subprocess.run(
        ["podman", "exec", "-i", agent, "grep", "-rlsF", "-f", "/dev/stdin", "/",
         "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev"],
        input=value + "\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.returncode in (0, 1, 2), found.stderr
    places += [f"file {path}" for path in found.stdout.splitlines()]
    return places


def test_agent_gets_key_not_tokens_or_secrets(
    env: dict[str, str],
    test_image: str,
    tmp_path: Path,
    session_name: str,
    store_secret: tuple[str, str],
) -> None:
    store_name, store_value = store_secret
    host_value = f"host-{secrets.token_hex(16)}"
    api_key = f"sk-{secrets.token_hex(16)}"
    gh_token = f"ghp_{secrets.token_hex(16)}"
    workspace_value = f"container-env-{secrets.token_hex(8)}"
    remote_value = f"remote-env-{secrets.token_hex(8)}"
    tool_home = f"/opt/tool-{secrets.token_hex(8)}"
    repo = project_with_config(
        tmp_path,
        {
            "image": test_image,
            "secrets": {store_name: {}, "HOST_SECRET": {"description": "from the host"}},
            "postCreateCommand": f'printf "%s\\n" "${store_name}" "$HOST_SECRET" '
            "> /tmp/lifecycle-secrets",
            "postStartCommand": f'echo "${store_name}" >> /tmp/start-secrets',
            # Only TOOL_HOME is allowlisted, so only it reaches the agent.
            "containerEnv": {"PROJECT_MODE": workspace_value, "TOOL_HOME": tool_home},
            "remoteEnv": {"REMOTE_MODE": remote_value},
            "customizations": {"devaipod": {"envAllowlist": ["TOOL_HOME"]}},
        },
    )
    up_env = {
        **env,
        "DEVAIPOD_AGENT_OPENAI_API_KEY": api_key,
        "GH_TOKEN": gh_token,
        "HOST_SECRET": host_value,
    }

    # The plan that --dry-run prints names the secrets, never their values.
    for output_format in (["--json"], []):
        planned = run_devaipod(
            "up", str(repo), "--name", session_name, "--dry-run", *output_format,
            "--agent", "sh -c 'env > /tmp/agent-env'", "x",
            env=up_env, timeout=600,
        ).stdout  # fmt: skip
        assert f"{session_name}-env-OPENAI_API_KEY" in planned
        for value in (api_key, gh_token, store_value, host_value, "http://devaipod:"):
            assert value not in planned, value
    assert labelled_objects(session_name) == NO_OBJECTS

    run_devaipod(
        "up", str(repo), "--name", session_name, "--gateway",
        "--agent", "sh -c 'env > /tmp/agent-env'", "x",
        env=up_env, timeout=600,
    )  # fmt: skip
    wait_for_agent_exit(session_name, env, timeout=120)
    agent = f"{session_name}-agent"
    workspace = f"{session_name}-workspace"

    agent_env = podman("exec", agent, "cat", "/tmp/agent-env").stdout.splitlines()
    assert f"OPENAI_API_KEY={api_key}" in agent_env
    assert f"TOOL_HOME={tool_home}" in agent_env
    assert not [line for line in agent_env if line.startswith(("PROJECT_MODE=", "REMOTE_MODE="))]
    for value in (gh_token, store_value, host_value):
        assert agent_reads(agent, value) == []
    # Not in the agent's environment, only in the project's own devcontainer.json.
    devcontainer_json = "file /workspaces/project/.devcontainer/devcontainer.json"
    for value in (workspace_value, remote_value):
        assert agent_reads(agent, value) == [devcontainer_json]
    # The session credential is inside the agent's proxy variables, as files, never options.
    credential = podman(
        "exec", f"{session_name}-gateway", "cat", f"/run/secrets/{session_name}-broker-credential"
    ).stdout.strip()
    assert len(credential) >= 32
    containers = labelled_objects(session_name)["containers"]
    assert {agent, workspace, f"{session_name}-gateway", f"{session_name}-relay"} <= set(
        containers
    )
    for container in containers:
        inspect = podman("container", "inspect", container).stdout
        for value in (api_key, gh_token, store_value, host_value, credential):
            assert value not in inspect, container
    agent_inspect = podman("container", "inspect", agent).stdout
    for value in (workspace_value, remote_value, tool_home):
        assert value not in agent_inspect
    # containerEnv is the workspace's environment, and remoteEnv that of `exec`.
    assert f"PROJECT_MODE={workspace_value}" in podman("exec", workspace, "env").stdout
    remote = run_devaipod("exec", session_name, "--", "sh", "-c", "echo $REMOTE_MODE", env=env)
    assert remote.stdout.strip() == remote_value
    # The workspace's lifecycle command and `devaipod exec` both see the declared secrets.
    lifecycle = podman("exec", workspace, "cat", "/tmp/lifecycle-secrets").stdout
    assert lifecycle.split() == [store_value, host_value]
    exec_output = run_devaipod(
        "exec", session_name, "--", "sh", "-c", f'echo "${store_name} $HOST_SECRET"', env=env
    ).stdout
    assert exec_output.split() == [store_value, host_value]
    # postStartCommand sees them again on `start` after `stop`.
    run_devaipod("stop", session_name, env=env)
    run_devaipod("start", session_name, env=env)
    started = podman("exec", workspace, "cat", "/tmp/start-secrets").stdout
    assert started.split() == [store_value, store_value]
    # The host value lives in a session secret that `delete` removes; the user's does not.
    assert labelled_objects(session_name)["secrets"].count(
        f"{session_name}-secret-HOST_SECRET"
    ) == 1

    run_devaipod("delete", "--force", session_name, env=env)
    assert labelled_objects(session_name) == NO_OBJECTS
    assert podman("secret", "inspect", store_name, check=False).returncode == 0


def test_allowlisted_forge_token_rejected(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    config = tmp_path / "config.toml"
    config.write_text('[env]\nallowlist = ["GH_TOKEN"]\n')
    gh_token = f"ghp_{secrets.token_hex(16)}"

    result = run_devaipod(
        "up", str(repo), "--name", session_name, "--image", test_image,
        "--agent", "true", "x",
        env={**env, "DEVAIPOD_CONFIG": str(config), "GH_TOKEN": gh_token}, check=False,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert "would hand the forge token GH_TOKEN to the agent" in result.stderr
    assert "forge tokens stay with the broker" in result.stderr
    assert gh_token not in result.stdout + result.stderr
    assert labelled_objects(session_name) == NO_OBJECTS


def test_missing_secret_names_create_command(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = project_with_config(
        tmp_path, {"image": test_image, "secrets": {"DEVAIPOD_E2E_ABSENT": {}}}
    )

    result = run_devaipod(
        "up", str(repo), "--name", session_name, "--no-gateway", "--agent", "true", "x",
        env=env, check=False,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert 'printf %s "$VALUE" | podman secret create DEVAIPOD_E2E_ABSENT -' in result.stderr
    assert labelled_objects(session_name) == NO_OBJECTS


# Fetches each URL of argv through the proxy variables; prints one JSON object of outcomes.
PROXY_FETCH = """\
import json, sys, urllib.error, urllib.request
outcomes = {}
for url in sys.argv[1:]:
    try:
        outcomes[url] = urllib.request.urlopen(url, timeout=20).read().decode().strip()
    except urllib.error.HTTPError as error:
        outcomes[url] = f"status {error.code}"
    except Exception as error:
        outcomes[url] = f"failed {type(error).__name__}"
print(json.dumps(outcomes))
"""


@pytest.fixture
def web_server(test_image: str) -> Iterator[tuple[str, str]]:
    """A plain HTTP server in a container on the engine's default network: its IP and page."""
    name = f"devaipod-e2e-web-{secrets.token_hex(3)}"
    page = f"page-{secrets.token_hex(8)}"
    script = (
        f"mkdir /tmp/site && echo {page} > /tmp/site/index.html && cd /tmp/site "
        "&& exec python3 -m http.server 8080"
    )
    podman("run", "-d", "--rm", f"--name={name}", "--entrypoint=/bin/sh", test_image, "-c", script)
    try:
        address = podman(
            "inspect", "--format={{.NetworkSettings.IPAddress}}", name
        ).stdout.strip()
        assert address, "the test server has no address on the default network"
        yield address, page
    finally:
        podman("rm", "--force", "--time=0", name, check=False)


def test_proxy_allows_only_listed_destinations(
    env: dict[str, str],
    test_image: str,
    tmp_path: Path,
    session_name: str,
    web_server: tuple[str, str],
) -> None:
    address, page = web_server
    # IPv4 addresses as one decimal number. The listed one matches in any spelling, while
    # its neighbour (last bit flipped, so never the same address) is listed in none.
    a, b, c, d = (int(part) for part in address.split("."))
    decimal = str((a << 24) | (b << 16) | (c << 8) | d)
    unlisted = str((a << 24) | (b << 16) | (c << 8) | (d ^ 1))
    repo = project_with_config(
        tmp_path,
        {
            "image": test_image,
            "customizations": {"devaipod": {"allowedDomains": ["pkg.example.test"]}},
        },
    )
    config = tmp_path / "config.toml"
    config.write_text(f'[network]\nallow = ["{address}:8080"]\n')
    urls = [
        f"http://{address}:8080/",
        f"http://{address}:8081/",
        f"http://{decimal}:8080/",
        f"http://{unlisted}:8080/",
        "http://denied.example.test/",
    ]
    agent_command = f"python3 -c {shlex.quote(PROXY_FETCH)} {' '.join(urls)} > /tmp/fetched"

    run_devaipod(
        "up", str(repo), "--name", session_name, "--gateway",
        "--agent", f"sh -c {shlex.quote(agent_command)}", "x",
        env={**env, "DEVAIPOD_CONFIG": str(config)}, timeout=600,
    )  # fmt: skip
    wait_for_agent_exit(session_name, env, timeout=120)
    fetched = json.loads(podman("exec", f"{session_name}-agent", "cat", "/tmp/fetched").stdout)
    scope = (tmp_path / "state" / "sessions" / session_name / "scope.yaml").read_text()
    audit = [
        json.loads(line)
        for line in run_devaipod("audit", session_name, "--json", env=env).stdout.splitlines()
    ]
    denied = {
        (entry["host"], entry["port"])
        for entry in audit
        if entry["kind"] == "egress" and entry["decision"] == "deny"
    }

    assert f"{address}:8080" in scope
    assert "pkg.example.test" in scope
    assert fetched[urls[0]] == page
    assert fetched[urls[1]] == "status 403"
    assert fetched[urls[2]] == page
    assert fetched[urls[3]] == "status 403"
    assert fetched[urls[4]] == "status 403"
    assert (address, 8081) in denied
    assert (unlisted, 8080) in denied
    assert ("denied.example.test", 80) in denied
