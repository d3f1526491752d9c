"""Tests of the default workspaceFolder and workspaceMount (git root, sub-folders, quoting)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devaipod.devcontainer.workspace import find_git_root, workspace_defaults


def _git_init(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)


def test_outside_git_mounts_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "app"
    workspace.mkdir()
    defaults = workspace_defaults({"image": "x"}, workspace)
    assert defaults.workspace_folder == "/workspaces/app"
    assert defaults.workspace_mount == f"type=bind,source={workspace},target=/workspaces/app"


def test_git_root_mounted_for_subfolder(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _git_init(repo)
    workspace = repo / "services" / "api"
    workspace.mkdir(parents=True)
    defaults = workspace_defaults({"image": "x"}, workspace)
    assert defaults.workspace_folder == "/workspaces/repo/services/api"
    assert defaults.workspace_mount == f"type=bind,source={repo},target=/workspaces/repo"


def test_git_root_can_be_disabled(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _git_init(repo)
    workspace = repo / "sub"
    workspace.mkdir()
    defaults = workspace_defaults({"image": "x"}, workspace, mount_git_root=False)
    assert defaults.workspace_folder == "/workspaces/sub"


def test_find_git_root_none_outside(tmp_path: Path) -> None:
    assert find_git_root(tmp_path) is None


def test_comma_paths_quoted(tmp_path: Path) -> None:
    workspace = tmp_path / "a,b"
    workspace.mkdir()
    defaults = workspace_defaults({"image": "x"}, workspace)
    assert defaults.workspace_mount == f'type=bind,"source={workspace}","target=/workspaces/a,b"'


def test_empty_mount_key_kept(tmp_path: Path) -> None:
    defaults = workspace_defaults({"workspaceMount": ""}, tmp_path)
    assert defaults.workspace_mount == ""
    assert defaults.workspace_folder == f"/workspaces/{tmp_path.name}"


def test_folder_and_mount_set_kept_raw(tmp_path: Path) -> None:
    raw = {"workspaceFolder": "/w/${localEnv:X}", "workspaceMount": "type=bind,src=/a,dst=/w"}
    defaults = workspace_defaults(raw, tmp_path)
    assert defaults.workspace_folder == "/w/${localEnv:X}"
    assert defaults.workspace_mount == "type=bind,src=/a,dst=/w"


def test_folder_only_keeps_default_mount(tmp_path: Path) -> None:
    defaults = workspace_defaults({"workspaceFolder": "/src"}, tmp_path)
    assert defaults.workspace_folder == "/src"
    assert defaults.workspace_mount is not None
    assert defaults.workspace_mount.startswith("type=bind,source=")


def test_compose_default_folder_no_mount(tmp_path: Path) -> None:
    defaults = workspace_defaults({"dockerComposeFile": "c.yml", "workspaceFolder": ""}, tmp_path)
    assert defaults.workspace_folder == "/"
    assert defaults.workspace_mount is None
