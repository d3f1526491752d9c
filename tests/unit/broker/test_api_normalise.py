"""Tests of forge API request normalisation: path, query, headers and JSON body."""

from __future__ import annotations

import pytest

from devaipod.broker.api_normalise import (
    MAX_BODY_BYTES,
    Denied,
    normalise_headers,
    normalise_path,
    normalise_query,
    parse_json_body,
)

JSON = [("Content-Type", "application/json")]


def test_path_decodes_once_and_collapses() -> None:
    assert normalise_path("github", "//repos/%6Fcto//hello/") == ["repos", "octo", "hello"]


def test_path_keeps_gitlab_project_slashes() -> None:
    segments = normalise_path("gitlab", "/projects/group%2Fsub%2Fp/issues/1")

    assert segments == ["projects", "group/sub/p", "issues", "1"]


@pytest.mark.parametrize(
    ("kind", "path", "reason"),
    [
        ("github", "repos/o/r", "does not start with /"),
        ("github", "/repos/o/../r", "dot segment"),
        ("github", "/repos/o/%2E/r", "dot segment"),
        ("github", "/repos/o%2fx/r", "encoded slash"),
        ("gitlab", "/projects/1/issues%2F1", "encoded slash"),
        ("gitlab", "/projects/a%2F..%2Fb", "empty or dot segment"),
        ("github", "/repos/%25/r", "percent-encoded twice"),
        ("github", "/repos/o/r%00", "control or space"),
        ("github", "/repos/o/r%20x", "control or space"),
        ("github", "/repos/o/r\\x", "backslash"),
        ("github", "/repos/o/ré", "non-ASCII"),
        ("github", "/repos/o/%ff", "not UTF-8"),
    ],
)
def test_path_denies_tricks(kind: str, path: str, reason: str) -> None:
    with pytest.raises(Denied) as raised:
        normalise_path(kind, path)  # type: ignore[arg-type]

    assert reason in raised.value.reason


def test_query_keeps_known_read_parameters() -> None:
    assert normalise_query("gitlab", "per_page=100&sort=asc", is_write=False) == {
        "per_page": "100", "sort": "asc"}


@pytest.mark.parametrize(
    ("query", "is_write", "reason"),
    [
        ("SUDO=root", False, "denied"),
        ("page=1", True, "write request"),
        ("page=1&page=2", False, "repeated"),
        ("page=abc", False, "invalid value"),
        ("state=all", False, "not allowed"),
        ("page", False, "malformed"),
    ],
)
def test_query_denials(query: str, is_write: bool, reason: str) -> None:
    with pytest.raises(Denied) as raised:
        normalise_query("github", query, is_write=is_write)

    assert reason in raised.value.reason


def test_headers_strip_credentials_keep_accept() -> None:
    forwarded = normalise_headers([("Authorization", "Bearer s"), ("Cookie", "c=1"),
                                   ("JOB-TOKEN", "j"), ("Accept", "application/json"),
                                   ("X-Custom", "dropped")])

    assert forwarded == {"accept": "application/json"}


@pytest.mark.parametrize("name", ["Sudo", "sudo", "X-Gitea-OTP", "X-HTTP-Method"])
def test_headers_deny_impersonation(name: str) -> None:
    with pytest.raises(Denied):
        normalise_headers([(name, "x")])


def test_json_body_parsed_for_writes() -> None:
    assert parse_json_body("POST", JSON, b'{"body": "hi"}') == {"body": "hi"}
    assert parse_json_body("POST", [], b"") is None
    assert parse_json_body("DELETE", [], b"") is None


@pytest.mark.parametrize(
    ("method", "body", "headers", "reason"),
    [
        ("POST", b'{"a": 1, "a": 2}', JSON, "repeats the key"),
        ("POST", b"[1]", JSON, "must be an object"),
        ("POST", b'{"a": NaN}', JSON, "contains NaN"),
        ("POST", b"{bad", JSON, "not valid UTF-8 JSON"),
        ("POST", b'{"a": 1}', [("Content-Type", "text/plain")], "application/json"),
        ("GET", b"{}", JSON, "must not have a body"),
        ("POST", b"x" * (MAX_BODY_BYTES + 1), JSON, "larger than"),
    ],
)
def test_json_body_denials(method: str, body: bytes, headers: list[tuple[str, str]],
                           reason: str) -> None:
    with pytest.raises(Denied) as raised:
        parse_json_body(method, headers, body)

    assert reason in raised.value.reason
