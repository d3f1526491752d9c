"""The scripted agent of the `run` e2e tests, on the host against the standalone broker.

Checks the forge host on podman's bridge address and each step of the scripted agent
without `run`. Allowed steps must reach the fake forge, and forbidden ones must not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devaipod.broker.audit import read_entries
from devaipod.config import ForgeKind, parse_config
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope
from devaipod.scope.model import dump_scope
from support.forge_host import (
    AGENT_RESULT,
    ForgeHost,
    commit_files,
    forge_host,
    scripted_agent_files,
)
from support.git_server import isolated_git_env, list_refs, run_git

pytestmark = pytest.mark.e2e

TARGET_BRANCH = "devaipod/issue-1"


@pytest.fixture(params=["github", "gitlab", "forgejo"])
def host(request: pytest.FixtureRequest, tmp_path: Path, test_image: str,
         podman_env: dict[str, str]) -> Iterator[ForgeHost]:
    kind: ForgeKind = request.param
    with forge_host(kind, tmp_path / "forge", test_image,
                    files={"README.md": "# hello\n"}) as served:
        yield served


@pytest.fixture
def broker_url(host: ForgeHost, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """Run `devaipod broker` on 127.0.0.1 for the host's issue; yield URL, credential, audit log."""
    config = parse_config(host.config_file.read_text(), "test config")
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(dump_scope(derive_scope(parse_forge_url(host.issue_url(), config))))
    audit_log = tmp_path / "audit.jsonl"
    credential_file = tmp_path / "credential"
    env = {**os.environ, "DEVAIPOD_FORGE_TOKEN": host.token,
           "DEVAIPOD_CONFIG": str(host.config_file),
           "DEVAIPOD_STATE_DIR": str(tmp_path / "state")}
    stderr_path = tmp_path / "broker.stderr"
    command = [sys.executable, "-m", "devaipod", "broker", "--scope", str(scope_file),
               "--listen", "127.0.0.1:0", "--audit-log", str(audit_log),
               "--credential-file", str(credential_file),
               "--state-dir", str(tmp_path / "broker-state"), "--json"]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                   text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"broker exited early:\n{stderr_path.read_text()}"
        ready = json.loads(line)
        yield str(ready["url"]), credential_file.read_text().strip(), audit_log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_scripted_agent_standalone_broker(
    host: ForgeHost, broker_url: tuple[str, str, Path], tmp_path: Path
) -> None:
    url, credential, audit_log = broker_url
    pr_transport = "mcp" if host.kind == "gitlab" else "rest"
    commit_files(host.bare_repo, scripted_agent_files(
        host, target_branch=TARGET_BRANCH, pr_transport=pr_transport, scan_files=False),
        "Add the scripted agent")
    main_before = list_refs(host.bare_repo)["refs/heads/main"]

    clone = tmp_path / "clone"
    git_env = isolated_git_env(tmp_path)
    header = f"http.{url}/.extraHeader=Authorization: Bearer {credential}"
    origin = f"{url}/git/{host.host_key}/{host.repo_path}.git"
    run_git("-c", header, "clone", "--quiet", origin, str(clone), env=git_env)
    run_git("config", f"http.{url}/.extraHeader", f"Authorization: Bearer {credential}",
            cwd=clone, env=git_env)
    run_git("config", "remote.origin.push", f"HEAD:refs/heads/{TARGET_BRANCH}", cwd=clone,
            env=git_env)
    run_git("checkout", "--quiet", "-b", TARGET_BRANCH, cwd=clone, env=git_env)

    agent_env = {
        **git_env,
        "DEVAIPOD_BROKER_URL": url,
        "DEVAIPOD_FORGE_API_URL": f"{url}/api/{host.host_key}",
        "DEVAIPOD_MCP_URL": f"{url}/mcp",
        "DEVAIPOD_BROKER_TOKEN": credential,
        "DEVAIPOD_TASK": "Greet the reader.",
    }
    agent_env = {k: v for k, v in agent_env.items() if "proxy" not in k.lower()}
    completed = subprocess.run([sys.executable, "agent.py"], cwd=clone, env=agent_env,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads((clone / AGENT_RESULT).read_text())
    steps = {step["step"]: step for step in result["steps"]}

    # Allowed steps reached the forge, and the branch arrived upstream.
    assert steps["push"]["exit_code"] == 0, steps["push"]
    assert list_refs(host.bare_repo)[f"refs/heads/{TARGET_BRANCH}"] == steps["commit"]["oid"]
    assert steps["rest-comment"]["status"] == 201
    assert steps["mcp-initialize"]["server"] == "devaipod-broker"
    assert "comment" in steps["mcp-tools"]["tools"]
    assert not steps["mcp-comment"]["is_error"], steps["mcp-comment"]
    assert not steps["mcp-edit-own-comment"]["is_error"], steps["mcp-edit-own-comment"]
    assert steps["rest-edit-own-comment"]["status"] == 200
    if pr_transport == "mcp":
        assert not steps["pr"]["is_error"], steps["pr"]
        assert steps["second-pr"]["status"] == 403
    else:
        assert steps["pr"]["status"] == 201, steps["pr"]
        assert steps["second-pr"]["is_error"]
    # Forbidden steps were denied.
    for name in ("rest-non-draft-pr", "rest-pr-from-default-branch",
                 "rest-comment-other-issue", "rest-read-other-issue",
                 "rest-edit-foreign-comment", "rest-sudo"):
        assert steps[name]["status"] == 403, steps[name]
    assert steps["rest-wrong-credential"]["status"] == 401
    assert steps["mcp-edit-foreign-comment"]["is_error"]
    if host.kind == "github":
        assert steps["rest-graphql-mutation"]["status"] == 403
    for name in ("push-other-branch", "push-default-branch"):
        assert steps[name]["exit_code"] != 0, steps[name]
    assert list_refs(host.bare_repo)["refs/heads/main"] == main_before
    assert "refs/heads/other" not in list_refs(host.bare_repo)
    # Nothing isolates an agent on the host, so the direct probes connect. This shows
    # that they can tell a reachable forge from an unreachable one.
    assert steps["direct-0"]["tcp"] == "connected"
    assert steps["direct-1"]["tcp"] == "connected"
    assert steps["token-search"]["variables"] == []
    assert steps["token-search"]["env_values"] == []

    # The fake forge saw the allowed writes only.
    forge = host.forge
    edit = "PUT" if host.kind == "gitlab" else "PATCH"
    writes = [(request.method, request.raw_path) for request in forge.writes()]
    assert [method for method, _ in writes] == ["POST", "POST", edit, "POST", edit], writes
    comments = forge.comments_on(host.repo_path, host.issue)
    assert [comment.body for comment in comments] == [
        "Please fix this soon", "Done (REST).", "Done (MCP)."]
    assert forge.comments_on(host.repo_path, host.other_issue) == []
    pulls = [pull for pull in forge.pull_requests(host.repo_path) if pull.author != "alice"]
    assert [(pull.head, pull.base, pull.draft) for pull in pulls] == [
        (TARGET_BRANCH, "main", True)]
    assert not [request for request in forge.requests
                if "Sudo" in request.headers or request.raw_path.endswith("/graphql")
                or f"/issues/{host.other_issue}" in request.raw_path]

    decisions = [(entry["kind"], entry.get("operation"), entry["decision"])
                 for entry in read_entries(audit_log)]
    assert decisions.count(("git-push", None, "deny")) >= 2, decisions
