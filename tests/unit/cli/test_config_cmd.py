"""Tests of `devaipod config show` and `config example-path`, run as a subprocess."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devaipod.cli import main


@dataclass
class Completed:
    """The exit code and output of one in-process `devaipod` run."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_devaipod(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Callable[..., Completed]]:
    """Yield a runner of `devaipod.cli.main` in this process, with its exit code and output.

    In-process runs keep the suite fast; `test_subprocess_error_one_line` checks
    the real process once.
    """
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path / "state"))

    def run(args: list[str], cwd: Path | None = None) -> Completed:
        monkeypatch.chdir(cwd or tmp_path)
        monkeypatch.setattr(sys, "argv", ["devaipod", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        code = exited.value.code
        return Completed(code if isinstance(code, int) else 1, captured.out, captured.err)

    yield run

    # main() attaches log handlers bound to the captured streams; drop them.
    logging.getLogger("devaipod").handlers.clear()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _assert_one_line_error(
    result: Completed | subprocess.CompletedProcess[str], expected: str
) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Fix: " in lines[0]


def test_malformed_json_names_position(
    tmp_path: Path, run_devaipod: Callable[..., Completed]
) -> None:
    config = _write(tmp_path / ".devcontainer" / "devcontainer.json", '{\n "image": "x"\n "a": 1}')
    result = run_devaipod(["config", "show", "--workspace-folder", str(tmp_path)])
    _assert_one_line_error(result, f"{config}:3:2: invalid JSON")


def test_wrong_type_names_property(tmp_path: Path, run_devaipod: Callable[..., Completed]) -> None:
    _write(tmp_path / ".devcontainer" / "devcontainer.json", '{"image": "x", "mounts": 5}')
    result = run_devaipod(["config", "show", "--workspace-folder", str(tmp_path)])
    _assert_one_line_error(result, "invalid mounts: expected an array, got number 5")


def test_missing_dockerfile_names_path(
    tmp_path: Path, run_devaipod: Callable[..., Completed]
) -> None:
    _write(tmp_path / ".devcontainer" / "devcontainer.json", '{"build": {"dockerfile": "D"}}')
    result = run_devaipod(["config", "show", "--json", "--workspace-folder", str(tmp_path)])
    _assert_one_line_error(result, f"Dockerfile {tmp_path / '.devcontainer' / 'D'} not found")


def test_several_configs_need_choice(
    tmp_path: Path, run_devaipod: Callable[..., Completed]
) -> None:
    _write(tmp_path / ".devcontainer" / "a" / "devcontainer.json", '{"image": "x"}')
    _write(tmp_path / ".devcontainer" / "b" / "devcontainer.json", '{"image": "y"}')
    result = run_devaipod(["config", "show", "--workspace-folder", str(tmp_path)])
    _assert_one_line_error(
        result, ".devcontainer/a/devcontainer.json, .devcontainer/b/devcontainer.json"
    )


def test_explicit_config_chooses_folder(
    tmp_path: Path, run_devaipod: Callable[..., Completed]
) -> None:
    _write(tmp_path / ".devcontainer" / "a" / "devcontainer.json", '{"image": "x"}')
    _write(tmp_path / ".devcontainer" / "b" / "devcontainer.json", '{"image": "y"}')
    result = run_devaipod(
        ["config", "show", "--json", "--config", ".devcontainer/b/devcontainer.json"]
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["configuration"] == {"image": "y"}


def test_json_output_shape(tmp_path: Path, run_devaipod: Callable[..., Completed]) -> None:
    workspace = tmp_path / "proj"
    _write(workspace / ".devcontainer.json", '// c\n{"image": "x", "foo": [1,],}')
    result = run_devaipod(["config", "show", "--json", "--workspace-folder", str(workspace)])
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["configuration"] == {"image": "x", "foo": [1]}
    assert document["workspace"] == {
        "workspaceFolder": "/workspaces/proj",
        "workspaceMount": f"type=bind,source={workspace},target=/workspaces/proj",
    }
    assert document["devaipod"]["unknownProperties"] == ["foo"]


def test_unknown_properties_logged_with_verbose(
    tmp_path: Path, run_devaipod: Callable[..., Completed]
) -> None:
    _write(tmp_path / ".devcontainer.json", '{"image": "x", "colour": "blue"}')
    result = run_devaipod(["-v", "config", "show", "--json"])
    assert result.returncode == 0, result.stderr
    assert "unknown properties kept as written: colour" in result.stderr


def test_example_summary_runs(tmp_path: Path, run_devaipod: Callable[..., Completed]) -> None:
    path_result = run_devaipod(["config", "example-path"])
    example = Path(path_result.stdout.strip())
    assert (example / ".devcontainer" / "devcontainer.json").is_file()
    result = run_devaipod(["config", "show", "--workspace-folder", str(example)])
    assert result.returncode == 0, result.stderr
    assert "docker.io/library/debian:bookworm" in result.stdout
    assert "postStartCommand greet" in result.stdout


@pytest.mark.parametrize("name", ["dev.json", "devcontainer.jsonc"])
def test_config_name_checked(
    tmp_path: Path, name: str, run_devaipod: Callable[..., Completed]
) -> None:
    _write(tmp_path / name, '{"image": "x"}')
    result = run_devaipod(["config", "show", "--config", name])
    _assert_one_line_error(result, "must be devcontainer.json or .devcontainer.json")


def test_example_flag_reads_bundled_project(
    tmp_path: Path, run_devaipod: Callable[..., Completed]
) -> None:
    result = run_devaipod(["config", "show", "--json", "--example"])
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["configuration"]["name"] == "hello"
    assert document["configuration"]["containerEnv"]["PROJECT"] == "hello"


def test_list_marks_default_config(tmp_path: Path, run_devaipod: Callable[..., Completed]) -> None:
    _write(tmp_path / ".devcontainer.json", '{"image": "x"}')
    _write(tmp_path / ".devcontainer" / "gpu" / "devcontainer.json", '{"image": "y"}')
    result = run_devaipod(["config", "list", "--json"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"path": ".devcontainer.json", "default": True},
        {"path": ".devcontainer/gpu/devcontainer.json", "default": False},
    ]


def test_subprocess_error_one_line(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "devcontainer.json", '{"image": "x", "runArgs": "-it"}')
    env = dict(os.environ, DEVAIPOD_STATE_DIR=str(tmp_path / "state"))
    result = subprocess.run(
        [sys.executable, "-m", "devaipod", "config", "show", "--workspace-folder", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    _assert_one_line_error(result, "invalid runArgs: expected an array")
