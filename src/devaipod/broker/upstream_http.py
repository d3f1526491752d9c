"""HTTP calls from the broker to upstream git servers: the shared client, streaming a
response back to git, and mapping upstream failures to replies git can show."""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web

from devaipod.broker.upstreams import ScopedRepo

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024

# A receive-pack advertisement is one line per upstream ref; this bounds the memory one
# discovery request may use.
MAX_ADVERTISEMENT_BYTES = 64 * 1024 * 1024

RECEIVE_PACK = "git-receive-pack"
UPLOAD_PACK = "git-upload-pack"

_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)

# Response headers passed from the upstream to git; hop-by-hop and cookie headers are not.
_RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", "Cache-Control", "Expires", "Pragma")


class UpstreamStatusError(Exception):
    """The upstream returned an unexpected status or body."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(f"HTTP {status}" + (f", {detail}" if detail else ""))
        self.status = status


class UpstreamClient:
    """The aiohttp client session the broker uses for every upstream request."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # auto_decompress=False: bodies pass through with their Content-Encoding untouched.
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=_TIMEOUT,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the broker application is not started"
        return self._session


def upstream_failure(status: int) -> web.Response:
    """Return the response git gets when the upstream did not return 200."""
    # A 401 from the upstream must not reach git as a 401, because git would then retry with
    # the session credential as if the broker had asked for it.
    if status == 404:
        return web.Response(status=404, text="repository not found upstream\n")
    return web.Response(status=502, text=f"upstream returned HTTP {status}\n")


async def stream_back(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    on_chunk: Callable[[bytes], None] | None = None,
) -> web.StreamResponse:
    """Send the upstream's response to git chunk by chunk, without buffering the body.

    `on_chunk` sees each chunk before it is sent, to read the body on the way through.
    """
    response = web.StreamResponse(status=upstream.status)
    for name in _RESPONSE_HEADERS:
        value = upstream.headers.get(name)
        if value:
            response.headers[name] = value
    await response.prepare(request)
    async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
        if on_chunk is not None:
            on_chunk(chunk)
        await response.write(chunk)
    await response.write_eof()
    return response


async def fetch_receive_pack_advertisement(
    client: UpstreamClient, repo: ScopedRepo, authorization: str, user_agent: str | None
) -> bytes:
    """Return the upstream's protocol v0 `info/refs?service=git-receive-pack` body.

    Raises UpstreamStatusError for a non-200 status, another content type, or a body
    over MAX_ADVERTISEMENT_BYTES, and aiohttp.ClientError when the request fails.
    """
    headers = {"Authorization": authorization}
    if user_agent:
        headers["User-Agent"] = user_agent
    async with client.session.get(
        f"{repo.upstream_url}/info/refs",
        params={"service": RECEIVE_PACK},
        headers=headers,
        allow_redirects=False,
    ) as upstream:
        if upstream.status != 200:
            raise UpstreamStatusError(upstream.status)
        content_type = upstream.headers.get("Content-Type", "")
        if content_type != f"application/x-{RECEIVE_PACK}-advertisement":
            raise UpstreamStatusError(upstream.status, f"unexpected Content-Type {content_type!r}")
        body = bytearray()
        async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
            body += chunk
            if len(body) > MAX_ADVERTISEMENT_BYTES:
                raise UpstreamStatusError(upstream.status, "advertisement larger than 64 MiB")
        return bytes(body)
