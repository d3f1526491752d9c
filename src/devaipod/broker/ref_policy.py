"""Per-ref policy for a push through the broker, and the report-status response that git prints.

A push may only create or update the scope's output branch, `refs/heads/<targetBranch>`,
compared byte for byte, and its new commits may not touch CI configuration unless the scope
allows it. Everything else is rejected, and one rejected ref rejects the whole push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devaipod.broker.advertisement import rewrite_receive_pack_advertisement
from devaipod.broker.mirror import MirrorError
from devaipod.broker.pktline import FLUSH, MAX_PACKET_LENGTH, encode_pkt_line
from devaipod.broker.receive_pack import Command
from devaipod.scope.model import RepoOutput
from devaipod.scope.refname import ref_name_problem

log = logging.getLogger(__name__)

__all__ = [
    "PushDecision",
    "RefDecision",
    "check_ref_updates",
    "decide_push",
    "encode_report_status",
    "is_ci_path",
    "needs_ancestry_check",
    "needs_ci_check",
    "rewrite_receive_pack_advertisement",
]

REASON_PREFIX = "devaipod: "
SIDEBAND_DATA = b"\x01"

IsAncestor = Callable[[str, str], bool]
FindCiPath = Callable[[str], "str | None"]

# Directories whose files forges can run as CI on push, with the repository's secrets: GitHub
# Actions workflows and local actions (Gitea and Forgejo read `.github/workflows/` too),
# Gitea and Forgejo Actions, Woodpecker and CircleCI. Compared in lower case.
CI_DIRECTORIES = (
    ".github/workflows",
    ".github/actions",
    ".gitea/workflows",
    ".forgejo/workflows",
    ".woodpecker",
    ".circleci",
)
# Single files at the repository root that configure CI.
CI_FILES = (".gitlab-ci.yml", ".woodpecker.yml", ".woodpecker.yaml")


def is_ci_path(path: str) -> bool:
    """Return whether a changed path in a commit is CI configuration that a forge runs.

    Matches ignore case. A path that is a parent of a CI directory (`.github` or
    `.github/workflows` as a file, symlink or submodule) matches too, since it decides
    what the forge finds there.
    """
    lowered = path.lower()
    if lowered in CI_FILES:
        return True
    for directory in CI_DIRECTORIES:
        if lowered == directory or lowered.startswith(directory + "/"):
            return True
        if directory.startswith(lowered + "/"):
            return True
    return False


@dataclass(frozen=True)
class RefDecision:
    """The decision on one command of the push; `reason` is shown to the pusher when rejected."""

    ref: str
    old_oid: str
    new_oid: str
    allowed: bool
    reason: str


@dataclass(frozen=True)
class PushDecision:
    """The decision on a whole push: allowed only when every ref is allowed."""

    allowed: bool
    refs: list[RefDecision]

    @property
    def reason(self) -> str:
        """The first rejection reason, or a summary when the push is allowed."""
        for ref in self.refs:
            if not ref.allowed and not ref.reason.startswith(_ATOMIC_PREFIX):
                return ref.reason
        for ref in self.refs:
            if not ref.allowed:
                return ref.reason
        return f"{len(self.refs)} ref updates allowed"


_ATOMIC_PREFIX = REASON_PREFIX + "atomic push rejected"


def _reason(text: str) -> str:
    return REASON_PREFIX + text


def _request_reason(
    capabilities: Sequence[str], push_certificate: bool, push_options: Sequence[str]
) -> str | None:
    """Return why the request as a whole is rejected, whatever its refs."""
    if push_certificate:
        return _reason("signed pushes (push certificates) are not allowed")
    if push_options or "push-options" in capabilities:
        return _reason("push options are not allowed")
    return None


def _ref_reason(command: Command, output: RepoOutput) -> str | None:
    """Return why one command is rejected by name and kind alone, or None."""
    target_ref = output.target_ref
    if command.is_delete:
        return _reason("deleting refs is not allowed")

    problem = ref_name_problem(command.ref)
    if problem is not None or not command.ref.startswith("refs/"):
        return _reason(f"invalid ref name: {problem or 'not under refs/'}")
    if command.ref.startswith("refs/tags/"):
        return _reason("tags may not be pushed")
    if command.ref_bytes != target_ref.encode("utf-8"):
        return _reason(f"only {target_ref} may be pushed")
    return None


def _atomic(decisions: list[RefDecision]) -> PushDecision:
    """Reject every ref when any is rejected, naming the first rejected ref."""
    rejected = [decision for decision in decisions if not decision.allowed]
    if not rejected:
        return PushDecision(allowed=True, refs=decisions)

    culprit = rejected[0].ref
    refs = []
    for decision in decisions:
        if decision.allowed:
            reason = f"{_ATOMIC_PREFIX} because {culprit} was rejected"
            decision = RefDecision(decision.ref, decision.old_oid, decision.new_oid, False, reason)
        refs.append(decision)
    return PushDecision(allowed=False, refs=refs)


def check_ref_updates(
    commands: Sequence[Command],
    capabilities: Sequence[str],
    output: RepoOutput | None,
    *,
    push_certificate: bool = False,
    push_options: Sequence[str] = (),
) -> PushDecision:
    """Decide a push on what the request head alone shows: ref names, deletes, options.

    Call this as soon as the head is parsed to reject a push before its pack arrives.
    An allowed result is provisional: `decide_push` adds the fast-forward check.
    """
    request_reason = _request_reason(capabilities, push_certificate, push_options)
    seen: set[str] = set()
    decisions = []
    for command in commands:
        reason = request_reason
        if reason is None and output is None:
            reason = _reason("this session may not push to this repository")
        if reason is None and command.ref in seen:
            reason = _reason(f"{command.ref} is listed more than once")
        if reason is None and output is not None:
            reason = _ref_reason(command, output)
        seen.add(command.ref)

        allowed = reason is None
        decisions.append(
            RefDecision(command.ref, command.old_oid, command.new_oid, allowed, reason or "")
        )
    return _atomic(decisions)


def needs_ancestry_check(
    commands: Sequence[Command], output: RepoOutput | None, upstream_tips: dict[str, str]
) -> bool:
    """Whether `decide_push` will call `is_ancestor`, so the pack's objects must be available.

    False when force pushes are allowed, or when every update creates a ref the upstream
    lacks or leaves the upstream tip unchanged.
    """
    if output is None or output.allowForcePush:
        return False
    for command in commands:
        tip = upstream_tips.get(command.ref)
        if tip is not None and not command.is_delete and tip != command.new_oid:
            return True
    return False


def needs_ci_check(
    commands: Sequence[Command], output: RepoOutput | None, upstream_tips: dict[str, str]
) -> bool:
    """Whether `decide_push` will look for CI changes, so the pack's objects must be available.

    False when the scope allows CI changes, or when no update brings a commit the ref's
    upstream tip does not already point at.
    """
    if output is None or output.allowCiChanges:
        return False
    return any(
        not command.is_delete and upstream_tips.get(command.ref) != command.new_oid
        for command in commands
    )


def decide_push(
    commands: Sequence[Command],
    capabilities: Sequence[str],
    output: RepoOutput | None,
    upstream_tips: dict[str, str],
    is_ancestor: IsAncestor,
    *,
    find_ci_path: FindCiPath,
    push_certificate: bool = False,
    push_options: Sequence[str] = (),
) -> PushDecision:
    """Decide a push: `check_ref_updates`, then a fast-forward and a CI check of each ref.

    `upstream_tips` maps full ref names to the upstream's current object ids.
    `is_ancestor(old, new)` must return whether commit `old` is an ancestor of `new`;
    it is called only when every ref passes the name checks, the scope forbids force
    pushes, and the upstream already has the ref at another commit. Exceptions it
    raises propagate to the caller.
    `find_ci_path(new)` must return the first CI path (see `is_ci_path`) changed by a
    commit reachable from `new` and from no upstream ref, or None. It is called for each
    ref that passed the other checks and moves, unless the scope allows CI changes. A
    MirrorError it raises rejects the ref.
    """
    static = check_ref_updates(
        commands,
        capabilities,
        output,
        push_certificate=push_certificate,
        push_options=push_options,
    )
    if not static.allowed or output is None:
        return static

    decisions = []
    for command in commands:
        tip = upstream_tips.get(command.ref)
        if not _old_oid_matches(command, tip):
            # The upstream applies an update only while the ref is still at old_oid. Holding
            # old_oid to the tip checked here makes that compare-and-swap cover this check,
            # so a ref moved by someone else in between cannot be overwritten.
            current = tip or "absent"
            reason = _reason(f"stale old object id: {command.ref} is {current} upstream; "
                             "fetch and push again")
            allowed = False
        elif tip is None:
            reason = _reason(f"creates {command.ref}")
            allowed = True
        elif tip == command.new_oid:
            reason = _reason(f"{command.ref} already at {tip}")
            allowed = True
        elif output.allowForcePush:
            reason = _reason(f"updates {command.ref} (force push allowed by the scope)")
            allowed = True
        elif is_ancestor(tip, command.new_oid):
            reason = _reason(f"fast-forwards {command.ref}")
            allowed = True
        else:
            reason = _reason("non-fast-forward (force push) not allowed")
            allowed = False
        if allowed and tip != command.new_oid and not output.allowCiChanges:
            ci_reason = _ci_reason(command, find_ci_path)
            if ci_reason is not None:
                reason, allowed = ci_reason, False
        decisions.append(
            RefDecision(command.ref, command.old_oid, command.new_oid, allowed, reason)
        )

    decision = _atomic(decisions)
    log.debug("push decision: allowed=%s (%s)", decision.allowed, decision.reason)
    return decision


def _ci_reason(command: Command, find_ci_path: FindCiPath) -> str | None:
    """Return why the commits a command brings are rejected for touching CI, or None."""
    try:
        path = find_ci_path(command.new_oid)
    except MirrorError as error:
        log.warning("listing the paths changed by %s failed: %s", command.new_oid, error)
        return _reason("the broker could not list the paths the pushed commits change")
    if path is None:
        return None
    return _reason(
        f"a pushed commit changes CI configuration {path}; "
        "the scope does not allow CI changes (allowCiChanges)"
    )


def _old_oid_matches(command: Command, tip: str | None) -> bool:
    """Return whether the command's old_oid is the upstream's current tip (zero when absent)."""
    if tip is None:
        return command.is_create
    return command.old_oid == tip.lower()


def _ref_wire(ref: str) -> bytes:
    return ref.encode("utf-8", "surrogateescape")


def encode_report_status(
    decision: PushDecision,
    *,
    unpack_ok: bool = True,
    sideband: bool = False,
    unpack_error: str = "unpack failed",
    max_packet_length: int = MAX_PACKET_LENGTH,
) -> bytes:
    """Encode a receive-pack report-status response: one `ok`/`ng` line per command.

    With `sideband`, the report travels on band 1 followed by a flush, as receive-pack
    sends it to clients that chose `side-band-64k` (pass `max_packet_length=1000` for
    clients that chose plain `side-band`).
    """
    unpack_line = b"unpack ok\n" if unpack_ok else b"unpack " + unpack_error.encode() + b"\n"
    report = encode_pkt_line(unpack_line)
    for ref in decision.refs:
        if ref.allowed:
            report += encode_pkt_line(b"ok " + _ref_wire(ref.ref) + b"\n")
        else:
            reason = "".join(c if c.isprintable() else "?" for c in ref.reason)
            line = b"ng " + _ref_wire(ref.ref) + b" " + _ref_wire(reason) + b"\n"
            report += encode_pkt_line(line)
    report += FLUSH
    if not sideband:
        return report

    chunk_length = max_packet_length - 5
    framed = b""
    for start in range(0, len(report), chunk_length):
        framed += encode_pkt_line(SIDEBAND_DATA + report[start : start + chunk_length])
    return framed + FLUSH
