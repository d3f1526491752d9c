"""The broker rejects pushes whose new commits change CI configuration, between the real
git client and a real `git http-backend` upstream."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devaipod.broker.audit import AuditLog, read_entries
from devaipod.broker.server import BrokerConfig, start_broker
from devaipod.scope.model import parse_scope
from support.git_server import (
    GIT_IDENTITY_ENV,
    GitHttpServer,
    create_bare_repo,
    isolated_git_env,
    list_refs,
    run_git,
)

pytestmark = pytest.mark.e2e

UPSTREAM_TOKEN = "upstream-token-c1e5b7f3a9"
CREDENTIAL = "ci-session-credential"
TARGET_BRANCH = "devaipod/issue-3"
TARGET_REF = f"refs/heads/{TARGET_BRANCH}"
REPO_NAME = "org/repo.git"
UPSTREAM_FILES: dict[str, bytes | str] = {
    "README.md": "hello\n",
    ".github/workflows/ci.yml": "on: push\n",
}


@dataclass
class Setup:
    upstream: GitHttpServer
    work: Path
    env: dict[str, str]
    audit_log: Path

    @property
    def bare(self) -> Path:
        return self.upstream.root / REPO_NAME

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        run_git("add", "--all", cwd=self.work, env=self.env)
        run_git("commit", "--quiet", "-m", message, cwd=self.work, env=self.env)
        return run_git("rev-parse", "HEAD", cwd=self.work, env=self.env).stdout.strip()

    async def push(self) -> subprocess.CompletedProcess[str]:
        command = ["git", "push", "origin", f"HEAD:{TARGET_REF}"]
        return await asyncio.to_thread(
            subprocess.run, command, cwd=self.work, env=self.env, capture_output=True,
            text=True, check=False,
        )  # fmt: skip

    def push_decisions(self) -> list[dict[str, object]]:
        return [
            entry
            for entry in read_entries(self.audit_log)
            if entry.get("ref") == TARGET_REF and "upstream_status" not in entry
        ]


async def _start(tmp_path: Path, output: dict[str, object]) -> AsyncIterator[Setup]:
    root = tmp_path / "upstream"
    create_bare_repo(root, REPO_NAME, UPSTREAM_FILES)
    upstream = GitHttpServer(root, UPSTREAM_TOKEN).start()
    audit_log = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_log, "ci", secrets=[UPSTREAM_TOKEN, CREDENTIAL])
    scope = parse_scope(
        {"repos": [{"input": {"url": upstream.url(REPO_NAME), "allowHttp": True},
                    "output": {"targetBranch": TARGET_BRANCH, **output}}]},
        "test",
    )  # fmt: skip
    config = BrokerConfig(scope=scope, session="ci", session_credential=CREDENTIAL,
                          upstream_token=UPSTREAM_TOKEN, audit_log=audit,
                          state_dir=tmp_path / "state")  # fmt: skip
    try:
        running = await start_broker(config)
    except BaseException:
        audit.close()
        upstream.stop()
        raise
    try:
        env = {**isolated_git_env(tmp_path / "home"), **GIT_IDENTITY_ENV}
        env["GIT_CONFIG_COUNT"] = "1"
        env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
        env["GIT_CONFIG_VALUE_0"] = f"Authorization: Bearer {CREDENTIAL}"
        work = tmp_path / "work"
        url = f"{running.url}/git/127.0.0.1:{upstream.port}/{REPO_NAME}"
        await asyncio.to_thread(run_git, "clone", "--quiet", url, str(work), env=env)
        yield Setup(upstream, work, env, audit_log)
    finally:
        await running.stop()
        audit.close()
        upstream.stop()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async for started in _start(tmp_path, {}):
        yield started


@pytest.fixture
async def ci_allowed(tmp_path: Path) -> AsyncIterator[Setup]:
    async for started in _start(tmp_path, {"allowCiChanges": True}):
        yield started


async def test_new_branch_adding_workflow_rejected(setup: Setup) -> None:
    setup.commit({"src/app.py": "print(1)\n"}, "Add code")
    setup.commit({".forgejo/workflows/leak.yml": "on: push\n"}, "Add CI")

    pushed = await setup.push()

    assert pushed.returncode != 0
    assert "[remote rejected]" in pushed.stderr
    assert ".forgejo/workflows/leak.yml" in pushed.stderr
    assert TARGET_REF not in list_refs(setup.bare)
    [decision] = setup.push_decisions()
    assert decision["decision"] == "deny"
    assert "CI configuration .forgejo/workflows/leak.yml" in str(decision["reason"])
    assert setup.upstream.receive_pack_posts() == []


async def test_update_changing_existing_workflow_rejected(setup: Setup) -> None:
    first = setup.commit({"src/app.py": "print(1)\n"}, "Add code")
    created = await setup.push()
    assert created.returncode == 0, created.stderr
    setup.commit({".github/workflows/ci.yml": "on: push\njobs: {leak: {}}\n"}, "Change CI")
    setup.commit({".GitHub/Workflows/CI.yml": "on: push\n"}, "Add a second workflow")

    updated = await setup.push()

    assert updated.returncode != 0
    assert "[remote rejected]" in updated.stderr
    assert list_refs(setup.bare)[TARGET_REF] == first
    decisions = setup.push_decisions()
    assert [entry["decision"] for entry in decisions] == ["allow", "deny"]
    # The newest offending commit is named first.
    assert ".GitHub/Workflows/CI.yml" in str(decisions[-1]["reason"])


async def test_push_keeping_upstream_workflows_allowed(setup: Setup) -> None:
    # The clone contains the upstream's workflow, and commits that leave it alone pass.
    # So does a path that only looks like a CI folder.
    tip = setup.commit({".github/workflows-old/x.yml": "old\n", "README.md": "hi\n"},
                       "Edit docs")  # fmt: skip

    pushed = await setup.push()

    assert pushed.returncode == 0, pushed.stderr
    assert list_refs(setup.bare)[TARGET_REF] == tip


async def test_scope_allowing_ci_changes_lets_push(ci_allowed: Setup) -> None:
    tip = ci_allowed.commit({".gitlab-ci.yml": "test: {script: [make]}\n"}, "Add CI")

    pushed = await ci_allowed.push()

    assert pushed.returncode == 0, pushed.stderr
    assert list_refs(ci_allowed.bare)[TARGET_REF] == tip
