"""IP literals in every spelling a resolver or URL parser accepts, and the address
ranges the egress proxy treats as internal (loopback, private, link-local, ...).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidHostError(ValueError):
    """A host that is neither a valid DNS name nor a valid IP literal."""


def _parse_ipv4_part(part: str) -> int | None:
    """Parse one dotted part as inet_aton does: 0x hex, leading-0 octal, else decimal."""
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if digits == "":
            return 0
        if all(c in "0123456789abcdefABCDEF" for c in digits):
            return int(digits, 16)
        return None
    if not part.isascii() or not part.isdigit():
        return None
    if len(part) > 1 and part.startswith("0"):
        if all(c in "01234567" for c in part):
            return int(part, 8)
        return None
    return int(part)


def ends_in_number(host: str) -> bool:
    """Tell whether the last label is numeric, which makes the host an IPv4 literal or invalid.

    This follows the WHATWG URL rule: `1.2.3.4.5`, `256.1.1.1` and `0x1g` are never DNS
    names, so they cannot slip past the IP rules by being resolved as names.
    """
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isascii() and last.isdigit():
        return True
    if last[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in last[2:]):
        return True
    return False


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """Parse IPv4 in the forms inet_aton accepts: `127.0.0.1`, `127.1`, `2130706433`,
    `0x7f.1`, `0177.0.0.1`; one trailing dot is allowed. Return None if it is not one.
    """
    if host.endswith("."):
        host = host[:-1]
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or any(part == "" for part in parts):
        return None

    numbers: list[int] = []
    for part in parts:
        number = _parse_ipv4_part(part)
        if number is None:
            return None
        numbers.append(number)

    # All parts but the last are single bytes; the last fills the remaining bytes,
    # so `127.1` is 127.0.0.1 and `10.1.258` is 10.1.1.2.
    leading, last = numbers[:-1], numbers[-1]
    if any(number > 255 for number in leading):
        return None
    remaining_bytes = 4 - len(leading)
    if last >= 256**remaining_bytes:
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_ip_literal(host: str) -> IPAddress | None:
    """Return the address a host string spells, or None when it is a name.

    Accepts IPv4 in inet_aton spellings, IPv6 with or without brackets and with a
    zone id (dropped), and returns IPv4-mapped IPv6 (`::ffff:127.0.0.1`) as IPv4.
    Raises InvalidHostError for hosts that end in a number but are no valid IPv4.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    elif text.startswith("[") or text.endswith("]"):
        raise InvalidHostError(f"unbalanced brackets in host {host!r}")

    if ":" in text:
        address_text, _, zone = text.partition("%")
        if "%" in text and zone == "":
            raise InvalidHostError(f"empty IPv6 zone id in host {host!r}")
        try:
            address = ipaddress.IPv6Address(address_text)
        except ValueError as error:
            raise InvalidHostError(f"invalid IPv6 address {host!r}") from error
        return canonical_address(address)

    if text == "" or not ends_in_number(text):
        return None
    ipv4 = parse_ipv4_literal(text)
    if ipv4 is None:
        raise InvalidHostError(f"host {host!r} ends in a number but is not a valid IPv4 address")
    return ipv4


def canonical_address(address: IPAddress) -> IPAddress:
    """Map IPv4-mapped IPv6 to IPv4 and drop IPv6 zone ids, so equal hosts compare equal."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(address.packed)
    return address


# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits: NAT64
# (RFC 6052 well-known prefix and RFC 8215 local-use prefix) and the deprecated
# IPv4-compatible form. A NAT64 gateway or a tunnel forwards them to that IPv4 address.
_IPV4_EMBEDDING_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address a NAT64, 6to4 or IPv4-compatible IPv6 address carries."""
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _IPV4_EMBEDDING_PREFIXES):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def internal_address_reason(
    address: IPAddress, local_addresses: frozenset[IPAddress]
) -> str | None:
    """Name the internal range an address is in, or return None for a public address.

    An IPv6 address that carries an IPv4 address (NAT64, 6to4, IPv4-compatible) is
    internal when the IPv4 address is.
    """
    address = canonical_address(address)
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        # Shared address space (100.64.0.0/10), reserved and other non-global ranges.
        return "a non-global address"
    if address in local_addresses:
        return "an address of this host"

    ipv4 = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if ipv4 is not None:
        reason = internal_address_reason(ipv4, local_addresses)
        if reason is not None:
            return f"an IPv6 address carrying {ipv4}, {reason}"
    return None


def _addresses_from_proc() -> set[IPAddress]:
    """Read the host's interface addresses from Linux /proc (IPv4 local routes, IPv6 list)."""
    found: set[IPAddress] = set()

    # /proc/net/fib_trie lists every local IPv4 address as a "/32 host LOCAL" leaf
    # right after the line holding the address.
    try:
        lines = Path("/proc/net/fib_trie").read_text(encoding="ascii").splitlines()
    except OSError:
        lines = []
    for previous, line in zip(lines, lines[1:], strict=False):
        if "/32 host LOCAL" in line:
            candidate = previous.strip().split()[-1]
            try:
                found.add(ipaddress.IPv4Address(candidate))
            except ValueError:
                continue

    try:
        inet6_lines = Path("/proc/net/if_inet6").read_text(encoding="ascii").splitlines()
    except OSError:
        inet6_lines = []
    for line in inet6_lines:
        fields = line.split()
        if fields:
            try:
                found.add(ipaddress.IPv6Address(int(fields[0], 16)))
            except ValueError:
                continue
    return found


def discover_local_addresses() -> frozenset[IPAddress]:
    """Collect this host's own addresses, so a name resolving to one of them is denied.

    NOTE: reads Linux /proc files and the host name's addresses; on other systems only
    the host name lookup contributes, and loopback/private rules still apply.
    """
    found = _addresses_from_proc()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError as error:
        log.debug("could not resolve the host name for the local address list: %s", error)
        infos = []
    for info in infos:
        try:
            found.add(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        except ValueError:
            continue
    return frozenset(canonical_address(address) for address in found)


def global_host_addresses() -> list[IPAddress]:
    """Return this host's own addresses that no internal range covers, sorted.

    A proxy in a container can list only the container's addresses, so the host passes
    these to it. A name resolving to one of them would reach the host's own services.
    """
    found = {
        address
        for address in discover_local_addresses()
        if internal_address_reason(address, frozenset()) is None
    }
    return sorted(found, key=lambda address: (address.version, int(address)))


def parse_host_address(text: str, option: str) -> IPAddress:
    """Parse an IP address given on the command line; raise ValueError naming `option`."""
    try:
        return canonical_address(ipaddress.ip_address(text.strip()))
    except ValueError as error:
        raise ValueError(f"invalid {option} value {text!r}: not an IP address") from error
