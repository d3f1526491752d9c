"""Tests of finding devcontainer.json in a workspace and checking --config."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.devcontainer.discovery import (
    absolute_path,
    find_config,
    list_configs,
    list_folder_configs,
)
from devaipod.errors import UserError


def _write(path: Path, text: str = '{"image": "x"}') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_find_prefers_devcontainer_folder(tmp_path: Path) -> None:
    folder_config = _write(tmp_path / ".devcontainer" / "devcontainer.json")
    _write(tmp_path / ".devcontainer.json")
    assert find_config(tmp_path) == folder_config


def test_find_falls_back_to_root_file(tmp_path: Path) -> None:
    root_config = _write(tmp_path / ".devcontainer.json")
    _write(tmp_path / ".devcontainer" / "python" / "devcontainer.json")
    assert find_config(tmp_path) == root_config


def test_find_ignores_default_path_directory(tmp_path: Path) -> None:
    (tmp_path / ".devcontainer" / "devcontainer.json").mkdir(parents=True)
    root_config = _write(tmp_path / ".devcontainer.json")
    assert find_config(tmp_path) == root_config


def test_find_several_folder_configs_names_them(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "gpu" / "devcontainer.json")
    _write(tmp_path / ".devcontainer" / "cpu" / "devcontainer.json")
    with pytest.raises(UserError) as caught:
        find_config(tmp_path)
    message = caught.value.message
    assert ".devcontainer/cpu/devcontainer.json, .devcontainer/gpu/devcontainer.json" in message
    assert caught.value.fix is not None and "--config" in caught.value.fix


def test_find_single_folder_config_not_picked(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "only" / "devcontainer.json")
    with pytest.raises(UserError) as caught:
        find_config(tmp_path)
    assert caught.value.fix == "choose it with --config .devcontainer/only/devcontainer.json"


def test_find_nothing_names_searched_paths(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"looked for \.devcontainer/devcontainer\.json"):
        find_config(tmp_path)


def test_explicit_config_name_checked(tmp_path: Path) -> None:
    other = _write(tmp_path / "dev.json")
    with pytest.raises(UserError, match="must be devcontainer.json or .devcontainer.json"):
        find_config(tmp_path, other)


def test_explicit_config_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        find_config(tmp_path, tmp_path / "x" / "devcontainer.json")


def test_explicit_config_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = _write(tmp_path / ".devcontainer" / "gpu" / "devcontainer.json")
    monkeypatch.chdir(tmp_path)
    assert find_config(tmp_path, Path(".devcontainer/gpu/devcontainer.json")) == chosen


def test_explicit_dot_devcontainer_name_accepted(tmp_path: Path) -> None:
    chosen = _write(tmp_path / "sub" / ".devcontainer.json")
    assert find_config(tmp_path, chosen) == chosen


def test_list_folder_configs_sorted(tmp_path: Path) -> None:
    _write(tmp_path / ".devcontainer" / "b" / "devcontainer.json")
    _write(tmp_path / ".devcontainer" / "a" / "devcontainer.json")
    (tmp_path / ".devcontainer" / "empty").mkdir()
    names = [path.parent.name for path in list_folder_configs(tmp_path)]
    assert names == ["a", "b"]


def test_absolute_path_keeps_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert absolute_path("link/../link/x", tmp_path) == link / "x"


def test_list_configs_defaults_first(tmp_path: Path) -> None:
    folder_config = _write(tmp_path / ".devcontainer" / "devcontainer.json")
    root_config = _write(tmp_path / ".devcontainer.json")
    sub_config = _write(tmp_path / ".devcontainer" / "a" / "devcontainer.json")
    assert list_configs(tmp_path) == [folder_config, root_config, sub_config]
