"""Tests of the per-agent MCP client configuration snippets."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from devaipod.agents.adapters import ADAPTERS
from devaipod.agents.mcp_config import (
    AIDER_NO_MCP,
    MCP_CONFIG_BUILDERS,
    McpEndpointInfo,
    agent_home_files,
    broker_mcp_url,
    claude_mcp_add_command,
    claude_mcp_config,
    codex_mcp_config,
    goose_mcp_config,
    has_mcp_client,
    mcp_config_for,
    opencode_mcp_config,
)
from devaipod.errors import UserError

CREDENTIAL = "cred-0123456789abcdefghijklmnopqrstuvwxyz_-AB"
URL = "http://127.0.0.1:48123/mcp"
ENDPOINT = McpEndpointInfo(url=URL, credential=CREDENTIAL)
BEARER = f"Bearer {CREDENTIAL}"


def parse(text: str, fmt: str) -> Any:
    if fmt == "json":
        return json.loads(text)
    if fmt == "toml":
        return tomllib.loads(text)
    return yaml.safe_load(text)


def test_broker_mcp_url_forms() -> None:
    assert broker_mcp_url(48123) == URL
    assert broker_mcp_url(8080, "::1") == "http://[::1]:8080/mcp"


def test_opencode_config_remote_entry() -> None:
    config = opencode_mcp_config(ENDPOINT)
    parsed = parse(config.text, config.format)

    assert config.format == "json"
    assert parsed == config.data
    server = parsed["mcp"]["devaipod"]
    assert server["type"] == "remote"
    assert server["url"] == URL
    assert server["headers"] == {"Authorization": BEARER}
    assert server["enabled"] is True


def test_claude_config_http_entry() -> None:
    config = claude_mcp_config(ENDPOINT)
    parsed = parse(config.text, config.format)

    assert config.path == ".mcp.json"
    assert parsed == config.data
    server = parsed["mcpServers"]["devaipod"]
    assert server == {"type": "http", "url": URL, "headers": {"Authorization": BEARER}}


def test_claude_add_command_header_last() -> None:
    command = claude_mcp_add_command(ENDPOINT)

    assert command[:5] == ("claude", "mcp", "add", "--transport", "http")
    assert command[5:7] == ("devaipod", URL)
    assert command[7:] == ("--header", f"Authorization: {BEARER}")
    assert claude_mcp_config(ENDPOINT).command == command


def test_codex_config_toml_table() -> None:
    config = codex_mcp_config(ENDPOINT)
    parsed = parse(config.text, config.format)

    assert config.path == "~/.codex/config.toml"
    assert parsed == config.data
    server = parsed["mcp_servers"]["devaipod"]
    assert server["url"] == URL
    assert server["http_headers"] == {"Authorization": BEARER}


def test_codex_table_appends_to_config() -> None:
    existing = 'model = "gpt-5"\n\n[mcp_servers.other]\ncommand = "x"\n'
    parsed = tomllib.loads(existing + "\n" + codex_mcp_config(ENDPOINT).text)

    assert parsed["model"] == "gpt-5"
    assert set(parsed["mcp_servers"]) == {"other", "devaipod"}


def test_goose_config_extension_entry() -> None:
    config = goose_mcp_config(ENDPOINT)
    parsed = parse(config.text, config.format)

    assert config.format == "yaml"
    assert parsed == config.data
    extension = parsed["extensions"]["devaipod"]
    assert extension["type"] == "streamable_http"
    assert extension["uri"] == URL
    assert extension["headers"] == {"Authorization": BEARER}
    assert extension["enabled"] is True
    assert extension["name"] == "devaipod"


def test_aider_has_no_mcp() -> None:
    assert mcp_config_for("aider", ENDPOINT) is None
    assert "no MCP client" in AIDER_NO_MCP


def test_every_adapter_has_builder() -> None:
    assert set(MCP_CONFIG_BUILDERS) == set(ADAPTERS)


def test_unknown_agent_raises_user_error() -> None:
    with pytest.raises(UserError) as caught:
        mcp_config_for("vim", ENDPOINT)
    assert "vim" in str(caught.value)


def test_endpoint_repr_hides_credential() -> None:
    assert CREDENTIAL not in repr(ENDPOINT)
    assert CREDENTIAL not in repr(codex_mcp_config(ENDPOINT))


@pytest.mark.parametrize("agent", ["opencode", "claude", "codex", "goose"])
def test_custom_server_name_used(agent: str) -> None:
    endpoint = McpEndpointInfo(url=URL, credential=CREDENTIAL, server_name="forge-tools")
    config = mcp_config_for(agent, endpoint)
    assert config is not None

    assert "forge-tools" in json.dumps(parse(config.text, config.format))
    assert "devaipod" not in json.dumps(parse(config.text, config.format)).replace(
        "through the devaipod broker", "")


@given(credential=st.text(min_size=1, max_size=40),
       name=st.from_regex(r"[A-Za-z0-9 ._-]{1,20}", fullmatch=True))
def test_snippets_round_trip_any_values(credential: str, name: str) -> None:
    endpoint = McpEndpointInfo(url=URL, credential=credential, server_name=name)
    for agent in ("opencode", "claude", "codex", "goose"):
        config = mcp_config_for(agent, endpoint)
        assert config is not None
        assert parse(config.text, config.format) == config.data


def _parse_home_file(path: str, content: bytes) -> Any:
    suffix = path.rsplit(".", 1)[1]
    return parse(content.decode(), {"json": "json", "toml": "toml", "yaml": "yaml"}[suffix])


def test_home_files_opencode_remote_server() -> None:
    files = agent_home_files("opencode", ENDPOINT)

    assert list(files) == [".config/opencode/opencode.json"]
    server = _parse_home_file(*next(iter(files.items())))["mcp"]["devaipod"]
    assert server["type"] == "remote"
    assert server["url"] == URL
    assert server["headers"] == {"Authorization": BEARER}
    assert server["enabled"] is True


def test_home_files_claude_user_scope() -> None:
    files = agent_home_files("claude", ENDPOINT)

    assert sorted(files) == [".claude.json", ".claude/settings.json"]
    user = _parse_home_file(".claude.json", files[".claude.json"])
    assert user["mcpServers"]["devaipod"] == {
        "type": "http", "url": URL, "headers": {"Authorization": BEARER}}
    assert "projects" not in user
    settings = _parse_home_file(".claude/settings.json", files[".claude/settings.json"])
    assert settings["permissions"]["allow"] == ["mcp__devaipod"]


def test_home_files_codex_toml_table() -> None:
    files = agent_home_files("codex", ENDPOINT)

    assert list(files) == [".codex/config.toml"]
    server = _parse_home_file(".codex/config.toml", files[".codex/config.toml"])
    assert server["mcp_servers"]["devaipod"] == {
        "url": URL, "http_headers": {"Authorization": BEARER}}


def test_home_files_goose_extension() -> None:
    files = agent_home_files("goose", ENDPOINT)

    assert list(files) == [".config/goose/config.yaml"]
    extension = _parse_home_file(".config/goose/config.yaml",
                                 files[".config/goose/config.yaml"])["extensions"]["devaipod"]
    assert extension["type"] == "streamable_http"
    assert extension["uri"] == URL
    assert extension["headers"] == {"Authorization": BEARER}
    assert extension["enabled"] is True


@pytest.mark.parametrize("agent", ["aider", "command", "sh -c 'make test'"])
def test_home_files_empty_without_mcp(agent: str) -> None:
    assert agent_home_files(agent, ENDPOINT) == {}


def test_home_files_paths_stay_in_home() -> None:
    for agent in ADAPTERS:
        for path in agent_home_files(agent, ENDPOINT):
            assert not path.startswith(("/", "~"))
            assert ".." not in path.split("/")


@given(credential=st.text(min_size=1, max_size=40),
       name=st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True))
def test_home_files_parse_any_values(credential: str, name: str) -> None:
    endpoint = McpEndpointInfo(url=URL, credential=credential, server_name=name)
    for agent in ("opencode", "claude", "codex", "goose"):
        for path, content in agent_home_files(agent, endpoint).items():
            text = json.dumps(_parse_home_file(path, content))
            assert json.dumps(name)[1:-1] in text
            if not path.endswith("settings.json"):
                assert json.dumps(f"Bearer {credential}") in text


@pytest.mark.parametrize(
    ("agent", "expected"),
    [("opencode", True), ("claude", True), ("codex", True), ("goose", True),
     ("aider", False), ("command", False)],
)
def test_has_mcp_client_per_agent(agent: str, expected: bool) -> None:
    assert has_mcp_client(agent) is expected
