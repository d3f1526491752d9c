"""Smart-HTTP path parsing of the broker's git front door."""

from __future__ import annotations

import pytest

from devaipod.broker.git_http import GitTarget, parse_git_target


@pytest.mark.parametrize(
    "method,path,service,expected",
    [
        (
            "GET",
            "/git/github.com/org/repo.git/info/refs",
            "git-upload-pack",
            GitTarget("github.com/org/repo.git", "info/refs", "git-upload-pack"),
        ),
        (
            "GET",
            "/git/github.com/org/repo.git/info/refs",
            "git-receive-pack",
            GitTarget("github.com/org/repo.git", "info/refs", "git-receive-pack"),
        ),
        (
            "POST",
            "/git/gitlab.example.com/group/sub/project.git/git-upload-pack",
            None,
            GitTarget(
                "gitlab.example.com/group/sub/project.git", "git-upload-pack", "git-upload-pack"
            ),
        ),
        (
            "POST",
            "/git/127.0.0.1:8080/repo/git-receive-pack",
            None,
            GitTarget("127.0.0.1:8080/repo", "git-receive-pack", "git-receive-pack"),
        ),
    ],
)
def test_parse_git_target_accepts_smart_http(
    method: str, path: str, service: str | None, expected: GitTarget
) -> None:
    assert parse_git_target(method, path, service) == expected


@pytest.mark.parametrize(
    "method,path,service",
    [
        ("GET", "/git/github.com/org/repo.git/info/refs", None),
        ("GET", "/git/github.com/org/repo.git/info/refs", "git-upload-archive"),
        ("POST", "/git/github.com/org/repo.git/info/refs", "git-upload-pack"),
        ("GET", "/git/github.com/org/repo.git/git-upload-pack", None),
        ("GET", "/git/github.com/org/repo.git/HEAD", None),
        ("GET", "/git/github.com/org/repo.git/objects/info/packs", None),
        ("POST", "/git/github.com/org/repo.git/git-upload-archive", None),
        ("POST", "/git/github.com/git-upload-pack", None),
        ("POST", "/git//git-upload-pack", None),
        ("GET", "/api/github.com/org/repo.git/info/refs", "git-upload-pack"),
    ],
)
def test_parse_git_target_rejects_other_requests(
    method: str, path: str, service: str | None
) -> None:
    assert parse_git_target(method, path, service) is None
