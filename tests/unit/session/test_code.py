"""Host-side cloning of the session source: commits, worktrees, dirty trees, URL forms."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from devaipod.errors import UserError
from devaipod.session.code import check_clean, clone_source, resolve_source, write_tar
from devaipod.session.safe_git import redact_url


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-qm", "init")
    return path


@pytest.mark.parametrize(
    "url",
    ["https://example.com/o/r.git", "ssh://git@example.com/o/r", "git@example.com:o/r.git"],
)
def test_git_urls_are_remote(url: str) -> None:
    assert resolve_source(url).kind == "remote"


def test_subdirectory_resolves_to_toplevel(repo: Path) -> None:
    (repo / "sub").mkdir()

    assert resolve_source(str(repo / "sub")).location == str(repo)


def test_missing_path_rejected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither"):
        resolve_source(str(tmp_path / "nope"))


def test_non_repository_rejected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not inside a git repository"):
        resolve_source(str(tmp_path))


def test_uncommitted_changes_refused(repo: Path) -> None:
    (repo / "README").write_text("changed\n")

    with pytest.raises(UserError, match="uncommitted changes .*README"):
        check_clean(resolve_source(str(repo)))


def test_untracked_file_refused(repo: Path) -> None:
    (repo / "new.txt").write_text("x\n")

    with pytest.raises(UserError, match="new.txt"):
        check_clean(resolve_source(str(repo)))


def test_clone_has_local_commits(repo: Path, tmp_path: Path) -> None:
    (repo / "README").write_text("second\n")
    git(repo, "commit", "-qam", "local only")
    head = git(repo, "rev-parse", "HEAD")

    cloned = clone_source(resolve_source(str(repo)), tmp_path / "scratch")

    assert cloned.head == head
    assert cloned.branch == "main"
    assert git(cloned.path, "rev-parse", "HEAD") == head
    assert (cloned.path / "README").read_text() == "second\n"
    assert git(cloned.path, "remote") == ""
    assert head in cloned.base_tips


def test_clone_of_worktree_uses_its_head(repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    (worktree / "feature.txt").write_text("f\n")
    git(worktree, "add", "feature.txt")
    git(worktree, "commit", "-qm", "feature work")
    assert (worktree / ".git").is_file()

    cloned = clone_source(resolve_source(str(worktree)), tmp_path / "scratch")

    assert cloned.branch == "feature"
    assert git(cloned.path, "rev-parse", "HEAD") == git(worktree, "rev-parse", "HEAD")
    assert (cloned.path / "feature.txt").exists()


def test_clone_of_detached_head(repo: Path, tmp_path: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    (repo / "README").write_text("detached\n")
    git(repo, "commit", "-qam", "detached work")

    cloned = clone_source(resolve_source(str(repo)), tmp_path / "scratch")

    assert cloned.branch is None
    assert git(cloned.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")


def test_host_repository_left_unchanged(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)

    source = resolve_source(str(repo))
    check_clean(source)
    clone_source(source, tmp_path / "scratch")

    assert snapshot(repo) == before


def test_tar_entries_owned_by_agent(repo: Path, tmp_path: Path) -> None:
    tar_path = tmp_path / "code.tar"

    write_tar(repo, tar_path, 1000, 1001)

    with tarfile.open(tar_path) as archive:
        members = archive.getmembers()
    assert {(m.uid, m.gid) for m in members} == {(1000, 1001)}
    assert "README" in {m.name for m in members}
    assert ".git/HEAD" in {m.name for m in members}


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:tok3n@example.com/o/r.git", "https://example.com/o/r.git"),
        ("https://tok3n@example.com/o/r.git", "https://example.com/o/r.git"),
        ("ssh://git:pw@example.com/o/r.git", "ssh://git@example.com/o/r.git"),
        ("https://:tok3n@example.com/o/r.git", "https://example.com/o/r.git"),
        (
            "fatal: cannot clone http://x:tok3n@127.0.0.1:80/r",
            "fatal: cannot clone http://127.0.0.1:80/r",
        ),
        ("git@example.com:o/r.git", "git@example.com:o/r.git"),
    ],
)
def test_redact_url_drops_password(text: str, expected: str) -> None:
    assert redact_url(text) == expected
