"""The host's own global addresses, which a proxy in a container cannot discover itself."""

from __future__ import annotations

import ipaddress

import pytest

from devaipod.egress import addresses
from devaipod.egress.addresses import global_host_addresses, parse_host_address


def test_global_host_addresses_skip_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {
        ipaddress.ip_address(text)
        for text in ("127.0.0.1", "10.88.0.1", "192.0.2.2", "fe80::1", "::1", "2a00:1450::5",
                     "1.2.3.4")
    }  # fmt: skip
    monkeypatch.setattr(addresses, "discover_local_addresses", lambda: frozenset(found))

    result = global_host_addresses()

    assert result == [ipaddress.ip_address("1.2.3.4"), ipaddress.ip_address("2a00:1450::5")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.2.3.4", "1.2.3.4"), (" 2a00:1450::5 ", "2a00:1450::5"), ("::ffff:1.2.3.4", "1.2.3.4")],
)
def test_host_address_parsed_canonical(text: str, expected: str) -> None:
    assert parse_host_address(text, "--egress-host-address") == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", ["", "host.example.test", "1.2.3", "300.1.1.1"])
def test_host_address_invalid_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid --egress-host-address value"):
        parse_host_address(text, "--egress-host-address")
