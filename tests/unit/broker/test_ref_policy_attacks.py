"""Push commands whose old object id disagrees with the upstream tip the broker checked."""

from __future__ import annotations

import pytest

from devaipod.broker.receive_pack import Command
from devaipod.broker.ref_policy import decide_push
from devaipod.scope.model import RepoOutput

ZERO = "0" * 40
TIP = "3" * 40
ELSEWHERE = "4" * 40
NEW = "2" * 40
TARGET = "refs/heads/devaipod/issue-7"


@pytest.mark.parametrize("allow_force", [False, True])
def test_update_with_stale_old_oid_rejected(allow_force: bool) -> None:
    # NEW fast-forwards the tip the broker read, but old_oid names another commit. If the
    # upstream moved to that commit before the forward, its compare-and-swap would pass
    # and the update would overwrite that commit without any ancestry check.
    output = RepoOutput(targetBranch="devaipod/issue-7", allowForcePush=allow_force)

    decision = decide_push([Command(ELSEWHERE, NEW, TARGET)], ["report-status"], output,
                           {TARGET: TIP}, lambda ancestor, descendant: True,
                           find_ci_path=lambda new: None)

    assert not decision.allowed
    assert "stale old object id" in decision.refs[0].reason


def test_create_with_nonzero_old_oid_rejected() -> None:
    output = RepoOutput(targetBranch="devaipod/issue-7")

    decision = decide_push([Command(ELSEWHERE, NEW, TARGET)], ["report-status"], output, {},
                           lambda ancestor, descendant: True,
                           find_ci_path=lambda new: None)

    assert not decision.allowed
    assert "absent upstream" in decision.refs[0].reason


def test_update_from_current_tip_allowed() -> None:
    output = RepoOutput(targetBranch="devaipod/issue-7")

    decision = decide_push([Command(TIP, NEW, TARGET)], ["report-status"], output,
                           {TARGET: TIP}, lambda ancestor, descendant: True,
                           find_ci_path=lambda new: None)

    assert decision.allowed, decision.reason
