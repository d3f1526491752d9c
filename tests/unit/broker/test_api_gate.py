"""Tests of the forge API gate sub-app against the fake forge: allowed flows, denials, audit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from devaipod.broker.api_gate import (
    ApiGate,
    ApiGateService,
    ForgeUpstream,
    _created_fields,
    create_api_app,
    prepare_gates,
)
from devaipod.broker.api_policy import ApiRequest, decide
from devaipod.broker.audit import AuditLog, read_entries, verify_chain
from devaipod.config import ForgeKind, parse_config
from devaipod.errors import UserError
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope
from support.fake_forge import FakeForge
from support.forge_api_cases import (
    OUTPUT_BRANCH,
    PULL_REQUEST,
    REPO,
    allowed_pull_request_body,
    denied_cases,
    session_context,
)

CREDENTIAL = "session-credential-abcdefghijklmnopqrstuvwxyz"
KINDS: list[ForgeKind] = ["github", "gitlab", "forgejo"]


@dataclass
class GateUnderTest:
    kind: ForgeKind
    forge: FakeForge
    gate: ApiGate
    base: str
    http: aiohttp.ClientSession
    audit_path: Path
    theirs: int
    audit: AuditLog

    async def call(
        self, method: str, path: str, body: object = None, *, query: str = "",
        headers: dict[str, str] | None = None, raw_body: bytes | None = None,
        content_type: str = "application/json", credential: str | None = CREDENTIAL,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if credential is not None:
            all_headers.setdefault("Authorization", f"Bearer {credential}")
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
        if data:
            all_headers["Content-Type"] = content_type
        url = URL(self.base + path + (f"?{query}" if query else ""), encoded=True)
        async with self.http.request(method, url, headers=all_headers, data=data) as response:
            text = await response.read()
            payload = json.loads(text) if text else None
            return response.status, payload

    def repo_path(self) -> str:
        return "/projects/101" if self.kind == "gitlab" else f"/repos/{REPO[self.kind]}"

    def comments_path(self, number: int = 1) -> str:
        if self.kind == "gitlab":
            return f"{self.repo_path()}/issues/{number}/notes"
        return f"{self.repo_path()}/issues/{number}/comments"

    def comment_path(self, comment_id: int) -> str:
        if self.kind == "gitlab":
            return f"{self.repo_path()}/issues/1/notes/{comment_id}"
        return f"{self.repo_path()}/issues/comments/{comment_id}"

    def pulls_path(self) -> str:
        return f"{self.repo_path()}/{'merge_requests' if self.kind == 'gitlab' else 'pulls'}"


async def _start_gate(kind: ForgeKind, tmp_path: Path, forge: FakeForge,
                      http: aiohttp.ClientSession) -> AsyncIterator[GateUnderTest]:
    forge.add_repo(REPO[kind])
    forge.add_repo("octo/other" if kind != "gitlab" else "group/sub/other")
    forge.add_issue(REPO[kind], "Crash on start", "It crashes.", labels=["bug"])
    forge.add_issue(REPO[kind], "Unrelated", "Not for the agent.")
    forge.add_pull_request(REPO[kind], "Human PR", head="feature", base="main")
    theirs = forge.add_comment(REPO[kind], 1, "Please fix", author="alice")

    gate = ApiGate(
        context=session_context(kind, forge.host),
        upstream=ForgeUpstream(api_base=forge.api_url, token=forge.token,
                               graphql_url=forge.graphql_url if kind == "github" else None),
    )
    audit_path = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_path, "test-session", secrets=[forge.token, CREDENTIAL])
    root = web.Application()
    root.add_subapp("/api", create_api_app({forge.host: gate}, audit_log=audit,
                                           session_credential=CREDENTIAL))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield GateUnderTest(kind, forge, gate, f"http://127.0.0.1:{port}/api/{forge.host}", http,
                            audit_path, theirs.id, audit)
    finally:
        await runner.cleanup()
        audit.close()


@pytest.fixture(params=KINDS)
async def gate(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GateUnderTest]:
    kind: ForgeKind = request.param
    async with FakeForge(kind) as forge, aiohttp.ClientSession() as http:
        async for started in _start_gate(kind, tmp_path, forge, http):
            yield started


async def test_allowed_flow_reaches_forge(gate: GateUnderTest) -> None:
    forge = gate.forge

    status, repo = await gate.call("GET", gate.repo_path())
    assert status == 200
    assert repo["default_branch"] == "main"

    status, issue = await gate.call("GET", f"{gate.repo_path()}/issues/1")
    assert status == 200
    assert issue["title"] == "Crash on start"

    status, comments = await gate.call("GET", gate.comments_path())
    assert status == 200
    assert [comment["body"] for comment in comments] == ["Please fix"]

    status, created = await gate.call("POST", gate.comments_path(), {"body": "Working on it"})
    assert status == 201
    mine = created["id"]
    assert gate.gate.state.own_comment(gate.gate.context.repos[0], mine) is not None

    method = "PUT" if gate.kind == "gitlab" else "PATCH"
    status, edited = await gate.call(method, gate.comment_path(mine), {"body": "Done"})
    assert status == 200
    assert forge.comments[mine].body == "Done"

    status, pull = await gate.call("POST", gate.pulls_path(), allowed_pull_request_body(gate.kind))
    assert status == 201
    created_pull = forge.pull_requests(REPO[gate.kind])[-1]
    assert created_pull.head == OUTPUT_BRANCH
    assert created_pull.base == "main"
    assert created_pull.draft is True

    number = pull.get("iid", pull.get("number"))
    status, _ = await gate.call("GET", f"{gate.pulls_path()}/{number}")
    assert status == 200

    status, second = await gate.call("POST", gate.pulls_path(),
                                     allowed_pull_request_body(gate.kind))
    assert status == 403
    assert "at most 1" in second["message"]
    assert len(forge.pull_requests(REPO[gate.kind])) == 2

    status, _ = await gate.call("DELETE", gate.comment_path(mine))
    assert status == 204
    assert mine not in forge.comments


async def test_concurrent_pull_requests_capped(gate: GateUnderTest) -> None:
    body = allowed_pull_request_body(gate.kind)

    results = await asyncio.gather(*(gate.call("POST", gate.pulls_path(), body)
                                     for _ in range(6)))

    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 403, 403, 403, 403, 403]
    assert [r.method for r in gate.forge.requests] == ["POST"]
    assert len(gate.forge.pull_requests(REPO[gate.kind])) == 2


async def test_forge_sees_token_not_credential(gate: GateUnderTest) -> None:
    await gate.call("GET", gate.repo_path())
    await gate.call("POST", gate.comments_path(), {"body": "hi"})

    assert len(gate.forge.requests) == 2
    for recorded in gate.forge.requests:
        values = " ".join(recorded.headers.values())
        assert CREDENTIAL not in values
        assert gate.forge.token in values
        assert "sudo" not in {name.casefold() for name in recorded.headers}


async def test_gitlab_private_token_credential(gate: GateUnderTest) -> None:
    status, _ = await gate.call("GET", gate.repo_path(), credential=None,
                                headers={"PRIVATE-TOKEN": CREDENTIAL})

    assert status == 200
    assert CREDENTIAL not in json.dumps(gate.forge.requests[0].headers)


async def test_denied_variants_never_reach_forge(gate: GateUnderTest) -> None:
    _, created = await gate.call("POST", gate.comments_path(), {"body": "mine"})
    mine = created["id"]
    gate.forge.requests.clear()
    cases = denied_cases(gate.kind)

    statuses: dict[str, int] = {}
    for case in cases:
        request = case.request(gate.kind, theirs=gate.theirs, mine=mine)
        expected = decide(gate.gate.context, gate.gate.state, request)
        status, payload = await gate.call(
            case.method, request.raw_path, query=request.query, headers=dict(case.headers),
            raw_body=request.body or None, content_type=case.content_type,
        )
        statuses[case.label] = status
        assert status in (403, 413), f"{case.label}: {status} {payload}"
        if status == 403 and payload is not None:
            assert payload["message"].endswith(expected.reason), case.label

    assert gate.forge.requests == [], [r.raw_path for r in gate.forge.requests]
    assert len(statuses) == len(cases)


async def test_writes_audited_before_and_after(gate: GateUnderTest) -> None:
    await gate.call("POST", gate.comments_path(), {"body": "hi"})

    entries = read_entries(gate.audit_path)

    assert [(entry["decision"], entry["phase"]) for entry in entries] == [
        ("allow", "request"), ("allow", "response")]
    assert entries[0]["operation"] == "create-comment"
    assert "upstream_status" not in entries[0]
    assert entries[1]["upstream_status"] == 201


async def test_created_ids_and_urls_audited(gate: GateUnderTest) -> None:
    _, comment = await gate.call("POST", gate.comments_path(), {"body": "hi"})
    _, pull = await gate.call("POST", gate.pulls_path(), allowed_pull_request_body(gate.kind))

    responses = [entry for entry in read_entries(gate.audit_path)
                 if entry.get("phase") == "response"]

    assert [entry["operation"] for entry in responses] == ["create-comment",
                                                           "create-pull-request"]
    assert responses[0]["comment_id"] == comment["id"]
    assert responses[0].get("comment_url") == comment.get("html_url")
    if gate.kind != "gitlab":
        assert str(responses[0]["comment_url"]).endswith(f"#issuecomment-{comment['id']}")
    number = pull["iid"] if gate.kind == "gitlab" else pull["number"]
    assert responses[1]["pull_request_number"] == number
    assert responses[1]["pull_request_url"] == pull.get("html_url", pull.get("web_url"))
    assert str(number) in str(responses[1]["pull_request_url"])
    assert "comment_id" not in responses[1]


async def test_comment_edits_audit_comment_id(gate: GateUnderTest) -> None:
    _, comment = await gate.call("POST", gate.comments_path(), {"body": "hi"})
    method = "PUT" if gate.kind == "gitlab" else "PATCH"
    await gate.call(method, gate.comment_path(comment["id"]), {"body": "edited"})
    await gate.call("DELETE", gate.comment_path(comment["id"]))

    responses = [entry for entry in read_entries(gate.audit_path)
                 if entry.get("phase") == "response"]

    assert [entry["operation"] for entry in responses] == [
        "create-comment", "edit-comment", "delete-comment"]
    assert [entry["comment_id"] for entry in responses] == [comment["id"]] * 3
    assert [entry["upstream_status"] for entry in responses] == [201, 200, 204]


@pytest.mark.parametrize(("operation", "status", "payload"), [
    ("create-comment", 422, {"id": 5, "html_url": "https://f/x#issuecomment-5"}),
    ("create-comment", 201, {"id": "5"}),
    ("create-comment", 201, {"id": True}),
    ("create-comment", 201, ["not", "an", "object"]),
    ("create-pull-request", 201, {"title": "no number"}),
    ("update-comment", 200, {"id": 5, "html_url": "https://f/x#issuecomment-5"}),
])
def test_created_fields_skip_failed_creates(operation: str, status: int,
                                            payload: object) -> None:
    assert _created_fields(operation, status, payload) == {}


async def test_denials_are_audited(gate: GateUnderTest) -> None:
    await gate.call("GET", f"{gate.repo_path()}/issues/2")
    await gate.call("GET", gate.repo_path())

    entries = read_entries(gate.audit_path)
    result = verify_chain(gate.audit_path)

    assert result.ok, result.reason
    decisions = [(entry["decision"], entry.get("operation"), entry.get("phase"))
                 for entry in entries]
    assert decisions == [
        ("deny", "read-issue", "request"),
        ("allow", "read-repository", "complete"),
    ]
    assert entries[1]["upstream_status"] == 200
    text = gate.audit_path.read_text()
    assert gate.forge.token not in text
    assert CREDENTIAL not in text


async def test_audit_failure_denies_and_withholds(gate: GateUnderTest) -> None:
    gate.audit.close()

    read_status, read_body = await gate.call("GET", f"{gate.repo_path()}/issues/1")
    write_status, _ = await gate.call("POST", gate.comments_path(), {"body": "hi"})

    assert read_status == 503
    assert "Crash on start" not in json.dumps(read_body)
    assert write_status == 503
    assert [recorded.method for recorded in gate.forge.requests] == ["GET"]


async def test_missing_credential_is_rejected(gate: GateUnderTest) -> None:
    missing, _ = await gate.call("GET", gate.repo_path(), credential=None)
    wrong, _ = await gate.call("GET", gate.repo_path(), credential="not-the-credential")

    assert missing == 401
    assert wrong == 401
    assert gate.forge.requests == []


async def test_unknown_forge_host_is_404(gate: GateUnderTest) -> None:
    url = gate.base.replace(gate.forge.host, "github.com") + "/repos/octo/hello"

    async with gate.http.get(url, headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
        status = response.status

    assert status == 404
    assert gate.forge.requests == []


async def test_pagination_link_points_at_broker(gate: GateUnderTest) -> None:
    for index in range(3):
        gate.forge.add_comment(REPO[gate.kind], 1, f"extra {index}")
    size = "limit" if gate.kind == "forgejo" else "per_page"
    url = URL(f"{gate.base}{gate.comments_path()}?{size}=2", encoded=True)

    async with gate.http.get(url, headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
        link = response.headers["Link"]

    assert link.startswith(f"<{gate.base}")
    assert 'rel="next"' in link


@pytest.mark.parametrize("kind", ["github"])
async def test_minimize_own_comment_via_graphql(kind: ForgeKind, tmp_path: Path) -> None:
    async with FakeForge(kind) as forge, aiohttp.ClientSession() as http:
        async for gate in _start_gate(kind, tmp_path, forge, http):
            _, created = await gate.call("POST", gate.comments_path(), {"body": "stale"})

            status, result = await gate.call(
                "POST", f"{gate.comment_path(created['id'])}/devaipod-minimize",
                {"classifier": "OUTDATED"})

            assert status == 200
            assert result["data"]["minimizeComment"]["minimizedComment"]["isMinimized"] is True
            assert forge.comments[created["id"]].minimized_reason == "outdated"
            assert forge.requests[-1].raw_path == "/graphql"


@pytest.mark.parametrize("kind", KINDS)
async def test_comment_on_attached_pull_request(kind: ForgeKind, tmp_path: Path) -> None:
    async with FakeForge(kind) as forge, aiohttp.ClientSession() as http:
        async for gate in _start_gate(kind, tmp_path, forge, http):
            number = PULL_REQUEST[kind]
            path = (f"{gate.repo_path()}/merge_requests/{number}/notes" if kind == "gitlab"
                    else gate.comments_path(number))

            status, _ = await gate.call("POST", path, {"body": "Looks good"})

            assert status == 201
            on_mr = kind == "gitlab"
            assert [c.body for c in forge.comments_on(REPO[kind], number,
                                                       on_merge_request=on_mr)] == ["Looks good"]


async def _serve_upstream(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _gate_against(upstream_base: str, tmp_path: Path) -> tuple[web.AppRunner, str, Path]:
    host = "forge.test:3000"
    gate = ApiGate(context=session_context("github", host),
                   upstream=ForgeUpstream(api_base=upstream_base, token="forge-secret-token"))
    audit_path = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_path, "s", secrets=["forge-secret-token"])
    root = web.Application()
    root.add_subapp("/api", create_api_app({host: gate}, audit_log=audit,
                                           session_credential=CREDENTIAL))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/api/{host}", audit_path


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    followed: list[str] = []

    async def upstream(request: web.Request) -> web.StreamResponse:
        if request.path != "/repos/octo/hello":
            followed.append(request.path)
            return web.json_response({"followed": True})
        raise web.HTTPMovedPermanently(location="/repositories/101")

    runner, upstream_base = await _serve_upstream(upstream)
    async with aiohttp.ClientSession() as http:
        gate_runner, base, audit_path = await _gate_against(upstream_base, tmp_path)
        try:
            async with http.get(f"{base}/repos/octo/hello",
                                headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
                status = response.status
                body = await response.json()
        finally:
            await gate_runner.cleanup()
            await runner.cleanup()

    assert status == 502
    assert "redirect 301" in body["message"]
    assert followed == []
    assert read_entries(audit_path)[-1]["upstream_status"] == 301


async def test_upstream_error_hides_token(tmp_path: Path) -> None:
    async def upstream(request: web.Request) -> web.StreamResponse:
        echoed = request.headers.get("Authorization", "")
        return web.json_response({"message": f"bad request with {echoed}"}, status=400,
                                 headers={"X-GitHub-Request-Id": echoed})

    runner, upstream_base = await _serve_upstream(upstream)
    async with aiohttp.ClientSession() as http:
        gate_runner, base, _ = await _gate_against(upstream_base, tmp_path)
        try:
            async with http.get(f"{base}/repos/octo/hello",
                                headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
                status = response.status
                text = await response.text()
                request_id = response.headers.get("X-GitHub-Request-Id", "")
        finally:
            await gate_runner.cleanup()
            await runner.cleanup()

    assert status == 400
    assert "forge-secret-token" not in text
    assert "[REDACTED]" in text
    assert "forge-secret-token" not in request_id


@pytest.mark.parametrize("kind", KINDS)
async def test_prepare_gates_pins_forge_facts(kind: ForgeKind, tmp_path: Path) -> None:
    async with FakeForge(kind) as forge, aiohttp.ClientSession() as http:
        project = forge.add_repo(REPO[kind], default_branch="trunk")
        forge.add_issue(REPO[kind], "Bug")
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "{kind}"\napi_url = "{forge.api_url}"\n', "t")
        issue_path = "-/issues/1" if kind == "gitlab" else "issues/1"
        scope = derive_scope(parse_forge_url(f"{forge.web_url}/{REPO[kind]}/{issue_path}",
                                             config))

        gates = await prepare_gates(scope, config, forge.token, http)

        gate = gates[forge.host]
        repo = gate.context.repos[0]
        assert list(gates) == [forge.host]
        assert repo.default_branch == "trunk"
        assert repo.project_id == (project.id if kind == "gitlab" else None)
        assert repo.issues[1] == frozenset({"read", "comment", "edit-own", "minimize-own"})
        assert gate.upstream.api_base == forge.api_url
        assert (gate.upstream.graphql_url is not None) is (kind == "github")

        body = allowed_pull_request_body(kind)
        base_key = "target_branch" if kind == "gitlab" else "base"
        path = ("/projects/group%2Fsub%2Fhello/merge_requests" if kind == "gitlab"
                else f"/repos/{REPO[kind]}/pulls")
        wrong = ApiRequest("POST", path, "", [("Content-Type", "application/json")],
                           json.dumps(body).encode())
        right = ApiRequest("POST", path, "", [("Content-Type", "application/json")],
                           json.dumps(body | {base_key: "trunk"}).encode())
        denied = decide(gate.context, gate.state, wrong)
        allowed = decide(gate.context, gate.state, right)
        assert not denied.allowed
        assert allowed.allowed, allowed.reason
        assert allowed.upstream is not None
        if kind == "gitlab":
            assert allowed.upstream.path == f"/projects/{project.id}/merge_requests"


async def test_prepare_gates_missing_repo_fails(tmp_path: Path) -> None:
    async with FakeForge("forgejo") as forge, aiohttp.ClientSession() as http:
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "forgejo"\napi_url = "{forge.api_url}"\n', "t")
        scope = derive_scope(parse_forge_url(f"{forge.web_url}/o/absent/issues/1", config))

        with pytest.raises(UserError) as raised:
            await prepare_gates(scope, config, forge.token, http)

    assert "404" in raised.value.message


async def test_service_execute_without_http(tmp_path: Path) -> None:
    async with FakeForge("gitlab") as forge:
        forge.add_repo(REPO["gitlab"])
        forge.add_issue(REPO["gitlab"], "Bug")
        gate = ApiGate(context=session_context("gitlab", forge.host),
                       upstream=ForgeUpstream(api_base=forge.api_url, token=forge.token))
        audit = AuditLog(tmp_path / "audit.jsonl", "s", secrets=[forge.token])
        service = ApiGateService({forge.host: gate}, audit)
        request = ApiRequest("POST", "/projects/group%2Fsub%2Fhello/issues/1/notes", "",
                             [("Content-Type", "application/json")], b'{"body": "via MCP"}')
        try:
            created = await service.execute(forge.host, request)
            unknown = await service.execute("other.example", request)
        finally:
            await service.close()
            audit.close()

    assert created.status == 201
    note = created.json()
    assert isinstance(note, dict)
    assert gate.state.own_comment(gate.context.repos[0], note["id"]) is not None
    assert forge.requests[0].raw_path == "/api/v4/projects/101/issues/1/notes"
    assert unknown.status == 404
    assert len(forge.requests) == 1


async def test_not_modified_passes_back(tmp_path: Path) -> None:
    async def upstream(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.json_response({"id": 1}, headers={"ETag": '"v1"'})

    runner, upstream_base = await _serve_upstream(upstream)
    async with aiohttp.ClientSession() as http:
        gate_runner, base, _ = await _gate_against(upstream_base, tmp_path)
        headers = {"Authorization": f"Bearer {CREDENTIAL}", "If-None-Match": '"v1"'}
        try:
            async with http.get(f"{base}/repos/octo/hello", headers=headers) as response:
                status = response.status
                etag = response.headers.get("ETag")
        finally:
            await gate_runner.cleanup()
            await runner.cleanup()

    assert status == 304
    assert etag == '"v1"'


async def test_gate_state_survives_restart(tmp_path: Path) -> None:
    async with FakeForge("github") as forge, aiohttp.ClientSession() as http:
        forge.add_repo("octo/hello")
        forge.add_issue("octo/hello", "Bug")
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "github"\napi_url = "{forge.api_url}"\n', "t")
        scope = derive_scope(parse_forge_url(f"{forge.web_url}/octo/hello/issues/1", config))
        audit = AuditLog(tmp_path / "audit.jsonl", "s")
        comment = ApiRequest("POST", "/repos/octo/hello/issues/1/comments", "",
                             [("Content-Type", "application/json")], b'{"body": "first"}')

        first = await prepare_gates(scope, config, forge.token, http, state_dir=tmp_path)
        service = ApiGateService(first, audit)
        created = await service.execute(forge.host, comment)
        await service.close()

        second = await prepare_gates(scope, config, forge.token, http, state_dir=tmp_path)
        comment_id = created.json()["id"]  # type: ignore[index]
        edit = ApiRequest("PATCH", f"/repos/octo/hello/issues/comments/{comment_id}", "",
                          [("Content-Type", "application/json")], b'{"body": "edited"}')
        decision = decide(second[forge.host].context, second[forge.host].state, edit)
        audit.close()

    assert created.status == 201
    assert decision.allowed, decision.reason


async def test_invalid_gate_state_is_user_error(tmp_path: Path) -> None:
    async with FakeForge("forgejo") as forge, aiohttp.ClientSession() as http:
        forge.add_repo("o/r")
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "forgejo"\napi_url = "{forge.api_url}"\n', "t")
        scope = derive_scope(parse_forge_url(f"{forge.web_url}/o/r/issues/1", config))
        (tmp_path / f"api-gate-{forge.host.replace(':', '_')}.json").write_text("{not json")

        with pytest.raises(UserError) as raised:
            await prepare_gates(scope, config, forge.token, http, state_dir=tmp_path)

    assert "invalid API gate state" in raised.value.message
