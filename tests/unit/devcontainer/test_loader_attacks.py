"""Hostile devcontainer.json files: each must end in one UserError line, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devaipod.devcontainer import load_devcontainer
from devaipod.devcontainer.discovery import find_config
from devaipod.devcontainer.variables import substitute_string
from devaipod.errors import UserError


def _workspace(tmp_path: Path, text: str) -> Path:
    workspace = tmp_path / "app"
    path = workspace / ".devcontainer" / "devcontainer.json"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    (path.parent / "Dockerfile").write_text("FROM scratch\n")
    return workspace


@pytest.mark.parametrize("depth", [250, 600, 100_000])
@pytest.mark.parametrize(("opening", "closing"), [('{"a":', "}"), ("[", "]")])
def test_deep_nesting_is_user_error(tmp_path: Path, depth: int, opening: str, closing: str
                                    ) -> None:
    nested = opening * depth + "1" * (opening == '{"a":') + closing * depth
    workspace = _workspace(tmp_path, '{"image": "x", "customizations": {"x": ' + nested + "}}")

    with pytest.raises(UserError) as raised:
        load_devcontainer(workspace, env={})

    assert "nested deeper than" in str(raised.value)
    assert ":1:" in str(raised.value)


def test_moderate_nesting_still_loads(tmp_path: Path) -> None:
    nested = '{"a":' * 150 + "1" + "}" * 150
    workspace = _workspace(tmp_path, '{"image": "x", "customizations": {"x": ' + nested + "}}")

    resolved = load_devcontainer(workspace, env={})

    assert resolved.config.image == "x"


def test_brackets_inside_strings_not_counted(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, '{"image": "x", "runArgs": ["' + "[{" * 400 + '\\"]"]}')

    resolved = load_devcontainer(workspace, env={})

    assert resolved.config.image == "x"


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ('{"image": "x\\u0000y"}', "image"),
        ('{"image": "x", "runArgs": ["a", "\\ud800"]}', "runArgs[1]"),
        ('{"image": "x", "containerEnv": {"A\\u0000": "1"}}', "containerEnv.A\\u0000"),
        ('{"build": {"dockerfile": "Dock\\udc80erfile"}}', "build.dockerfile"),
    ],
)
def test_nul_and_surrogates_are_user_errors(tmp_path: Path, text: str, location: str) -> None:
    workspace = _workspace(tmp_path, text)

    with pytest.raises(UserError) as raised:
        load_devcontainer(workspace, env={})

    message = str(raised.value)
    assert f"invalid string at {location}:" in message
    message.encode("utf-8")


def test_overlong_dockerfile_name_is_user_error(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, '{"build": {"dockerfile": "' + "a" * 5000 + '"}}')

    with pytest.raises(UserError) as raised:
        load_devcontainer(workspace, env={})

    assert "not found" in str(raised.value)


def test_overlong_config_path_is_user_error(tmp_path: Path) -> None:
    config = tmp_path / ("a" * 5000) / "devcontainer.json"

    with pytest.raises(UserError) as raised:
        find_config(tmp_path, config)

    assert "not found" in str(raised.value)


def test_overlong_workspace_folder_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as raised:
        load_devcontainer(tmp_path / ("w" * 5000), env={})

    assert "does not exist" in str(raised.value)


def test_unclosed_variables_substitute_in_linear_time() -> None:
    # Each unclosed `${` used to rescan the rest of the line: 100 000 of them took 37 s.
    text = "${" * 100_000 + "\n${localEnv:HOME}"

    started = time.monotonic()
    result = substitute_string(text, lambda match, name, arguments: "X")

    assert time.monotonic() - started < 2.0
    assert result == "${" * 100_000 + "\nX"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a ${x} b", "a <x> b"),
        ("${a ${b}", "<a ${b>"),
        ("${a\n${b}", "${a\n<b>"),
        ("${}", "<>"),
        ("${a}${b}}", "<a><b>}"),
        ("$${a}", "$<a>"),
        ("${a\r}", "<a\r>"),
    ],
)
def test_variable_boundaries_unchanged(text: str, expected: str) -> None:
    assert substitute_string(text, lambda match, name, arguments: f"<{match[2:-1]}>") == expected
