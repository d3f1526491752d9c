"""Tests of the sans-IO receive-pack request parser, on real captured pushes and built ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devaipod.broker.pktline import DELIM, FLUSH, ProtocolError, encode_pkt_line
from devaipod.broker.receive_pack import (
    Capabilities,
    Command,
    CommandsEnd,
    Event,
    PackData,
    PushCertificateStart,
    PushOption,
    ReceivePackParser,
    Shallow,
)

FIXTURES = Path(__file__).parent / "fixtures"
ZERO = "0" * 40
OLD = "1" * 40
NEW = "2" * 40
OTHER = "3" * 40
CAPS = b"report-status side-band-64k object-format=sha1 agent=git/2.39.5"
EMPTY_PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00" + b"\x01" * 20


def line(text: bytes) -> bytes:
    return encode_pkt_line(text)


def command(old: str, new: str, ref: str) -> bytes:
    return f"{old} {new} {ref}".encode()


def request(
    commands: list[bytes],
    *,
    caps: bytes = CAPS,
    shallow: Sequence[str] = (),
    options: list[bytes] | None = None,
    pack: bytes = EMPTY_PACK,
) -> bytes:
    body = b"".join(line(f"shallow {oid}\n".encode()) for oid in shallow)
    for index, text in enumerate(commands):
        body += line(text + b"\0" + caps + b"\n" if index == 0 else text + b"\n")
    body += FLUSH
    if options is not None:
        body += b"".join(line(option) for option in options) + FLUSH
    return body + pack


def parse(data: bytes, chunks: list[int] | None = None) -> tuple[list[Event], ReceivePackParser]:
    parser = ReceivePackParser()
    events: list[Event] = []
    start = 0
    for cut in [*(chunks or []), len(data)]:
        events.extend(parser.feed(data[start:cut]))
        start = cut
    events.extend(parser.finish())
    return events, parser


def normalise(events: list[Event]) -> list[Event]:
    """Merge consecutive PackData events, since their chunking follows the input's."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, PackData) and merged and isinstance(merged[-1], PackData):
            merged[-1] = PackData(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def pack_bytes(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, PackData))


FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.request"))


def test_fixtures_present() -> None:
    assert "sha1-create-branch" in FIXTURE_NAMES
    assert "sha1-signed-push" in FIXTURE_NAMES
    assert len(FIXTURE_NAMES) >= 10


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_every_byte_split(name: str) -> None:
    body = (FIXTURES / f"{name}.request").read_bytes()
    expected, whole = parse(body)

    for split in range(len(body) + 1):
        events, parser = parse(body, [split])

        assert normalise(events) == normalise(expected), split
        assert pack_bytes(events) == body[parser.head_length :], split
        assert parser.commands == whole.commands


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_one_byte_at_a_time(name: str) -> None:
    body = (FIXTURES / f"{name}.request").read_bytes()
    expected, _ = parse(body)

    events, parser = parse(body, list(range(1, len(body))))

    assert normalise(events) == normalise(expected)
    assert parser.head_complete


def test_fixture_create_branch() -> None:
    body = (FIXTURES / "sha1-create-branch.request").read_bytes()

    events, parser = parse(body)

    assert isinstance(events[0], Capabilities)
    assert "report-status-v2" in events[0].names
    assert "side-band-64k" in events[0].names
    assert parser.commands == [
        Command(ZERO, parser.commands[0].new_oid, "refs/heads/devaipod/issue-42")
    ]
    assert parser.commands[0].is_create
    assert CommandsEnd(expects_pack=True) in events
    assert pack_bytes(events).startswith(b"PACK")
    assert parser.pack_length == len(body) - parser.head_length


def test_fixture_sha256_object_ids() -> None:
    body = (FIXTURES / "sha256-create-branch.request").read_bytes()

    _, parser = parse(body)

    assert len(parser.commands[0].old_oid) == 64
    assert parser.commands[0].is_create
    assert "object-format=sha256" in parser.capabilities


def test_fixture_push_options() -> None:
    body = (FIXTURES / "sha1-push-options.request").read_bytes()

    events, parser = parse(body)

    assert parser.push_options == ["ci.skip", "merge_request.create"]
    assert [event for event in events if isinstance(event, PushOption)] == [
        PushOption("ci.skip"),
        PushOption("merge_request.create"),
    ]
    option_index = events.index(PushOption("ci.skip"))
    end_index = next(i for i, event in enumerate(events) if isinstance(event, CommandsEnd))
    assert option_index < end_index


def test_fixture_multiple_refs() -> None:
    body = (FIXTURES / "sha1-multiple-refs.request").read_bytes()

    _, parser = parse(body)

    assert [command.ref for command in parser.commands] == ["refs/heads/main", "refs/tags/v1"]


def test_fixture_delete_has_no_pack() -> None:
    body = (FIXTURES / "sha1-delete-tag.request").read_bytes()

    events, parser = parse(body)

    assert parser.commands[0].is_delete
    assert events[-1] == CommandsEnd(expects_pack=False)
    assert parser.head_length == len(body)


def test_fixture_signed_push() -> None:
    body = (FIXTURES / "sha1-signed-push.request").read_bytes()

    events, parser = parse(body)

    assert events[0] == PushCertificateStart()
    assert parser.push_certificate
    assert [command.ref for command in parser.commands] == ["refs/heads/devaipod/issue-42"]
    assert pack_bytes(events).startswith(b"PACK")


def test_shallow_lines_before_commands() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], shallow=["a" * 40, "B" * 40])

    events, parser = parse(body)

    assert events[:2] == [Shallow("a" * 40), Shallow("b" * 40)]
    assert parser.shallow == ["a" * 40, "b" * 40]


def test_shallow_oid_must_match_format() -> None:
    body = request(
        [command("0" * 64, "2" * 64, "refs/heads/x")],
        caps=b"report-status object-format=sha256",
        shallow=["a" * 40],
    )

    with pytest.raises(ProtocolError, match="object format"):
        parse(body)


def test_probe_request_is_flush_only() -> None:
    events, parser = parse(FLUSH)

    assert events == [CommandsEnd(expects_pack=False)]
    assert parser.commands == []


def test_commands_without_capabilities() -> None:
    body = line(command(OLD, NEW, "refs/heads/x")) + FLUSH + EMPTY_PACK

    events, parser = parse(body)

    assert events[0] == Capabilities([])
    assert parser.commands[0].ref == "refs/heads/x"


def test_nul_on_later_command_rejected() -> None:
    body = request([command(OLD, NEW, "refs/heads/x"), command(OLD, NEW, "refs/heads/y\0side")])

    with pytest.raises(ProtocolError, match="NUL in command 2"):
        parse(body)


def test_ref_keeps_exact_bytes() -> None:
    raw_ref = b"refs/heads/\xff\xfe"
    body = line(f"{OLD} {NEW} ".encode() + raw_ref + b"\0report-status") + FLUSH + EMPTY_PACK

    _, parser = parse(body)

    assert parser.commands[0].ref_bytes == raw_ref


def test_ref_strips_one_lf_only() -> None:
    body = (
        line(command(OLD, NEW, "refs/heads/x").replace(b"x", b"x\n") + b"\n") + FLUSH + EMPTY_PACK
    )

    _, parser = parse(body)

    assert parser.commands[0].ref == "refs/heads/x\n"


def test_upper_case_oid_normalised() -> None:
    body = request([command("A" * 40, "b" * 40, "refs/heads/x")])

    _, parser = parse(body)

    assert parser.commands[0].old_oid == "a" * 40


@pytest.mark.parametrize(
    "bad_line",
    [
        b"",
        b"not a command",
        f"{OLD} {NEW}".encode(),
        f"{OLD} {NEW} ".encode(),
        f"{OLD[:-1]} {NEW} refs/heads/x".encode(),
        f"{'g' * 40} {NEW} refs/heads/x".encode(),
        f"{'0' * 64} {NEW} refs/heads/x".encode(),
    ],
)
def test_invalid_command_lines_rejected(bad_line: bytes) -> None:
    body = request([command(OLD, NEW, "refs/heads/x"), bad_line])

    with pytest.raises(ProtocolError):
        parse(body)


def test_sha256_oids_need_capability() -> None:
    body = request([command("0" * 64, "2" * 64, "refs/heads/x")])

    with pytest.raises(ProtocolError, match="expected 40"):
        parse(body)


def test_unknown_object_format_rejected() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], caps=b"object-format=md5")

    with pytest.raises(ProtocolError, match="object format"):
        parse(body)


def test_delim_in_command_list_rejected() -> None:
    body = line(command(OLD, NEW, "refs/heads/x") + b"\0") + DELIM + FLUSH

    with pytest.raises(ProtocolError, match="delim"):
        parse(body)


def test_missing_flush_at_finish() -> None:
    body = line(command(OLD, NEW, "refs/heads/x") + b"\0report-status\n")

    with pytest.raises(ProtocolError, match="no flush"):
        parse(body)


def test_empty_body_rejected() -> None:
    with pytest.raises(ProtocolError, match="empty"):
        parse(b"")


def test_truncated_pkt_line_at_finish() -> None:
    body = line(command(OLD, NEW, "refs/heads/x") + b"\0report-status\n")[:-5]

    with pytest.raises(ProtocolError):
        parse(body)


def test_missing_pack_for_update() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], pack=b"")

    with pytest.raises(ProtocolError, match="no pack"):
        parse(body)


def test_truncated_pack_header() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], pack=b"PACK\x00\x00")

    with pytest.raises(ProtocolError, match="pack header"):
        parse(body)


def test_garbage_instead_of_pack() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], pack=b"0000PACK")

    with pytest.raises(ProtocolError, match="not a pack"):
        parse(body)


def test_bad_pack_version() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], pack=b"PACK\x00\x00\x00\x09" + b"\0" * 4)

    with pytest.raises(ProtocolError, match="pack version"):
        parse(body)


def test_trailing_garbage_after_delete() -> None:
    body = request([command(OLD, ZERO, "refs/heads/x")], pack=b"junk")

    with pytest.raises(ProtocolError, match="unexpected 4 bytes"):
        parse(body)


def test_trailing_garbage_after_probe() -> None:
    with pytest.raises(ProtocolError):
        parse(FLUSH + b"0000")


def test_push_options_need_capability() -> None:
    body = request([command(OLD, NEW, "refs/heads/x")], caps=b"report-status", options=[b"ci.skip"])

    with pytest.raises(ProtocolError):
        parse(body)


def test_push_options_missing_flush() -> None:
    body = request(
        [command(OLD, NEW, "refs/heads/x")], caps=b"push-options", options=[b"a"], pack=b""
    )[:-4]

    with pytest.raises(ProtocolError, match="push options"):
        parse(body)


def test_built_push_certificate() -> None:
    cert = (
        line(b"push-cert\0report-status\n")
        + line(b"certificate version 0.1\n")
        + line(b"pusher A <a@example.test> 1 +0000\n")
        + line(b"nonce 123\n")
        + line(b"\n")
        + line(command(OLD, NEW, "refs/heads/x") + b"\n")
        + line(command(ZERO, NEW, "refs/heads/y") + b"\n")
        + line(b"-----BEGIN PGP SIGNATURE-----\n")
        + line(b"abc\n")
        + line(b"-----END PGP SIGNATURE-----\n")
        + line(b"push-cert-end\n")
        + FLUSH
        + EMPTY_PACK
    )

    events, parser = parse(cert)

    assert events[:2] == [PushCertificateStart(), Capabilities(["report-status"])]
    assert [command.ref for command in parser.commands] == ["refs/heads/x", "refs/heads/y"]


def test_flush_inside_push_certificate() -> None:
    cert = line(b"push-cert\0report-status\n") + line(b"certificate version 0.1\n") + FLUSH

    with pytest.raises(ProtocolError, match="inside the push certificate"):
        parse(cert)


def test_head_size_limit() -> None:
    body = request([command(OLD, NEW, f"refs/heads/x{index}") for index in range(100)])
    parser = ReceivePackParser(max_head_bytes=1000)

    with pytest.raises(ProtocolError, match="exceeds 1000 bytes"):
        parser.feed(body)


def test_failed_parser_stays_failed() -> None:
    parser = ReceivePackParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"zzzz")

    with pytest.raises(ProtocolError, match="already failed"):
        parser.feed(FLUSH)


def test_large_pack_streams_without_buffering() -> None:
    parser = ReceivePackParser()
    parser.feed(request([command(OLD, NEW, "refs/heads/x")], pack=b""))
    chunk = b"PACK\x00\x00\x00\x02" + b"\x00" * (1 << 20)

    events = parser.feed(chunk)
    for _ in range(20):
        events = parser.feed(b"\x00" * (1 << 20))

    assert events == [PackData(b"\x00" * (1 << 20))]
    assert parser.pack_length == 21 * (1 << 20) + 8
    assert len(parser._pack_header) == 12
    parser.finish()


# Hypothesis: valid requests split anywhere parse the same, and mutated ones only ever
# return events or raise ProtocolError, never lose bytes.

oids = st.sampled_from([ZERO, OLD, NEW, OTHER])
refs = st.sampled_from(["refs/heads/main", "refs/heads/devaipod/x", "refs/tags/v1", "HEAD"])
commands_strategy = st.lists(st.tuples(oids, oids, refs), min_size=1, max_size=4)


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    command_lines = [command(*item) for item in draw(commands_strategy)]
    with_options = draw(st.booleans())
    caps = CAPS + (b" push-options" if with_options else b"")
    options = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3))
    shallow = draw(st.lists(st.sampled_from(["a" * 40, "c" * 40]), max_size=2))
    all_deletes = all(text.split(b" ")[1] == ZERO.encode() for text in command_lines)
    pack = b"" if all_deletes else EMPTY_PACK + draw(st.binary(max_size=50))
    return request(
        command_lines,
        caps=caps,
        shallow=shallow,
        options=options if with_options else None,
        pack=pack,
    )


@given(valid_requests(), st.lists(st.integers(0, 2000), max_size=6))
@settings(max_examples=300, deadline=None)
def test_fuzz_valid_request_any_split(body: bytes, cuts: list[int]) -> None:
    expected, whole = parse(body)
    chunks = sorted(cut for cut in cuts if cut <= len(body))

    events, parser = parse(body, chunks)

    assert normalise(events) == normalise(expected)
    assert pack_bytes(events) == body[parser.head_length :]
    assert parser.head_length == whole.head_length


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 2000), st.binary(max_size=0)),
    st.tuples(st.just("insert"), st.integers(0, 2000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("replace"), st.integers(0, 2000), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("append"), st.integers(0, 0), st.binary(min_size=1, max_size=16)),
)


def mutate(body: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, position, data = mutation
    position = min(position, len(body))
    if kind == "truncate":
        return body[:position]
    if kind == "insert":
        return body[:position] + data + body[position:]
    if kind == "replace":
        return body[:position] + data + body[position + len(data) :]
    return body + data


@given(valid_requests(), st.lists(mutations, min_size=1, max_size=3), st.integers(0, 2000))
@settings(max_examples=500, deadline=None)
def test_fuzz_mutated_request_events_or_error(
    body: bytes, mutation_list: list[tuple[str, int, bytes]], cut: int
) -> None:
    for mutation in mutation_list:
        body = mutate(body, mutation)
    parser = ReceivePackParser()
    events: list[Event] = []

    try:
        events += parser.feed(body[:cut])
        events += parser.feed(body[cut:])
        events += parser.finish()
    except ProtocolError:
        return

    assert parser.head_complete
    assert pack_bytes(events) == body[parser.head_length :]


@given(st.binary(max_size=300), st.integers(0, 300))
@settings(max_examples=500, deadline=None)
def test_fuzz_random_bytes_events_or_error(body: bytes, cut: int) -> None:
    parser = ReceivePackParser()
    try:
        events = parser.feed(body[:cut]) + parser.feed(body[cut:]) + parser.finish()
    except ProtocolError:
        return

    assert pack_bytes(events) == body[parser.head_length :]


# Framing defects that must always be rejected, inserted into valid requests.

DEFECTS = ["bad-hex", "delim", "response-end", "length-3", "too-long", "later-nul", "no-flush"]


@st.composite
def defective_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    defect = draw(st.sampled_from([*DEFECTS, "garbage-after-delete"]))
    refs_drawn = draw(st.lists(refs, min_size=2, max_size=4))
    deletes_only = defect == "garbage-after-delete"
    first_ref = refs_drawn[0]
    lines = [line(command(OLD, ZERO if deletes_only else NEW, first_ref) + b"\0" + CAPS)]
    lines += [line(command(OLD, ZERO if deletes_only else NEW, ref)) for ref in refs_drawn[1:]]
    position = draw(st.integers(1, len(lines)))

    if defect == "bad-hex":
        lines.insert(position, draw(st.sampled_from([b"00g5x", b"zzzz", b"-005x", b" 005x"])))
    elif defect == "delim":
        lines.insert(position, DELIM)
    elif defect == "response-end":
        lines.insert(position, b"0002")
    elif defect == "length-3":
        lines.insert(position, b"0003")
    elif defect == "too-long":
        lines.insert(position, b"fff1" + b"x" * 10)
    elif defect == "later-nul":
        lines.insert(max(position, 1), line(command(OLD, NEW, "refs/heads/n") + b"\0" + CAPS))

    body = b"".join(lines)
    if defect == "no-flush":
        return defect, body
    body += FLUSH
    if deletes_only:
        return defect, body + draw(st.binary(min_size=1, max_size=20))
    return defect, body + EMPTY_PACK


@given(defective_requests(), st.integers(0, 1000))
@settings(max_examples=400, deadline=None)
def test_fuzz_framing_defects_rejected(case: tuple[str, bytes], cut: int) -> None:
    defect, body = case
    parser = ReceivePackParser()

    with pytest.raises(ProtocolError):
        parser.feed(body[:cut])
        parser.feed(body[cut:])
        parser.finish()

    assert parser.state.name == "ERROR", defect
