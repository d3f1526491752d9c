"""`plan_agent_session` on a scripted engine: the agent's variables and the broker's tokens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from devaipod.config import UserConfig
from devaipod.errors import UserError
from devaipod.runtime.engine import ExecResult
from devaipod.runtime.plan import CodeSource
from devaipod.session.up import AgentSessionPlan, UpRequest, plan_agent_session

IMAGE = "localhost/test:1"
PASSWD = "root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000::/home/dev:/bin/sh\n"


class ScriptedEngine:
    """Return canned output for `image inspect` and the image probe."""

    program = "podman"

    def run_engine(
        self, argv: Sequence[str], *, input_bytes: bytes | None = None, check: bool = True
    ) -> ExecResult:
        if argv[:2] == ["image", "inspect"]:
            return ExecResult(list(argv), 0, json.dumps([{"Id": "abc", "Config": {}}]), "")
        if argv[0] == "run":
            return ExecResult(list(argv), 0, PASSWD + "--devaipod--\nsh=/bin/sh\n", "")
        raise AssertionError(f"unexpected engine call {argv}")


def plan_with(
    env: dict[str, str], tmp_path: Path, broker_tokens: Sequence[str] = ()
) -> AgentSessionPlan:
    return plan_agent_session(
        UpRequest(image=IMAGE, agent="sh -c true", task="task"),
        ScriptedEngine(),  # type: ignore[arg-type]
        env,
        UserConfig(),
        CodeSource(kind="remote", location="https://forge.example.test/octo/hello.git"),
        "devaipod-t-1",
        tmp_path,
        lambda message: None,
        broker_tokens=broker_tokens,
    )


def test_broker_token_value_stops_plan(tmp_path: Path) -> None:
    env = {"DEVAIPOD_AGENT_HELPER": "token-from-cli-login"}

    with pytest.raises(UserError, match="HELPER has the value of the forge token") as caught:
        plan_with(env, tmp_path, broker_tokens=["token-from-cli-login"])

    assert "token-from-cli-login" not in caught.value.render()


def test_other_values_reach_plan(tmp_path: Path) -> None:
    env = {"DEVAIPOD_AGENT_HELPER": "harmless"}

    planned = plan_with(env, tmp_path, broker_tokens=["token-from-cli-login"])

    assert planned.plan.agent.env_names == ("HELPER",)
