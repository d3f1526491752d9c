"""Tests of `devaipod config show` and `config example-path`, run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(
    args: list[str], tmp_path: Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEVAIPOD_STATE_DIR=str(tmp_path / "state"), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "devaipod", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or tmp_path,
        check=False,
    )


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Fix: " in lines[0]


def test_malformed_json_names_position(tmp_path: Path) -> None:
    config = _write(tmp_path / ".devcontainer" / "devcontainer.json", '{\n "image": "x"\n "a": 1}')
    result = _run(["config", "show", "--workspace-folder", str(tmp_path)], tmp_path)
    _assert_one_line_error(result, f"{config}:3:2: invalid JSON")


def test_wrong_type_names_property(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "devcontainer.json", '{"image": "x", "mounts": 5}')
    result = _run(["config", "show", "--workspace-folder", str(tmp_path)], tmp_path)
    _assert_one_line_error(result, "invalid mounts: expected an array, got number 5")


def test_missing_dockerfile_names_path(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "devcontainer.json", '{"build": {"dockerfile": "D"}}')
    result = _run(["config", "show", "--json", "--workspace-folder", str(tmp_path)], tmp_path)
    _assert_one_line_error(result, f"Dockerfile {tmp_path / '.devcontainer' / 'D'} not found")


def test_several_configs_need_choice(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "a" / "devcontainer.json", '{"image": "x"}')
    _write(tmp_path / ".devcontainer" / "b" / "devcontainer.json", '{"image": "y"}')
    result = _run(["config", "show", "--workspace-folder", str(tmp_path)], tmp_path)
    _assert_one_line_error(
        result, ".devcontainer/a/devcontainer.json, .devcontainer/b/devcontainer.json"
    )


def test_explicit_config_chooses_folder(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "a" / "devcontainer.json", '{"image": "x"}')
    _write(tmp_path / ".devcontainer" / "b" / "devcontainer.json", '{"image": "y"}')
    result = _run(
        ["config", "show", "--json", "--config", ".devcontainer/b/devcontainer.json"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["configuration"] == {"image": "y"}


def test_json_output_shape(tmp_path: Path) -> None:
    workspace = tmp_path / "proj"
    _write(workspace / ".devcontainer.json", '// c\n{"image": "x", "foo": [1,],}')
    result = _run(["config", "show", "--json", "--workspace-folder", str(workspace)], tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["configuration"] == {"image": "x", "foo": [1]}
    assert document["workspace"] == {
        "workspaceFolder": "/workspaces/proj",
        "workspaceMount": f"type=bind,source={workspace},target=/workspaces/proj",
    }
    assert document["devaipod"]["unknownProperties"] == ["foo"]


def test_unknown_properties_logged_with_verbose(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer.json", '{"image": "x", "colour": "blue"}')
    result = _run(["-v", "config", "show", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "unknown properties kept as written: colour" in result.stderr


def test_example_summary_runs(tmp_path: Path) -> None:
    path_result = _run(["config", "example-path"], tmp_path)
    example = Path(path_result.stdout.strip())
    assert (example / ".devcontainer" / "devcontainer.json").is_file()
    result = _run(["config", "show", "--workspace-folder", str(example)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "docker.io/library/debian:bookworm" in result.stdout
    assert "postStartCommand greet" in result.stdout


@pytest.mark.parametrize("name", ["dev.json", "devcontainer.jsonc"])
def test_config_name_checked(tmp_path: Path, name: str) -> None:
    _write(tmp_path / name, '{"image": "x"}')
    result = _run(["config", "show", "--config", name], tmp_path)
    _assert_one_line_error(result, "must be devcontainer.json or .devcontainer.json")


def test_example_flag_reads_bundled_project(tmp_path: Path) -> None:
    result = _run(["config", "show", "--json", "--example"], tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["configuration"]["name"] == "hello"
    assert document["configuration"]["containerEnv"]["PROJECT"] == "hello"


def test_list_marks_default_config(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer.json", '{"image": "x"}')
    _write(tmp_path / ".devcontainer" / "gpu" / "devcontainer.json", '{"image": "y"}')
    result = _run(["config", "list", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"path": ".devcontainer.json", "default": True},
        {"path": ".devcontainer/gpu/devcontainer.json", "default": False},
    ]
