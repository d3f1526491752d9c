"""The broker's MCP endpoint: forge tools for the session's attached issue or pull request.

Each tool builds a forge REST request and runs it through `ApiGateService.execute`, so
the MCP tools and the `/api` gate share one policy, one session state and one audit log
(MCP lines have kind "mcp"). The SDK's streamable HTTP app is served inside aiohttp.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from multidict import CIMultiDict

from devaipod.broker.api_gate import ApiGate, ApiGateService, GateResponse, presented_credential
from devaipod.broker.api_policy import MINIMIZE_CLASSIFIERS, ApiRequest, ScopedRepo
from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.broker.forge_endpoints import MCP_PATH
from devaipod.config import ForgeKind, UserConfig
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.model import Scope

log = logging.getLogger(__name__)

AUDIT_KIND = "mcp"
SERVER_NAME = "devaipod-broker"
# Comment pages are read until one comes back short; this caps the number of requests.
MAX_COMMENT_PAGES = 20
_PAGE_SIZE: dict[ForgeKind, tuple[str, int]] = {
    "github": ("per_page", 100),
    "gitlab": ("per_page", 100),
    "forgejo": ("limit", 50),
}

AsgiMessage = MutableMapping[str, Any]
AsgiApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[AsgiMessage]],
     Callable[[AsgiMessage], Awaitable[None]]],
    Awaitable[None],
]


@dataclass(frozen=True)
class McpTarget:
    """The issue or pull request the MCP tools act on: the scope's first attached context."""

    host: str
    kind: ForgeKind
    repo: ScopedRepo
    number: int
    is_pull_request: bool

    @property
    def repo_api_path(self) -> str:
        """The repository's REST path: `/repos/OWNER/REPO`, or GitLab's `/projects/ID`."""
        if self.kind == "gitlab":
            project = (str(self.repo.project_id) if self.repo.project_id is not None
                       else urllib.parse.quote(self.repo.path, safe=""))
            return f"/projects/{project}"
        owner, name = self.repo.path.split("/", 1)
        return f"/repos/{_quote(owner)}/{_quote(name)}"

    @property
    def item_api_path(self) -> str:
        """The issue's or pull (merge) request's REST path."""
        if self.kind == "gitlab":
            collection = "merge_requests" if self.is_pull_request else "issues"
        else:
            collection = "pulls" if self.is_pull_request else "issues"
        return f"{self.repo_api_path}/{collection}/{self.number}"

    @property
    def comments_api_path(self) -> str:
        """The REST path that lists and creates comments (GitLab: notes) on the item."""
        if self.kind == "gitlab":
            return f"{self.item_api_path}/notes"
        # GitHub and Forgejo keep pull request conversation comments under /issues/N.
        return f"{self.repo_api_path}/issues/{self.number}/comments"

    def comment_api_path(self, comment_id: int) -> str:
        """The REST path of one comment (GitLab: note)."""
        if self.kind == "gitlab":
            return f"{self.item_api_path}/notes/{comment_id}"
        return f"{self.repo_api_path}/issues/comments/{comment_id}"


def find_mcp_target(scope: Scope, config: UserConfig, gates: dict[str, ApiGate]
                    ) -> McpTarget | None:
    """Return the first attached context whose forge has a gate, or None when there is none."""
    for attached in scope.attachedContexts:
        url = parse_forge_url(attached.url, config)
        gate = gates.get(url.host)
        if gate is None or url.number is None:
            continue
        repo = gate.context.find_repo(url.repo_path)
        if repo is None:
            continue
        return McpTarget(host=url.host, kind=gate.context.kind, repo=repo, number=url.number,
                         is_pull_request=url.item == "pull_request")
    return None


class ForgeTools:
    """The MCP tools' logic: forge requests for the target, run through the API gate."""

    def __init__(self, service: ApiGateService, target: McpTarget) -> None:
        self._service = service
        self.target = target

    async def get_issue(self) -> str:
        """Return the issue or pull request as the forge's JSON."""
        return _json_text(await self._call("GET", self.target.item_api_path))

    async def list_comments(self) -> str:
        """Return all comments as one JSON array, oldest first."""
        size_parameter, size = _PAGE_SIZE[self.target.kind]
        comments: list[object] = []
        # GitLab lists notes newest first unless asked otherwise.
        order = {"order_by": "created_at", "sort": "asc"} if self.target.kind == "gitlab" else {}
        for page in range(1, MAX_COMMENT_PAGES + 1):
            query = urllib.parse.urlencode({"page": page, size_parameter: size, **order})
            response = await self._send("GET", self.target.comments_api_path, query=query)
            batch = response.json()
            if not isinstance(batch, list):
                raise ToolError("the forge returned comments in an unexpected shape")
            comments.extend(batch)
            # All three forges announce a further page in the Link header. Following it,
            # not a short page, also works when a forge caps the page size lower.
            if not batch or not _has_next_page(response):
                break
        else:
            log.warning("listed only the first %d pages of comments on %s #%d",
                        MAX_COMMENT_PAGES, self.target.repo.path, self.target.number)
        return _json_text(comments)

    async def comment(self, body: str) -> str:
        """Post a comment and return the forge's JSON of it (its `id` names it later)."""
        created = await self._call("POST", self.target.comments_api_path, {"body": body})
        return _json_text(created)

    async def update_comment(self, comment_id: int, body: str) -> str:
        """Replace the body of a comment this session created."""
        method = "PUT" if self.target.kind == "gitlab" else "PATCH"
        updated = await self._call(method, self.target.comment_api_path(comment_id),
                                   {"body": body})
        return _json_text(updated)

    async def minimize_comment(self, comment_id: int, reason: str) -> str:
        """Minimise (hide) a comment this session created, on GitHub only."""
        classifier = reason.strip().upper()
        path = f"{self.target.comment_api_path(comment_id)}/devaipod-minimize"
        result = await self._call("POST", path, {"classifier": classifier})
        return _json_text(result)

    async def create_pull_request(self, title: str, body: str, draft: bool) -> str:
        """Open a pull (merge) request from the session's branch into the scope's base."""
        output = self.target.repo.output
        head = output.targetBranch if output is not None else ""
        base = output.baseBranch if output is not None else None
        base = base or self.target.repo.default_branch
        payload: dict[str, object]
        if self.target.kind == "gitlab":
            payload = {"source_branch": head, "target_branch": base, "title": title,
                       "description": body, "draft": draft}
            path = f"{self.target.repo_api_path}/merge_requests"
        elif self.target.kind == "github":
            payload = {"head": head, "base": base, "title": title, "body": body, "draft": draft}
            path = f"{self.target.repo_api_path}/pulls"
        else:
            # Forgejo has no draft field, so a "WIP: " title prefix marks a draft there.
            if output is not None and output.draft and not draft:
                return await self._deny(path="/pulls", reason="the scope requires a draft pull "
                                        "request")
            if draft and not title.lstrip().upper().startswith(("WIP:", "[WIP]")):
                title = f"WIP: {title}"
            payload = {"head": head, "base": base, "title": title, "body": body}
            path = f"{self.target.repo_api_path}/pulls"
        return _json_text(await self._call("POST", path, payload))

    async def _call(self, method: str, path: str, body: object = None, *, query: str = ""
                    ) -> object:
        return (await self._send(method, path, body, query=query)).json()

    async def _send(self, method: str, path: str, body: object = None, *, query: str = ""
                    ) -> GateResponse:
        headers = [("Accept", "application/json")]
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            headers.append(("Content-Type", "application/json"))
        request = ApiRequest(method=method, raw_path=path, query=query, headers=headers,
                             body=data)
        response = await self._service.execute(self.target.host, request,
                                               audit_kind=AUDIT_KIND)
        if response.status >= 400:
            raise ToolError(_error_message(response))
        return response

    async def _deny(self, *, path: str, reason: str) -> NoReturn:
        response = await self._service.deny(self.target.host, "POST",
                                            self.target.repo_api_path + path, 403,
                                            f"devaipod broker denied this request: {reason}",
                                            audit_kind=AUDIT_KIND)
        raise ToolError(_error_message(response))


def create_mcp_server(tools: ForgeTools) -> MCPServer[Any]:
    """Build the MCP server with the six forge tools bound to `tools`."""
    target = tools.target
    item = "pull request" if target.is_pull_request else "issue"
    where = f"{item} #{target.number} in {target.repo.path} on {target.host}"
    # MCPServer's constructor calls logging.basicConfig, which adds a handler to a root
    # logger that has none. devaipod configures logging itself, so this undoes it.
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    server: MCPServer[Any] = MCPServer(
        SERVER_NAME,
        instructions=f"Forge tools for {where}. The devaipod broker checks every call "
        "against the session's scope and writes it to an audit log.",
    )
    root.handlers[:] = root_handlers
    root.setLevel(root_level)

    async def get_issue() -> str:
        return await tools.get_issue()

    async def list_comments() -> str:
        return await tools.list_comments()

    async def comment(body: str) -> str:
        return await tools.comment(body)

    async def update_comment(comment_id: int, body: str) -> str:
        return await tools.update_comment(comment_id, body)

    async def minimize_comment(comment_id: int, reason: str = "OUTDATED") -> str:
        return await tools.minimize_comment(comment_id, reason)

    async def create_pull_request(title: str, body: str = "", draft: bool = True) -> str:
        return await tools.create_pull_request(title, body, draft)

    classifiers = ", ".join(sorted(MINIMIZE_CLASSIFIERS))
    server.add_tool(get_issue, description=f"Read {where} (the forge's JSON).")
    server.add_tool(list_comments, description=f"List all comments on {where}, oldest first.")
    server.add_tool(comment, description=f"Post a comment on {where}; returns it with its id.")
    server.add_tool(update_comment, description="Replace the body of a comment that this "
                    "session created (by its id).")
    server.add_tool(minimize_comment, description="Hide a comment that this session created "
                    f"(GitHub only). reason is one of {classifiers}.")
    server.add_tool(create_pull_request, description="Open a pull or merge request from the "
                    "session's branch into the scope's base branch; draft unless the scope "
                    "allows otherwise.")
    return server


class McpEndpoint:
    """The `/mcp` route: the session credential check, then the SDK's streamable HTTP app.

    The SDK's app is an ASGI callable, and `handle` adapts one aiohttp request to it. The
    transport is stateless with JSON responses, so each POST gets one complete JSON
    response and no server-sent event stream stays open.
    """

    def __init__(self, server: MCPServer[Any], *, session_credential: str, audit_log: AuditLog
                 ) -> None:
        self._credential = session_credential
        self._audit = audit_log
        server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            # Every request must carry the session credential, which a browser page on a
            # rebound DNS name cannot supply, so the Host/Origin check adds nothing here
            # and would reject the names a pod or gateway uses.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._manager: StreamableHTTPSessionManager = server.session_manager

    def install(self, app: web.Application) -> None:
        """Add the route and start and stop the SDK's session manager with `app`."""
        app.router.add_route("*", MCP_PATH, self.handle)
        app.cleanup_ctx.append(self.lifetime)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """Run the session manager in its own task for as long as `app` runs.

        The manager owns an anyio task group, which must be left by the task that
        entered it, and aiohttp may run startup and cleanup in different tasks.
        """
        ready = asyncio.Event()
        stop = asyncio.Event()

        async def run_manager() -> None:
            async with self._manager.run():
                ready.set()
                await stop.wait()

        task = asyncio.create_task(run_manager(), name="mcp-session-manager")
        ready_wait = asyncio.create_task(ready.wait())
        await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        ready_wait.cancel()
        if task.done():
            task.result()  # raises the manager's start-up error
        try:
            yield
        finally:
            stop.set()
            await task

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Check the session credential, then pass the request to the SDK's ASGI app."""
        presented = presented_credential(request.headers)
        # A non-UTF-8 header contains lone surrogates, which must compare unequal, not raise.
        presented_bytes = (presented.encode("utf-8", "surrogateescape")
                           if presented is not None else None)
        if presented_bytes is None or not hmac.compare_digest(presented_bytes,
                                                              self._credential.encode()):
            reason = ("invalid session credential" if presented is not None
                      else "missing session credential")
            log.warning("rejected an MCP request from %s with a %s", request.remote, reason)
            try:
                await asyncio.to_thread(self._audit.record, kind=AUDIT_KIND, decision="deny",
                                        reason=reason, path=request.path,
                                        method=request.method)
            except AuditWriteError as error:
                log.error("audit log write failed: %s", error)
            return web.json_response(
                {"message": f"{reason}: send Authorization: Bearer <session credential>"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="devaipod"'},
            )

        # The transport is stateless: no session to end (DELETE), and no server-initiated
        # messages to stream (GET), which the MCP spec lets a server decline with 405.
        if request.method != "POST":
            return web.json_response(
                {"message": f"{request.method} is not supported; send JSON-RPC with POST"},
                status=405, headers={"Allow": "POST"},
            )
        return await serve_asgi(self._manager.handle_request, request)


async def serve_asgi(asgi_app: AsgiApp, request: web.Request) -> web.StreamResponse:
    """Run one aiohttp request through an ASGI 3 application and stream its response back.

    The request body is read whole first (aiohttp's `client_max_size` bounds it). After
    the body, `receive` reports a disconnect only once the application has finished.
    """
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.partition("?")[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in request.headers.items()],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sockname[:2]) if isinstance(sockname, tuple) else None,
    }

    body_sent = False
    finished = asyncio.Event()

    async def receive() -> AsgiMessage:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    start: AsgiMessage | None = None
    response: web.StreamResponse | None = None

    async def send(message: AsgiMessage) -> None:
        nonlocal start, response
        if message["type"] == "http.response.start":
            # Sent at once, so that a client of a long-lived event stream receives the status.
            start = message
            response = await _prepare(request, start)
            return
        if message["type"] != "http.response.body" or response is None:
            return
        chunk = message.get("body", b"")
        if chunk:
            await response.write(chunk)
        if not message.get("more_body", False):
            await response.write_eof()

    try:
        await asgi_app(scope, receive, send)
    finally:
        finished.set()

    if response is None:
        log.error("the MCP application sent no response to %s %s", request.method,
                  request.path)
        return web.json_response({"message": "the MCP endpoint sent no response"}, status=500)
    return response


async def _prepare(request: web.Request, start: AsgiMessage) -> web.StreamResponse:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in start.get("headers", []):
        headers.add(name.decode("latin-1"), value.decode("latin-1"))
    response = web.StreamResponse(status=int(start["status"]), headers=headers)
    await response.prepare(request)
    return response


def _error_message(response: GateResponse) -> str:
    """Return the broker's denial reason, or the forge's or the gate's error, as one line."""
    payload = response.json()
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, str):
        message = response.body[:300].decode("utf-8", "replace") or "no error message"
    if message.startswith("devaipod broker denied"):
        return message
    return f"the request failed with HTTP {response.status}: {message}"


def _has_next_page(response: GateResponse) -> bool:
    for name, value in response.headers.items():
        if name.casefold() == "link":
            return any('rel="next"' in part for part in value.split(","))
    return False


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
