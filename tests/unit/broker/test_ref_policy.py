"""Tests of the per-ref push policy and the report-status encoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devaipod.broker.pktline import Data, Flush, PktLineReader
from devaipod.broker.receive_pack import Command, ReceivePackParser
from devaipod.broker.ref_policy import (
    PushDecision,
    RefDecision,
    check_ref_updates,
    decide_push,
    encode_report_status,
    needs_ancestry_check,
)
from devaipod.scope.model import RepoOutput

FIXTURES = Path(__file__).parent / "fixtures"
ZERO = "0" * 40
OLD = "1" * 40
NEW = "2" * 40
TIP = "3" * 40
TARGET = "refs/heads/devaipod/issue-42"
OUTPUT = RepoOutput(targetBranch="devaipod/issue-42")
FORCE_OUTPUT = RepoOutput(targetBranch="devaipod/issue-42", allowForcePush=True)


class Ancestry:
    """An is_ancestor callback backed by a set of (ancestor, descendant) pairs."""

    def __init__(self, pairs: set[tuple[str, str]] | None = None) -> None:
        self.pairs = pairs or set()
        self.calls: list[tuple[str, str]] = []

    def __call__(self, ancestor: str, descendant: str) -> bool:
        self.calls.append((ancestor, descendant))
        return (ancestor, descendant) in self.pairs


def decide(
    commands: list[Command],
    *,
    output: RepoOutput | None = OUTPUT,
    tips: dict[str, str] | None = None,
    ancestry: Ancestry | None = None,
    capabilities: list[str] | None = None,
    push_certificate: bool = False,
    push_options: list[str] | None = None,
) -> PushDecision:
    return decide_push(
        commands,
        capabilities or ["report-status"],
        output,
        tips or {},
        ancestry or Ancestry(),
        find_ci_path=lambda new: None,
        push_certificate=push_certificate,
        push_options=push_options or [],
    )


def test_create_target_branch_allowed() -> None:
    decision = decide([Command(ZERO, NEW, TARGET)])

    assert decision.allowed
    assert decision.refs[0].allowed
    assert decision.refs[0].reason == f"devaipod: creates {TARGET}"


def test_fast_forward_allowed() -> None:
    ancestry = Ancestry({(TIP, NEW)})

    decision = decide([Command(TIP, NEW, TARGET)], tips={TARGET: TIP}, ancestry=ancestry)

    assert decision.allowed
    assert ancestry.calls == [(TIP, NEW)]
    assert "fast-forwards" in decision.refs[0].reason


def test_non_fast_forward_rejected() -> None:
    decision = decide([Command(TIP, NEW, TARGET)], tips={TARGET: TIP})

    assert not decision.allowed
    assert decision.refs[0].reason == "devaipod: non-fast-forward (force push) not allowed"


def test_old_oid_other_than_tip_rejected() -> None:
    ancestry = Ancestry({(OLD, NEW), (TIP, NEW)})

    decision = decide([Command(OLD, NEW, TARGET)], tips={TARGET: TIP}, ancestry=ancestry)

    assert not decision.allowed
    assert decision.refs[0].reason.startswith("devaipod: stale old object id")
    assert ancestry.calls == []


def test_force_push_allowed_by_scope() -> None:
    ancestry = Ancestry()

    decision = decide(
        [Command(TIP, NEW, TARGET)], output=FORCE_OUTPUT, tips={TARGET: TIP}, ancestry=ancestry
    )

    assert decision.allowed
    assert ancestry.calls == []
    assert "force push allowed by the scope" in decision.refs[0].reason


def test_unchanged_tip_needs_no_ancestry() -> None:
    ancestry = Ancestry()

    decision = decide([Command(TIP, TIP, TARGET)], tips={TARGET: TIP}, ancestry=ancestry)

    assert decision.allowed
    assert ancestry.calls == []


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (Command(OLD, ZERO, TARGET), "devaipod: deleting refs is not allowed"),
        (Command(OLD, ZERO, "refs/tags/v1"), "devaipod: deleting refs is not allowed"),
        (Command(ZERO, NEW, "refs/tags/v1"), "devaipod: tags may not be pushed"),
        (Command(OLD, NEW, "refs/heads/main"), f"devaipod: only {TARGET} may be pushed"),
        (Command(OLD, NEW, "refs/notes/commits"), f"devaipod: only {TARGET} may be pushed"),
        (Command(OLD, NEW, "refs/heads/devaipod/issue-42x"), f"only {TARGET} may be pushed"),
        (Command(OLD, NEW, "refs/heads/devaipod/Issue-42"), f"only {TARGET} may be pushed"),
        (Command(OLD, NEW, "HEAD"), "devaipod: invalid ref name: has only one component"),
        (Command(OLD, NEW, "heads/devaipod/issue-42"), "invalid ref name: not under refs/"),
        (Command(OLD, NEW, TARGET + "\n"), "invalid ref name: contains a control character"),
        (Command(OLD, NEW, "refs/heads/a..b"), "invalid ref name: contains '..'"),
        (Command(OLD, NEW, TARGET + "\udcff"), "invalid ref name"),
    ],
)
def test_rejected_ref_updates(command: Command, reason: str) -> None:
    decision = decide([command])

    assert not decision.allowed
    assert reason in decision.refs[0].reason
    assert decision.refs[0].reason.startswith("devaipod: ")


def test_no_output_rejects_push() -> None:
    decision = decide([Command(ZERO, NEW, TARGET)], output=None)

    assert not decision.allowed
    assert decision.refs[0].reason == "devaipod: this session may not push to this repository"


def test_push_certificate_rejected() -> None:
    decision = decide([Command(ZERO, NEW, TARGET)], push_certificate=True)

    assert not decision.allowed
    assert "push certificates" in decision.refs[0].reason


def test_push_options_rejected() -> None:
    by_value = decide([Command(ZERO, NEW, TARGET)], push_options=["ci.skip"])
    by_capability = decide([Command(ZERO, NEW, TARGET)], capabilities=["push-options"])

    assert by_value.refs[0].reason == "devaipod: push options are not allowed"
    assert by_capability.refs[0].reason == "devaipod: push options are not allowed"


def test_mixed_push_rejected_whole() -> None:
    ancestry = Ancestry()
    commands = [Command(ZERO, NEW, TARGET), Command(OLD, NEW, "refs/heads/main")]

    decision = decide(commands, ancestry=ancestry)

    assert not decision.allowed
    assert [ref.allowed for ref in decision.refs] == [False, False]
    assert decision.refs[0].reason == (
        "devaipod: atomic push rejected because refs/heads/main was rejected"
    )
    assert decision.refs[1].reason == f"devaipod: only {TARGET} may be pushed"
    assert decision.reason == f"devaipod: only {TARGET} may be pushed"
    assert ancestry.calls == []


def test_duplicate_ref_rejected() -> None:
    decision = decide([Command(ZERO, NEW, TARGET), Command(ZERO, TIP, TARGET)])

    assert not decision.allowed
    assert "listed more than once" in decision.refs[1].reason


def test_empty_push_allowed() -> None:
    decision = decide([])

    assert decision.allowed
    assert decision.refs == []


def test_check_ref_updates_skips_ancestry() -> None:
    decision = check_ref_updates([Command(TIP, NEW, TARGET)], ["report-status"], OUTPUT)

    assert decision.allowed


def test_needs_ancestry_check_cases() -> None:
    update = [Command(TIP, NEW, TARGET)]

    assert needs_ancestry_check(update, OUTPUT, {TARGET: TIP})
    assert not needs_ancestry_check(update, FORCE_OUTPUT, {TARGET: TIP})
    assert not needs_ancestry_check(update, OUTPUT, {})
    assert not needs_ancestry_check([Command(TIP, TIP, TARGET)], OUTPUT, {TARGET: TIP})
    assert not needs_ancestry_check(update, None, {TARGET: TIP})


@pytest.mark.parametrize(
    ("name", "allowed_refs"),
    [
        ("sha1-create-branch", [TARGET]),
        ("sha1-create-main", []),
        ("sha1-multiple-refs", []),
        ("sha1-delete-tag", []),
        ("sha1-push-options", []),
        ("sha1-signed-push", []),
    ],
)
def test_policy_on_captured_pushes(name: str, allowed_refs: list[str]) -> None:
    parser = ReceivePackParser()
    parser.feed((FIXTURES / f"{name}.request").read_bytes())
    parser.finish()

    decision = decide_push(
        parser.commands,
        parser.capabilities,
        OUTPUT,
        {},
        Ancestry(),
        find_ci_path=lambda new: None,
        push_certificate=parser.push_certificate,
        push_options=parser.push_options,
    )

    assert [ref.ref for ref in decision.refs if ref.allowed] == allowed_refs
    assert decision.allowed == bool(allowed_refs)


def report_lines(report: bytes) -> list[bytes | None]:
    return [
        packet.payload if isinstance(packet, Data) else None
        for packet in PktLineReader().feed(report)
        if isinstance(packet, Data | Flush)
    ]


REJECTED = PushDecision(
    allowed=False,
    refs=[
        RefDecision(TARGET, ZERO, NEW, False, "devaipod: atomic push rejected because x"),
        RefDecision("refs/heads/main", OLD, NEW, False, "devaipod: only x may be pushed"),
    ],
)


def test_report_status_plain() -> None:
    report = encode_report_status(REJECTED, unpack_ok=True, sideband=False)

    assert report_lines(report) == [
        b"unpack ok\n",
        f"ng {TARGET} devaipod: atomic push rejected because x\n".encode(),
        b"ng refs/heads/main devaipod: only x may be pushed\n",
        None,
    ]


def test_report_status_sideband() -> None:
    plain = encode_report_status(REJECTED, unpack_ok=True, sideband=False)

    report = encode_report_status(REJECTED, unpack_ok=True, sideband=True)

    packets = PktLineReader().feed(report)
    assert packets[-1] == Flush()
    inner = b""
    for packet in packets[:-1]:
        assert isinstance(packet, Data)
        assert packet.payload[:1] == b"\x01"
        inner += packet.payload[1:]
    assert inner == plain


def test_report_status_sideband_splits_packets() -> None:
    refs = [RefDecision(f"refs/heads/b{i}", OLD, NEW, False, "r" * 200) for i in range(30)]
    decision = PushDecision(allowed=False, refs=refs)

    report = encode_report_status(decision, sideband=True, max_packet_length=1000)

    packets = PktLineReader().feed(report)
    assert len(packets) > 2
    assert all(len(p.payload) <= 996 for p in packets if isinstance(p, Data))


def test_report_status_allowed_and_unpack_error() -> None:
    decision = PushDecision(allowed=True, refs=[RefDecision(TARGET, ZERO, NEW, True, "ok")])

    report = encode_report_status(decision, unpack_ok=False, unpack_error="index-pack failed")

    assert report_lines(report) == [b"unpack index-pack failed\n", f"ok {TARGET}\n".encode(), None]


def test_report_status_keeps_ref_bytes() -> None:
    ref = "refs/heads/\udcff"
    decision = PushDecision(allowed=False, refs=[RefDecision(ref, OLD, NEW, False, "bad\nline")])

    report = encode_report_status(decision)

    assert report_lines(report)[1] == b"ng refs/heads/\xff bad?line\n"


# Hypothesis: whatever the commands, a push is allowed only when every command creates or
# fast-forwards exactly the output branch, and the decision is all-or-nothing.

policy_oids = st.sampled_from([ZERO, OLD, NEW, TIP])
policy_refs = st.sampled_from(
    [
        TARGET,
        "refs/heads/main",
        "refs/tags/v1",
        "refs/heads/devaipod/issue-4",
        "HEAD",
        TARGET + "/x",
    ]
)


@given(
    st.lists(st.tuples(policy_oids, policy_oids, policy_refs), max_size=4),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, TIP, NEW]),
)
def test_property_all_or_nothing(
    items: list[tuple[str, str, str]], ancestor: bool, force: bool, tip: str | None
) -> None:
    commands = [Command(old, new, ref) for old, new, ref in items]
    tips = {TARGET: tip} if tip else {}
    output = FORCE_OUTPUT if force else OUTPUT

    decision = decide_push(
        commands, ["report-status"], output, tips, lambda a, d: ancestor,
        find_ci_path=lambda new: None,
    )  # fmt: skip

    assert len(decision.refs) == len(commands)
    assert all(ref.allowed == decision.allowed for ref in decision.refs)
    if decision.allowed:
        assert all(command.ref == TARGET for command in commands)
        assert not any(command.is_delete for command in commands)
        assert len(commands) <= 1
    if commands and all(c.ref == TARGET and not c.is_delete for c in commands):
        fast_forward = tip is None or tip == commands[0].new_oid or ancestor or force
        current = commands[0].old_oid == (tip or ZERO)
        assert decision.allowed == (len(commands) == 1 and fast_forward and current)
