"""Parse and rewrite the ref advertisement of git-receive-pack (`info/refs` for a push),
so the agent's git lists only the branch it may push."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from devaipod.broker.pktline import (
    FLUSH,
    Data,
    Flush,
    PktLineReader,
    ProtocolError,
    encode_pkt_line,
    strip_lf,
)

log = logging.getLogger(__name__)

# Capabilities the broker hides from the pushing client, since it rejects what they enable.
# `atomic` is dropped because the broker already treats every push as all-or-nothing.
HIDDEN_CAPABILITIES = ("push-options", "atomic")
HIDDEN_CAPABILITY_PREFIXES = ("push-cert",)
CAPABILITIES_REF = "capabilities^{}"
HAVE_REF = ".have"


@dataclass
class RefAdvertisement:
    """A parsed ref advertisement (protocol v0 or v1)."""

    service: str | None = None
    version: int = 0
    refs: list[tuple[str, str]] = field(default_factory=list)
    haves: list[str] = field(default_factory=list)
    shallow: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def tips(self) -> dict[str, str]:
        """Ref name to object id, for every advertised ref."""
        return dict((ref, oid) for oid, ref in self.refs)

    @property
    def zero_oid(self) -> str:
        """The all-zero object id of the repository's object format."""
        for capability in self.capabilities:
            if capability == "object-format=sha256":
                return "0" * 64
        return "0" * 40


def _decode(payload: bytes) -> str:
    return payload.decode("utf-8", "surrogateescape")


def parse_ref_advertisement(body: bytes) -> RefAdvertisement:
    """Parse a whole smart-HTTP `info/refs` body. Raises ProtocolError when it is malformed."""
    reader = PktLineReader()
    packets = reader.feed(body)
    reader.finish()

    advertisement = RefAdvertisement()
    index = 0
    if packets and isinstance(packets[0], Data) and packets[0].payload.startswith(b"# service="):
        advertisement.service = _decode(strip_lf(packets[0].payload)).removeprefix("# service=")
        if len(packets) < 2 or not isinstance(packets[1], Flush):
            raise ProtocolError("ref advertisement: missing flush after the service line")
        index = 2

    first = True
    for packet in packets[index:]:
        if isinstance(packet, Flush):
            return advertisement
        if not isinstance(packet, Data):
            raise ProtocolError(f"ref advertisement: unexpected {type(packet).__name__} packet")
        line = strip_lf(packet.payload)

        if first and line.startswith(b"ERR "):
            advertisement.error = _decode(line[4:])
            return advertisement
        if first and line.startswith(b"version "):
            version = line[8:]
            if not version.isdigit():
                raise ProtocolError(f"ref advertisement: invalid version line {line[:50]!r}")
            advertisement.version = int(version)
            continue
        if line.startswith(b"shallow "):
            advertisement.shallow.append(_decode(line[8:]))
            continue

        ref_part, has_nul, capability_part = line.partition(b"\0")
        if first:
            advertisement.capabilities = [_decode(c) for c in capability_part.split(b" ") if c]
        elif has_nul:
            raise ProtocolError("ref advertisement: capabilities after the first ref")
        first = False

        oid, space, ref = _decode(ref_part).partition(" ")
        if not space or not oid or not ref:
            raise ProtocolError(f"ref advertisement: invalid ref line {line[:200]!r}")
        if ref == HAVE_REF:
            advertisement.haves.append(oid)
        elif ref != CAPABILITIES_REF:
            advertisement.refs.append((oid, ref))
    raise ProtocolError("ref advertisement: missing final flush")


def _kept_capability(capability: str) -> bool:
    if capability in HIDDEN_CAPABILITIES:
        return False
    return not capability.startswith(HIDDEN_CAPABILITY_PREFIXES)


def rewrite_receive_pack_advertisement(
    body: bytes, target_ref: str, *, advertise_haves: bool = True
) -> bytes:
    """Return the advertisement with `target_ref` as its only ref, for the pushing client.

    Other refs are dropped. With `advertise_haves` their object ids stay as `.have` lines,
    which name no ref but let git build a thin pack on commits the upstream already has,
    as receive-pack does for alternates. When the upstream lacks `target_ref` and there is
    nothing else to list, the capabilities ride on a `capabilities^{}` line with the zero
    id. The `push-options`, `push-cert` and `atomic` capabilities are removed. An `ERR`
    advertisement comes back unchanged so that git shows the upstream's error.
    """
    advertisement = parse_ref_advertisement(body)
    if advertisement.error is not None:
        return body

    capabilities = " ".join(c for c in advertisement.capabilities if _kept_capability(c))
    lines: list[tuple[str, str]] = []
    target_oid = advertisement.tips.get(target_ref)
    if target_oid is not None:
        lines.append((target_oid, target_ref))

    if advertise_haves:
        seen = {target_oid}
        for oid in [oid for oid, _ in advertisement.refs] + advertisement.haves:
            if oid not in seen:
                seen.add(oid)
                lines.append((oid, HAVE_REF))
    if not lines:
        lines.append((advertisement.zero_oid, CAPABILITIES_REF))

    output = b""
    if advertisement.service is not None:
        output += encode_pkt_line(f"# service={advertisement.service}\n".encode()) + FLUSH
    if advertisement.version:
        output += encode_pkt_line(f"version {advertisement.version}\n".encode())
    for index, (oid, ref) in enumerate(lines):
        text = f"{oid} {ref}".encode("utf-8", "surrogateescape")
        if index == 0:
            text += b"\0" + capabilities.encode("utf-8", "surrogateescape")
        output += encode_pkt_line(text + b"\n")
    for oid in advertisement.shallow:
        output += encode_pkt_line(f"shallow {oid}\n".encode())
    log.debug(
        "receive-pack advertisement rewritten: %d upstream refs, %s %s",
        len(advertisement.refs),
        target_ref,
        "present" if target_oid else "absent",
    )
    return output + FLUSH
