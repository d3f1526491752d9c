"""Sans-IO parser of a git-receive-pack request body (a push): shallow lines, the command
list with its capabilities, a push certificate, push options, then the pack, streamed.

Request grammar (git's gitprotocol-pack):
    *shallow (command-list | push-cert) flush-pkt [push-options flush-pkt] [pack]
The parser decodes the pkt-lines up to and including the flush that ends the request
head, and then hands every later byte on as PackData without keeping it. Nothing is
written anywhere: the caller forwards bytes and decides.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from devaipod.broker.pktline import (
    Data,
    Flush,
    Packet,
    PktLineReader,
    ProtocolError,
    strip_lf,
)

log = logging.getLogger(__name__)

# Object id lengths in hex, by the `object-format=` capability (SHA-1 when absent).
OID_HEX_LENGTHS = {"sha1": 40, "sha256": 64}
PACK_SIGNATURE = b"PACK"
PACK_HEADER_LENGTH = 12
# Ceiling on the bytes before the pack: shallow lines, commands, certificate, options.
# NOTE: an estimate, large enough for tens of thousands of commands or shallow lines.
DEFAULT_MAX_HEAD_BYTES = 4 * 1024 * 1024

_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Shallow:
    """A `shallow <oid>` line: the client's repository is shallow at this commit."""

    oid: str


@dataclass(frozen=True, slots=True)
class Command:
    """One ref update `old_oid new_oid ref`; a zero old_oid creates, a zero new_oid deletes.

    `ref` is the ref name decoded from the wire bytes as UTF-8 with surrogateescape, so
    `ref.encode("utf-8", "surrogateescape")` gives back the exact bytes sent.
    """

    old_oid: str
    new_oid: str
    ref: str

    @property
    def is_create(self) -> bool:
        """Whether the command creates the ref (zero old_oid)."""
        return _is_zero_oid(self.old_oid)

    @property
    def is_delete(self) -> bool:
        """Whether the command deletes the ref (zero new_oid)."""
        return _is_zero_oid(self.new_oid)

    @property
    def ref_bytes(self) -> bytes:
        """The ref name exactly as sent on the wire."""
        return self.ref.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The capability list the client sent after NUL on its first command line."""

    names: list[str]


@dataclass(frozen=True, slots=True)
class PushCertificateStart:
    """The client sent a signed push certificate instead of a plain command list."""


@dataclass(frozen=True, slots=True)
class PushOption:
    """One push option (`git push -o VALUE`), sent after the command list."""

    value: str


@dataclass(frozen=True, slots=True)
class CommandsEnd:
    """The request head is complete: the command list and any push options are read.

    Every later byte is pack data. `expects_pack` is False when all commands are deletes
    or there are none, in which case git sends no pack.
    """

    expects_pack: bool


@dataclass(frozen=True, slots=True)
class PackData:
    """A chunk of the pack, passed on as received."""

    data: bytes


Event = (
    Shallow | Command | Capabilities | PushCertificateStart | PushOption | CommandsEnd | PackData
)


class State(enum.Enum):
    """The parser's position in the request."""

    SHALLOW = "shallow lines or first command"
    COMMANDS = "command list"
    PUSH_CERT_HEADER = "push certificate header"
    PUSH_CERT_COMMANDS = "push certificate commands"
    PUSH_CERT_SIGNATURE = "push certificate signature"
    AFTER_PUSH_CERT = "flush after push certificate"
    PUSH_OPTIONS = "push options"
    PACK = "pack"
    NO_PACK = "end of request (no pack expected)"
    DONE = "done"
    ERROR = "error"


def _is_zero_oid(oid: str) -> bool:
    return oid.count("0") == len(oid)


def _decode(payload: bytes) -> str:
    return payload.decode("utf-8", "surrogateescape")


class ReceivePackParser:
    """Incremental parser of one receive-pack request body.

    Feed the body in chunks of any size; each call returns the events the new bytes
    complete. Raises ProtocolError (or its subclass PktLineError) on the first
    violation, naming the parser state, and then stays failed. After the head the
    parser stores nothing but the 12-byte pack header it checks.

    The parsed head is also kept on the parser: `shallow`, `commands`, `capabilities`,
    `push_certificate`, `push_options`, `head_complete` and `head_length` (the number of
    body bytes before the pack).
    """

    def __init__(self, *, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES) -> None:
        self.state = State.SHALLOW
        self.shallow: list[str] = []
        self.commands: list[Command] = []
        self.capabilities: list[str] = []
        self.push_certificate = False
        self.push_options: list[str] = []
        self.head_length = 0
        self.pack_length = 0

        self._max_head_bytes = max_head_bytes
        self._reader = PktLineReader()
        self._oid_length: int | None = None
        self._pack_header = b""

    @property
    def head_complete(self) -> bool:
        """Whether the head (everything before the pack) has been parsed."""
        return self.state in (State.PACK, State.NO_PACK, State.DONE)

    @property
    def expects_pack(self) -> bool:
        """Whether git sends a pack after the head: when any command creates or updates."""
        return any(not command.is_delete for command in self.commands)

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next chunk of the body and return the events it completes."""
        if self.state is State.ERROR:
            raise ProtocolError("receive-pack parser already failed; no more input accepted")
        if self.state is State.DONE:
            raise ProtocolError("receive-pack request already finished")
        try:
            return self._feed(data)
        except ProtocolError:
            self.state = State.ERROR
            raise

    def finish(self) -> list[Event]:
        """Check that the body ended where a request may end. Raises ProtocolError otherwise."""
        if self.state is State.ERROR:
            raise ProtocolError("receive-pack parser already failed")
        try:
            self._finish()
        except ProtocolError:
            self.state = State.ERROR
            raise
        self.state = State.DONE
        return []

    def _finish(self) -> None:
        if not self.head_complete:
            self._reader.finish()
            if self.state is State.SHALLOW and not self.shallow:
                raise ProtocolError("receive-pack request is empty (no command list and no flush)")
            raise ProtocolError(f"receive-pack request ended in the {self.state.value} (no flush)")

        if self.state is State.PACK:
            if self.pack_length == 0:
                raise ProtocolError(
                    "receive-pack request has commands that need a pack, but no pack"
                )
            if self.pack_length < PACK_HEADER_LENGTH:
                raise ProtocolError(
                    f"receive-pack request ended inside the pack header ({self.pack_length} bytes)"
                )

    def _feed(self, data: bytes) -> list[Event]:
        if self.state is State.PACK:
            return self._pack_events(data)
        if self.state is State.NO_PACK:
            if data:
                raise ProtocolError(
                    f"unexpected {len(data)} bytes after the command list "
                    "(no pack is sent when every command is a delete)"
                )
            return []

        self._reader.receive_data(data)
        events: list[Event] = []
        while not self.head_complete:
            before = self._reader.buffered
            packet = self._reader.next_packet()
            if packet is None:
                if self.head_length + self._reader.buffered > self._max_head_bytes:
                    raise ProtocolError(
                        f"receive-pack request head exceeds {self._max_head_bytes} bytes"
                    )
                return events
            self.head_length += before - self._reader.buffered
            if self.head_length > self._max_head_bytes:
                raise ProtocolError(
                    f"receive-pack request head exceeds {self._max_head_bytes} bytes"
                )
            events.extend(self._head_packet(packet))

        rest = self._reader.take_unparsed()
        events.extend(self._feed(rest) if rest else [])
        return events

    def _head_packet(self, packet: Packet) -> list[Event]:
        if self.state is State.SHALLOW:
            return self._shallow_or_first(packet)
        if self.state is State.COMMANDS:
            return self._command_list(packet)
        if self.state in (
            State.PUSH_CERT_HEADER,
            State.PUSH_CERT_COMMANDS,
            State.PUSH_CERT_SIGNATURE,
        ):
            return self._push_cert_line(packet)
        if self.state is State.AFTER_PUSH_CERT:
            if not isinstance(packet, Flush):
                raise ProtocolError("expected a flush after push-cert-end")
            return self._end_command_list()
        if self.state is State.PUSH_OPTIONS:
            return self._push_option(packet)
        raise ProtocolError(f"unexpected packet in state {self.state.value}")

    def _data_line(self, packet: Packet) -> bytes:
        if not isinstance(packet, Data):
            name = type(packet).__name__.lower()
            raise ProtocolError(f"unexpected {name} packet in the {self.state.value}")
        return strip_lf(packet.payload)

    def _shallow_or_first(self, packet: Packet) -> list[Event]:
        if isinstance(packet, Flush):
            # No commands: git's probe request is just a flush.
            return self._end_command_list()

        line = self._data_line(packet)
        if line.startswith(b"shallow "):
            oid = self._parse_oid(line[len(b"shallow ") :], "shallow line")
            self.shallow.append(oid)
            return [Shallow(oid)]

        if line.startswith(b"push-cert\0") or line == b"push-cert":
            self.push_certificate = True
            self.state = State.PUSH_CERT_HEADER
            capabilities = self._parse_capabilities(line.partition(b"\0")[2])
            return [PushCertificateStart(), Capabilities(capabilities)]

        command_bytes, has_nul, capability_bytes = line.partition(b"\0")
        capabilities = self._parse_capabilities(capability_bytes if has_nul else b"")
        command = self._parse_command(command_bytes)
        self.state = State.COMMANDS
        return [Capabilities(capabilities), command]

    def _command_list(self, packet: Packet) -> list[Event]:
        if isinstance(packet, Flush):
            return self._end_command_list()
        line = self._data_line(packet)
        if b"\0" in line:
            raise ProtocolError(
                f"NUL in command {len(self.commands) + 1}; only the first command may carry "
                "capabilities"
            )
        return [self._parse_command(line)]

    def _push_cert_line(self, packet: Packet) -> list[Event]:
        if isinstance(packet, Flush):
            raise ProtocolError("flush inside the push certificate")
        line = self._data_line(packet)
        if line == b"push-cert-end":
            self.state = State.AFTER_PUSH_CERT
            return []

        if self.state is State.PUSH_CERT_HEADER:
            # Header lines (certificate version, pusher, pushee, nonce, push-option) end
            # at an empty line; the commands follow it.
            if line == b"":
                self.state = State.PUSH_CERT_COMMANDS
            return []

        if self.state is State.PUSH_CERT_COMMANDS and not line.startswith(b"-----BEGIN"):
            return [self._parse_command(line)]
        self.state = State.PUSH_CERT_SIGNATURE
        return []

    def _push_option(self, packet: Packet) -> list[Event]:
        if isinstance(packet, Flush):
            return self._end_head()
        value = _decode(self._data_line(packet))
        self.push_options.append(value)
        return [PushOption(value)]

    def _end_command_list(self) -> list[Event]:
        if "push-options" in self.capabilities:
            self.state = State.PUSH_OPTIONS
            return []
        return self._end_head()

    def _end_head(self) -> list[Event]:
        self.state = State.PACK if self.expects_pack else State.NO_PACK
        log.debug(
            "receive-pack head parsed: %d commands, %d shallow, %d bytes",
            len(self.commands),
            len(self.shallow),
            self.head_length,
        )
        return [CommandsEnd(expects_pack=self.expects_pack)]

    def _pack_events(self, data: bytes) -> list[Event]:
        if not data:
            return []
        if self.pack_length < PACK_HEADER_LENGTH:
            needed = PACK_HEADER_LENGTH - self.pack_length
            self._pack_header += data[:needed]
            self._check_pack_header()
        self.pack_length += len(data)
        return [PackData(data)]

    def _check_pack_header(self) -> None:
        header = self._pack_header
        signature = header[:4]
        if not PACK_SIGNATURE.startswith(signature):
            raise ProtocolError(f"data after the command list is not a pack (starts {signature!r})")
        if len(header) >= 8 and header[4:8] not in (b"\0\0\0\x02", b"\0\0\0\x03"):
            raise ProtocolError(f"unsupported pack version {int.from_bytes(header[4:8], 'big')}")

    def _parse_capabilities(self, data: bytes) -> list[str]:
        capabilities = [_decode(name) for name in data.split(b" ") if name]
        self.capabilities = capabilities

        object_format = "sha1"
        for capability in capabilities:
            if capability.startswith("object-format="):
                object_format = capability.removeprefix("object-format=")
        if object_format not in OID_HEX_LENGTHS:
            raise ProtocolError(f"unsupported object format {object_format!r}")
        self._oid_length = OID_HEX_LENGTHS[object_format]

        for oid in self.shallow:
            if len(oid) != self._oid_length:
                raise ProtocolError(
                    f"shallow oid {oid} does not match object format {object_format}"
                )
        return capabilities

    def _parse_oid(self, data: bytes, source: str) -> str:
        oid = _decode(data)
        lengths = (self._oid_length,) if self._oid_length else tuple(OID_HEX_LENGTHS.values())
        if len(oid) not in lengths or not _HEX.issuperset(oid):
            expected = " or ".join(str(length) for length in lengths)
            raise ProtocolError(
                f"invalid object id {oid!r} in {source} (expected {expected} hex digits)"
            )
        return oid.lower()

    def _parse_command(self, line: bytes) -> Command:
        parts = line.split(b" ", 2)
        if len(parts) != 3 or not parts[2]:
            raise ProtocolError(f"invalid command line {line[:200]!r} (expected 'old new ref')")
        old_oid = self._parse_oid(parts[0], "command")
        new_oid = self._parse_oid(parts[1], "command")
        command = Command(old_oid=old_oid, new_oid=new_oid, ref=_decode(parts[2]))
        self.commands.append(command)
        return command
