"""Tests of `devaipod run`'s command line: help text, options passed on, output and exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devaipod.cli import cli, run_cmd
from devaipod.config import parse_config
from devaipod.forge.clients import ForgeContext, RepositoryInfo
from devaipod.forge.tokens import ForgeToken
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope
from devaipod.session.delivery import Delivery
from devaipod.session.run import RunRequest, RunResult, RunTarget

URL = "https://forge.test:3000/octo/hello/issues/7"


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVAIPOD_CONFIG", str(tmp_path / "none.toml"))


def _fake_run(monkeypatch: pytest.MonkeyPatch, *, timed_out: bool, exit_code: int = 0
              ) -> list[RunRequest]:
    requests: list[RunRequest] = []
    config = parse_config('[forges."forge.test:3000"]\nkind = "forgejo"\n', "test")
    forge_url = parse_forge_url(URL, config)
    settings = config.forge_settings("forge.test:3000")
    assert settings is not None
    target = RunTarget(forge_url, settings, ForgeToken("secret-token", "$FORGEJO_TOKEN"),
                       ForgeContext(RepositoryInfo(1, "main"), None, None),
                       derive_scope(forge_url), "devaipod/issue-7", "main")

    def run_session(request: RunRequest, engine: Any, **kwargs: Any) -> RunResult:
        requests.append(request)
        return RunResult(session="devaipod-hello-1", target=target,
                         agent_exit_code=None if timed_out else exit_code,
                         finished=not timed_out,
                         timed_out=timed_out, delivery=Delivery(),
                         audit_log=Path("/state/audit.jsonl"))

    monkeypatch.setattr(run_cmd, "run_session", run_session)
    monkeypatch.setattr(run_cmd, "default_engine", lambda: None)
    return requests


def test_run_help_states_units_defaults() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])

    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--timeout SECONDS" in text
    assert "Seconds to wait for the agent" in text
    assert "[default: 3600" in text
    assert "--no-wait" in text
    assert "--scope FILE" in text


def test_run_json_prints_one_object(monkeypatch: pytest.MonkeyPatch) -> None:
    requests = _fake_run(monkeypatch, timed_out=False)

    result = CliRunner().invoke(
        cli, ["run", URL, "fix it", "--agent", "sh -c true", "--timeout", "90", "--no-wait",
              "--network", "none", "--json"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["session"] == "devaipod-hello-1"
    assert data["branch"] == "devaipod/issue-7"
    assert "secret-token" not in result.output
    [request] = requests
    assert request.task == "fix it"
    assert request.agent == "sh -c true"
    assert request.timeout_seconds == 90
    assert request.wait is False
    assert request.network == "none"


def test_run_timeout_exits_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_run(monkeypatch, timed_out=True)

    result = CliRunner().invoke(cli, ["run", URL])

    assert result.exit_code == 1
    assert "the agent timed out, so the session was stopped" in result.output


def test_run_failed_agent_exits_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_run(monkeypatch, timed_out=False, exit_code=3)

    result = CliRunner().invoke(cli, ["run", URL, "--json"])

    assert result.exit_code == 1
    assert json.loads(result.output)["agent_exit_code"] == 3
