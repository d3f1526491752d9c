"""The forge API gate: a service that checks and forwards requests, and its aiohttp sub-app.

Each request is checked with `api_policy.decide`, audited, and, when allowed,
sent to the forge's API with the forge token. Redirects are not followed, and the
token is scrubbed from every response body and header passed back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from devaipod.broker.api_normalise import MAX_BODY_BYTES
from devaipod.broker.api_policy import (
    ApiRequest,
    Decision,
    GateContext,
    SessionState,
    UpstreamRequest,
    build_gate_context,
    decide,
)
from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.broker.credentials import authorization_credential
from devaipod.config import UserConfig
from devaipod.errors import UserError
from devaipod.forge.clients import auth_headers, client_for
from devaipod.forge.tokens import ForgeToken
from devaipod.forge.urls import ForgeUrl, api_base_url, graphql_url, parse_forge_url
from devaipod.scope.model import Scope

log = logging.getLogger(__name__)

# Forge responses larger than this are not passed back (an estimate: comment lists with
# the maximum page size stay well below it).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0
USER_AGENT = "devaipod-broker"
REDACTED = b"[REDACTED]"

# 304 Not Modified is not among them, because it is the reply to a conditional GET and passes back.
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Response headers passed back to the agent; every other header is dropped.
_RESPONSE_HEADERS = frozenset({
    "content-type", "etag", "last-modified", "link", "retry-after", "x-github-request-id",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used",
    "x-ratelimit-resource", "x-total", "x-total-count", "x-total-pages", "x-page",
    "x-per-page", "x-next-page", "x-prev-page",
})


@dataclass(frozen=True)
class ForgeUpstream:
    """The address and token the gate uses to reach one forge's API."""

    api_base: str  # REST API base URL, no trailing slash
    token: str = field(repr=False)
    graphql_url: str | None = None  # GitHub only


@dataclass
class ApiGate:
    """The gate for one forge host: its policy context, upstream and session state."""

    context: GateContext
    upstream: ForgeUpstream
    state: SessionState = field(default_factory=SessionState)
    state_file: Path | None = None  # where `state` is saved after each change, if anywhere

    def save_state(self) -> None:
        """Write the session state to `state_file` atomically (temporary file, then rename)."""
        if self.state_file is None:
            return
        temporary = self.state_file.with_name(self.state_file.name + ".tmp")
        temporary.write_text(json.dumps(self.state.to_json()), encoding="utf-8")
        os.replace(temporary, self.state_file)


def load_gate_state(path: Path) -> SessionState:
    """Read a saved session state, or return an empty one when `path` does not exist.

    Raises UserError when the file exists but cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SessionState()
    except OSError as error:
        raise UserError(f"cannot read the API gate state {path}: {error}",
                        fix="check the file's permissions, or remove it to start empty") from None
    try:
        return SessionState.from_json(json.loads(text))
    except ValueError as error:
        raise UserError(f"invalid API gate state {path}: {error}",
                        fix="remove the file; the gate then forgets earlier comments") from None


async def prepare_gates(
    scope: Scope,
    config: UserConfig,
    token: str,
    http: aiohttp.ClientSession,
    *,
    state_dir: Path | None = None,
) -> dict[str, ApiGate]:
    """Build one gate per forge host in `scope`, with the facts pinned at session start.

    Each scoped repository's default branch and numeric id (GitLab's project id)
    are read from the forge with `token`. With `state_dir`, each gate keeps its
    session state in `api-gate-<host>.json` there and reloads it on the next start.
    Raises UserError when a host is not known or a repository cannot be read.
    """
    repos_by_host: dict[str, dict[str, ForgeUrl]] = {}
    urls = [repo.input.url for repo in scope.repos]
    urls += [attached.url for attached in scope.attachedContexts]
    for url in urls:
        parsed = parse_forge_url(url, config).without_item()
        repos_by_host.setdefault(parsed.host, {}).setdefault(parsed.repo_path.casefold(), parsed)

    gates: dict[str, ApiGate] = {}
    for host, repos in repos_by_host.items():
        settings = config.forge_settings(host)
        if settings is None:
            raise UserError(f"unknown forge host {host!r}", fix="declare it in the config file")
        first = next(iter(repos.values()))
        api_base = api_base_url(first, settings)
        client = client_for(first, settings, ForgeToken(token, "the broker's forge token"), http)

        default_branches: dict[str, str] = {}
        project_ids: dict[str, int] = {}
        for repo in repos.values():
            info = await client.repository(repo.repo_path)
            default_branches[repo.repo_path] = info.default_branch
            if settings.kind == "gitlab":
                project_ids[repo.repo_path] = info.id
            log.info("pinned %s on %s: default branch %s, id %d", repo.repo_path, host,
                     info.default_branch, info.id)

        context = build_gate_context(scope, host, config, default_branches=default_branches,
                                     project_ids=project_ids)
        upstream = ForgeUpstream(
            api_base=api_base,
            token=token,
            graphql_url=graphql_url(api_base) if settings.kind == "github" else None,
        )
        state_file = None
        if state_dir is not None:
            state_file = state_dir / f"api-gate-{host.replace(':', '_')}.json"
        state = load_gate_state(state_file) if state_file is not None else SessionState()
        gates[host] = ApiGate(context=context, upstream=upstream, state=state,
                              state_file=state_file)
    return gates


def presented_credential(headers: Mapping[str, str]) -> str | None:
    """Return the session credential an agent presents.

    Accepted: `Authorization: Bearer|token <credential>`, HTTP Basic with the
    credential as password, or GitLab's `PRIVATE-TOKEN: <credential>`.
    """
    private_token = headers.get("PRIVATE-TOKEN")
    if private_token:
        return private_token.strip()
    return authorization_credential(headers.get("Authorization"), accept_token_scheme=True)


def create_api_app(
    gates: Mapping[str, ApiGate],
    *,
    audit_log: AuditLog,
    session_credential: str,
    mount_prefix: str = "/api",
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    service: ApiGateService | None = None,
) -> web.Application:
    """Build the sub-app; mount it with `app.add_subapp(mount_prefix, sub_app)`.

    `gates` maps forge host keys (`HOST[:PORT]`, as in the config file) to gates.
    The sub-app checks the session credential itself, so GitLab clients that send
    it in `PRIVATE-TOKEN` work too. Pass `service` to share one ApiGateService
    (and its session state) with the MCP tools; the caller then starts and closes it.
    """
    owned = service is None
    gate_service = service or ApiGateService(gates, audit_log, timeout_seconds=timeout_seconds)
    handler = _HttpFrontend(gate_service, session_credential, mount_prefix.rstrip("/"))
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    if owned:
        app.cleanup_ctx.append(gate_service.lifetime)
    app.router.add_route("*", "/{host}/{tail:.*}", handler.handle)
    return app


@dataclass(frozen=True)
class GateResponse:
    """The gate's response to the agent: the forge's response, or the gate's own error."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> object:
        """Return the body parsed as JSON, or None when it is empty or not JSON."""
        return _parse_json(self.body) if self.body else None


class ApiGateService:
    """Apply the policy to one request, audit it, and forward it when allowed.

    The HTTP sub-app and the broker's MCP tools both call `execute`, so they share
    the policy, the audit log and the session state.
    """

    def __init__(self, gates: Mapping[str, ApiGate], audit_log: AuditLog, *,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.gates = gates
        self._audit = audit_log
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client used to reach the forges."""
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True)

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """Start and close the service with an aiohttp application (for `cleanup_ctx`)."""
        await self.start()
        try:
            yield
        finally:
            await self.close()

    async def execute(self, host: str, request: ApiRequest, *, link_base: str | None = None,
                      audit_kind: str = "api") -> GateResponse:
        """Decide, audit and forward one request for forge `host`.

        `link_base` replaces the forge's API base in pagination links so that the
        agent follows them through the gate. `audit_kind` is the audit lines' `kind`
        ("mcp" for the broker's MCP tools).
        """
        gate = self.gates.get(host)
        if gate is None:
            return await self.deny(host, request.method, request.raw_path, 404,
                                   f"forge host {host!r} is not in the session",
                                   audit_kind=audit_kind)

        decision = decide(gate.context, gate.state, request)
        # Reserve a pull request slot before the first await, so that concurrent creates
        # cannot all pass the maxPullRequests check.
        gate.state.begin(decision)

        # An allowed read is audited once, after the forge responds and before the
        # agent receives the data. Denials and writes are audited before anything is sent.
        is_read = decision.upstream is not None and decision.upstream.method == "GET"
        try:
            if not (decision.allowed and is_read):
                await self._record(decision, host, request.method, request.raw_path, audit_kind)
        except AuditWriteError as error:
            gate.state.finish(decision, None, None)
            log.error("audit write failed, denying %s %s on %s: %s", request.method,
                      decision.operation, host, error)
            return _error(503, "the broker cannot write its audit log")

        if not decision.allowed or decision.upstream is None:
            log.info("denied %s %s on %s: %s", request.method, decision.operation, host,
                     decision.reason)
            return _error(403, f"devaipod broker denied this request: {decision.reason}")

        return await self._forward(gate, decision, decision.upstream, host, link_base,
                                   audit_kind)

    async def deny(self, host: str, method: str, path: str, status: int, reason: str, *,
                   audit_kind: str = "api") -> GateResponse:
        """Audit and return a denial decided before the policy ran (host, credential, size)."""
        # %r: the host is percent-decoded from the agent's path and may hold control characters.
        log.info("denied %s on %r before policy: %s", method, host, reason)
        try:
            await self._write_audit(kind=audit_kind, decision="deny", reason=reason, host=host,
                                    method=method, path=_short(path))
        except AuditWriteError as error:
            log.error("audit write failed for a denied request on %s: %s", host, error)
        return _error(status, reason)

    async def _forward(
        self,
        gate: ApiGate,
        decision: Decision,
        upstream: UpstreamRequest,
        host: str,
        link_base: str | None,
        audit_kind: str,
    ) -> GateResponse:
        target = _upstream_url(gate.upstream, upstream)
        headers = {
            **upstream.headers,
            **auth_headers(gate.context.kind, gate.upstream.token),
            "User-Agent": USER_AGENT,
        }
        await self.start()
        assert self._client is not None
        try:
            async with self._client.request(
                upstream.method, target, headers=headers, data=upstream.body,
                allow_redirects=False,
            ) as response:
                status = response.status
                payload = await response.content.read(MAX_RESPONSE_BYTES + 1)
                response_headers = response.headers.copy()
        except (aiohttp.ClientError, TimeoutError) as error:
            gate.state.finish(decision, None, None)
            reason = f"forge request failed: {type(error).__name__}"
            log.warning("%s for %s on %s", reason, decision.operation, host)
            await self._record_response(decision, host, None, reason, audit_kind)
            return _error(502, reason)

        token = gate.upstream.token.encode()
        payload = payload.replace(token, REDACTED)
        parsed = _parse_json(payload) if decision.operation.startswith("create-") else None
        gate.state.finish(decision, status, parsed)
        if decision.operation in ("create-comment", "delete-comment", "create-pull-request"):
            try:
                gate.save_state()
            except OSError as error:
                log.error("cannot save the API gate state of %s to %s: %s", host,
                          gate.state_file, error)

        if status in _REDIRECT_STATUSES:
            reason = f"the forge returned redirect {status}, which the broker does not follow"
            await self._record_response(decision, host, status, reason, audit_kind)
            return _error(502, reason)
        if len(payload) > MAX_RESPONSE_BYTES:
            reason = f"the forge response is larger than {MAX_RESPONSE_BYTES} bytes"
            await self._record_response(decision, host, status, reason, audit_kind)
            return _error(502, reason)

        created = _created_fields(decision.operation, status, parsed)
        if not await self._record_response(decision, host, status, "forge response",
                                          audit_kind, created):
            if upstream.method == "GET":
                return _error(503, "the broker cannot write its audit log")
        passed_headers = _response_headers(response_headers, gate.upstream, link_base, token)
        return GateResponse(status=status, body=payload, headers=passed_headers)

    async def _write_audit(self, **fields: Any) -> None:
        # The write ends with fsync, so it runs in a thread and other requests proceed.
        await asyncio.to_thread(self._audit.record, **fields)

    async def _record(self, decision: Decision, host: str, method: str, raw_path: str,
                      audit_kind: str) -> None:
        await self._write_audit(
            kind=audit_kind,
            decision="allow" if decision.allowed else "deny",
            reason=decision.reason,
            repository=decision.repository,
            path=decision.canonical_path or _short(raw_path),
            host=host,
            method=method,
            operation=decision.operation,
            phase="request",
        )

    async def _record_response(self, decision: Decision, host: str, status: int | None,
                               outcome: str, audit_kind: str,
                               created: Mapping[str, object] | None = None) -> bool:
        """Audit the forge's response; return False when the line cannot be written.

        A read gets its only line here (phase "complete", with the decision's reason),
        a write its second line (phase "response"). The line names the comment an edit,
        delete or minimise acted on, and `created` adds the ids and web URL of what a
        create made (see `_created_fields`).
        """
        assert decision.upstream is not None
        is_read = decision.upstream.method == "GET"
        ids: dict[str, object] = {"comment_id": decision.comment_id, **(created or {})}
        try:
            await self._write_audit(
                kind=audit_kind, decision="allow",
                reason=f"{decision.reason}; {outcome}" if is_read else outcome,
                repository=decision.repository, path=decision.canonical_path, host=host,
                method=decision.upstream.method, operation=decision.operation,
                upstream_status=status, phase="complete" if is_read else "response",
                **ids,
            )
        except AuditWriteError as error:
            log.error("audit write failed after %s on %s: %s", decision.operation, host, error)
            return False
        return True


class _HttpFrontend:
    """The HTTP side: raw path parsing, the session credential and the body size limit."""

    def __init__(self, service: ApiGateService, session_credential: str, mount_prefix: str
                 ) -> None:
        self._service = service
        self._credential = session_credential
        self._prefix = mount_prefix

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # The raw target, not aiohttp's decoded and dot-resolved path: the policy
        # normalises it itself.
        raw_path, _, query = request.raw_path.partition("?")
        if not raw_path.startswith(self._prefix + "/"):
            return _json_error(404, "not found")
        raw_host, _, api_path = raw_path[len(self._prefix) + 1 :].partition("/")
        host = urllib.parse.unquote(raw_host).lower()

        presented = presented_credential(request.headers)
        # A non-UTF-8 header contains lone surrogates, which must compare unequal, not raise.
        presented_bytes = (presented.encode("utf-8", "surrogateescape")
                           if presented is not None else None)
        if presented_bytes is None or not hmac.compare_digest(presented_bytes,
                                                              self._credential.encode()):
            denied = await self._service.deny(host, request.method, raw_path, 401,
                                              "invalid or missing session credential")
            return _to_response(denied)

        body = await _read_limited(request)
        if body is None:
            denied = await self._service.deny(
                host, request.method, raw_path, 413,
                f"the request body is larger than {MAX_BODY_BYTES} bytes")
            return _to_response(denied)

        api_request = ApiRequest(
            method=request.method,
            raw_path="/" + api_path,
            query=query,
            headers=list(request.headers.items()),
            body=body,
        )
        link_base = f"{request.scheme}://{request.host}{self._prefix}/{raw_host}"
        result = await self._service.execute(host, api_request, link_base=link_base)
        return _to_response(result)


def _created_fields(operation: str, status: int, payload: object) -> dict[str, object]:
    """Return the audit fields naming what a successful create made, from the forge's JSON.

    A comment gets `comment_id` and `comment_url`, a pull or merge request
    `pull_request_number` (GitLab's `iid`) and `pull_request_url`. A URL is the forge's
    `html_url` (GitHub, Forgejo) or `web_url` (GitLab); GitLab notes carry neither.
    """
    if not 200 <= status < 300 or not isinstance(payload, dict):
        return {}
    url = payload.get("html_url", payload.get("web_url"))
    web_url = url if isinstance(url, str) else None

    if operation == "create-comment":
        comment_id = payload.get("id")
        if not isinstance(comment_id, int) or isinstance(comment_id, bool):
            return {}
        return {"comment_id": comment_id, "comment_url": web_url}
    if operation == "create-pull-request":
        number = payload.get("iid", payload.get("number"))
        if not isinstance(number, int) or isinstance(number, bool):
            return {}
        return {"pull_request_number": number, "pull_request_url": web_url}
    return {}


def _upstream_url(forge: ForgeUpstream, upstream: UpstreamRequest) -> URL:
    if upstream.endpoint == "graphql":
        if forge.graphql_url is None:
            raise ValueError("no GraphQL endpoint configured for this forge")
        text = forge.graphql_url
    else:
        text = forge.api_base + upstream.path
    if upstream.query:
        text += "?" + upstream.query
    return URL(text, encoded=True)


def _to_response(result: GateResponse) -> web.Response:
    return web.Response(status=result.status, body=result.body, headers=dict(result.headers))


def _error(status: int, message: str) -> GateResponse:
    body = json.dumps({"message": message}).encode()
    return GateResponse(status=status, body=body,
                        headers={"Content-Type": "application/json; charset=utf-8"})


async def _read_limited(request: web.Request) -> bytes | None:
    """Read the request body, or return None when it exceeds MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)


def _response_headers(headers: Mapping[str, str], forge: ForgeUpstream, link_base: str | None,
                      token: bytes) -> dict[str, str]:
    passed: dict[str, str] = {}
    for name, value in headers.items():
        if name.casefold() not in _RESPONSE_HEADERS:
            continue
        if name.casefold() == "link" and link_base is not None:
            # Pagination links point at the forge, which the agent cannot reach directly.
            value = value.replace(forge.api_base, link_base)
        passed[name] = value.replace(token.decode(), REDACTED.decode())
    return passed


def _parse_json(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _short(path: str) -> str:
    return path if len(path) <= 300 else path[:300] + "..."
