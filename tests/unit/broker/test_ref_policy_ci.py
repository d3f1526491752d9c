"""The push policy's CI rule: which paths are CI configuration, and how a push touching
them is decided."""

from __future__ import annotations

import pytest

from devaipod.broker.mirror import MirrorError
from devaipod.broker.receive_pack import Command
from devaipod.broker.ref_policy import decide_push, is_ci_path, needs_ci_check
from devaipod.scope.model import RepoOutput

ZERO = "0" * 40
TIP = "3" * 40
NEW = "2" * 40
TARGET = "refs/heads/devaipod/issue-9"
OUTPUT = RepoOutput(targetBranch="devaipod/issue-9")
CI_OUTPUT = RepoOutput(targetBranch="devaipod/issue-9", allowCiChanges=True)


@pytest.mark.parametrize(
    "path",
    [
        ".github/workflows/ci.yml",
        ".GitHub/Workflows/x.yml",
        ".github/workflows/nested/dir/x.yaml",
        ".github/actions/setup/action.yml",
        ".gitea/workflows/build.yaml",
        ".forgejo/workflows/leak.yml",
        ".FORGEJO/WORKFLOWS/leak.yml",
        ".gitlab-ci.yml",
        ".GITLAB-CI.YML",
        ".woodpecker.yml",
        ".woodpecker.yaml",
        ".woodpecker/test.yml",
        ".circleci/config.yml",
        # A file, symlink or submodule at a parent of a CI directory decides its content.
        ".github",
        ".GITHUB",
        ".gitea",
        ".forgejo",
        ".github/workflows",
        ".forgejo/workflows",
        ".woodpecker",
        ".circleci",
    ],
)
def test_is_ci_path_matches_ci_config(path: str) -> None:
    assert is_ci_path(path)


@pytest.mark.parametrize(
    "path",
    [
        ".github/workflows-old/x.yml",
        ".github/workflowsx",
        ".github/dependabot.yml",
        ".github/CODEOWNERS",
        ".github/ISSUE_TEMPLATE/bug.md",
        ".gitea/issue_template.md",
        "docs/.github/workflows/x.yml",
        "sub/.gitlab-ci.yml",
        ".gitlab-ci.yml.bak",
        ".gitlab-ci",
        ".gitlab/merge_request_templates/x.md",
        ".circleci-old/config.yml",
        ".woodpecker.yml.orig",
        "github/workflows/x.yml",
        "README.md",
        "",
    ],
)
def test_is_ci_path_skips_other_paths(path: str) -> None:
    assert not is_ci_path(path)


class CiPaths:
    """A find_ci_path callback returning a fixed result per new tip and recording calls."""

    def __init__(self, answers: dict[str, str | None] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[str] = []

    def __call__(self, new: str) -> str | None:
        self.calls.append(new)
        return self.answers.get(new)


def _decide(
    commands: list[Command], tips: dict[str, str], find: CiPaths, output: RepoOutput = OUTPUT
) -> tuple[bool, list[str]]:
    decision = decide_push(
        commands, ["report-status"], output, tips, lambda a, d: True, find_ci_path=find
    )
    return decision.allowed, [ref.reason for ref in decision.refs]


def test_create_with_workflow_rejected() -> None:
    find = CiPaths({NEW: ".forgejo/workflows/leak.yml"})

    allowed, reasons = _decide([Command(ZERO, NEW, TARGET)], {}, find)

    assert not allowed
    assert "CI configuration .forgejo/workflows/leak.yml" in reasons[0]
    assert "allowCiChanges" in reasons[0]
    assert find.calls == [NEW]


def test_update_with_workflow_rejected() -> None:
    allowed, reasons = _decide(
        [Command(TIP, NEW, TARGET)], {TARGET: TIP}, CiPaths({NEW: ".gitlab-ci.yml"})
    )

    assert not allowed
    assert ".gitlab-ci.yml" in reasons[0]


def test_update_without_ci_paths_allowed() -> None:
    find = CiPaths()

    allowed, _ = _decide([Command(TIP, NEW, TARGET)], {TARGET: TIP}, find)

    assert allowed
    assert find.calls == [NEW]


def test_scope_allowing_ci_skips_check() -> None:
    find = CiPaths({NEW: ".github/workflows/x.yml"})

    allowed, _ = _decide([Command(ZERO, NEW, TARGET)], {}, find, CI_OUTPUT)

    assert allowed
    assert find.calls == []


def test_unchanged_tip_skips_ci_check() -> None:
    find = CiPaths({TIP: ".github/workflows/x.yml"})

    allowed, _ = _decide([Command(TIP, TIP, TARGET)], {TARGET: TIP}, find)

    assert allowed
    assert find.calls == []


def test_rejected_ref_name_skips_ci_check() -> None:
    find = CiPaths()

    allowed, _ = _decide([Command(ZERO, NEW, "refs/heads/main")], {}, find)

    assert not allowed
    assert find.calls == []


def test_failed_path_listing_rejects_push() -> None:
    def broken(new: str) -> str | None:
        raise MirrorError("missing object")

    decision = decide_push(
        [Command(ZERO, NEW, TARGET)], ["report-status"], OUTPUT, {}, lambda a, d: True,
        find_ci_path=broken,
    )  # fmt: skip

    assert not decision.allowed
    assert "could not list the paths" in decision.refs[0].reason


def test_needs_ci_check_cases() -> None:
    create = [Command(ZERO, NEW, TARGET)]
    assert needs_ci_check(create, OUTPUT, {})
    assert needs_ci_check([Command(TIP, NEW, TARGET)], OUTPUT, {TARGET: TIP})
    assert not needs_ci_check(create, CI_OUTPUT, {})
    assert not needs_ci_check(create, None, {})
    assert not needs_ci_check([Command(TIP, TIP, TARGET)], OUTPUT, {TARGET: TIP})
    assert not needs_ci_check([Command(TIP, ZERO, TARGET)], OUTPUT, {TARGET: TIP})
