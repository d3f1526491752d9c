"""Which host variables reach the agent: DEVAIPOD_AGENT_* and allowed names, never forge tokens."""

from __future__ import annotations

import pytest

from devaipod.agents.env import agent_environment
from devaipod.errors import UserError


def test_prefixed_variables_lose_prefix() -> None:
    env = {"DEVAIPOD_AGENT_OPENAI_API_KEY": "sk-1", "OPENAI_API_KEY": "sk-host", "HOME": "/root"}

    assert agent_environment(env) == {"OPENAI_API_KEY": "sk-1"}


def test_allowed_names_pass_through() -> None:
    env = {"ANTHROPIC_API_KEY": "a", "OTHER": "o"}

    assert agent_environment(env, ["ANTHROPIC_API_KEY", "MISSING"]) == {"ANTHROPIC_API_KEY": "a"}


def test_nothing_passes_by_default() -> None:
    env = {"OPENAI_API_KEY": "x", "GH_TOKEN": "ghp", "PATH": "/bin"}

    assert agent_environment(env) == {}


@pytest.mark.parametrize("name", ["GH_TOKEN", "GITHUB_TOKEN", "GITLAB_TOKEN", "gitea_token"])
def test_forge_token_prefixed_rejected(name: str) -> None:
    with pytest.raises(UserError, match="forge token"):
        agent_environment({f"DEVAIPOD_AGENT_{name}": "secret"})


def test_forge_token_allowlisted_rejected() -> None:
    with pytest.raises(UserError, match="forge token"):
        agent_environment({"GH_TOKEN": "secret"}, ["GH_TOKEN"])


def test_error_never_shows_value() -> None:
    with pytest.raises(UserError) as caught:
        agent_environment({"DEVAIPOD_AGENT_GH_TOKEN": "ghp_verysecret"})

    assert "ghp_verysecret" not in caught.value.render()
