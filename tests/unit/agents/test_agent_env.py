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


def test_config_vars_join_and_lose_to_host() -> None:
    env = {"DEVAIPOD_AGENT_MODEL": "from-host"}

    result = agent_environment(env, fixed={"MODEL": "from-config", "REGION": "eu"})

    assert result == {"MODEL": "from-host", "REGION": "eu"}


def test_forge_token_in_config_vars_rejected() -> None:
    with pytest.raises(UserError, match=r"\[env.vars\] GITHUB_TOKEN .*forge token"):
        agent_environment({}, fixed={"GITHUB_TOKEN": "ghp_x"})


def test_forge_token_value_under_other_name_rejected() -> None:
    env = {"GH_TOKEN": "ghp_samevalue", "DEVAIPOD_AGENT_HARMLESS": "ghp_samevalue"}

    expected = "DEVAIPOD_AGENT_HARMLESS has the value of .*GH_TOKEN"
    with pytest.raises(UserError, match=expected) as caught:
        agent_environment(env)

    assert "ghp_samevalue" not in caught.value.render()


def test_broker_token_value_rejected() -> None:
    env = {"DEVAIPOD_FORGE_TOKEN": "tok-1", "API_KEY": "tok-1"}

    with pytest.raises(UserError, match="DEVAIPOD_FORGE_TOKEN"):
        agent_environment(env, ["API_KEY"])


def test_devcontainer_secret_allowlisted_rejected() -> None:
    env = {"DB_PASSWORD": "pw"}

    with pytest.raises(UserError, match="devcontainer secret DB_PASSWORD"):
        agent_environment(env, ["DB_PASSWORD"], withheld=["DB_PASSWORD"])


def test_devcontainer_secret_value_rejected() -> None:
    env = {"DB_PASSWORD": "pw-1", "DEVAIPOD_AGENT_PGPASS": "pw-1"}

    with pytest.raises(UserError, match="PGPASS has the value of the devcontainer secret"):
        agent_environment(env, withheld=["DB_PASSWORD"])


def test_devcontainer_env_needs_allowlist() -> None:
    devcontainer = {"JAVA_HOME": "/opt/jdk", "NODE_ENV": "test"}

    result = agent_environment({}, ["JAVA_HOME"], devcontainer_env=devcontainer)

    assert result == {"JAVA_HOME": "/opt/jdk"}


def test_host_value_beats_devcontainer_env() -> None:
    env = {"MODEL": "from-host"}
    devcontainer = {"MODEL": "from-devcontainer", "REGION": "eu"}

    result = agent_environment(env, ["MODEL", "REGION"], devcontainer_env=devcontainer)

    assert result == {"MODEL": "from-host", "REGION": "eu"}


def test_prefixed_host_beats_devcontainer_env() -> None:
    env = {"DEVAIPOD_AGENT_MODEL": "prefixed"}

    result = agent_environment(env, ["MODEL"], devcontainer_env={"MODEL": "devcontainer"})

    assert result == {"MODEL": "prefixed"}


def test_devcontainer_forge_token_allowlisted_rejected() -> None:
    with pytest.raises(UserError, match="would hand the forge token GITLAB_TOKEN") as caught:
        agent_environment({}, ["GITLAB_TOKEN"], devcontainer_env={"GITLAB_TOKEN": "glpat-x"})

    assert "forge tokens stay with the broker" in caught.value.render()
    assert "glpat-x" not in caught.value.render()


def test_devcontainer_token_value_rejected() -> None:
    env = {"GH_TOKEN": "ghp_same"}

    with pytest.raises(UserError, match="from devcontainer.json.*forge token GH_TOKEN"):
        agent_environment(env, ["HELPER"], devcontainer_env={"HELPER": "ghp_same"})


def test_broker_held_token_value_rejected() -> None:
    env = {"DEVAIPOD_AGENT_HELPER": "tok-from-cli"}

    with pytest.raises(UserError, match="HELPER has the value of the forge token that the broker"):
        agent_environment(env, broker_tokens=["tok-from-cli"])


def test_broker_tokens_other_values_pass() -> None:
    env = {"DEVAIPOD_AGENT_HELPER": "harmless"}

    assert agent_environment(env, broker_tokens=["tok-from-cli", ""]) == {"HELPER": "harmless"}


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({"DEVAIPOD_AGENT_HOME": "/elsewhere"}, []),
        ({"DEVAIPOD_AGENT_DEVAIPOD_TASK": "other task"}, []),
        ({"DEVAIPOD_BROKER_URL": "http://elsewhere"}, ["DEVAIPOD_BROKER_URL"]),
    ],
)
def test_devaipod_own_names_rejected(env: dict[str, str], allowed: list[str]) -> None:
    with pytest.raises(UserError, match="which devaipod sets in the agent itself"):
        agent_environment(env, allowed)


def test_devaipod_own_name_in_vars_rejected() -> None:
    with pytest.raises(UserError, match=r"\[env.vars\] DEVAIPOD_MCP_URL would replace"):
        agent_environment({}, fixed={"DEVAIPOD_MCP_URL": "http://elsewhere"})


TOKEN_CARRIERS = [
    "https://oauth2:ghp_0123456789abcdef@gitlab.example/g/p.git",
    "Bearer ghp_0123456789abcdef",
    "ghp_0123456789abcdef\n",
    " ghp_0123456789abcdef",
]


@pytest.mark.parametrize("value", TOKEN_CARRIERS)
def test_value_containing_forge_token_rejected(value: str) -> None:
    env = {"GH_TOKEN": "ghp_0123456789abcdef", "DEVAIPOD_AGENT_REMOTE": value}

    with pytest.raises(UserError, match="REMOTE contains the value of .*GH_TOKEN") as caught:
        agent_environment(env)

    assert "ghp_0123456789abcdef" not in caught.value.render()


@pytest.mark.parametrize("value", TOKEN_CARRIERS)
def test_value_containing_broker_token_rejected(value: str) -> None:
    env = {"DEVAIPOD_AGENT_REMOTE": value}

    with pytest.raises(UserError, match="forge token that the broker holds"):
        agent_environment(env, broker_tokens=["ghp_0123456789abcdef"])


def test_value_containing_secret_rejected() -> None:
    env = {"DB_PASSWORD": "pw-0123456789", "DEVAIPOD_AGENT_DSN": "postgres://u:pw-0123456789@db"}

    with pytest.raises(UserError, match="DSN contains the value of the devcontainer secret"):
        agent_environment(env, withheld=["DB_PASSWORD"])


def test_short_token_matches_whole_value() -> None:
    env = {"GH_TOKEN": "abc", "DEVAIPOD_AGENT_WORD": "abcdef"}

    assert agent_environment(env) == {"WORD": "abcdef"}
