"""Tests of parsing and rewriting the receive-pack ref advertisement."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.broker.advertisement import (
    parse_ref_advertisement,
    rewrite_receive_pack_advertisement,
)
from devaipod.broker.pktline import FLUSH, ProtocolError, encode_pkt_line

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = "refs/heads/devaipod/issue-42"
CAPS = (
    "report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta "
    "push-cert=123-abc push-options object-format=sha1 agent=git/2.39.5"
)
KEPT_CAPS = [
    "report-status",
    "report-status-v2",
    "delete-refs",
    "side-band-64k",
    "quiet",
    "ofs-delta",
    "object-format=sha1",
    "agent=git/2.39.5",
]
A = "a" * 40
B = "b" * 40
C = "c" * 40


def advertisement(lines: list[str], *, service: bool = True) -> bytes:
    body = b""
    if service:
        body += encode_pkt_line(b"# service=git-receive-pack\n") + FLUSH
    for line in lines:
        body += encode_pkt_line(line.encode() + b"\n")
    return body + FLUSH


UPSTREAM = advertisement(
    [
        f"{A} refs/heads/main\0{CAPS}",
        f"{B} {TARGET}",
        f"{C} refs/tags/v1",
        f"{A} refs/heads/other",
    ]
)


def test_parse_advertisement_fields() -> None:
    parsed = parse_ref_advertisement(UPSTREAM)

    assert parsed.service == "git-receive-pack"
    assert parsed.tips == {
        "refs/heads/main": A,
        TARGET: B,
        "refs/tags/v1": C,
        "refs/heads/other": A,
    }
    assert "push-options" in parsed.capabilities


def test_rewrite_keeps_only_target() -> None:
    rewritten = parse_ref_advertisement(rewrite_receive_pack_advertisement(UPSTREAM, TARGET))

    assert rewritten.tips == {TARGET: B}
    assert rewritten.haves == [A, C]
    assert rewritten.capabilities == KEPT_CAPS
    assert rewritten.service == "git-receive-pack"


def test_rewrite_without_haves() -> None:
    body = rewrite_receive_pack_advertisement(UPSTREAM, TARGET, advertise_haves=False)

    rewritten = parse_ref_advertisement(body)

    assert rewritten.tips == {TARGET: B}
    assert rewritten.haves == []


def test_rewrite_target_absent_uses_have_first() -> None:
    upstream = advertisement([f"{A} refs/heads/main\0{CAPS}"])

    body = rewrite_receive_pack_advertisement(upstream, TARGET)

    assert f"{A} .have\0".encode() in body
    assert parse_ref_advertisement(body).tips == {}


def test_rewrite_empty_repo_capabilities_line() -> None:
    upstream = advertisement([f"{'0' * 40} capabilities^{{}}\0{CAPS}"])

    body = rewrite_receive_pack_advertisement(upstream, TARGET)

    assert f"{'0' * 40} capabilities^{{}}\0".encode() in body
    assert parse_ref_advertisement(body).capabilities == KEPT_CAPS


def test_rewrite_sha256_zero_id() -> None:
    caps = CAPS.replace("sha1", "sha256")
    upstream = advertisement([f"{A * 2}{'d' * 24} refs/heads/main\0{caps}"])

    body = rewrite_receive_pack_advertisement(upstream, TARGET, advertise_haves=False)

    assert f"{'0' * 64} capabilities^{{}}\0".encode() in body


def test_rewrite_keeps_version_line() -> None:
    upstream = (
        encode_pkt_line(b"# service=git-receive-pack\n")
        + FLUSH
        + encode_pkt_line(b"version 1\n")
        + encode_pkt_line(f"{B} {TARGET}\0{CAPS}\n".encode())
        + FLUSH
    )

    body = rewrite_receive_pack_advertisement(upstream, TARGET)

    assert parse_ref_advertisement(body).version == 1
    assert b"version 1\n" in body


def test_rewrite_passes_error_through() -> None:
    upstream = advertisement(["ERR access denied"])

    assert rewrite_receive_pack_advertisement(upstream, TARGET) == upstream


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.advertisement")))
def test_rewrite_captured_advertisements(name: str) -> None:
    upstream = (FIXTURES / f"{name}.advertisement").read_bytes()
    parsed = parse_ref_advertisement(upstream)

    rewritten = parse_ref_advertisement(rewrite_receive_pack_advertisement(upstream, TARGET))

    assert set(rewritten.tips) <= {TARGET}
    assert rewritten.tips.get(TARGET) == parsed.tips.get(TARGET)
    assert "push-options" not in rewritten.capabilities
    assert "atomic" not in rewritten.capabilities
    assert not any(c.startswith("push-cert") for c in rewritten.capabilities)


@pytest.mark.parametrize(
    "body",
    [
        encode_pkt_line(b"# service=git-receive-pack\n") + encode_pkt_line(b"x\n"),
        advertisement([f"{A} refs/heads/main\0caps", f"{B} refs/heads/x\0more"]),
        advertisement(["garbage"]),
        advertisement(["version x"]),
        advertisement([f"{A} refs/heads/main"])[:-4],
        b"00",
    ],
)
def test_parse_malformed_advertisement(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_ref_advertisement(body)
