"""Forge data that makes `run` give the agent more than an issue or pull request justifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devaipod.config import UserConfig, parse_config
from devaipod.forge.clients import ForgeContext, IssueDetails, RepositoryInfo
from devaipod.session import run

TOKEN = "host-forge-token-0123456789abcdef"
HOST = "forge.test:3000"


def _config() -> UserConfig:
    return parse_config(f'[forges."{HOST}"]\nkind = "forgejo"\n', "test")


def _pull_request(head: str, base: str) -> IssueDetails:
    return IssueDetails(
        number=7, title="Back-merge", body="", labels=[], state="open", author="alice",
        url="", is_pull_request=True, head_branch=head, base_branch=base,
        head_in_same_repository=True,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home"),
            "FORGEJO_TOKEN": TOKEN}


def test_pull_from_default_branch_not_pushed(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    # A same-repository pull request from the default branch (such as a back-merge into a
    # release branch) must not let the agent push to the default branch.
    async def fetch(*args: Any, **kwargs: Any) -> ForgeContext:
        return ForgeContext(RepositoryInfo(id=101, default_branch="trunk"),
                            _pull_request("trunk", "release"), "$FORGEJO_TOKEN")

    monkeypatch.setattr(run, "fetch_forge_context", fetch)
    request = run.RunRequest(url=f"http://{HOST}/octo/hello/pulls/7")

    target = run.resolve_target(request, _config(), env, lambda _: None)

    assert target.branch == "devaipod/pr-7"
