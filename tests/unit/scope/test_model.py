"""Tests of scope YAML loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.errors import UserError
from devaipod.scope import Scope, dump_scope, load_scope, parse_scope

EXAMPLE_YAML = """\
repos:
  - input: {url: https://github.com/org/repo, branch: main}
    output: {targetBranch: devaipod/issue-42, createPullRequest: true, draft: true,
             allowForcePush: false}
attachedContexts:
  - {type: git-issue, url: https://github.com/org/repo/issues/42,
     permissions: [read, comment, edit-own, minimize-own]}
network: {allow: [api.anthropic.com]}
"""


def write_scope(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scope.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def scope_error(data: object) -> str:
    with pytest.raises(UserError) as caught:
        parse_scope(data, "scope.yaml")
    return caught.value.render()


def minimal(output: dict[str, object] | None = None, **input_fields: object) -> dict[str, object]:
    repo: dict[str, object] = {"input": {"url": "https://github.com/org/repo", **input_fields}}
    if output is not None:
        repo["output"] = output
    return {"repos": [repo]}


def test_load_scope_example_fields(tmp_path: Path) -> None:
    scope = load_scope(write_scope(tmp_path, EXAMPLE_YAML))

    repo = scope.repos[0]
    assert repo.input.url == "https://github.com/org/repo"
    assert repo.input.branch == "main"
    assert repo.output is not None
    assert repo.output.targetBranch == "devaipod/issue-42"
    assert repo.output.target_ref == "refs/heads/devaipod/issue-42"
    assert repo.output.createPullRequest is True
    assert repo.output.allowForcePush is False
    assert repo.output.maxPullRequests == 1
    assert scope.attachedContexts[0].permissions == ["read", "comment", "edit-own", "minimize-own"]
    assert scope.network.allow == ["api.anthropic.com"]


def test_dump_scope_round_trips(tmp_path: Path) -> None:
    scope = load_scope(write_scope(tmp_path, EXAMPLE_YAML))

    reloaded = load_scope(write_scope(tmp_path, dump_scope(scope)))

    assert reloaded == scope


def test_scope_defaults_when_omitted() -> None:
    scope = parse_scope(minimal(), "scope.yaml")

    assert scope.repos[0].output is None
    assert scope.attachedContexts == []
    assert scope.network.allow == []
    assert isinstance(scope, Scope)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal({"targetBranch": "a..b"}), "repos[0].output.targetBranch: 'a..b' contains '..'"),
        (minimal({"targetBranch": "x.lock"}), "repos[0].output.targetBranch: 'x.lock' has a"),
        (minimal({"targetBranch": "a b"}), "repos[0].output.targetBranch: 'a b' contains ' '"),
        (minimal({"targetBranch": "refs/heads/x"}), "without the 'refs/heads/' prefix"),
        (minimal({"targetBranch": "x", "baseBranch": "m@{1}"}), "output.baseBranch: 'm@{1}'"),
        (minimal({"targetBranch": "x", "draft": "yes"}), "repos[0].output.draft: Input should"),
        (minimal({"targetBranch": "x", "maxPullRequests": -1}), "output.maxPullRequests"),
        (minimal({"targetBranch": "x", "typo": 1}), "repos[0].output.typo: unknown field"),
        (minimal({}), "repos[0].output.targetBranch: missing"),
        (minimal(branch="-x"), "repos[0].input: branch '-x' must not start with '-'"),
        ({"repos": []}, "repos: List should have at least 1 item"),
        ({"repo": []}, "repo: unknown field"),
        ([1, 2], "the top level must be a mapping"),
        ({"repos": [], "network": {"allow": ["https://x"]}}, "network.allow: 'https://x'"),
    ],
)
def test_parse_scope_names_field_path(data: object, expected: str) -> None:
    message = scope_error(data)

    assert message.startswith("invalid scope scope.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_repo_url_rejects_plain_http() -> None:
    message = scope_error({"repos": [{"input": {"url": "http://127.0.0.1:8080/r.git"}}]})

    assert "repos[0].input: url 'http://127.0.0.1:8080/r.git' uses http://" in message
    assert "allowHttp: true" in message


def test_repo_url_http_with_allow_http() -> None:
    data = {"repos": [{"input": {"url": "http://127.0.0.1:8080/r.git", "allowHttp": True}}]}

    scope = parse_scope(data, "scope.yaml")

    assert scope.repos[0].input.allowHttp is True


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://host/repo", "must be an https:// URL"),
        ("git@github.com:org/repo", "must be an https:// URL"),
        ("https:///repo", "has no host"),
        ("https://user:secret@host/repo", "must not contain a user name or password"),
        ("https://host/repo?x=1", "must not contain a query or fragment"),
    ],
)
def test_repo_url_invalid_forms(url: str, problem: str) -> None:
    message = scope_error({"repos": [{"input": {"url": url}}]})

    assert problem in message


def test_attached_context_rejects_unknown_permission() -> None:
    data = minimal()
    data["attachedContexts"] = [
        {"type": "git-issue", "url": "https://h/o/r/issues/1", "permissions": ["admin"]}
    ]

    message = scope_error(data)

    assert "attachedContexts[0].permissions[0]:" in message


def test_errors_limited_to_three_problems() -> None:
    data = {"repos": [{"input": {"url": "https://h/r"}, "a": 1, "b": 2, "c": 3, "d": 4}]}

    message = scope_error(data)

    assert "(and 1 more)" in message


def test_load_scope_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_scope(tmp_path / "absent.yaml")

    assert "absent.yaml not found" in caught.value.render()


def test_load_scope_yaml_syntax_error(tmp_path: Path) -> None:
    path = write_scope(tmp_path, "repos:\n  - input: {url: [\n")

    with pytest.raises(UserError) as caught:
        load_scope(path)

    message = caught.value.render()
    assert str(path) in message
    assert "YAML syntax error at line" in message


def test_user_error_exit_code_two(tmp_path: Path) -> None:
    path = write_scope(tmp_path, "repos: 3\n")

    with pytest.raises(UserError) as caught:
        load_scope(path)

    assert caught.value.exit_code == 2
    assert f"invalid scope {path}: repos:" in caught.value.render()
