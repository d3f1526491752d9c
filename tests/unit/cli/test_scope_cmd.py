"""Tests of `devaipod scope init`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from devaipod.cli import cli


@pytest.fixture(autouse=True)
def _config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[forges."forge.test:3000"]\nkind = "forgejo"\n', encoding="utf-8")
    monkeypatch.setenv("DEVAIPOD_CONFIG", str(path))
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path / "state"))
    return path


def test_scope_init_prints_yaml() -> None:
    result = CliRunner().invoke(cli, ["scope", "init", "https://github.com/o/r/issues/5"])

    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["repos"][0]["output"]["targetBranch"] == "devaipod/issue-5"
    assert data["attachedContexts"][0]["url"] == "https://github.com/o/r/issues/5"


def test_scope_init_prints_json() -> None:
    url = "https://forge.test:3000/o/r/pulls/9"

    result = CliRunner().invoke(cli, ["scope", "init", "--json", url])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["repos"][0]["input"]["url"] == "https://forge.test:3000/o/r.git"
    assert data["repos"][0]["output"]["targetBranch"] == "devaipod/pr-9"
    assert data["attachedContexts"][0]["type"] == "git-pull-request"


def test_scope_init_unknown_host_exit_code() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "devaipod", "scope", "init", "https://forge.other/o/r/issues/1"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "unknown forge host 'forge.other'" in completed.stderr
    assert '[forges."forge.other"]' in completed.stderr
