"""Tests of the egress allowlist: entry parsing, name normalisation and matching."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devaipod.egress.addresses import InvalidHostError
from devaipod.egress.allowlist import (
    DEFAULT_MODEL_API_HOSTS,
    Allowlist,
    AllowlistEntryError,
    build_allowlist,
    classify_host,
    normalize_name,
    parse_entry,
)
from devaipod.errors import UserError


def make_allowlist(*entries: str, defaults: bool = False) -> Allowlist:
    return build_allowlist(scope_allow=entries, include_defaults=defaults)


# --- name normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api.anthropic.com", "api.anthropic.com"),
        ("API.Anthropic.COM", "api.anthropic.com"),
        ("api.anthropic.com.", "api.anthropic.com"),
        ("ＡＰＩ.anthropic.com", "api.anthropic.com"),  # full-width letters
        ("api。anthropic。com", "api.anthropic.com"),  # ideographic full stop
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example.", "xn--bcher-kva.example"),
        ("a-b.example", "a-b.example"),
        ("1e100.net", "1e100.net"),
        ("0x1g.example", "0x1g.example"),
    ],
)
def test_normalize_name_canonical_forms(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "api.anthropic.com..",
        "..api.anthropic.com",
        "api..anthropic.com",
        ".api.anthropic.com",
        "-api.example.com",
        "api-.example.com",
        "a_b.example.com",
        "api.example.com/",
        "user@api.example.com",
        "api example.com",
        "xn--zz.example",  # not decodable punycode
        "a" * 64 + ".example",
        ".".join(["a" * 60] * 5),  # longer than 253 characters
        "api.example.com\x00",
    ],
)
def test_normalize_name_rejects_invalid(raw: str) -> None:
    with pytest.raises(InvalidHostError):
        normalize_name(raw)


# --- IP literal spellings ---------------------------------------------------------------


LOOPBACK = ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "127.0.0.1.",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "0x7f.1",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "0177.0.0.01",
        "017700000001",
        "[::ffff:127.0.0.1]",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "[::FFFF:7F00:0001]",
        "１２７.０.０.１",  # full-width digits
        "127。0。0。1",  # ideographic full stops
    ],
)
def test_classify_host_loopback_spellings(spelling: str) -> None:
    assert classify_host(spelling) == LOOPBACK


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("[FE80::1%lo]", "fe80::1"),
        ("10.1.258", "10.1.1.2"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("3232235777", "192.168.1.1"),
        ("0300.0250.01.01", "192.168.1.1"),
    ],
)
def test_classify_host_other_ip_spellings(spelling: str, expected: str) -> None:
    assert classify_host(spelling) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "spelling",
    [
        "256.0.0.1",
        "1.2.3.4.5",
        "1.2.3.256",
        "4294967296",
        "08.0.0.1",  # leading zero means octal, and 8 is no octal digit
        "0x100.0.0.1",
        "example.123",
        "[::1",
        "::1]",
        "[::g]",
        "fe80::1%",
        "1..1",
    ],
)
def test_classify_host_rejects_numeric_nonaddresses(spelling: str) -> None:
    with pytest.raises(InvalidHostError):
        classify_host(spelling)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_classify_host_decimal_matches_dotted(value: int) -> None:
    address = ipaddress.IPv4Address(value)
    assert classify_host(str(value)) == address
    assert classify_host(hex(value)) == address
    assert classify_host(".".join(oct(byte).replace("0o", "0") for byte in address.packed)) == (
        address
    )


# --- entry parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("api.example.com", "api.example.com"),
        ("API.Example.com.", "api.example.com"),
        ("api.example.com:8443", "api.example.com:8443"),
        ("*.example.com", "*.example.com"),
        ("*.Example.COM.:8080", "*.example.com:8080"),
        ("127.0.0.1:9000", "127.0.0.1:9000"),
        ("127.1:9000", "127.0.0.1:9000"),
        ("[::1]:9000", "[::1]:9000"),
        ("::1", "[::1]"),
        ("  models.test  ", "models.test"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_parse_entry_valid_forms(text: str, rendered: str) -> None:
    assert str(parse_entry(text)) == rendered


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "*",
        "*.",
        "*.com",  # wildcard over a whole top-level domain
        "**.example.com",
        "a.*.example.com",
        "*example.com",
        "*-aiplatform.googleapis.com",  # a prefix wildcard inside a label
        "api.*",
        "*.127.0.0.1",
        "*.[::1]",
        "api.example.com:",
        "api.example.com:0",
        "api.example.com:65536",
        "api.example.com:https",
        "api.example.com:+443",
        "[::1]x",
        "[::1",
        "a..b",
        "https://api.example.com",
    ],
)
def test_parse_entry_rejects_invalid(text: str) -> None:
    with pytest.raises(AllowlistEntryError):
        parse_entry(text)


def test_build_allowlist_names_bad_source() -> None:
    with pytest.raises(UserError) as raised:
        build_allowlist(devcontainer_allow=["ok.example.com", "bad..example.com"])
    assert "customizations.devaipod.allowedDomains" in raised.value.message
    assert "bad..example.com" in raised.value.message


def test_build_allowlist_merges_all_sources() -> None:
    allowlist = build_allowlist(
        config_allow=["config.test"],
        devcontainer_allow=["devcontainer.test"],
        scope_allow=["scope.test"],
        include_defaults=True,
    )
    for host in ("config.test", "devcontainer.test", "scope.test", "api.anthropic.com"):
        assert allowlist.check_host(host, 443).allowed, host


def test_build_allowlist_without_defaults() -> None:
    allowlist = build_allowlist(scope_allow=["scope.test"], include_defaults=False)
    assert not allowlist.check_host("api.anthropic.com", 443).allowed


def test_default_hosts_all_parse() -> None:
    for host in DEFAULT_MODEL_API_HOSTS:
        entry = parse_entry(host)
        assert entry.name == host
        assert entry.port is None


@pytest.mark.parametrize(
    "host",
    [
        "api.anthropic.com",
        "api.openai.com",
        "generativelanguage.googleapis.com",
        "aiplatform.googleapis.com",
        "us-east5-aiplatform.googleapis.com",
        "openrouter.ai",
        "api.mistral.ai",
        "api.groq.com",
        "api.deepseek.com",
        "api.x.ai",
    ],
)
def test_default_allowlist_model_apis(host: str) -> None:
    allowlist = build_allowlist()
    assert allowlist.check_host(host, 443).allowed
    assert not allowlist.check_host(host, 80).allowed


# --- host matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "api.anthropic.com",
        "API.ANTHROPIC.COM",
        "api.anthropic.com.",
        "Api.Anthropic.Com.",
        "ａｐｉ.ａｎｔｈｒｏｐｉｃ.ｃｏｍ",
    ],
)
def test_check_host_exact_name_spellings(host: str) -> None:
    decision = make_allowlist("api.anthropic.com").check_host(host, 443)
    assert decision.allowed
    assert decision.name == "api.anthropic.com"


@pytest.mark.parametrize(
    "host",
    [
        "evilanthropic.com",
        "api.anthropic.com.evil.com",
        "api.anthropic.co",
        "api.anthropic.com.",  # allowed; checked below as control
        "xapi.anthropic.com",
        "api-anthropic.com",
        "sub.api.anthropic.com",
        "anthropic.com",
        "api.anthropic.com..",
        "api.anthropic.com%2eevil.com",
        "api.anthropic.com\\.evil.com",
        "api.anthropic.com@evil.com",
        "аpi.anthropic.com",  # Cyrillic a
        "api.anthropic.com:443",
    ],
)
def test_check_host_lookalikes_denied(host: str) -> None:
    decision = make_allowlist("api.anthropic.com").check_host(host, 443)
    if host == "api.anthropic.com.":
        assert decision.allowed
    else:
        assert not decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("a.example.com", True),
        ("A.Example.COM.", True),
        ("deep.sub.example.com", True),
        ("example.com", False),  # the bare suffix is not covered
        ("example.com.", False),
        ("evilexample.com", False),
        ("a.evilexample.com", False),
        ("example.com.evil.net", False),
        ("a.example.com.evil.net", False),
        ("xn--bcher-kva.example.com", True),
        ("bücher.example.com", True),
        (".example.com", False),
    ],
)
def test_check_host_wildcard_edges(host: str, allowed: bool) -> None:
    decision = make_allowlist("*.example.com").check_host(host, 443)
    assert decision.allowed is allowed, decision.reason


def test_check_host_wildcard_and_exact_entries() -> None:
    allowlist = make_allowlist("*.example.com", "example.com")
    assert allowlist.check_host("example.com", 443).allowed
    assert allowlist.check_host("a.example.com", 443).allowed


def test_check_host_idna_entry_matches_both_forms() -> None:
    allowlist = make_allowlist("bücher.example")
    assert allowlist.check_host("xn--bcher-kva.example", 443).allowed
    assert allowlist.check_host("BÜCHER.example.", 443).allowed
    assert not allowlist.check_host("bucher.example", 443).allowed


def test_check_host_punycode_entry_matches_unicode() -> None:
    allowlist = make_allowlist("xn--bcher-kva.example")
    assert allowlist.check_host("bücher.example", 443).allowed


@pytest.mark.parametrize(
    ("entry", "port", "allowed"),
    [
        ("api.example.com", 443, True),
        ("api.example.com", 80, False),
        ("api.example.com", 8443, False),
        ("api.example.com:8443", 8443, True),
        ("api.example.com:8443", 443, False),  # a listed port replaces the default
        ("*.example.com:8080", 8080, True),
        ("*.example.com:8080", 443, False),
    ],
)
def test_check_host_port_rules(entry: str, port: int, allowed: bool) -> None:
    host = "api.example.com"
    decision = make_allowlist(entry).check_host(host, port)
    assert decision.allowed is allowed, decision.reason


def test_check_host_port_denial_names_allowed_ports() -> None:
    decision = make_allowlist("api.example.com", "api.example.com:8443").check_host(
        "api.example.com", 80
    )
    assert not decision.allowed
    assert "port 80" in decision.reason
    assert "443, 8443" in decision.reason


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "017700000001",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "::ffff:127.0.0.1",
        "[::1]",
        "::1",
        "0",
        "0.0.0.0",
        "[::]",
        "169.254.169.254",
        "2852039166",  # 169.254.169.254 as one decimal number
        "10.0.0.1",
        "8.8.8.8",
        "[2001:4860:4860::8888]",
    ],
)
def test_check_host_ip_literal_denied(host: str) -> None:
    decision = make_allowlist("api.anthropic.com", "*.example.com").check_host(host, 443)
    assert not decision.allowed
    assert decision.address is not None
    assert "IP address" in decision.reason


@pytest.mark.parametrize(
    ("entry", "host", "port", "allowed"),
    [
        ("127.0.0.1:9000", "127.0.0.1", 9000, True),
        ("127.0.0.1:9000", "127.1", 9000, True),
        ("127.0.0.1:9000", "2130706433", 9000, True),
        ("127.0.0.1:9000", "0x7f000001", 9000, True),
        ("127.0.0.1:9000", "[::ffff:127.0.0.1]", 9000, True),
        ("127.0.0.1:9000", "127.0.0.1", 443, False),
        ("127.0.0.1:9000", "127.0.0.2", 9000, False),
        ("127.0.0.1:9000", "::1", 9000, False),
        ("[::1]:9000", "[0::1]", 9000, True),
        ("[::1]:9000", "::1", 9000, True),
        ("93.184.215.14", "93.184.215.14", 443, True),
        ("93.184.215.14", "1572394766", 443, True),
    ],
)
def test_check_host_listed_ip_exact(entry: str, host: str, port: int, allowed: bool) -> None:
    decision = make_allowlist(entry).check_host(host, port)
    assert decision.allowed is allowed, decision.reason


def test_check_host_ip_entry_not_name() -> None:
    # A listed address allows that address, not names that happen to look numeric.
    allowlist = make_allowlist("127.0.0.1:9000")
    assert not allowlist.check_host("localhost", 9000).allowed
    assert not allowlist.check_host("127.0.0.1.nip.io", 9000).allowed


# --- resolved addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.53.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),  # unique local
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "non-global"),
        ("fec0::1", "site-local"),
    ],
)
def test_check_resolved_internal_denied(address: str, kind: str) -> None:
    allowlist = make_allowlist("api.example.com")
    reason = allowlist.check_resolved("api.example.com", ipaddress.ip_address(address), 443)
    assert reason is not None
    assert kind in reason
    assert "api.example.com" in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_check_resolved_public_allowed(address: str) -> None:
    allowlist = make_allowlist("api.example.com")
    assert allowlist.check_resolved("api.example.com", ipaddress.ip_address(address), 443) is None


def test_check_resolved_listed_internal_allowed() -> None:
    allowlist = make_allowlist("models.test:9000", "127.0.0.1:9000")
    loopback = ipaddress.ip_address("127.0.0.1")
    mapped = ipaddress.ip_address("::ffff:127.0.0.1")
    assert allowlist.check_resolved("models.test", loopback, 9000) is None
    assert allowlist.check_resolved("models.test", mapped, 9000) is None
    assert allowlist.check_resolved("models.test", loopback, 9001) is not None
    assert allowlist.check_resolved("models.test", ipaddress.ip_address("127.0.0.2"), 9000)


def test_check_resolved_host_own_address_denied() -> None:
    own = ipaddress.ip_address("93.184.215.15")
    public = ipaddress.ip_address("93.184.215.14")
    allowlist = Allowlist([parse_entry("api.example.com")], local_addresses=frozenset({own}))
    reason = allowlist.check_resolved("api.example.com", own, 443)
    assert reason is not None
    assert "this host" in reason
    assert allowlist.check_resolved("api.example.com", public, 443) is None
