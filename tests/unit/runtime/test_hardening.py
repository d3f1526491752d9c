"""The agent security profile and the check that rejects options that would undo it."""

from __future__ import annotations

import pytest

from devaipod.runtime.hardening import (
    AgentLimits,
    AgentUser,
    agent_security_options,
    check_agent_options,
)

USER = AgentUser(user="dev", uid=1000, gid=1000, home="/home/dev")


def test_profile_lists_every_protection() -> None:
    options = agent_security_options(USER, AgentLimits())

    assert "--cap-drop=ALL" in options
    assert "--security-opt=no-new-privileges" in options
    assert "--user=dev" in options
    assert "--network=none" in options
    assert "--read-only" in options
    assert "--init" in options
    assert "--pids-limit=2048" in options
    assert "--memory=4g" in options
    assert any(option.startswith("--tmpfs=/tmp:") for option in options)


def test_profile_passes_own_check() -> None:
    check_agent_options(agent_security_options(USER, AgentLimits()))


def test_root_user_rejected() -> None:
    with pytest.raises(ValueError):
        agent_security_options(AgentUser("root", 0, 0, "/root"), AgentLimits())


@pytest.mark.parametrize(
    "option",
    [
        "--privileged",
        "--cap-add=NET_ADMIN",
        "--network=host",
        "--pid=host",
        "--volume=/var/run/docker.sock:/var/run/docker.sock",
        "--volume=/home/me:/home/me",
        "--mount=type=bind,source=/etc,target=/etc",
        "--security-opt=seccomp=unconfined",
    ],
)
def test_check_rejects_escape_option(option: str) -> None:
    with pytest.raises(ValueError):
        check_agent_options([option])


def test_check_allows_named_volume() -> None:
    check_agent_options(["--volume=devaipod-x-code:/workspaces/x"])
