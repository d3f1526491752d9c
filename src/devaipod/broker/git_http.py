"""The broker's git smart HTTP routes (`/git/<host>/<path>.git/...`): upload-pack is
proxied to the scope's repositories, receive-pack goes through the push gate, and every
other request (dumb HTTP included) is not found."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.broker.git_push import PushGate
from devaipod.broker.pktline import FLUSH, encode_pkt_line
from devaipod.broker.upstream_http import (
    RECEIVE_PACK,
    UPLOAD_PACK,
    UpstreamClient,
    stream_back,
    upstream_failure,
)
from devaipod.broker.upstreams import RepoMap, ScopedRepo

log = logging.getLogger(__name__)

GIT_ROUTE_PREFIX = "/git/"

_SERVICES = (UPLOAD_PACK, RECEIVE_PACK)

# Request headers passed from git to the upstream. Authorization is replaced, and cookies
# and proxy headers are dropped.
_FORWARDED_HEADERS = (
    "Content-Type",
    "Accept",
    "User-Agent",
    "Content-Encoding",
    "Accept-Encoding",
    "Git-Protocol",
)


@dataclass(frozen=True)
class GitTarget:
    """A parsed broker git URL: which repository, which smart-HTTP endpoint, which service."""

    repo_path: str
    """`<host>/<path>` as the client wrote it, with or without `.git`."""
    endpoint: str
    """`info/refs`, `git-upload-pack` or `git-receive-pack`."""
    service: str


def parse_git_target(method: str, path: str, service_query: str | None) -> GitTarget | None:
    """Return the smart-HTTP request `method path` addresses, or None for anything else.

    Only the four smart-HTTP requests exist: discovery (`GET info/refs?service=...`) for
    both services and the two RPC `POST`s. Dumb-HTTP paths and other methods return None.
    """
    if not path.startswith(GIT_ROUTE_PREFIX):
        return None
    rest = path[len(GIT_ROUTE_PREFIX) :]

    if rest.endswith("/info/refs"):
        if method != "GET" or service_query not in _SERVICES:
            return None
        repo_path = rest[: -len("/info/refs")]
        endpoint = "info/refs"
        service = service_query
    else:
        repo_path, _, endpoint = rest.rpartition("/")
        if method != "POST" or endpoint not in _SERVICES:
            return None
        service = endpoint

    if not repo_path or "/" not in repo_path:
        return None
    return GitTarget(repo_path=repo_path, endpoint=endpoint, service=service)


def git_kind_for_request(request: web.BaseRequest) -> str:
    """Return the audit `kind` for a request: `git-push` for receive-pack, else `git-fetch`."""
    if request.path.endswith("/" + RECEIVE_PACK) or request.query.get("service") == RECEIVE_PACK:
        return "git-push"
    if request.path.startswith(GIT_ROUTE_PREFIX):
        return "git-fetch"
    return "api"


def _error_advertisement(service: str, message: str) -> web.Response:
    # git prints an `ERR` packet in a discovery reply as "remote error: <message>".
    body = encode_pkt_line(f"# service={service}\n".encode()) + FLUSH
    body += encode_pkt_line(f"ERR {message}".encode())
    return web.Response(
        status=200,
        body=body,
        content_type=f"application/x-{service}-advertisement",
        headers={"Cache-Control": "no-cache"},
    )


class GitHttpFrontend:
    """The `/git/...` routes of the broker for one scope."""

    def __init__(
        self,
        *,
        repo_map: RepoMap,
        audit_log: AuditLog,
        upstream_authorization: str,
        state_dir: Path,
    ) -> None:
        self._repos = repo_map
        self._audit = audit_log
        self._upstream_authorization = upstream_authorization
        self._client = UpstreamClient()
        self._push_gate = PushGate(
            audit_log=audit_log,
            client=self._client,
            upstream_authorization=upstream_authorization,
            state_dir=state_dir,
        )

    def install(self, app: web.Application) -> None:
        """Add the git routes and the upstream HTTP client's lifetime to `app`."""
        app.cleanup_ctx.append(self._client_context)
        app.router.add_route("*", GIT_ROUTE_PREFIX + "{tail:.*}", self.handle)

    async def _client_context(self, app: web.Application) -> AsyncIterator[None]:
        await self._client.open()
        yield
        await self._client.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatch one `/git/...` request to upload-pack or the push gate."""
        # Percent-encoded paths are rejected outright, so the path checked is the path used.
        if request.rel_url.raw_path != request.path:
            return web.Response(status=404, text="not found\n")
        target = parse_git_target(request.method, request.path, request.query.get("service"))
        if target is None:
            return web.Response(status=404, text="not found\n")

        kind = "git-push" if target.service == RECEIVE_PACK else "git-fetch"
        repo = self._repos.lookup(target.repo_path)
        if repo is None:
            return self._deny_request(
                kind, target, f"repository {target.repo_path} is not in this session's scope"
            )
        if target.service == RECEIVE_PACK and not repo.can_push:
            return self._deny_request(
                kind, target, f"pushing to {repo.key} is not allowed in this session", repo
            )

        if target.service == UPLOAD_PACK:
            return await self._proxy_upload_pack(request, repo, target)
        if target.endpoint == "info/refs":
            return await self._push_gate.discovery(request, repo)
        return await self._push_gate.push(request, repo)

    def _deny_request(
        self, kind: str, target: GitTarget, reason: str, repo: ScopedRepo | None = None
    ) -> web.Response:
        log.info("denied %s %s: %s", kind, target.endpoint, reason)
        try:
            self._audit.record(
                kind=kind,
                decision="deny",
                reason=reason,
                repository=repo.upstream_url if repo else target.repo_path,
                path=target.endpoint,
            )
        except AuditWriteError as error:
            log.error("audit log write failed: %s", error)
        if target.endpoint == "info/refs":
            return _error_advertisement(target.service, reason)
        return web.Response(status=403, text=reason + "\n")

    async def _proxy_upload_pack(
        self, request: web.Request, repo: ScopedRepo, target: GitTarget
    ) -> web.StreamResponse:
        headers = {"Authorization": self._upstream_authorization}
        for name in _FORWARDED_HEADERS:
            value = request.headers.get(name)
            if value:
                headers[name] = value

        url = f"{repo.upstream_url}/{target.endpoint}"
        params = {"service": UPLOAD_PACK} if target.endpoint == "info/refs" else None
        body: aiohttp.StreamReader | None = None
        if request.method == "POST":
            body = request.content
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)

        try:
            async with self._client.session.request(
                request.method,
                url,
                params=params,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                if not self._record_fetch(repo, target, upstream.status):
                    return web.Response(status=503, text="the broker cannot write its audit log\n")
                if upstream.status != 200:
                    log.warning(
                        "upstream %s returned HTTP %d to %s",
                        repo.key,
                        upstream.status,
                        target.endpoint,
                    )
                    return upstream_failure(upstream.status)
                return await stream_back(request, upstream)
        except aiohttp.ClientError as error:
            log.warning("upstream %s request %s failed: %s", repo.key, target.endpoint, error)
            return web.Response(status=502, text="upstream request failed\n")

    def _record_fetch(self, repo: ScopedRepo, target: GitTarget, status: int) -> bool:
        # NOTE: the git routes write audit lines (with fsync) on the event loop thread, so a
        # slow disk stalls other requests of the broker for that time.
        try:
            self._audit.record(
                kind="git-fetch",
                decision="allow",
                reason="fetch from a repository in scope",
                repository=repo.upstream_url,
                path=target.endpoint,
                upstream_status=status,
            )
        except AuditWriteError as error:
            log.error("audit log write failed, denying a fetch from %s: %s", repo.key, error)
            return False
        return True
