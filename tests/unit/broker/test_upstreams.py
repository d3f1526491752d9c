from __future__ import annotations

import pytest

from devaipod.broker.upstreams import RepoMap, broker_git_path
from devaipod.errors import UserError
from devaipod.scope.model import parse_scope


def _map(*urls: str, allow_http: bool = False) -> RepoMap:
    repos = [{"input": {"url": url, "allowHttp": allow_http}} for url in urls]
    return RepoMap(parse_scope({"repos": repos}, "test"))


def test_lookup_matches_declared_repo() -> None:
    repo_map = _map("https://github.com/org/repo")

    repo = repo_map.lookup("github.com/org/repo.git")

    assert repo is not None
    assert repo.upstream_url == "https://github.com/org/repo"
    assert repo.field_path == "repos[0]"


def test_lookup_accepts_path_without_git_suffix() -> None:
    repo_map = _map("https://github.com/org/repo.git")

    repo = repo_map.lookup("github.com/org/repo")

    assert repo is not None
    assert repo.upstream_url == "https://github.com/org/repo.git"


def test_lookup_host_is_case_insensitive() -> None:
    repo_map = _map("https://GitHub.com/org/repo")

    assert repo_map.lookup("github.com/org/repo.git") is not None
    assert repo_map.lookup("GITHUB.COM/org/repo.git") is not None


def test_lookup_path_is_case_sensitive() -> None:
    repo_map = _map("https://github.com/org/repo")

    assert repo_map.lookup("github.com/Org/Repo.git") is None


def test_lookup_rejects_undeclared_repos() -> None:
    repo_map = _map("https://github.com/org/repo")

    assert repo_map.lookup("github.com/org/other.git") is None
    assert repo_map.lookup("github.com/org/repo/extra.git") is None
    assert repo_map.lookup("gitlab.com/org/repo.git") is None


def test_lookup_rejects_dot_segments() -> None:
    repo_map = _map("https://github.com/org/repo")

    assert repo_map.lookup("github.com/org/x/../repo.git") is None
    assert repo_map.lookup("github.com/org/./repo.git") is None
    assert repo_map.lookup("github.com/org//repo.git") is None
    assert repo_map.lookup("github.com") is None


def test_lookup_keeps_port_in_host() -> None:
    repo_map = _map("http://127.0.0.1:8080/org/repo.git", allow_http=True)

    assert repo_map.lookup("127.0.0.1:8080/org/repo.git") is not None
    assert repo_map.lookup("127.0.0.1/org/repo.git") is None
    assert repo_map.lookup("127.0.0.1:8081/org/repo.git") is None


def test_lookup_keeps_nested_group_paths() -> None:
    repo_map = _map("https://gitlab.example.com/group/sub/project.git")

    repo = repo_map.lookup("gitlab.example.com/group/sub/project.git")

    assert repo is not None
    assert broker_git_path(repo) == "/git/gitlab.example.com/group/sub/project.git"


def test_repo_map_rejects_duplicate_repos() -> None:
    scope = parse_scope(
        {
            "repos": [
                {"input": {"url": "https://github.com/org/repo"}},
                {"input": {"url": "https://github.com/org/repo.git"}},
            ]
        },
        "test",
    )

    with pytest.raises(UserError, match=r"repos\[1\]\.input\.url"):
        RepoMap(scope)


def test_can_push_follows_output() -> None:
    scope = parse_scope(
        {
            "repos": [
                {"input": {"url": "https://github.com/org/a"}},
                {
                    "input": {"url": "https://github.com/org/b"},
                    "output": {"targetBranch": "devaipod/x"},
                },
            ]
        },
        "test",
    )
    repo_map = RepoMap(scope)

    read_only = repo_map.lookup("github.com/org/a.git")
    pushable = repo_map.lookup("github.com/org/b.git")

    assert read_only is not None and not read_only.can_push
    assert pushable is not None and pushable.can_push
