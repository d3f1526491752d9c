"""The push policy pieces between a real `git push` and a real `git receive-pack`.

The push goes over git's local pipe transport through tests/support/policy_receive_pack.py,
so git's own output shows what the policy and report-status encoding produce.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

TARGET_BRANCH = "devaipod/issue-42"
TARGET_REF = f"refs/heads/{TARGET_BRANCH}"
SUPPORT = Path(__file__).resolve().parents[1] / "support"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Repos:
    upstream: Path
    work: Path

    def git(self, *args: str, check: bool = True, allow_force: bool = False) -> str:
        env = {
            **os.environ,
            **GIT_ENV,
            "DEVAIPOD_TEST_TARGET_BRANCH": TARGET_BRANCH,
            "DEVAIPOD_TEST_CLIENT_REPO": str(self.work),
        }
        if allow_force:
            env["DEVAIPOD_TEST_ALLOW_FORCE"] = "1"
        result = subprocess.run(
            ["git", *args], cwd=self.work, env=env, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {args} failed: {result.stderr}")
        return result.stdout + result.stderr

    def push(self, *args: str, allow_force: bool = False) -> str:
        program = (
            f"{shlex.quote(sys.executable)} {shlex.quote(str(SUPPORT / 'policy_receive_pack.py'))}"
        )
        return self.git(
            "push",
            f"--receive-pack={program}",
            "origin",
            *args,
            check=False,
            allow_force=allow_force,
        )

    def upstream_refs(self) -> dict[str, str]:
        result = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname) %(objectname)"],
            cwd=self.upstream,
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(line.split(" ", 1) for line in result.stdout.splitlines())

    def commit(self, name: str) -> None:
        (self.work / name).write_text(name + "\n")
        self.git("add", name)
        self.git("commit", "-q", "-m", f"add {name}")


@pytest.fixture
def repos(tmp_path: Path) -> Iterator[Repos]:
    upstream = tmp_path / "upstream.git"
    work = tmp_path / "work"
    subprocess.run(
        ["git", "init", "-q", "--bare", str(upstream)], check=True, env={**os.environ, **GIT_ENV}
    )
    subprocess.run(
        ["git", "init", "-q", "-b", "main", str(work)], check=True, env={**os.environ, **GIT_ENV}
    )
    repos = Repos(upstream=upstream, work=work)
    repos.git("remote", "add", "origin", str(upstream))
    repos.commit("README.md")
    repos.git("push", "-q", "origin", "main")
    repos.git("switch", "-q", "-c", TARGET_BRANCH)
    yield repos


def test_push_creates_target_branch(repos: Repos) -> None:
    repos.commit("a.txt")

    output = repos.push(TARGET_BRANCH)

    assert "[new branch]" in output
    assert repos.upstream_refs()[TARGET_REF] == repos.git("rev-parse", "HEAD").strip()


def test_push_fast_forward_lands(repos: Repos) -> None:
    repos.commit("a.txt")
    repos.push(TARGET_BRANCH)
    repos.commit("b.txt")

    output = repos.push(TARGET_BRANCH)

    assert "rejected" not in output
    assert repos.upstream_refs()[TARGET_REF] == repos.git("rev-parse", "HEAD").strip()


def test_push_adding_workflow_rejected(repos: Repos) -> None:
    repos.commit("a.txt")
    (repos.work / ".gitea" / "workflows").mkdir(parents=True)
    repos.commit(".gitea/workflows/ci.yml")

    output = repos.push(TARGET_BRANCH)

    assert f"! [remote rejected] {TARGET_BRANCH} -> {TARGET_BRANCH}" in output
    assert "changes CI configuration .gitea/workflows/ci.yml" in output
    assert TARGET_REF not in repos.upstream_refs()


def test_push_to_main_rejected(repos: Repos) -> None:
    before = repos.upstream_refs()
    repos.commit("a.txt")

    output = repos.push(f"{TARGET_BRANCH}:main")

    assert (
        f"! [remote rejected] {TARGET_BRANCH} -> main (devaipod: only {TARGET_REF} may be pushed)"
        in output
    )
    assert repos.upstream_refs() == before


def test_push_tag_rejected(repos: Repos) -> None:
    repos.git("tag", "v1")

    output = repos.push("v1")

    assert "! [remote rejected] v1 -> v1 (devaipod: tags may not be pushed)" in output
    assert "refs/tags/v1" not in repos.upstream_refs()


def test_force_push_rejected(repos: Repos) -> None:
    repos.commit("a.txt")
    repos.push(TARGET_BRANCH)
    landed = repos.upstream_refs()[TARGET_REF]
    repos.git("commit", "-q", "--amend", "-m", "rewritten")

    output = repos.push("--force", TARGET_BRANCH)

    assert "(devaipod: non-fast-forward (force push) not allowed)" in output
    assert repos.upstream_refs()[TARGET_REF] == landed


def test_force_push_allowed_by_scope(repos: Repos) -> None:
    repos.commit("a.txt")
    repos.push(TARGET_BRANCH)
    repos.git("commit", "-q", "--amend", "-m", "rewritten")

    output = repos.push("--force", TARGET_BRANCH, allow_force=True)

    assert "forced update" in output
    assert repos.upstream_refs()[TARGET_REF] == repos.git("rev-parse", "HEAD").strip()


def test_delete_branch_rejected(repos: Repos) -> None:
    repos.commit("a.txt")
    repos.push(TARGET_BRANCH)

    output = repos.push("--delete", TARGET_BRANCH)

    assert "(devaipod: deleting refs is not allowed)" in output
    assert TARGET_REF in repos.upstream_refs()


def test_mixed_push_rejected_whole(repos: Repos) -> None:
    before = repos.upstream_refs()
    repos.commit("a.txt")

    output = repos.push(TARGET_BRANCH, f"{TARGET_BRANCH}:refs/heads/other")

    assert "atomic push rejected because refs/heads/other was rejected" in output
    assert repos.upstream_refs() == before


def test_matching_push_skips_hidden_refs(repos: Repos) -> None:
    repos.commit("a.txt")
    repos.push(TARGET_BRANCH)
    main_before = repos.upstream_refs()["refs/heads/main"]
    repos.commit("b.txt")
    repos.git("switch", "-q", "main")
    repos.commit("c.txt")

    output = repos.push(":")

    assert "main" not in output.replace(TARGET_BRANCH, "")
    assert repos.upstream_refs()["refs/heads/main"] == main_before
    assert repos.upstream_refs()[TARGET_REF] == repos.git("rev-parse", TARGET_BRANCH).strip()
