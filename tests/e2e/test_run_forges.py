"""`devaipod run <issue URL>` on real podman against a fake GitHub, GitLab and Forgejo.

A scripted agent pushes, comments and opens a draft pull request through the broker
(over REST and over MCP), then tries forbidden operations. The upstream and the fake
forge must receive the allowed operations only. The audit log must record each
decision, and the forge token must stay out of the agent.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devaipod.broker.audit import read_entries, verify_chain
from devaipod.config import ForgeKind
from support.forge_host import (
    AGENT_RESULT,
    ForgeHost,
    commit_files,
    forge_host,
    scripted_agent_files,
)
from support.git_server import list_refs
from support.sessions import labelled_objects, podman, remove_session_objects, run_devaipod

pytestmark = pytest.mark.e2e

TARGET_BRANCH = "devaipod/issue-1"
# Each forge opens its pull request over one transport and tries the second over the other.
PR_TRANSPORT: dict[ForgeKind, str] = {"github": "rest", "gitlab": "mcp", "forgejo": "mcp"}
RUN_TIMEOUT_SECONDS = 100


@pytest.fixture(params=["github", "gitlab", "forgejo"])
def host(request: pytest.FixtureRequest, tmp_path: Path, test_image: str,
         podman_env: dict[str, str]) -> Iterator[ForgeHost]:
    kind: ForgeKind = request.param
    with forge_host(kind, tmp_path / "forge", test_image,
                    files={"README.md": "# hello\n"}) as served:
        commit_files(served.bare_repo, scripted_agent_files(
            served, target_branch=TARGET_BRANCH, pr_transport=PR_TRANSPORT[kind]),
            "Add the scripted agent")
        yield served


@pytest.fixture
def session_name(podman_env: dict[str, str]) -> Iterator[str]:
    name = f"devaipod-run-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_session_objects(name)


def agent_result(session: str, run_output: str) -> dict[str, Any]:
    """Read the scripted agent's result file from the session's code volume."""
    read = podman("exec", f"{session}-agent", "cat", AGENT_RESULT, check=False)
    if read.returncode == 0:
        return dict(json.loads(read.stdout))
    # The agent container has stopped, so read the volume on the host.
    for volume in labelled_objects(session)["volumes"]:
        mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout
        candidate = Path(mountpoint.strip()) / AGENT_RESULT
        if candidate.is_file():
            return dict(json.loads(candidate.read_text()))
    logs = podman("logs", "--tail=30", f"{session}-agent", check=False)
    raise AssertionError(f"agent result file not found in {session}: {read.stderr} "
                         f"(run output: {run_output}; agent log: {logs.stdout[-2000:]})")


def gateway_log(session: str) -> str:
    """Return the end of the gateway's log (the broker's warnings), for failure messages."""
    logs = podman("logs", "--tail=40", f"{session}-gateway", check=False)
    return (logs.stdout + logs.stderr)[-4000:]


def token_places(session: str, token: str) -> list[str]:
    """Return where the forge token appears in the session's containers, seen from outside."""
    places: list[str] = []
    for container in labelled_objects(session)["containers"]:
        if token in podman("container", "inspect", container).stdout:
            places.append(f"podman inspect {container}")
        logs = podman("logs", container, check=False)
        if token in logs.stdout + logs.stderr:
            places.append(f"podman logs {container}")
    agent = f"{session}-agent"
    if podman("container", "inspect", "--format", "{{.State.Running}}", agent
              ).stdout.strip() == "true":
        if token in podman("exec", agent, "env").stdout:
            places.append("agent environment")
        environ = podman("exec", agent, "sh", "-c", "cat /proc/*/environ 2>/dev/null; true")
        if token in environ.stdout:
            places.append("agent /proc/*/environ")
        # The token travels on stdin, so it is in no command line.
        found = subprocess.run(
            ["podman", "exec", "-i", agent, "grep", "-rlsF", "-f", "/dev/stdin", "/",
             "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev"],
            input=token + "\n", capture_output=True, text=True, check=False,
            env=dict(os.environ),
        )  # fmt: skip
        places += [f"agent file {path}" for path in found.stdout.splitlines()]
    return places


def test_run_issue_delivers_allowed_only(
    host: ForgeHost, podman_env: dict[str, str], test_image: str, tmp_path: Path,
    session_name: str,
) -> None:
    env = host.run_env(podman_env, test_image, tmp_path / "state")
    refs_before = list_refs(host.bare_repo)
    pr_transport = PR_TRANSPORT[host.kind]

    completed = run_devaipod(
        "run", host.issue_url(), "--agent", "python3 agent.py", "--name", session_name,
        "--image", test_image, "--gateway-base-image", test_image,
        "--timeout", str(RUN_TIMEOUT_SECONDS), "--json",
        env=env, timeout=RUN_TIMEOUT_SECONDS + 120,
    )  # fmt: skip
    summary = json.loads(completed.stdout)
    result = agent_result(session_name, completed.stderr[-500:])
    assert result["error"] is None, result
    steps = {step["step"]: step for step in result["steps"]}

    # The agent saw the broker's variables and its task.
    environment = steps["environment"]["variables"]
    for variable in ("DEVAIPOD_BROKER_URL", "DEVAIPOD_FORGE_API_URL", "DEVAIPOD_MCP_URL",
                     "DEVAIPOD_BROKER_TOKEN", "DEVAIPOD_TASK"):
        assert variable in environment, environment

    # Allowed: the push, the comments and the edits of own comments, one draft PR.
    assert steps["push"]["exit_code"] == 0, (steps["push"], gateway_log(session_name))
    agent_commit = steps["commit"]["oid"]
    refs_after = list_refs(host.bare_repo)
    assert refs_after[f"refs/heads/{TARGET_BRANCH}"] == agent_commit
    assert refs_after["refs/heads/main"] == refs_before["refs/heads/main"]
    assert set(refs_after) == set(refs_before) | {f"refs/heads/{TARGET_BRANCH}"}
    assert steps["rest-comment"]["status"] == 201, steps["rest-comment"]
    assert steps["rest-edit-own-comment"]["status"] == 200, steps["rest-edit-own-comment"]
    assert steps["mcp-initialize"]["server"] == "devaipod-broker", steps["mcp-initialize"]
    assert not steps["mcp-comment"]["is_error"], steps["mcp-comment"]
    assert not steps["mcp-edit-own-comment"]["is_error"], steps["mcp-edit-own-comment"]
    if pr_transport == "mcp":
        assert not steps["pr"]["is_error"], steps["pr"]
        assert steps["second-pr"]["status"] == 403, steps["second-pr"]
    else:
        assert steps["pr"]["status"] == 201, steps["pr"]
        assert steps["second-pr"]["is_error"], steps["second-pr"]

    # Forbidden: the broker denied each one.
    denied_rest = ["rest-non-draft-pr", "rest-pr-from-default-branch",
                   "rest-comment-other-issue", "rest-read-other-issue",
                   "rest-edit-foreign-comment", "rest-sudo"]
    if host.kind == "github":
        denied_rest.append("rest-graphql-mutation")
    for name in denied_rest:
        assert steps[name]["status"] == 403, steps[name]
    assert steps["rest-wrong-credential"]["status"] == 401, steps["rest-wrong-credential"]
    assert steps["mcp-edit-foreign-comment"]["is_error"], steps["mcp-edit-foreign-comment"]
    for name in ("push-other-branch", "push-default-branch"):
        assert steps[name]["exit_code"] != 0, steps[name]
        assert "[remote rejected]" in steps[name]["output"], steps[name]
    # No network besides the broker, and the egress proxy, which denies the forge.
    for name in ("direct-0", "direct-1"):
        assert steps[name]["tcp"].startswith("failed"), steps[name]
        assert steps[name]["via_proxy"] in (None, 403) or str(
            steps[name]["via_proxy"]).startswith("failed"), steps[name]
    search = steps["token-search"]
    assert search["variables"] == [], search
    assert search["env_values"] == [], search
    assert search["proc_environ"] == [], search
    assert search["files"] == [], search

    # The fake forge received the allowed writes and none of the forbidden requests.
    forge = host.forge
    edit = "PUT" if host.kind == "gitlab" else "PATCH"
    writes = [(request.method, request.raw_path) for request in forge.writes()]
    assert [method for method, _ in writes] == ["POST", "POST", edit, "POST", edit], writes
    bodies = [comment.body for comment in forge.comments_on(host.repo_path, host.issue)]
    assert bodies == ["Please fix this soon", "Done (REST).", "Done (MCP)."]
    assert forge.comments_on(host.repo_path, host.other_issue) == []
    pulls = [pull for pull in forge.pull_requests(host.repo_path) if pull.author != "alice"]
    assert [(pull.head, pull.base, pull.draft) for pull in pulls] == [
        (TARGET_BRANCH, "main", True)]
    forbidden = [request for request in forge.requests
                 if "Sudo" in request.headers or request.raw_path.endswith("/graphql")
                 or f"/issues/{host.other_issue}" in request.raw_path
                 or f"/{host.foreign_comment}" in request.raw_path]
    assert forbidden == []

    # The audit log has an allow line for each allowed operation and a deny line for each
    # forbidden one.
    audit_log = Path(summary["audit_log"])
    assert verify_chain(audit_log).ok
    entries = read_entries(audit_log)
    allowed = {(entry["kind"], entry.get("operation")) for entry in entries
               if entry["decision"] == "allow"}
    pr_kind = "mcp" if pr_transport == "mcp" else "api"
    for operation in [("api", "create-comment"), ("api", "edit-comment"),
                      ("mcp", "create-comment"), ("mcp", "edit-comment"),
                      (pr_kind, "create-pull-request")]:
        assert operation in allowed, (operation, allowed)
    allowed_refs = {entry.get("ref") for entry in entries
                    if entry["kind"] == "git-push" and entry["decision"] == "allow"}
    assert f"refs/heads/{TARGET_BRANCH}" in allowed_refs
    denied = [entry for entry in entries if entry["decision"] == "deny"]
    denied_pushes = [entry for entry in denied if entry["kind"] == "git-push"]
    assert {entry.get("ref") for entry in denied_pushes} >= {"refs/heads/other",
                                                             "refs/heads/main"}, denied_pushes
    denied_api = [entry for entry in denied if entry["kind"] == "api"]
    denied_mcp = [entry for entry in denied if entry["kind"] == "mcp"]
    second_pr_rest = pr_transport == "mcp"
    # The REST denials, the wrong credential, and the second PR when it went over REST.
    assert len(denied_api) == len(denied_rest) + 1 + second_pr_rest, denied_api
    assert len(denied_mcp) == 1 + (not second_pr_rest), denied_mcp
    api_operations = {entry.get("operation") for entry in denied_api}
    assert {"create-comment", "read-issue", "edit-comment",
            "create-pull-request"} <= api_operations, api_operations
    if host.kind == "github":
        assert "graphql" in api_operations
    # The direct attempts through the egress proxy, which `--network proxy` (the default)
    # serves.
    denied_egress = [entry for entry in denied if entry["kind"] == "egress"]
    assert len(denied_egress) == 2, denied_egress
    assert all(host.address in str(entry["reason"]) for entry in denied_egress), denied_egress

    # `run --json` lists the push, the pull request and the comments.
    assert summary["forge"] == host.kind
    assert summary["repository"] == host.repo_path
    assert summary["branch"] == TARGET_BRANCH
    assert summary["base_branch"] == "main"
    assert summary["agent_exit_code"] == 0
    assert {"ref": f"refs/heads/{TARGET_BRANCH}", "new_oid": agent_commit} in summary["pushes"]
    assert [pull["number"] for pull in summary["pull_requests"]] == [pulls[0].number]
    comment_ids = {comment["id"] for comment in summary["comments"]}
    assert comment_ids == {steps["rest-comment"]["id"], steps["mcp-comment"]["id"]}
    assert summary["denied"] == len(denied)

    # The forge token is nowhere in the agent, nor in any inspect, log or state file.
    assert token_places(session_name, host.token) == []
    assert host.token not in completed.stdout + completed.stderr
    state_files = [path for path in (tmp_path / "state").rglob("*") if path.is_file()]
    assert len(state_files) >= 3  # at least the audit log, the scope and devaipod.log
    for path in state_files:
        assert host.token.encode() not in path.read_bytes(), f"token in {path}"

    run_devaipod("delete", "--force", session_name, env=env)
    assert labelled_objects(session_name) == {
        "containers": [], "volumes": [], "networks": [], "secrets": []
    }  # fmt: skip
    assert podman("pod", "exists", f"{session_name}-pod", check=False).returncode != 0


@pytest.fixture
def gitlab_host(tmp_path: Path, test_image: str, podman_env: dict[str, str]
                ) -> Iterator[ForgeHost]:
    with forge_host("gitlab", tmp_path / "forge", test_image,
                    files={"README.md": "# hello\n"}) as served:
        commit_files(served.bare_repo, scripted_agent_files(
            served, target_branch="feature", pr_transport="mcp", on_pull_request=True),
            "Add the scripted agent", branch="feature")
        yield served


def test_run_merge_request_pushes_head(
    gitlab_host: ForgeHost, podman_env: dict[str, str], test_image: str, tmp_path: Path,
    session_name: str,
) -> None:
    host = gitlab_host
    env = host.run_env(podman_env, test_image, tmp_path / "state")
    refs_before = list_refs(host.bare_repo)

    completed = run_devaipod(
        "run", host.pull_request_url(), "--agent", "python3 agent.py", "--name", session_name,
        "--image", test_image, "--gateway-base-image", test_image, "--network", "none",
        "--timeout", str(RUN_TIMEOUT_SECONDS), "--json",
        env=env, timeout=RUN_TIMEOUT_SECONDS + 120,
    )  # fmt: skip
    summary = json.loads(completed.stdout)
    result = agent_result(session_name, completed.stderr[-500:])
    assert result["error"] is None, result
    steps = {step["step"]: step for step in result["steps"]}

    # The merge request's head branch is in the same project, so the agent pushes there.
    assert summary["branch"] == "feature"
    assert steps["push"]["exit_code"] == 0, (steps["push"], gateway_log(session_name))
    agent_commit = steps["commit"]["oid"]
    refs_after = list_refs(host.bare_repo)
    assert refs_after["refs/heads/feature"] == agent_commit
    assert refs_after["refs/heads/main"] == refs_before["refs/heads/main"]
    assert set(refs_after) == set(refs_before)
    assert {"ref": "refs/heads/feature", "new_oid": agent_commit} in summary["pushes"]

    # Comments go to the merge request. The scope allows no new merge request.
    assert steps["rest-comment"]["status"] == 201, steps["rest-comment"]
    assert not steps["mcp-comment"]["is_error"], steps["mcp-comment"]
    assert steps["pr"]["is_error"], steps["pr"]
    for name in ("second-pr", "rest-non-draft-pr", "rest-pr-from-default-branch",
                 "rest-comment-other-issue", "rest-edit-foreign-comment", "rest-sudo"):
        assert steps[name]["status"] == 403, steps[name]
    assert steps["mcp-edit-foreign-comment"]["is_error"], steps["mcp-edit-foreign-comment"]
    # With --network none there is no egress proxy either.
    for name in ("direct-0", "direct-1"):
        assert steps[name]["tcp"].startswith("failed"), steps[name]
        assert steps[name]["via_proxy"] is None, steps[name]

    forge = host.forge
    writes = [(request.method, request.raw_path) for request in forge.writes()]
    assert [method for method, _ in writes] == ["POST", "POST", "PUT", "PUT"], writes
    assert all("/merge_requests/" in path for _, path in writes), writes
    on_merge_request = forge.comments_on(host.repo_path, host.pull_request,
                                         on_merge_request=True)
    assert [comment.body for comment in on_merge_request] == [
        "Looks good", "Done (REST).", "Done (MCP)."]
    on_issue = forge.comments_on(host.repo_path, host.issue)
    assert [comment.body for comment in on_issue] == ["Please fix this soon"]
    assert [pull.author for pull in forge.pull_requests(host.repo_path)] == ["alice"]
    assert summary["pull_requests"] == []
    comment_ids = {comment["id"] for comment in summary["comments"]}
    assert comment_ids == {steps["rest-comment"]["id"], steps["mcp-comment"]["id"]}

    run_devaipod("delete", "--force", session_name, env=env)
    assert labelled_objects(session_name)["containers"] == []
