"""IPv6 addresses that carry an internal IPv4 address must count as internal."""

from __future__ import annotations

import ipaddress

import pytest

from devaipod.egress.addresses import internal_address_reason
from devaipod.egress.allowlist import Allowlist, parse_entry


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64 well-known prefix
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:c0a8:101::1", "192.168.1.1"),  # 6to4
        ("2002:7f00:1::", "127.0.0.1"),
        ("::7f00:1", "127.0.0.1"),  # IPv4-compatible
        ("::a00:1", "10.0.0.1"),
    ],
)
def test_embedded_internal_ipv4_is_internal(address: str, embedded: str) -> None:
    reason = internal_address_reason(ipaddress.IPv6Address(address), frozenset())

    assert reason is not None
    assert embedded in reason


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::808:808"])
def test_embedded_public_ipv4_stays_public(address: str) -> None:
    assert internal_address_reason(ipaddress.IPv6Address(address), frozenset()) is None


def test_embedded_host_address_is_internal() -> None:
    own = frozenset({ipaddress.IPv4Address("203.0.113.9")})

    reason = internal_address_reason(ipaddress.IPv6Address("64:ff9b::cb00:7109"), own)

    assert reason is not None
    assert "203.0.113.9" in reason


def test_name_resolving_to_nat64_loopback_denied() -> None:
    allowlist = Allowlist([parse_entry("api.example.com")])

    reason = allowlist.check_resolved(
        "api.example.com", ipaddress.IPv6Address("64:ff9b::7f00:1"), 443
    )

    assert reason is not None
    assert "api.example.com" in reason
