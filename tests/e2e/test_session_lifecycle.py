"""Sessions from devaipod.json on real podman: lifecycle commands, builds, rollback, doctor."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.git_server import GitHttpServer, create_bare_repo, isolated_git_env
from support.sessions import (
    labelled_objects,
    make_fixture_repo,
    podman,
    remove_session_objects,
    run_devaipod,
    wait_for_agent_exit,
)

pytestmark = pytest.mark.e2e

NO_OBJECTS = {"containers": [], "volumes": [], "networks": [], "secrets": []}


@pytest.fixture
def env(podman_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **podman_env,
        "DEVAIPOD_STATE_DIR": str(tmp_path / "state"),
        "DEVAIPOD_CONFIG": str(tmp_path / "no-config.toml"),
    }


@pytest.fixture
def session_name() -> Iterator[str]:
    name = f"devaipod-lc-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_session_objects(name)


def project_with_config(root: Path, config: dict[str, object], files: dict[str, str]) -> Path:
    repo = make_fixture_repo(root / "project")
    (repo / ".devcontainer").mkdir()
    (repo / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config, indent=2))
    for name, text in files.items():
        (repo / name).write_text(text)
    git_env = isolated_git_env()
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=git_env)
    subprocess.run(["git", "commit", "-qm", "devcontainer"], cwd=repo, check=True, env=git_env)
    return repo


def workspace_exec(session: str, *command: str) -> str:
    return podman("exec", "--user=dev", f"{session}-workspace", *command).stdout


def test_lifecycle_commands_run_in_order(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    marker = tmp_path / "initialize-ran"
    repo = project_with_config(
        tmp_path,
        {
            "image": test_image,
            "remoteUser": "dev",
            "containerEnv": {"PROJECT_MODE": "test"},
            "initializeCommand": f"echo $PWD > {marker}",
            "onCreateCommand": "echo onCreate >> /tmp/order",
            "updateContentCommand": ["sh", "-c", "echo updateContent >> /tmp/order"],
            "postCreateCommand": {
                "first": "echo postCreate-a >> /tmp/parallel",
                "second": ["sh", "-c", "echo postCreate-b >> /tmp/parallel"],
            },
            "postStartCommand": "echo postStart-$PROJECT_MODE >> /tmp/order",
        },
        {},
    )

    run_devaipod(
        "up", str(repo), "--name", session_name, "--agent", "sh -c 'true'", "noop", env=env
    )
    first_order = workspace_exec(session_name, "cat", "/tmp/order").split()
    parallel = sorted(workspace_exec(session_name, "cat", "/tmp/parallel").split())
    run_devaipod("stop", session_name, env=env)
    run_devaipod("start", session_name, env=env)
    second_order = workspace_exec(session_name, "cat", "/tmp/order").split()

    assert marker.read_text().strip() == str(repo)
    assert first_order == ["onCreate", "updateContent", "postStart-test"]
    assert parallel == ["postCreate-a", "postCreate-b"]
    assert second_order == [*first_order, "postStart-test"]
    assert workspace_exec(session_name, "id", "-un").strip() == "dev"


def test_failing_post_create_leaves_nothing(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = project_with_config(
        tmp_path,
        {
            "image": test_image,
            "postCreateCommand": "echo preparing; echo 'npm ERR! missing script' >&2; exit 3",
        },
        {},
    )

    failed = run_devaipod(
        "up",
        str(repo),
        "--name",
        session_name,
        "--agent",
        "sh -c 'true'",
        "x",
        env=env,
        check=False,
    )

    assert failed.returncode == 1
    assert "postCreateCommand failed with exit code 3" in failed.stderr
    assert "echo preparing" in failed.stderr
    assert "npm ERR! missing script" in failed.stderr
    assert labelled_objects(session_name) == NO_OBJECTS
    listed = json.loads(run_devaipod("list", "--json", env=env).stdout)
    assert session_name not in [entry["session"] for entry in listed]


def test_midway_failure_rolls_back_only_own(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    blocker = f"{session_name}-agent"
    podman("create", f"--name={blocker}", test_image, "true")
    try:
        failed = run_devaipod(
            "up",
            str(repo),
            "--image",
            test_image,
            "--name",
            session_name,
            "--agent",
            "sh -c 'true'",
            "x",
            env=env,
            check=False,
        )
        blocker_still_there = podman("container", "exists", blocker, check=False).returncode
    finally:
        podman("rm", "--force", blocker, check=False)

    assert failed.returncode == 1
    assert blocker in failed.stderr
    assert labelled_objects(session_name) == NO_OBJECTS
    assert blocker_still_there == 0


def test_dockerfile_build_reused(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = project_with_config(
        tmp_path,
        {"build": {"dockerfile": "Dockerfile", "args": {"GREETING": "built"}}, "remoteUser": "dev"},
        {},
    )
    (repo / ".devcontainer" / "Dockerfile").write_text(
        f"FROM {test_image}\nARG GREETING\nRUN echo $GREETING > /etc/greeting\n"
    )
    git_env = isolated_git_env()
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=git_env)
    subprocess.run(["git", "commit", "-qm", "dockerfile"], cwd=repo, check=True, env=git_env)

    plan = json.loads(
        run_devaipod("up", str(repo), "--dry-run", "--json", "--agent", "sh", "x", env=env).stdout
    )
    tag = plan["builds"][0]["tag"]
    try:
        run_devaipod(
            "up", str(repo), "--name", session_name, "--agent", "sh -c 'true'", "x", env=env
        )
        image_id = podman("image", "inspect", "--format={{.Id}}", tag).stdout.strip()
        run_devaipod("delete", session_name, env=env)
        second = run_devaipod(
            "up", str(repo), "--name", session_name, "--agent", "sh -c 'true'", "x", env=env
        )

        assert workspace_exec(session_name, "cat", "/etc/greeting").strip() == "built"
        assert podman("image", "inspect", "--format={{.Id}}", tag).stdout.strip() == image_id
        assert "reusing image" in second.stderr
    finally:
        remove_session_objects(session_name)
        podman("rmi", "--force", tag, check=False)


def test_features_rejected_by_name(env: dict[str, str], test_image: str, tmp_path: Path) -> None:
    repo = project_with_config(
        tmp_path,
        {"image": test_image, "features": {"ghcr.io/devcontainers/features/node:1": {}}},
        {},
    )

    failed = run_devaipod("up", str(repo), "--agent", "sh", "x", env=env, check=False)

    assert failed.returncode == 2
    assert "ghcr.io/devcontainers/features/node:1" in failed.stderr


def test_missing_agent_binary_named(env: dict[str, str], test_image: str, tmp_path: Path) -> None:
    repo = make_fixture_repo(tmp_path / "project")

    failed = run_devaipod(
        "up", str(repo), "--image", test_image, "--agent", "claude", "x", env=env, check=False
    )

    assert failed.returncode == 2
    assert "claude" in failed.stderr
    assert test_image in failed.stderr


def test_uncommitted_changes_refused(env: dict[str, str], test_image: str, tmp_path: Path) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    (repo / "README").write_text("dirty\n")

    failed = run_devaipod("up", str(repo), "--image", test_image, "x", env=env, check=False)

    assert failed.returncode == 2
    assert "uncommitted changes" in failed.stderr
    assert "README" in failed.stderr


def test_api_key_reaches_agent_only(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    key_env = {**env, "DEVAIPOD_AGENT_OPENAI_API_KEY": "sk-test-value", "GH_TOKEN": "ghp_host"}

    run_devaipod(
        "up",
        str(repo),
        "--image",
        test_image,
        "--name",
        session_name,
        "--agent",
        "sh -c 'env > /tmp/agent-env'",
        "x",
        env=key_env,
    )
    wait_for_agent_exit(session_name, env)
    agent_env = podman("exec", f"{session_name}-agent", "cat", "/tmp/agent-env").stdout
    inspect = podman("container", "inspect", f"{session_name}-agent").stdout

    assert "OPENAI_API_KEY=sk-test-value" in agent_env
    assert "GH_TOKEN" not in agent_env
    assert "sk-test-value" not in inspect
    # Besides the key: the gateway's secrets (on by default), none holding the key.
    assert sorted(labelled_objects(session_name)["secrets"]) == sorted(
        f"{session_name}-{suffix}"
        for suffix in (
            "env-OPENAI_API_KEY", "env-HTTPS_PROXY", "env-https_proxy", "env-HTTP_PROXY",
            "env-http_proxy", "forge-token", "broker-credential",
        )
    )  # fmt: skip
    run_devaipod("delete", session_name, env=env)
    assert labelled_objects(session_name) == NO_OBJECTS


def test_root_only_image_gets_mapped_uid(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    # The Debian base of the test image has only root, and neither tmux nor git.
    base_image = "localhost/devaipod-test-base:bookworm"
    repo = make_fixture_repo(tmp_path / "project")
    key_env = {**env, "DEVAIPOD_AGENT_MODEL_KEY": "key-value"}
    script = 'id -u > who; echo "$HOME" >> who; touch "$HOME/home-ok" && echo "$MODEL_KEY" >> who'

    run_devaipod(
        "up",
        str(repo),
        "--image",
        base_image,
        "--name",
        session_name,
        "--agent",
        f"sh -c '{script}'",
        "x",
        env=key_env,
    )
    status = wait_for_agent_exit(session_name, env)
    who = podman("exec", f"{session_name}-workspace", "cat", "/workspaces/project/who").stdout

    assert status["agentProgram"] == {"running": False, "exitCode": 0}
    assert who.split() == ["1000", "/home/devaipod", "key-value"]
    assert (
        podman(
            "container", "inspect", "--format={{.Config.User}}", f"{session_name}-agent"
        ).stdout.strip()
        == "1000:1000"
    )


def test_remote_url_cloned_without_token_leak(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    token = "upstream-token-" + secrets.token_hex(8)
    root = tmp_path / "upstream"
    create_bare_repo(root, "org/app.git", {"README.md": "remote project\n"})
    with GitHttpServer(root, token) as server:
        plain_url = server.url("org/app.git")
        url = plain_url.replace("http://", f"http://devaipod:{token}@")

        result = run_devaipod(
            "up",
            url,
            "--image",
            test_image,
            "--name",
            session_name,
            "--agent",
            "sh -c 'cat README.md > seen'",
            "x",
            env=env,
        )
        wait_for_agent_exit(session_name, env)

    seen = podman("exec", f"{session_name}-workspace", "cat", "/workspaces/app/seen").stdout
    inspected = podman(
        "container", "inspect", f"{session_name}-workspace", f"{session_name}-agent"
    ).stdout
    status = run_devaipod("status", session_name, "--json", env=env).stdout
    log_text = (Path(env["DEVAIPOD_STATE_DIR"]) / "devaipod.log").read_text()

    assert seen == "remote project\n"
    assert token not in result.stderr + result.stdout
    assert token not in inspected
    assert token not in status
    assert token not in log_text
    assert json.loads(status)["source"] == plain_url
