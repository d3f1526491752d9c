"""Unit tests of the demo's sample project, scripted agent command and transcript parsing."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from devaipod import demo
from support.git_server import run_git


def test_sample_project_has_commit_and_config(tmp_path: Path) -> None:
    project = demo.create_sample_project(tmp_path, "localhost/some-image")
    config = json.loads((project / ".devcontainer" / "devcontainer.json").read_text())
    assert config["image"] == "localhost/some-image"
    assert run_git("status", "--porcelain", cwd=project).stdout == ""
    assert run_git("rev-list", "--count", "HEAD", cwd=project).stdout.strip() == "1"


def test_scripted_agent_command_is_named() -> None:
    argv = shlex.split(demo.scripted_agent_command("devaipod/demo-1"))
    assert argv[0:2] == ["sh", "-c"]
    assert argv[3] == demo.SCRIPTED_AGENT_NAME
    assert "HEAD:refs/heads/devaipod/demo-1" in argv[2]
    assert "not an AI" in argv[2]


def test_refusals_found_per_step() -> None:
    transcript = "\n".join(
        [
            "== step deliver: push",
            " * [new branch]      HEAD -> devaipod/x",
            "== step main: push to main",
            " ! [remote rejected] HEAD -> main (devaipod: only devaipod/x may be pushed)",
            "== step tag: push a tag",
            " ! [remote rejected] v1 -> v1 (devaipod: tags may not be pushed)",
            "== step force: force",
            "== step delete: delete",
        ]
    )
    refusals = demo._refusals(transcript)
    assert set(refusals) == {"main", "tag"}
    assert "tags may not be pushed" in refusals["tag"]


def test_default_image_prefers_test_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(demo.TEST_IMAGE_ENV, "localhost/test-image")
    assert demo.default_image() == "localhost/test-image"
    monkeypatch.delenv(demo.TEST_IMAGE_ENV)
    assert demo.default_image() == demo.DEFAULT_IMAGE
