"""Tests of the proxy's sans-IO HTTP pieces: request heads, targets, credentials, chunks."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devaipod.egress.http_head import (
    ChunkedBodyTracker,
    HeadError,
    credential_matches,
    parse_absolute_target,
    parse_request_head,
    split_authority,
)

CREDENTIAL = "session-credential-value"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_parse_request_head_connect() -> None:
    head = parse_request_head(
        b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
        b"Proxy-Authorization:  Bearer x \r\n\r\n",
        max_headers=10,
    )
    assert head.method == "CONNECT"
    assert head.target == "api.example.com:443"
    assert head.version == "HTTP/1.1"
    assert head.get("proxy-authorization") == "Bearer x"
    assert head.get("Missing") is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\n", 400),  # no empty line
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 11 + b"\r\n", 431),
    ],
)
def test_parse_request_head_rejects_malformed(data: bytes, status: int) -> None:
    with pytest.raises(HeadError) as raised:
        parse_request_head(data, max_headers=10)
    assert raised.value.status == status


def test_request_head_repeated_header_rejected() -> None:
    head = parse_request_head(b"GET / HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n", max_headers=10)
    assert head.get_all("A") == ["1", "2"]
    with pytest.raises(HeadError):
        head.get("a")


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("api.example.com:443", ("api.example.com", 443)),
        ("[::1]:8443", ("[::1]", 8443)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("2130706433:65535", ("2130706433", 65535)),
    ],
)
def test_split_authority_connect_targets(authority: str, expected: tuple[str, int]) -> None:
    assert split_authority(authority, default_port=None) == expected


@pytest.mark.parametrize(
    "authority",
    [
        "api.example.com",
        "api.example.com:",
        ":443",
        "::1:443",
        "[::1]443",
        "[::1",
        "api.example.com:0",
        "api.example.com:65536",
        "api.example.com:443x",
        "api.example.com:-1",
        "api.example.com:000000443",
    ],
)
def test_split_authority_rejects_invalid(authority: str) -> None:
    with pytest.raises(HeadError):
        split_authority(authority, default_port=None)


@pytest.mark.parametrize(
    ("target", "host", "port", "origin_form"),
    [
        ("http://models.test/v1/messages", "models.test", 80, "/v1/messages"),
        ("HTTP://models.test:8080", "models.test", 8080, "/"),
        ("http://models.test:8080?q=1", "models.test", 8080, "/?q=1"),
        ("http://models.test/a?b#frag", "models.test", 80, "/a?b"),
        ("http://[::1]:9000/x", "[::1]", 9000, "/x"),
    ],
)
def test_parse_absolute_target_forms(target: str, host: str, port: int, origin_form: str) -> None:
    parsed = parse_absolute_target(target)
    assert parsed.host == host
    assert parsed.port == port
    assert parsed.origin_form == origin_form


@pytest.mark.parametrize(
    "target",
    [
        "/v1/messages",
        "https://models.test/",
        "ftp://models.test/",
        "http://user:pass@models.test/",
        "http://models.test@evil.test/",
        "http:///path",
        "http://models.test:99999/",
    ],
)
def test_parse_absolute_target_rejects(target: str) -> None:
    with pytest.raises(HeadError):
        parse_absolute_target(target)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (basic("agent", CREDENTIAL), True),
        (basic("", CREDENTIAL), True),
        ("basic " + base64.b64encode(f"x:{CREDENTIAL}".encode()).decode(), True),
        (f"Bearer {CREDENTIAL}", True),
        (f"bearer {CREDENTIAL}", True),
        (basic("agent", CREDENTIAL + "x"), False),
        (basic("agent", CREDENTIAL[:-1]), False),
        (basic(CREDENTIAL, "x"), False),  # the credential as the user name does not count
        ("Basic " + base64.b64encode(CREDENTIAL.encode()).decode(), False),
        ("Basic !!!notbase64", False),
        (f"Bearer {CREDENTIAL}x", False),
        (f"Token {CREDENTIAL}", False),
        (CREDENTIAL, False),
        ("", False),
    ],
)
def test_credential_matches_schemes(header: str, matches: bool) -> None:
    assert credential_matches(header, CREDENTIAL) is matches


def test_chunked_tracker_finds_body_end() -> None:
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    tracker = ChunkedBodyTracker()
    consumed = tracker.feed(body + b"GET /next HTTP/1.1\r\n")
    assert tracker.done
    assert consumed == len(body)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=5), st.integers(1, 7))
def test_chunked_tracker_any_split(chunks: list[bytes], piece: int) -> None:
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for chunk in chunks) + b"0\r\n\r\n"
    tracker = ChunkedBodyTracker()
    consumed = 0
    for start in range(0, len(body), piece):
        assert not tracker.done
        consumed += tracker.feed(body[start : start + piece])
    assert tracker.done
    assert consumed == len(body)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nhello\r\n",
        b"5\r\nhelloX\r\n",
        b"5\nhello\r\n",
        b"\r\n",
        b"1" * 5000,
        b"11111111111111111\r\n",
    ],
)
def test_chunked_tracker_rejects_malformed(body: bytes) -> None:
    with pytest.raises(HeadError):
        ChunkedBodyTracker().feed(body)
