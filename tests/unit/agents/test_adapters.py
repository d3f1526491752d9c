"""Agent adapters: command lines per agent program, and command-line agents."""

from __future__ import annotations

import pytest

from devaipod.agents.adapters import ADAPTERS, resolve_agent
from devaipod.errors import UserError

HEADLESS = {
    "opencode": ["opencode", "run", "T"],
    "claude": ["claude", "--print", "T"],
    "codex": ["codex", "exec", "T"],
    "goose": ["goose", "run", "--text", "T"],
    "aider": ["aider", "--yes-always", "--message", "T"],
}


@pytest.mark.parametrize(("name", "expected"), sorted(HEADLESS.items()))
def test_headless_command_per_agent(name: str, expected: list[str]) -> None:
    assert ADAPTERS[name].command("T", interactive=False) == expected


def test_interactive_commands_seed_task() -> None:
    assert ADAPTERS["opencode"].command("T", interactive=True) == ["opencode", "--prompt", "T"]
    assert ADAPTERS["claude"].command("T", interactive=True) == ["claude", "T"]
    assert ADAPTERS["goose"].command("T", interactive=True) == ["goose", "session"]
    assert ADAPTERS["aider"].command(None, interactive=True) == ["aider"]


def test_headless_without_task_rejected() -> None:
    with pytest.raises(UserError, match="needs a task"):
        ADAPTERS["codex"].command(None, interactive=False)


def test_every_adapter_names_state_and_keys() -> None:
    for adapter in ADAPTERS.values():
        assert adapter.state_dirs
        assert adapter.api_key_vars
        assert not any("TOKEN" in name and "GH" in name for name in adapter.api_key_vars)


def test_command_line_agent_parsed() -> None:
    adapter = resolve_agent("sh -c 'echo a; git commit -am x;'")

    assert adapter.is_custom
    assert adapter.binary == "sh"
    assert adapter.command("ignored", interactive=False) == [
        "sh",
        "-c",
        "echo a; git commit -am x;",
    ]


def test_default_agent_is_opencode() -> None:
    assert resolve_agent(None).name == "opencode"


@pytest.mark.parametrize("value", ["", "sh -c 'unterminated"])
def test_invalid_agent_value_rejected(value: str) -> None:
    with pytest.raises(UserError):
        resolve_agent(value)
