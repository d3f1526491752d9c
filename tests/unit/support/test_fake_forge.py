"""Tests of the fake forge: payload shapes, token checks, ownership and request recording."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from support.fake_forge import DEFAULT_TOKEN, FakeForge, fake_forge_in_thread


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, *, token: str | None = DEFAULT_TOKEN,
    json: Any = None, header: str = "Authorization", scheme: str = "Bearer",
) -> tuple[int, Any]:
    headers = {}
    if token is not None:
        headers[header] = f"{scheme} {token}" if header == "Authorization" else token
    async with http.request(method, url, headers=headers, json=json) as response:
        if response.status == 204:
            return 204, None
        return response.status, await response.json()


async def test_github_issue_and_comments(http: aiohttp.ClientSession) -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("Octo/Hello", default_branch="trunk")
        issue = forge.add_issue("octo/hello", "Crash on start", "Steps...", labels=["bug"])
        forge.add_comment("octo/hello", issue.number, "me too", author="bob")
        base = f"{forge.api_url}/repos/octo/hello"

        status, repo = await _call(http, "GET", base)
        assert status == 200
        assert repo["default_branch"] == "trunk"
        assert repo["full_name"] == "Octo/Hello"

        status, data = await _call(http, "GET", f"{base}/issues/{issue.number}")
        assert status == 200
        assert data["title"] == "Crash on start"
        assert data["labels"][0]["name"] == "bug"
        assert "pull_request" not in data

        status, comments = await _call(http, "GET", f"{base}/issues/1/comments")
        assert status == 200
        assert comments[0]["user"]["login"] == "bob"

        status, created = await _call(http, "POST", f"{base}/issues/1/comments",
                                      json={"body": "On it"}, scheme="token")
        assert status == 201
        assert created["user"]["login"] == "devaipod-bot"
        assert created["node_id"].startswith("IC_")
        assert created["issue_url"].endswith("/repos/Octo/Hello/issues/1")


async def test_github_comment_edit_requires_owner(http: aiohttp.ClientSession) -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("o/r")
        issue = forge.add_issue("o/r", "t")
        theirs = forge.add_comment("o/r", issue.number, "theirs", author="bob")
        mine = forge.add_comment("o/r", issue.number, "mine", author="devaipod-bot")
        base = f"{forge.api_url}/repos/o/r/issues/comments"

        status, _ = await _call(http, "PATCH", f"{base}/{theirs.id}", json={"body": "x"})
        assert status == 403
        status, edited = await _call(http, "PATCH", f"{base}/{mine.id}", json={"body": "new"})
        assert status == 200
        assert edited["body"] == "new"
        status, _ = await _call(http, "DELETE", f"{base}/{mine.id}")
        assert status == 204
        assert mine.id not in forge.comments


async def test_github_pull_and_minimize(http: aiohttp.ClientSession) -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("o/r")
        forge.add_issue("o/r", "t")
        mine = forge.add_comment("o/r", 1, "old", author="devaipod-bot")

        status, pull = await _call(http, "POST", f"{forge.api_url}/repos/o/r/pulls", json={
            "title": "Fix", "head": "devaipod/issue-1", "base": "main", "draft": True})
        assert status == 201
        assert pull["number"] == 2
        assert pull["draft"] is True
        assert pull["head"]["ref"] == "devaipod/issue-1"

        query = ("mutation($id: ID!, $classifier: ReportedContentClassifiers!) "
                 "{ minimizeComment(input: {subjectId: $id, classifier: $classifier}) "
                 "{ minimizedComment { isMinimized minimizedReason } } }")
        status, result = await _call(http, "POST", forge.graphql_url, json={
            "query": query, "variables": {"id": mine.node_id, "classifier": "OUTDATED"}})
        assert status == 200
        assert result["data"]["minimizeComment"]["minimizedComment"]["isMinimized"] is True
        assert mine.minimized_reason == "outdated"


async def test_gitlab_project_by_path_and_id(http: aiohttp.ClientSession) -> None:
    async with FakeForge("gitlab") as forge:
        project = forge.add_repo("group/sub/proj", default_branch="develop")
        forge.add_issue("group/sub/proj", "Bug", "desc", labels=["p1"])

        status, by_path = await _call(http, "GET", f"{forge.api_url}/projects/group%2Fsub%2Fproj",
                                      header="PRIVATE-TOKEN")
        assert status == 200
        assert by_path["id"] == project.id
        assert by_path["default_branch"] == "develop"

        status, by_id = await _call(http, "GET", f"{forge.api_url}/projects/{project.id}/issues/1")
        assert status == 200
        assert by_id["iid"] == 1
        assert by_id["labels"] == ["p1"]
        assert by_id["description"] == "desc"


async def test_gitlab_notes_and_merge_request(http: aiohttp.ClientSession) -> None:
    async with FakeForge("gitlab") as forge:
        project = forge.add_repo("g/p")
        forge.add_issue("g/p", "Bug")
        base = f"{forge.api_url}/projects/{project.id}"

        status, note = await _call(http, "POST", f"{base}/issues/1/notes", json={"body": "hi"})
        assert status == 201
        assert note["noteable_type"] == "Issue"
        status, edited = await _call(http, "PUT", f"{base}/issues/1/notes/{note['id']}",
                                     json={"body": "edited"})
        assert status == 200
        assert edited["body"] == "edited"

        status, merge_request = await _call(http, "POST", f"{base}/merge_requests", json={
            "source_branch": "devaipod/issue-1", "target_branch": "main", "title": "Draft: Fix"})
        assert status == 201
        assert merge_request["iid"] == 1
        assert merge_request["draft"] is True
        status, mr_note = await _call(http, "POST", f"{base}/merge_requests/1/notes",
                                      json={"body": "done"})
        assert status == 201
        assert mr_note["noteable_type"] == "MergeRequest"
        status, _ = await _call(http, "DELETE", f"{base}/merge_requests/1/notes/{mr_note['id']}")
        assert status == 204


async def test_forgejo_issue_comment_pull(http: aiohttp.ClientSession) -> None:
    async with FakeForge("forgejo") as forge:
        forge.add_repo("me/proj")
        forge.add_issue("me/proj", "Typo", labels=["docs"])
        base = f"{forge.api_url}/repos/me/proj"

        status, issue = await _call(http, "GET", f"{base}/issues/1", scheme="token")
        assert status == 200
        assert issue["pull_request"] is None
        status, comment = await _call(http, "POST", f"{base}/issues/1/comments",
                                      json={"body": "fixing"}, scheme="token")
        assert status == 201
        status, pull = await _call(http, "POST", f"{base}/pulls", scheme="token", json={
            "head": "devaipod/issue-1", "base": "main", "title": "WIP: fix typo"})
        assert status == 201
        assert pull["number"] == 2
        assert pull["draft"] is True
        status, _ = await _call(http, "DELETE", f"{base}/issues/comments/{comment['id']}",
                                scheme="token")
        assert status == 204


async def test_token_check_rejects_bad_token(http: aiohttp.ClientSession) -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("o/r")

        missing, _ = await _call(http, "GET", f"{forge.api_url}/repos/o/r", token=None)
        wrong, body = await _call(http, "GET", f"{forge.api_url}/repos/o/r", token="nope")

        assert missing == 401
        assert wrong == 401
        assert body["message"] == "Bad credentials"


async def test_anonymous_reads_when_enabled(http: aiohttp.ClientSession) -> None:
    async with FakeForge("forgejo", anonymous_reads=True) as forge:
        forge.add_repo("o/r")

        read, _ = await _call(http, "GET", f"{forge.api_url}/repos/o/r", token=None)
        write, _ = await _call(http, "POST", f"{forge.api_url}/repos/o/r/issues/1/comments",
                               token=None, json={"body": "x"})

        assert read == 200
        assert write == 401


async def test_requests_are_recorded_raw(http: aiohttp.ClientSession) -> None:
    async with FakeForge("gitlab") as forge:
        forge.add_repo("g/p")

        await _call(http, "GET", f"{forge.api_url}/projects/g%2Fp?sudo=root", token=None)

        assert len(forge.requests) == 1
        recorded = forge.requests[0]
        assert recorded.method == "GET"
        assert recorded.raw_path == "/api/v4/projects/g%2Fp"
        assert recorded.query == "sudo=root"
        assert forge.writes() == []


async def test_comment_list_paginates(http: aiohttp.ClientSession) -> None:
    async with FakeForge("github") as forge:
        forge.add_repo("o/r")
        forge.add_issue("o/r", "t")
        for index in range(5):
            forge.add_comment("o/r", 1, f"c{index}")
        url = f"{forge.api_url}/repos/o/r/issues/1/comments?per_page=2"

        async with http.get(url, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}) as first:
            page_one = await first.json()
            next_link = first.headers["Link"]

        assert [comment["body"] for comment in page_one] == ["c0", "c1"]
        assert "page=2" in next_link
        assert 'rel="next"' in next_link


def test_forge_in_thread_serves_sync_clients() -> None:
    with fake_forge_in_thread("forgejo") as forge:
        forge.add_repo("o/r", default_branch="dev")
        request = urllib.request.Request(f"{forge.api_url}/repos/o/r",
                                         headers={"Authorization": f"token {DEFAULT_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.load(response)

    assert data["default_branch"] == "dev"
    assert len(forge.requests) == 1
