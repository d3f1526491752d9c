"""The session commands on a scripted engine: dry-run plans, errors, completions."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from devaipod.cli import cli
from devaipod.errors import UserError
from devaipod.runtime.engine import ExecResult

IMAGE = "localhost/test:1"
PASSWD = "root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000::/home/dev:/bin/sh\n"


class ScriptedEngine:
    """Return canned output for `image inspect` and the image probe, and record every call."""

    program = "podman"

    def __init__(self, programs: dict[str, str]) -> None:
        self.programs = programs
        self.calls: list[list[str]] = []

    def run_engine(
        self, argv: Sequence[str], *, input_bytes: bytes | None = None, check: bool = True
    ) -> ExecResult:
        self.calls.append(list(argv))
        if argv[:2] == ["image", "inspect"]:
            return ExecResult(list(argv), 0, json.dumps([{"Id": "abc", "Config": {}}]), "")
        if argv[0] == "run":
            lookups = "".join(f"{name}={path}\n" for name, path in self.programs.items())
            return ExecResult(list(argv), 0, PASSWD + "--devaipod--\n" + lookups, "")
        raise AssertionError(f"unexpected engine call {argv}")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVAIPOD_CONFIG", str(tmp_path / "none.toml"))
    repo = tmp_path / "demo"
    repo.mkdir()
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=env)
    (repo / "README").write_text("x\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-qm", "i"],
        cwd=repo,
        check=True,
        env=env,
    )
    return repo


def use_engine(monkeypatch: pytest.MonkeyPatch, engine: ScriptedEngine) -> None:
    monkeypatch.setattr("devaipod.cli.session_cmd.default_engine", lambda: engine)


def test_dry_run_json_creates_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = ScriptedEngine({"tmux": "/usr/bin/tmux", "git": "/usr/bin/git", "sh": "/bin/sh"})
    use_engine(monkeypatch, engine)

    result = CliRunner().invoke(
        cli,
        [
            "up",
            str(project),
            "fix it",
            "--image",
            IMAGE,
            "--agent",
            "sh -c 'true'",
            "--name",
            "demo",
            "--no-gateway",
            "--dry-run",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["session"] == "devaipod-demo"
    assert plan["workspaceFolder"] == "/workspaces/demo"
    assert plan["agent"]["user"] == "dev"
    agent_argv = plan["containers"][1]["argv"]
    assert "--network=none" in agent_argv
    assert "--cap-drop=ALL" in agent_argv
    assert {call[0] for call in engine.calls} == {"image", "run"}


def test_dry_run_text_lists_commands(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_engine(monkeypatch, ScriptedEngine({"tmux": "", "git": "", "sh": "/bin/sh"}))

    result = CliRunner().invoke(
        cli,
        ["up", str(project), "--image", IMAGE, "--agent", "sh", "--name", "demo", "--no-gateway",
         "--dry-run"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "podman volume create" in result.stdout
    assert "podman create --name=devaipod-demo-agent" in result.stdout


def test_missing_agent_program_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_engine(monkeypatch, ScriptedEngine({"tmux": "", "git": "", "codex": ""}))

    result = CliRunner().invoke(
        cli, ["up", str(project), "task", "--image", IMAGE, "--agent", "codex", "--dry-run"]
    )

    assert isinstance(result.exception, UserError)
    assert result.exception.exit_code == 2
    assert "codex" in str(result.exception)
    assert IMAGE in str(result.exception)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_script_per_shell(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completions", shell])

    assert result.exit_code == 0
    assert "_DEVAIPOD_COMPLETE" in result.stdout


def test_invalid_session_name_rejected() -> None:
    result = CliRunner().invoke(cli, ["status", "Bad/Name"])

    assert isinstance(result.exception, UserError)
    assert "invalid session name" in str(result.exception)


def test_attach_without_terminal_rejected() -> None:
    result = CliRunner().invoke(cli, ["attach", "demo"])

    assert isinstance(result.exception, UserError)
    assert "needs a terminal" in str(result.exception)
