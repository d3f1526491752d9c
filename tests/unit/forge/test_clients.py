"""Tests of the host-side forge REST clients against the fake forge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from devaipod.config import ForgeKind, ForgeSettings, parse_config
from devaipod.errors import UserError
from devaipod.forge.clients import ForgeApiError, client_for, fetch_forge_context
from devaipod.forge.tokens import ForgeToken
from devaipod.forge.urls import parse_forge_url
from support.fake_forge import FakeForge

KINDS: list[ForgeKind] = ["github", "gitlab", "forgejo"]
REPO = {"github": "Octo/Hello", "gitlab": "group/sub/hello", "forgejo": "octo/hello"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _issue_url(forge: FakeForge, number: int, *, pull: bool = False) -> str:
    repo = REPO[forge.kind]
    if forge.kind == "gitlab":
        section = "-/merge_requests" if pull else "-/issues"
    elif forge.kind == "github":
        section = "pull" if pull else "issues"
    else:
        section = "pulls" if pull else "issues"
    return f"{forge.web_url}/{repo}/{section}/{number}"


def _settings(forge: FakeForge) -> ForgeSettings:
    config = parse_config(
        f'[forges."{forge.host}"]\nkind = "{forge.kind}"\napi_url = "{forge.api_url}"\n', "t"
    )
    settings = config.forge_settings(forge.host)
    assert settings is not None
    return settings


@pytest.mark.parametrize("kind", KINDS)
async def test_client_reads_issue_with_comments(kind: ForgeKind,
                                                http: aiohttp.ClientSession) -> None:
    async with FakeForge(kind) as forge:
        forge.add_repo(REPO[kind], default_branch="trunk")
        forge.add_issue(REPO[kind], "Crash on start", "Steps to reproduce", labels=["bug", "p1"])
        for index in range(130):
            forge.add_comment(REPO[kind], 1, f"comment {index}", author="bob")
        settings = _settings(forge)
        parsed = parse_forge_url(_issue_url(forge, 1), parse_config(
            f'[forges."{forge.host}"]\nkind = "{kind}"\n', "t"))
        client = client_for(parsed, settings, ForgeToken(forge.token, "test"), http)

        issue = await client.item(parsed)
        repository = await client.repository(parsed.repo_path)

    assert issue.title == "Crash on start"
    assert issue.body == "Steps to reproduce"
    assert issue.labels == ["bug", "p1"]
    assert issue.state == "open"
    assert issue.author == "alice"
    assert issue.is_pull_request is False
    assert len(issue.comments) == 130
    assert issue.comments[0].body == "comment 0"
    assert issue.comments[-1].author == "bob"
    assert repository.default_branch == "trunk"
    assert repository.id == 101


@pytest.mark.parametrize("kind", KINDS)
async def test_client_reads_pull_request_branches(kind: ForgeKind,
                                                  http: aiohttp.ClientSession) -> None:
    async with FakeForge(kind) as forge:
        forge.add_repo(REPO[kind])
        pull = forge.add_pull_request(REPO[kind], "Add feature", head="feature/x", base="main",
                                      body="Implements x")
        forge.add_comment(REPO[kind], pull.number, "LGTM", on_merge_request=kind == "gitlab")
        parsed = parse_forge_url(_issue_url(forge, pull.number, pull=True), parse_config(
            f'[forges."{forge.host}"]\nkind = "{kind}"\n', "t"))
        client = client_for(parsed, _settings(forge), ForgeToken(forge.token, "test"), http)

        details = await client.item(parsed)

    assert details.is_pull_request is True
    assert details.title == "Add feature"
    assert details.body == "Implements x"
    assert details.head_branch == "feature/x"
    assert details.base_branch == "main"
    assert details.head_in_same_repository is True
    assert [comment.body for comment in details.comments] == ["LGTM"]


async def test_client_bad_token_is_user_error(http: aiohttp.ClientSession) -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("o/r")
        parsed = parse_forge_url(f"{forge.web_url}/o/r", parse_config(
            f'[forges."{forge.host}"]\nkind = "github"\n', "t"))
        client = client_for(parsed, _settings(forge), ForgeToken("wrong", "$GH_TOKEN"), http)

        with pytest.raises(UserError) as raised:
            await client.repository("o/r")

    assert "401" in raised.value.message
    assert "$GH_TOKEN" in raised.value.message
    assert "wrong" not in raised.value.render()


async def test_client_missing_issue_is_404(http: aiohttp.ClientSession) -> None:
    async with FakeForge("forgejo") as forge:
        forge.add_repo("o/r")
        parsed = parse_forge_url(f"{forge.web_url}/o/r/issues/9", parse_config(
            f'[forges."{forge.host}"]\nkind = "forgejo"\n', "t"))
        client = client_for(parsed, _settings(forge), ForgeToken(forge.token, "t"), http)

        with pytest.raises(UserError) as raised:
            await client.item(parsed)

    assert "404" in raised.value.message


async def test_client_without_token_reads_public(http: aiohttp.ClientSession) -> None:
    async with FakeForge("gitlab", anonymous_reads=True) as forge:
        forge.add_repo("g/p", default_branch="develop")
        parsed = parse_forge_url(f"{forge.web_url}/g/p", parse_config(
            f'[forges."{forge.host}"]\nkind = "gitlab"\n', "t"))
        client = client_for(parsed, _settings(forge), None, http)

        repository = await client.repository("g/p")

    assert repository.default_branch == "develop"
    assert "PRIVATE-TOKEN" not in forge.requests[0].headers
    assert forge.requests[0].raw_path == "/api/v4/projects/g%2Fp"


async def test_fetch_forge_context_with_env_token() -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("octo/hello", default_branch="trunk")
        forge.add_issue("octo/hello", "Crash", "Steps", labels=["bug"])
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "github"\napi_url = "{forge.api_url}"\n', "t")
        parsed = parse_forge_url(f"{forge.web_url}/octo/hello/issues/1", config)

        context = await fetch_forge_context(parsed, config,
                                            env={"GH_ENTERPRISE_TOKEN": forge.token})

    assert context.repository.default_branch == "trunk"
    assert context.item is not None
    assert context.item.title == "Crash"
    assert context.token_source == "$GH_ENTERPRISE_TOKEN"


async def test_fetch_forge_context_repository_url() -> None:
    async with FakeForge("forgejo", anonymous_reads=True) as forge:
        forge.add_repo("me/proj")
        config = parse_config(
            f'[forges."{forge.host}"]\nkind = "forgejo"\napi_url = "{forge.api_url}"\n', "t")
        parsed = parse_forge_url(f"{forge.web_url}/me/proj.git", config)

        context = await fetch_forge_context(parsed, config, env={"HOME": "/nonexistent"})

    assert context.item is None
    assert context.token_source is None
    assert context.repository.default_branch == "main"


async def _serve_odd_forge(kind: ForgeKind, item_body: bytes,
                           content_type: str) -> tuple[web.AppRunner, str]:
    """Serve a repository as documented and every other path with `item_body`."""
    async def handle(request: web.Request) -> web.Response:
        if request.path.rstrip("/").endswith(("/repos/o/r", "/projects/o%2Fr", "/projects/o/r")):
            return web.json_response({"id": 7, "default_branch": "main"})
        return web.Response(body=item_body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"127.0.0.1:{port}"


ODD_ITEM_BODIES = [
    (b"<html><body>Sign in</body></html>", "text/html"),
    (b'["not", "an", "issue"]', "application/json"),
    (b'{"number": "one", "iid": "one"}', "application/json"),
    (b'{"number": 1, "iid": 1, "labels": ["bug"], "user": "bob", "author": "bob"}',
     "application/json"),
    (b"\xff\xfe not utf-8", "application/json"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("body", "content_type"), ODD_ITEM_BODIES)
async def test_fetch_context_odd_item_is_forge_error(kind: ForgeKind, body: bytes,
                                                     content_type: str) -> None:
    runner, host = await _serve_odd_forge(kind, body, content_type)
    try:
        api = {"github": "/api/v3", "gitlab": "/api/v4", "forgejo": "/api/v1"}[kind]
        section = {"github": "issues", "gitlab": "-/issues", "forgejo": "issues"}[kind]
        config = parse_config(
            f'[forges."{host}"]\nkind = "{kind}"\napi_url = "http://{host}{api}"\n', "t")
        parsed = parse_forge_url(f"http://{host}/o/r/{section}/1", config)

        with pytest.raises(ForgeApiError) as raised:
            await fetch_forge_context(parsed, config, env={"HOME": "/nonexistent"})
    finally:
        await runner.cleanup()

    assert host in raised.value.message
