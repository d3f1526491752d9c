"""Finding commits that exist only in the session, without running anything the agent planted."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from devaipod.runtime.plan import CodeSource
from devaipod.session.code import clone_source, resolve_source
from devaipod.session.unpushed import find_unpushed_commits


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class DirectoryVolumeEngine:
    """Stands in for an engine whose code volume is a directory on the host."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree

    def export_volume(self, volume: str, tar_path: Path) -> None:
        with tarfile.open(tar_path, "w") as archive:
            for child in sorted(self.tree.iterdir()):
                archive.add(child, arcname=child.name)


@pytest.fixture
def session(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    host = tmp_path / "host"
    host.mkdir()
    git(host, "init", "-q", "-b", "main")
    (host / "README").write_text("hello\n")
    git(host, "add", "README")
    git(host, "commit", "-qm", "init")
    cloned = clone_source(resolve_source(str(host)), tmp_path / "scratch")
    return host, cloned.path, list(cloned.base_tips)


def agent_commit(repo: Path, text: str) -> str:
    (repo / "README").write_text(text)
    git(repo, "commit", "-qam", text)
    return git(repo, "rev-parse", "HEAD")


def test_no_new_commits_nothing_unpushed(session: tuple[Path, Path, list[str]]) -> None:
    host, code, base = session
    engine = DirectoryVolumeEngine(code)

    assert find_unpushed_commits(engine, "v", base, CodeSource("local", str(host))) == []  # type: ignore[arg-type]


def test_agent_commits_reported(session: tuple[Path, Path, list[str]]) -> None:
    host, code, base = session
    first = agent_commit(code, "one")
    second = agent_commit(code, "two")
    engine = DirectoryVolumeEngine(code)

    found = find_unpushed_commits(engine, "v", base, CodeSource("local", str(host)))  # type: ignore[arg-type]

    assert found == [second, first]


def test_commits_in_source_count_as_saved(session: tuple[Path, Path, list[str]]) -> None:
    host, code, base = session
    agent_commit(code, "one")
    git(host, "fetch", "-q", str(code), "main:saved")
    engine = DirectoryVolumeEngine(code)

    found = find_unpushed_commits(engine, "v", base, CodeSource("local", str(host)))  # type: ignore[arg-type]

    assert found == []


def test_planted_hooks_and_fsmonitor_never_run(
    session: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    host, code, base = session
    agent_commit(code, "one")
    marker = tmp_path / "hook-ran"
    script = f"#!/bin/sh\necho ran >> {marker}\n"
    for hook in ("post-checkout", "reference-transaction", "pre-auto-gc", "post-index-change"):
        path = code / ".git" / "hooks" / hook
        path.write_text(script)
        path.chmod(0o755)
    fsmonitor = code / ".git" / "fsmonitor.sh"
    fsmonitor.write_text(script)
    fsmonitor.chmod(0o755)
    git(code, "config", "core.fsmonitor", str(fsmonitor))
    git(code, "config", "core.hooksPath", str(code / ".git" / "hooks"))
    (code / ".git" / "objects" / "info" / "alternates").write_text("/etc\n")
    engine = DirectoryVolumeEngine(code)

    found = find_unpushed_commits(engine, "v", base, CodeSource("local", str(host)))  # type: ignore[arg-type]

    assert len(found) == 1
    assert not marker.exists()
