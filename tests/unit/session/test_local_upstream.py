"""Unit tests of the local upstream: token check, real `git http-backend`, no hooks run."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devaipod.session.local_upstream import make_server, presented_secret
from support.git_server import isolated_git_env, list_refs, run_git
from support.sessions import make_fixture_repo

TOKEN = "local-upstream-test-token"


def test_presented_secret_reads_basic_password() -> None:
    header = "Basic " + base64.b64encode(b"user:" + TOKEN.encode()).decode()
    assert presented_secret(header) == TOKEN


def test_presented_secret_reads_bearer_token() -> None:
    assert presented_secret(f"Bearer {TOKEN}") == TOKEN


def test_presented_secret_rejects_other_schemes() -> None:
    assert presented_secret(None) is None
    assert presented_secret("Digest abc") is None
    assert presented_secret("Basic not-base64!") is None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    repo = make_fixture_repo(tmp_path / "root" / "proj")
    server = make_server(tmp_path / "root", TOKEN, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield repo, f"http://127.0.0.1:{server.server_address[1]}/proj"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def git_with_token(
    *args: str, cwd: Path | None = None, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", f"http.extraHeader=Authorization: Bearer {token}", *args],
        cwd=cwd, env=isolated_git_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_clone_and_push_with_token(served: tuple[Path, str], tmp_path: Path) -> None:
    repo, url = served
    clone = tmp_path / "clone"
    assert git_with_token("clone", "-q", url, str(clone)).returncode == 0
    (clone / "NEW").write_text("new\n")
    run_git("add", "NEW", cwd=clone)
    run_git("commit", "-qm", "new", cwd=clone)
    pushed = git_with_token("push", "origin", "HEAD:refs/heads/devaipod/x", cwd=clone)
    assert pushed.returncode == 0, pushed.stderr
    head = run_git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    assert list_refs(repo)["refs/heads/devaipod/x"] == head


def test_wrong_token_gets_no_access(served: tuple[Path, str], tmp_path: Path) -> None:
    _, url = served
    cloned = git_with_token("clone", "-q", url, str(tmp_path / "clone"), token="wrong")
    assert cloned.returncode != 0
    assert not (tmp_path / "clone" / ".git").exists()


def test_repository_hooks_do_not_run(served: tuple[Path, str], tmp_path: Path) -> None:
    repo, url = served
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    clone = tmp_path / "clone"
    assert git_with_token("clone", "-q", url, str(clone)).returncode == 0
    run_git("commit", "-q", "--allow-empty", "-m", "empty", cwd=clone)
    pushed = git_with_token("push", "origin", "HEAD:refs/heads/devaipod/y", cwd=clone)
    assert pushed.returncode == 0, pushed.stderr
    assert not marker.exists()
