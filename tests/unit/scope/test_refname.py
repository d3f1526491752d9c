"""Tests of the git check-ref-format rules, compared with git itself."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devaipod.scope.refname import branch_name_problem, ref_name_problem

NAMES = [
    "refs/heads/main",
    "refs/heads/devaipod/issue-42",
    "refs/heads/ünïcode",
    "refs/tags/v1.0",
    "main",
    "refs/heads/a..b",
    "refs/heads/.hidden",
    "refs/heads/x.lock",
    "refs/heads/x.lock/y",
    "refs/heads/x.",
    "refs/heads//x",
    "/refs/heads/x",
    "refs/heads/x/",
    "refs/heads/a b",
    "refs/heads/a~1",
    "refs/heads/a^",
    "refs/heads/a:b",
    "refs/heads/a?",
    "refs/heads/a*",
    "refs/heads/a[b",
    "refs/heads/a\\b",
    "refs/heads/a@{1}",
    "refs/heads/a@b",
    "refs/heads/tab\there",
    "refs/heads/del\x7f",
    "@",
    "",
]


@pytest.mark.parametrize("name", NAMES)
def test_ref_name_matches_git(name: str) -> None:
    git = subprocess.run(["git", "check-ref-format", name], capture_output=True, check=False)

    problem = ref_name_problem(name)

    assert (problem is None) == (git.returncode == 0), problem


@pytest.mark.parametrize(
    ("branch", "valid"),
    [
        ("devaipod/x", True),
        ("refs/heads/x", False),
        ("-x", False),
        ("HEAD", False),
        ("a..b", False),
    ],
)
def test_branch_name_problem_cases(branch: str, valid: bool) -> None:
    assert (branch_name_problem(branch) is None) == valid


@given(st.text(alphabet="ab/.@{}~^:?*[\\ -lock\x01\x7fé", max_size=16))
@settings(max_examples=200, deadline=None)
def test_fuzz_ref_names_match_git(tail: str) -> None:
    name = "refs/heads/" + tail
    git = subprocess.run(["git", "check-ref-format", name], capture_output=True, check=False)

    problem = ref_name_problem(name)

    assert (problem is None) == (git.returncode == 0), (name, problem)
