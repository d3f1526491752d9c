"""Tests of the sans-IO pkt-line reader and encoders, including hypothesis fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devaipod.broker.pktline import (
    DELIM,
    FLUSH,
    MAX_PACKET_LENGTH,
    MAX_PAYLOAD_LENGTH,
    RESPONSE_END,
    Data,
    Delim,
    Flush,
    Packet,
    PktLineError,
    PktLineReader,
    ProtocolError,
    ResponseEnd,
    encode_pkt_line,
    encode_text_line,
    parse_length,
    strip_lf,
)

STREAM = (
    encode_pkt_line(b"# service=git-receive-pack\n")
    + FLUSH
    + encode_pkt_line(b"hello\n")
    + encode_pkt_line(b"")
    + DELIM
    + encode_pkt_line(b"\x00\xff binary")
    + RESPONSE_END
)
STREAM_PACKETS: list[Packet] = [
    Data(b"# service=git-receive-pack\n"),
    Flush(),
    Data(b"hello\n"),
    Data(b""),
    Delim(),
    Data(b"\x00\xff binary"),
    ResponseEnd(),
]


def test_encode_pkt_line_prefix() -> None:
    assert encode_pkt_line(b"a\n") == b"0006a\n"
    assert encode_pkt_line(b"") == b"0004"


def test_encode_pkt_line_max_payload() -> None:
    assert len(encode_pkt_line(b"x" * MAX_PAYLOAD_LENGTH)) == MAX_PACKET_LENGTH
    with pytest.raises(ValueError):
        encode_pkt_line(b"x" * (MAX_PAYLOAD_LENGTH + 1))


def test_encode_text_line_adds_lf() -> None:
    assert encode_text_line("ok") == b"0007ok\n"
    assert encode_text_line(b"ok\n") == b"0007ok\n"


def test_strip_lf_removes_one() -> None:
    assert strip_lf(b"a\n\n") == b"a\n"
    assert strip_lf(b"a") == b"a"


def test_reader_whole_stream() -> None:
    reader = PktLineReader()

    assert reader.feed(STREAM) == STREAM_PACKETS
    reader.finish()


def test_reader_every_byte_split() -> None:
    for split in range(len(STREAM) + 1):
        reader = PktLineReader()

        packets = reader.feed(STREAM[:split]) + reader.feed(STREAM[split:])

        assert packets == STREAM_PACKETS, split
        reader.finish()


def test_reader_one_byte_at_a_time() -> None:
    reader = PktLineReader()

    packets = [packet for byte in STREAM for packet in reader.feed(bytes([byte]))]

    assert packets == STREAM_PACKETS


def test_reader_accepts_upper_case_hex() -> None:
    payload = b"x" * 10
    reader = PktLineReader()

    assert reader.feed(b"000E" + payload) == [Data(payload)]
    assert PktLineReader().feed(b"000e" + payload) == [Data(payload)]


@pytest.mark.parametrize(
    "prefix", [b"00g1", b"-001", b" 0a1", b"0x10", b"+010", b"1_00", b"\xff000"]
)
def test_reader_rejects_bad_hex(prefix: bytes) -> None:
    with pytest.raises(PktLineError):
        PktLineReader().feed(prefix + b"xxxxxxxx")


def test_reader_rejects_length_three() -> None:
    with pytest.raises(PktLineError, match="reserved"):
        PktLineReader().feed(b"0003")


def test_reader_rejects_over_max_length() -> None:
    with pytest.raises(PktLineError, match="exceeds"):
        PktLineReader().feed(b"fff1")
    assert parse_length(b"fff0") == MAX_PACKET_LENGTH


def test_reader_finish_inside_packet() -> None:
    reader = PktLineReader()
    reader.feed(b"000ahel")

    with pytest.raises(PktLineError, match="left over"):
        reader.finish()


def test_take_unparsed_returns_rest() -> None:
    reader = PktLineReader()
    reader.receive_data(FLUSH + b"PACKxyz")

    assert reader.next_packet() == Flush()
    assert reader.take_unparsed() == b"PACKxyz"
    assert reader.buffered == 0


def test_reader_many_small_packets_linear() -> None:
    line = encode_pkt_line(b"x" * 20)
    data = line * 20000
    reader = PktLineReader()

    packets = reader.feed(data)

    assert len(packets) == 20000
    assert reader.buffered == 0


def test_pkt_line_error_is_protocol_error() -> None:
    assert issubclass(PktLineError, ProtocolError)


payloads = st.binary(max_size=300)
frames = st.one_of(
    payloads.map(encode_pkt_line),
    st.sampled_from([FLUSH, DELIM, RESPONSE_END]),
)


@given(st.lists(frames, max_size=20), st.data())
@settings(max_examples=300, deadline=None)
def test_fuzz_valid_frames_round_trip(frame_list: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame_list)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    reader = PktLineReader()

    packets: list[Packet] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        packets.extend(reader.feed(stream[start:cut]))
        start = cut
    reader.finish()

    rebuilt = b"".join(
        encode_pkt_line(packet.payload)
        if isinstance(packet, Data)
        else {Flush: FLUSH, Delim: DELIM, ResponseEnd: RESPONSE_END}[type(packet)]
        for packet in packets
    )
    assert rebuilt == stream


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
@settings(max_examples=500, deadline=None)
def test_fuzz_arbitrary_bytes_never_crash(stream: bytes, cuts: list[int]) -> None:
    reader = PktLineReader()
    consumed = 0
    try:
        start = 0
        for cut in [*sorted(cut for cut in cuts if cut <= len(stream)), len(stream)]:
            for packet in reader.feed(stream[start:cut]):
                consumed += 4 + (len(packet.payload) if isinstance(packet, Data) else 0)
            start = cut
        assert consumed + reader.buffered == len(stream)
        reader.finish()
    except PktLineError:
        pass


@given(st.integers(0, 0xFFFF), st.booleans())
def test_fuzz_length_prefix_rules(length: int, upper: bool) -> None:
    prefix = (b"%04X" if upper else b"%04x") % length

    if length == 3 or length > MAX_PACKET_LENGTH:
        with pytest.raises(PktLineError):
            parse_length(prefix)
    else:
        assert parse_length(prefix) == length
