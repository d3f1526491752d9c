"""Tests of scope derivation from issue, pull/merge request and repository URLs."""

from __future__ import annotations

import pytest
import yaml

from devaipod.config import parse_config
from devaipod.errors import UserError
from devaipod.forge.clients import IssueDetails
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope, push_to_pull_request_head
from devaipod.scope.model import dump_scope, parse_scope

CONFIG = parse_config('[forges."127.0.0.1:8080"]\nkind = "forgejo"\n', "test config")


def test_derive_issue_scope_github() -> None:
    scope = derive_scope(parse_forge_url("https://github.com/octo/hello/issues/7#top", CONFIG))

    repo = scope.repos[0]
    assert len(scope.repos) == 1
    assert repo.input.url == "https://github.com/octo/hello.git"
    assert repo.input.branch is None
    assert repo.output is not None
    assert repo.output.targetBranch == "devaipod/issue-7"
    assert repo.output.baseBranch is None
    assert repo.output.createPullRequest is True
    assert repo.output.draft is True
    assert repo.output.maxPullRequests == 1
    assert repo.output.allowForcePush is False
    assert len(scope.attachedContexts) == 1
    context = scope.attachedContexts[0]
    assert context.type == "git-issue"
    assert context.url == "https://github.com/octo/hello/issues/7"
    assert context.permissions == ["read", "comment", "edit-own", "minimize-own"]
    assert scope.network.allow == []


def test_derive_merge_request_scope_gitlab() -> None:
    url = parse_forge_url("https://gitlab.com/g/sub/p/merge_requests/3", CONFIG)

    scope = derive_scope(url)

    assert scope.repos[0].input.url == "https://gitlab.com/g/sub/p.git"
    assert scope.repos[0].output is not None
    assert scope.repos[0].output.targetBranch == "devaipod/pr-3"
    assert scope.attachedContexts[0].type == "git-pull-request"
    assert scope.attachedContexts[0].url == "https://gitlab.com/g/sub/p/-/merge_requests/3"


def test_derive_pull_request_scope_forgejo() -> None:
    scope = derive_scope(parse_forge_url("https://codeberg.org/o/r/pulls/12/files", CONFIG))

    assert scope.repos[0].output is not None
    assert scope.repos[0].output.targetBranch == "devaipod/pr-12"
    assert scope.attachedContexts[0].url == "https://codeberg.org/o/r/pulls/12"


def test_derive_repository_scope_has_no_context() -> None:
    scope = derive_scope(parse_forge_url("git@github.com:octo/hello.git", CONFIG))

    assert scope.repos[0].input.url == "https://github.com/octo/hello.git"
    assert scope.repos[0].output is not None
    assert scope.repos[0].output.targetBranch == "devaipod/work"
    assert scope.attachedContexts == []


def test_derive_local_http_forge_allows_http() -> None:
    scope = derive_scope(parse_forge_url("http://127.0.0.1:8080/o/r/issues/2", CONFIG))

    assert scope.repos[0].input.url == "http://127.0.0.1:8080/o/r.git"
    assert scope.repos[0].input.allowHttp is True
    assert scope.attachedContexts[0].allowHttp is True


def test_derive_custom_target_branch() -> None:
    url = parse_forge_url("https://github.com/o/r/issues/1", CONFIG)

    scope = derive_scope(url, target_branch="fix/login")

    assert scope.repos[0].output is not None
    assert scope.repos[0].output.targetBranch == "fix/login"


def test_derive_invalid_target_branch() -> None:
    url = parse_forge_url("https://github.com/o/r/issues/1", CONFIG)

    with pytest.raises(UserError) as raised:
        derive_scope(url, target_branch="bad..name")

    assert "bad..name" in raised.value.message


def test_derived_scope_round_trips_yaml() -> None:
    scope = derive_scope(parse_forge_url("https://gitlab.com/g/p/-/issues/4", CONFIG))

    reloaded = parse_scope(yaml.safe_load(dump_scope(scope)), "derived")

    assert reloaded == scope


def _pull_details(head: str | None, same_repository: bool | None) -> IssueDetails:
    return IssueDetails(number=5, title="t", body="", labels=[], state="open", author="a",
                        url="", is_pull_request=True, head_branch=head, base_branch="main",
                        head_in_same_repository=same_repository)


def test_pull_head_in_same_repository() -> None:
    url = parse_forge_url("https://github.com/o/r/pull/5", CONFIG)

    scope = push_to_pull_request_head(derive_scope(url), url, _pull_details("feature/x", True))

    output = scope.repos[0].output
    assert output is not None
    assert output.targetBranch == "feature/x"
    assert output.createPullRequest is False
    assert output.maxPullRequests == 0
    assert output.allowForcePush is False
    assert scope.attachedContexts[0].url == "https://github.com/o/r/pull/5"


def test_pull_head_from_fork_unchanged() -> None:
    url = parse_forge_url("https://gitlab.com/g/p/-/merge_requests/5", CONFIG)
    derived = derive_scope(url)

    scope = push_to_pull_request_head(derived, url, _pull_details("feature/x", False))

    assert scope == derived


def test_pull_head_invalid_branch_unchanged() -> None:
    url = parse_forge_url("https://codeberg.org/o/r/pulls/5", CONFIG)
    derived = derive_scope(url)

    scope = push_to_pull_request_head(derived, url, _pull_details("bad..name", True))

    assert scope == derived


def test_issue_scope_ignores_pull_details() -> None:
    url = parse_forge_url("https://github.com/o/r/issues/5", CONFIG)
    derived = derive_scope(url)

    assert push_to_pull_request_head(derived, url, _pull_details("x", True)) == derived


@pytest.mark.parametrize("head", ["trunk", "main"])
def test_pull_head_default_or_base_unchanged(head: str) -> None:
    # "trunk" is the repository's default branch, "main" the pull request's base.
    url = parse_forge_url("https://codeberg.org/o/r/pulls/5", CONFIG)
    derived = derive_scope(url)

    scope = push_to_pull_request_head(derived, url, _pull_details(head, True),
                                      default_branch="trunk")

    assert scope == derived
