"""An MCP client session (the mcp SDK's streamable HTTP client) for tests of the broker's /mcp."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

TOOL_NAMES = {"get_issue", "list_comments", "comment", "update_comment", "minimize_comment",
              "create_pull_request"}


@asynccontextmanager
async def mcp_session(url: str, credential: str | None) -> AsyncIterator[ClientSession]:
    """Open an initialised MCP session to `url`, sending `credential` as a Bearer token."""
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
        streamable_http_client(url, http_client=http) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()
        yield session


def result_text(result: CallToolResult) -> str:
    """Return the concatenated text content of a tool result."""
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def result_json(result: CallToolResult) -> Any:
    """Return a successful tool result's text parsed as JSON."""
    assert not result.is_error, result_text(result)
    return json.loads(result_text(result))
