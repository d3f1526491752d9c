"""The broker's receive-pack gate, driven with hand-built push requests."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devaipod.broker.audit import read_entries
from devaipod.broker.git_push import PushTooLargeError, spool_and_parse
from devaipod.broker.pktline import FLUSH, Data, PktLineReader, encode_pkt_line
from devaipod.scope.model import RepoOutput
from support.broker_harness import (
    CREDENTIAL,
    TARGET_REF,
    ZERO_OID,
    Harness,
    running_harness,
)

NEW_OID = "1" * 40
_PACK_HEADER = b"PACK" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
EMPTY_PACK = _PACK_HEADER + hashlib.sha1(_PACK_HEADER).digest()
RESULT_TYPE = "application/x-git-receive-pack-result"


def push_body(
    commands: list[tuple[str, str, str]],
    capabilities: str = "report-status side-band-64k",
    options: list[str] | None = None,
    pack: bytes = EMPTY_PACK,
) -> bytes:
    """Build a receive-pack request body as git sends it."""
    body = b""
    for index, (old_oid, new_oid, ref) in enumerate(commands):
        line = f"{old_oid} {new_oid} {ref}".encode()
        if index == 0:
            line += b"\0" + capabilities.encode()
        body += encode_pkt_line(line + b"\n")
    body += FLUSH
    if options is not None:
        body += b"".join(encode_pkt_line(option.encode() + b"\n") for option in options) + FLUSH
    return body + pack


def report_lines(body: bytes, *, sideband: bool) -> list[str]:
    """Decode a report-status reply (optionally inside side-band 1) into its text lines."""
    packets = PktLineReader().feed(body)
    if sideband:
        inner = b""
        for packet in packets:
            if isinstance(packet, Data):
                assert packet.payload[:1] == b"\x01"
                inner += packet.payload[1:]
        packets = PktLineReader().feed(inner)
    return [p.payload.decode().rstrip("\n") for p in packets if isinstance(p, Data)]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path) as started:
        yield started


async def _post_push(
    harness: Harness, body: bytes, extra_headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    headers = {
        "Authorization": f"Bearer {CREDENTIAL}",
        "Content-Type": "application/x-git-receive-pack-request",
        **(extra_headers or {}),
    }
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            harness.url("org/repo.git/git-receive-pack"), data=body, headers=headers
        ) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.read()


def _upstream_posts(harness: Harness) -> list[dict[str, object]]:
    return [r for r in harness.upstream.requests if r["method"] == "POST"]


async def test_push_options_sent_anyway_are_rejected(harness: Harness) -> None:
    body = push_body(
        [(ZERO_OID, NEW_OID, TARGET_REF)],
        capabilities="report-status side-band-64k push-options",
        options=["ci.skip"],
    )

    status, content_type, reply = await _post_push(harness, body)

    assert status == 200
    assert content_type == RESULT_TYPE
    assert report_lines(reply, sideband=True) == [
        "unpack ok",
        f"ng {TARGET_REF} devaipod: push options are not allowed",
    ]
    assert harness.upstream.requests == []
    [entry] = read_entries(harness.audit_path)
    assert entry["decision"] == "deny"
    assert entry["ref"] == TARGET_REF
    assert entry["reason"] == "push options are not allowed"


async def test_rejection_without_sideband_is_plain(harness: Harness) -> None:
    body = push_body([(ZERO_OID, NEW_OID, "refs/heads/main")], capabilities="report-status")

    status, _, reply = await _post_push(harness, body)

    assert status == 200
    assert report_lines(reply, sideband=False) == [
        "unpack ok",
        f"ng refs/heads/main devaipod: only {TARGET_REF} may be pushed",
    ]


async def test_plain_sideband_packets_stay_small(harness: Harness) -> None:
    commands = [(ZERO_OID, NEW_OID, f"refs/heads/other-{index:03d}") for index in range(40)]
    body = push_body(commands, capabilities="report-status side-band")

    status, _, reply = await _post_push(harness, body)

    assert status == 200
    packets = PktLineReader().feed(reply)
    data_packets = [p for p in packets if isinstance(p, Data)]
    assert len(data_packets) > 1
    assert all(len(p.payload) + 4 <= 1000 for p in data_packets)
    lines = report_lines(reply, sideband=True)
    assert len([line for line in lines if line.startswith("ng ")]) == 40


async def test_allowed_create_is_forwarded_verbatim(tmp_path: Path) -> None:
    # The fake upstream serves no git fetch, so the CI check, which needs a mirror, is off.
    body = push_body([(ZERO_OID, NEW_OID, TARGET_REF)])

    async with running_harness(tmp_path, {"allowCiChanges": True}) as harness:
        status, content_type, reply = await _post_push(harness, body)

    assert status == 200
    assert content_type == RESULT_TYPE
    assert reply == b"upstream-body:" + body
    [forwarded] = _upstream_posts(harness)
    assert forwarded["path"] == "/org/repo.git/git-receive-pack"
    assert forwarded["body"] == body
    entries = read_entries(harness.audit_path)
    pushes = [e for e in entries if e.get("ref") == TARGET_REF]
    assert [e["decision"] for e in pushes] == ["allow"]
    assert pushes[0]["new_oid"] == NEW_OID
    # The fake upstream's reply is not a report-status, so the line names that.
    assert str(entries[-1]["reason"]).startswith("push forwarded to the upstream (invalid")
    assert entries[-1]["upstream_status"] == 200


async def test_audit_failure_rejects_allowed_push(harness: Harness) -> None:
    harness.audit.close()
    body = push_body([(ZERO_OID, NEW_OID, TARGET_REF)])

    status, _, reply = await _post_push(harness, body)

    assert status == 200
    assert report_lines(reply, sideband=True) == [
        "unpack ok",
        f"ng {TARGET_REF} devaipod: the broker cannot write its audit log",
    ]
    assert _upstream_posts(harness) == []


async def test_invalid_push_body_is_bad_request(harness: Harness) -> None:
    status, _, reply = await _post_push(harness, b"zzzz not a pkt-line stream")

    assert status == 400
    assert b"invalid receive-pack request" in reply
    assert harness.upstream.requests == []


async def test_compressed_push_body_is_unsupported(harness: Harness) -> None:
    body = push_body([(ZERO_OID, NEW_OID, TARGET_REF)])

    status, _, _ = await _post_push(harness, body, {"Content-Encoding": "gzip"})

    assert status == 415
    assert harness.upstream.requests == []


class _ChunkedBody:
    """A stand-in for aiohttp's request with `content.iter_chunked`."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.content = self
        self._chunks = chunks

    async def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def _split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
async def test_spool_records_pack_offset(tmp_path: Path, chunk_size: int) -> None:
    pack = EMPTY_PACK + b"x" * 100
    body = push_body([(ZERO_OID, NEW_OID, TARGET_REF)], pack=pack)
    spool = tmp_path / "spool"
    output = RepoOutput(targetBranch="devaipod/unit")

    push = await spool_and_parse(_ChunkedBody(list(_split(body, chunk_size))), spool, output)  # type: ignore[arg-type]

    assert push.early_decision is None
    assert push.body_bytes == len(body)
    assert spool.read_bytes() == body
    assert body[push.pack_offset :] == pack
    assert push.pack_bytes == len(pack)


async def test_spool_drops_pack_of_rejected_push(tmp_path: Path) -> None:
    pack = EMPTY_PACK + b"y" * 10_000
    body = push_body([(ZERO_OID, NEW_OID, "refs/heads/main")], pack=pack)
    spool = tmp_path / "spool"
    output = RepoOutput(targetBranch="devaipod/unit")

    push = await spool_and_parse(_ChunkedBody(list(_split(body, 512))), spool, output)  # type: ignore[arg-type]

    assert push.early_decision is not None
    assert not push.early_decision.allowed
    assert push.body_bytes == len(body)
    assert spool.stat().st_size < 1024


async def test_probe_request_stays_local(harness: Harness) -> None:
    status, content_type, reply = await _post_push(harness, FLUSH)

    assert status == 200
    assert content_type == RESULT_TYPE
    assert reply == b""
    assert harness.upstream.requests == []


async def test_ref_with_line_break_logged_escaped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # A rejected ref name is agent-chosen; written raw, its line break would forge a
    # second broker log line and its ESC would reach the terminal of whoever reads it.
    ref = "refs/heads/x\nINFO devaipod.broker.git_push: push allowed\x1b[2J"
    caplog.set_level(logging.DEBUG, logger="devaipod.broker")

    status, _, _ = await _post_push(harness, push_body([(ZERO_OID, NEW_OID, ref)]))

    assert status == 200
    messages = [record.getMessage() for record in caplog.records]
    assert any("push allowed" in message for message in messages)
    assert not any("\n" in message or "\x1b" in message for message in messages)
    assert harness.upstream.requests == [] or all(
        request["method"] == "GET" for request in harness.upstream.requests
    )


async def test_spool_stops_at_size_limit(tmp_path: Path) -> None:
    # Without a ceiling an allowed ref name let the agent spool any amount to the broker's
    # disk before the push was decided.
    pack = EMPTY_PACK + b"z" * 50_000
    body = push_body([(ZERO_OID, NEW_OID, TARGET_REF)], pack=pack)
    spool = tmp_path / "spool"
    output = RepoOutput(targetBranch="devaipod/unit")

    with pytest.raises(PushTooLargeError):
        await spool_and_parse(_ChunkedBody(list(_split(body, 4096))), spool, output,  # type: ignore[arg-type]
                              max_bytes=10_000)

    assert spool.stat().st_size <= 10_000


async def test_oversized_push_rejected_413(harness: Harness,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("devaipod.broker.git_push.MAX_PUSH_BYTES", 10_000)
    body = push_body([(ZERO_OID, NEW_OID, TARGET_REF)], pack=EMPTY_PACK + b"z" * 50_000)

    status, _, reply = await _post_push(harness, body)

    assert status == 413
    assert b"larger than 10000 bytes" in reply
    assert not any(request["method"] == "POST" for request in harness.upstream.requests)
    denials = [entry for entry in read_entries(harness.audit_path) if entry["decision"] == "deny"]
    assert "larger than" in str(denials[-1]["reason"])
