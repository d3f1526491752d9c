"""The pack quarantine's listing of the paths that a push's new commits change, on real git."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from devaipod.broker.mirror import MirrorError, PackQuarantine, RepoMirror
from devaipod.broker.ref_policy import is_ci_path
from support.git_server import GIT_IDENTITY_ENV, isolated_git_env, run_git


@dataclass
class Setup:
    work: Path
    mirror: RepoMirror
    quarantine: PackQuarantine
    spool: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        return run_git(*args, cwd=self.work, env=self.env).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def publish(self, ref: str = "refs/heads/main") -> None:
        """Push HEAD into the mirror, as if the upstream had it and the mirror fetched it."""
        self.git("push", "--quiet", str(self.mirror.path), f"HEAD:{ref}")

    def receive(self, tip: str) -> None:
        """Index a pack of what `tip` has beyond the mirror's refs, as a push would send."""
        known = run_git(
            "for-each-ref",
            "--format=%(objectname)",
            env={**self.env, "GIT_DIR": str(self.mirror.path)},
        ).stdout.split()
        revs = "".join([f"{tip}\n", *(f"^{oid}\n" for oid in known)])
        pack = subprocess.run(
            ["git", "pack-objects", "--revs", "--stdout", "--thin", "--quiet"],
            cwd=self.work, env=self.env, input=revs.encode(), capture_output=True, check=True,
        ).stdout  # fmt: skip
        self.spool.write_bytes(b"head" + pack)
        self.quarantine.index_pack(self.spool, 4)

    def first_ci_path(self, tip: str) -> str | None:
        return self.quarantine.first_changed_path(tip, is_ci_path)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    env = {**isolated_git_env(tmp_path / "home"), **GIT_IDENTITY_ENV}
    work = tmp_path / "work"
    run_git("init", "--quiet", "-b", "main", str(work), env=env)
    mirror = RepoMirror(tmp_path / "state", "http://127.0.0.1:9/org/repo.git")
    mirror.ensure()
    quarantine_dir = tmp_path / "push"
    quarantine_dir.mkdir()
    result = Setup(work, mirror, PackQuarantine(mirror, quarantine_dir),
                   tmp_path / "spool", env)  # fmt: skip
    (work / "README.md").write_text("hello\n")
    (work / "scripts").mkdir()
    (work / "scripts" / "test.sh").write_text("true\n")
    result.commit("Initial")
    result.publish()
    return result


def _write(work: Path, path: str, content: str = "on: push\n") -> None:
    target = work / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)


def test_added_workflow_is_found(setup: Setup) -> None:
    _write(setup.work, "src/app.py", "print(1)\n")
    setup.commit("Code")
    _write(setup.work, ".GitHub/Workflows/x.yml")
    tip = setup.commit("Add CI")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".GitHub/Workflows/x.yml"


def test_plain_commits_find_nothing(setup: Setup) -> None:
    _write(setup.work, ".github/workflows-old/x.yml")
    _write(setup.work, ".github/dependabot.yml")
    tip = setup.commit("Not CI")
    setup.receive(tip)

    assert setup.first_ci_path(tip) is None


def test_workflow_added_then_removed_found(setup: Setup) -> None:
    _write(setup.work, ".forgejo/workflows/leak.yml")
    setup.commit("Add CI")
    setup.git("rm", "--quiet", "-r", ".forgejo")
    tip = setup.commit("Remove CI")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".forgejo/workflows/leak.yml"


def test_rename_into_ci_folder_found(setup: Setup) -> None:
    (setup.work / ".github" / "workflows").mkdir(parents=True)
    setup.git("mv", "scripts/test.sh", ".github/workflows/test.yml")
    tip = setup.commit("Move a script into CI")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".github/workflows/test.yml"


def test_deleted_workflow_found(setup: Setup) -> None:
    _write(setup.work, ".gitlab-ci.yml", "test: {script: [make]}\n")
    setup.commit("Upstream CI")
    setup.publish()
    setup.git("rm", "--quiet", ".gitlab-ci.yml")
    tip = setup.commit("Drop CI")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".gitlab-ci.yml"


def test_symlink_named_github_found(setup: Setup) -> None:
    (setup.work / "ci").mkdir()
    _write(setup.work, "ci/workflows/x.yml")
    (setup.work / ".github").symlink_to("ci")
    tip = setup.commit("Link CI")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".github"


def test_submodule_named_github_found(setup: Setup) -> None:
    # A gitlink entry, as `git submodule add` writes it, without fetching anything.
    head = setup.git("rev-parse", "HEAD")
    setup.git("update-index", "--add", "--cacheinfo", f"160000,{head},.github")
    setup.git("commit", "--quiet", "-m", "Submodule at .github")
    tip = setup.git("rev-parse", "HEAD")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".github"


def test_merge_of_upstream_ci_change_allowed(setup: Setup) -> None:
    base = setup.git("rev-parse", "HEAD")
    _write(setup.work, ".github/workflows/ci.yml")
    setup.commit("Upstream adds CI")
    setup.publish()
    setup.git("checkout", "--quiet", "-b", "topic", base)
    _write(setup.work, "src/app.py", "print(2)\n")
    setup.commit("Agent work")
    setup.git("merge", "--quiet", "--no-edit", "main")
    tip = setup.git("rev-parse", "HEAD")
    setup.receive(tip)

    assert setup.first_ci_path(tip) is None


def test_evil_merge_changing_workflow_found(setup: Setup) -> None:
    base = setup.git("rev-parse", "HEAD")
    _write(setup.work, ".github/workflows/ci.yml")
    setup.commit("Upstream adds CI")
    setup.publish()
    setup.git("checkout", "--quiet", "-b", "topic", base)
    _write(setup.work, "src/app.py", "print(2)\n")
    setup.commit("Agent work")
    setup.git("merge", "--quiet", "--no-commit", "main")
    _write(setup.work, ".github/workflows/ci.yml", "on: push\njobs: {leak: {}}\n")
    tip = setup.commit("Merge main")
    setup.receive(tip)

    assert setup.first_ci_path(tip) == ".github/workflows/ci.yml"


def test_missing_commit_raises(setup: Setup) -> None:
    with pytest.raises(MirrorError):
        setup.first_ci_path("5" * 40)


def test_non_oid_argument_raises(setup: Setup) -> None:
    with pytest.raises(MirrorError):
        setup.first_ci_path("--all")
