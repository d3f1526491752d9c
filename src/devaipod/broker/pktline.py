"""Sans-IO pkt-line framing of the git wire protocol: encode packets, and decode a byte
stream into Data, Flush, Delim and ResponseEnd packets.

Reader strategy: `receive_data` appends bytes to one buffer and `next_packet` cuts one
whole packet off its front, or returns None when the buffer holds only part of one. A
caller that switches to unframed bytes (the pack after a receive-pack command list)
takes the rest of the buffer with `take_unparsed`. The reader never touches a socket,
so tests can feed it any split of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

FLUSH = b"0000"
DELIM = b"0001"
RESPONSE_END = b"0002"

# The largest packet git sends or accepts, length prefix included (LARGE_PACKET_MAX).
MAX_PACKET_LENGTH = 65520
MAX_PAYLOAD_LENGTH = MAX_PACKET_LENGTH - 4

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# Drop consumed bytes from the buffer only once this many have piled up, so that
# reading many small packets stays linear in the input size.
_COMPACT_THRESHOLD = 64 * 1024


class ProtocolError(Exception):
    """The peer broke the git wire protocol."""


class PktLineError(ProtocolError):
    """A pkt-line length prefix or frame is invalid."""


@dataclass(frozen=True, slots=True)
class Data:
    """A data packet; `payload` excludes the 4-byte length prefix and keeps any LF."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Flush:
    """A flush packet (`0000`): the end of a section."""


@dataclass(frozen=True, slots=True)
class Delim:
    """A delimiter packet (`0001`, protocol v2)."""


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    """A response-end packet (`0002`, protocol v2)."""


Packet = Data | Flush | Delim | ResponseEnd


def encode_pkt_line(payload: bytes) -> bytes:
    """Return `payload` framed as one pkt-line. Raises ValueError when it does not fit."""
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"pkt-line payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    return b"%04x" % (len(payload) + 4) + payload


def encode_text_line(text: str | bytes) -> bytes:
    """Return a text pkt-line: the payload with one LF added when it has none."""
    payload = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if not payload.endswith(b"\n"):
        payload += b"\n"
    return encode_pkt_line(payload)


def strip_lf(payload: bytes) -> bytes:
    """Remove one trailing LF, since receivers must accept text lines with or without it."""
    return payload[:-1] if payload.endswith(b"\n") else payload


def parse_length(prefix: bytes) -> int:
    """Decode a 4-byte hex length prefix (either case). Raises PktLineError when invalid."""
    if len(prefix) != 4 or not _HEX_DIGITS.issuperset(prefix):
        raise PktLineError(f"invalid pkt-line length prefix {prefix!r}")
    length = int(prefix, 16)
    if length == 3:
        raise PktLineError(f"invalid pkt-line length {length} (lengths 1-3 are reserved)")
    if length > MAX_PACKET_LENGTH:
        raise PktLineError(f"pkt-line length {length} exceeds the maximum {MAX_PACKET_LENGTH}")
    return length


class PktLineReader:
    """Incremental pkt-line decoder: bytes in, packets out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0

    @property
    def buffered(self) -> int:
        """The number of received bytes not yet returned as packets."""
        return len(self._buffer) - self._start

    def receive_data(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        self._buffer += data

    def next_packet(self) -> Packet | None:
        """Return the next whole packet, or None when more data is needed."""
        if self.buffered < 4:
            return None

        prefix = bytes(self._buffer[self._start : self._start + 4])
        length = parse_length(prefix)
        if length == 0:
            self._consume(4)
            return Flush()
        if length == 1:
            self._consume(4)
            return Delim()
        if length == 2:
            self._consume(4)
            return ResponseEnd()

        if self.buffered < length:
            return None
        payload = bytes(self._buffer[self._start + 4 : self._start + length])
        self._consume(length)
        return Data(payload)

    def feed(self, data: bytes) -> list[Packet]:
        """Append `data` and return every packet that is now complete."""
        self.receive_data(data)
        packets: list[Packet] = []
        while (packet := self.next_packet()) is not None:
            packets.append(packet)
        return packets

    def take_unparsed(self) -> bytes:
        """Remove and return the buffered bytes that no packet has consumed."""
        rest = bytes(self._buffer[self._start :])
        self._buffer = bytearray()
        self._start = 0
        return rest

    def finish(self) -> None:
        """Check that the input ended on a packet boundary. Raises PktLineError otherwise."""
        if self.buffered:
            raise PktLineError(f"input ended inside a pkt-line ({self.buffered} bytes left over)")

    def _consume(self, count: int) -> None:
        self._start += count
        if self._start >= _COMPACT_THRESHOLD or self._start == len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0
