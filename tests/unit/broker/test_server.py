"""Broker HTTP server: session-credential check, routing and upload-pack forwarding."""

from __future__ import annotations

import base64
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devaipod.broker.audit import AuditLog, read_entries
from devaipod.broker.server import (
    BrokerConfig,
    credential_matches,
    presented_credential,
    start_broker,
)
from devaipod.scope.model import parse_scope
from support.broker_harness import CREDENTIAL, TOKEN, Harness, basic_auth, running_harness


def test_presented_credential_reads_basic_password() -> None:
    assert presented_credential(basic_auth("agent", "secret")) == "secret"
    assert presented_credential(basic_auth("", "secret:with:colons")) == "secret:with:colons"


def test_presented_credential_reads_bearer_token() -> None:
    assert presented_credential("Bearer secret") == "secret"
    assert presented_credential("bearer   secret  ") == "secret"


def test_presented_credential_rejects_malformed_headers() -> None:
    assert presented_credential(None) is None
    assert presented_credential("") is None
    assert presented_credential("Basic not-base64!") is None
    assert presented_credential("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert presented_credential("Token secret") is None
    assert presented_credential("Bearer") is None


def test_credential_matches_only_exact_value() -> None:
    assert credential_matches(f"Bearer {CREDENTIAL}", CREDENTIAL)
    assert credential_matches(basic_auth("anyone", CREDENTIAL), CREDENTIAL)
    assert not credential_matches(f"Bearer {CREDENTIAL}x", CREDENTIAL)
    assert not credential_matches(f"Bearer {CREDENTIAL[:-1]}", CREDENTIAL)
    assert not credential_matches(None, CREDENTIAL)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path) as started:
        yield started


async def _get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": authorization} if authorization else {}
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def test_missing_credential_gets_basic_challenge(harness: Harness) -> None:
    status, headers, _ = await _get(harness.url("org/repo.git/info/refs?service=git-upload-pack"))

    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="devaipod"'
    assert harness.upstream.requests == []
    assert read_entries(harness.audit_path) == []


async def test_wrong_credential_is_audited_and_rejected(harness: Harness) -> None:
    status, headers, body = await _get(
        harness.url("org/repo.git/info/refs?service=git-upload-pack"), "Bearer wrong"
    )

    assert status == 401
    assert "WWW-Authenticate" in headers
    assert harness.upstream.requests == []
    entries = read_entries(harness.audit_path)
    assert [entry["decision"] for entry in entries] == ["deny"]
    assert entries[0]["reason"] == "invalid session credential"
    assert entries[0]["kind"] == "git-fetch"
    assert CREDENTIAL.encode() not in body


async def test_basic_and_bearer_credentials_pass(harness: Harness) -> None:
    url = harness.url("org/repo.git/info/refs?service=git-upload-pack")

    basic_status, _, _ = await _get(url, basic_auth("agent", CREDENTIAL))
    bearer_status, _, _ = await _get(url, f"Bearer {CREDENTIAL}")

    assert basic_status == 200
    assert bearer_status == 200
    assert len(harness.upstream.requests) == 2


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "org/repo.git/HEAD"),
        ("GET", "org/repo.git/objects/info/packs"),
        ("GET", "org/repo.git/objects/ab/cdef0123"),
        ("GET", "org/repo.git/info/refs"),
        ("GET", "org/repo.git/info/refs?service=git-upload-archive"),
        ("GET", "org/repo.git/git-upload-pack"),
        ("POST", "org/repo.git/info/refs?service=git-upload-pack"),
        ("HEAD", "org/repo.git/info/refs?service=git-upload-pack"),
        ("PUT", "org/repo.git/git-receive-pack"),
        ("GET", "org%2Frepo.git/info/refs?service=git-upload-pack"),
    ],
)
async def test_non_smart_http_requests_are_not_found(
    harness: Harness, method: str, path: str
) -> None:
    headers = {"Authorization": f"Bearer {CREDENTIAL}"}
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, harness.url(path), headers=headers) as response,
    ):
        status = response.status

    assert status == 404
    assert harness.upstream.requests == []


async def test_other_prefixes_are_not_found(harness: Harness) -> None:
    status, _, _ = await _get(f"{harness.broker.url}/api/repos", f"Bearer {CREDENTIAL}")

    assert status == 404


async def test_undeclared_repo_discovery_gets_error_packet(harness: Harness) -> None:
    status, headers, body = await _get(
        harness.url("org/other.git/info/refs?service=git-upload-pack"), f"Bearer {CREDENTIAL}"
    )

    assert status == 200
    assert headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert body.startswith(b"001e# service=git-upload-pack\n0000")
    assert b"ERR repository 127.0.0.1:" in body
    assert b"not in this session's scope" in body
    assert harness.upstream.requests == []
    entries = read_entries(harness.audit_path)
    assert [entry["decision"] for entry in entries] == ["deny"]


async def test_undeclared_repo_post_is_forbidden(harness: Harness) -> None:
    headers = {"Authorization": f"Bearer {CREDENTIAL}"}
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            harness.url("org/other.git/git-upload-pack"), data=b"0000", headers=headers
        ) as response,
    ):
        status = response.status

    assert status == 403
    assert harness.upstream.requests == []


async def test_push_discovery_on_read_only_repo_is_denied(harness: Harness) -> None:
    status, _, body = await _get(
        harness.url("org/read-only.git/info/refs?service=git-receive-pack"),
        f"Bearer {CREDENTIAL}",
    )

    assert status == 200
    assert b"ERR pushing to 127.0.0.1:" in body
    assert harness.upstream.requests == []
    assert read_entries(harness.audit_path)[0]["kind"] == "git-push"


async def test_upload_pack_forwards_with_broker_token(harness: Harness) -> None:
    request_body = gzip.compress(b"0032want 0123456789012345678901234567890123456789\n0000")
    headers = {
        "Authorization": f"Bearer {CREDENTIAL}",
        "Content-Type": "application/x-git-upload-pack-request",
        "Content-Encoding": "gzip",
        "Git-Protocol": "version=2",
        "Cookie": "session=agent",
    }
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            harness.url("org/repo.git/git-upload-pack"), data=request_body, headers=headers
        ) as response,
    ):
        status = response.status
        content_type = response.headers["Content-Type"]
        body = await response.read()

    assert status == 200
    assert content_type == "application/x-git-upload-pack-result"
    assert body == b"upstream-body:" + request_body
    [forwarded] = harness.upstream.requests
    forwarded_headers = forwarded["headers"]
    assert isinstance(forwarded_headers, dict)
    assert forwarded["path"] == "/org/repo.git/git-upload-pack"
    assert forwarded["body"] == request_body
    assert forwarded_headers["Content-Encoding"] == "gzip"
    assert forwarded_headers["Git-Protocol"] == "version=2"
    assert forwarded_headers["Authorization"] == basic_auth("devaipod", TOKEN)
    assert "Cookie" not in forwarded_headers


async def test_upload_pack_discovery_keeps_service_query(harness: Harness) -> None:
    status, _, _ = await _get(
        harness.url("org/read-only/info/refs?service=git-upload-pack"), f"Bearer {CREDENTIAL}"
    )

    assert status == 200
    [forwarded] = harness.upstream.requests
    assert forwarded["path"] == "/org/read-only/info/refs"
    assert forwarded["query"] == "service=git-upload-pack"
    entries = read_entries(harness.audit_path)
    assert entries[-1]["kind"] == "git-fetch"
    assert entries[-1]["upstream_status"] == 200


async def test_upstream_unauthorized_becomes_bad_gateway(harness: Harness) -> None:
    harness.upstream.status = 401

    status, headers, body = await _get(
        harness.url("org/repo.git/info/refs?service=git-upload-pack"), f"Bearer {CREDENTIAL}"
    )

    assert status == 502
    assert "WWW-Authenticate" not in headers
    assert TOKEN.encode() not in body


async def test_audit_failure_denies_fetch(harness: Harness) -> None:
    harness.audit.close()

    status, _, _ = await _get(
        harness.url("org/repo.git/info/refs?service=git-upload-pack"), f"Bearer {CREDENTIAL}"
    )

    assert status == 503


async def test_broker_serves_unix_socket(harness: Harness, tmp_path: Path) -> None:
    scope = parse_scope(
        {
            "repos": [
                {
                    "input": {
                        "url": f"http://127.0.0.1:{harness.upstream_port}/org/repo.git",
                        "allowHttp": True,
                    }
                }
            ]
        },
        "test",
    )
    socket_path = tmp_path / "broker.sock"
    audit = AuditLog(tmp_path / "unix-audit.jsonl", "unix", secrets=[TOKEN, CREDENTIAL])
    config = BrokerConfig(
        scope=scope,
        session="unix",
        session_credential=CREDENTIAL,
        upstream_token=TOKEN,
        audit_log=audit,
        state_dir=tmp_path / "unix-state",
    )
    running = await start_broker(config, unix_socket=socket_path)
    path = f"/git/127.0.0.1:{harness.upstream_port}/org/repo.git/info/refs"
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(str(socket_path))
        ) as client:
            async with client.get(f"http://broker{path}?service=git-upload-pack") as response:
                anonymous_status = response.status
            async with client.get(
                f"http://broker{path}?service=git-upload-pack",
                headers={"Authorization": f"Bearer {CREDENTIAL}"},
            ) as response:
                authorized_status = response.status
    finally:
        await running.stop()
        audit.close()

    assert running.url == f"unix:{socket_path}"
    assert anonymous_status == 401
    assert authorized_status == 200
    assert len(harness.upstream.requests) == 1
