"""Tests of devcontainer variable substitution and the devcontainerId."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devaipod.devcontainer.variables import (
    LocalVariables,
    devcontainer_id,
    id_labels,
    posix_basename,
    substitute_container_env,
    substitute_devcontainer_id,
    substitute_local,
)
from devaipod.errors import UserError


def _local(
    value: object, env: dict[str, str] | None = None, container: str | None = None
) -> object:
    variables = LocalVariables(
        env=env or {},
        local_workspace_folder="/home/me/project",
        container_workspace_folder=container,
    )
    return substitute_local(value, variables)


def test_local_env_value_and_alias() -> None:
    env = {"USER": "me"}
    assert _local("${localEnv:USER}-${env:USER}", env) == "me-me"


def test_local_env_unset_is_empty() -> None:
    assert _local("a${localEnv:NOPE}b") == "ab"


def test_local_env_default_when_unset() -> None:
    assert _local("${localEnv:TZ:Europe/Paris}") == "Europe/Paris"


def test_local_env_set_but_empty_ignores_default() -> None:
    assert _local("[${localEnv:EMPTY:fallback}]", {"EMPTY": ""}) == "[]"


def test_local_env_default_second_part_only() -> None:
    assert _local("${localEnv:X:a:b:c}") == "a"


def test_local_env_without_name_raises() -> None:
    with pytest.raises(UserError, match="no environment variable name"):
        _local("${localEnv}")


def test_local_env_empty_name_is_empty() -> None:
    assert _local("[${localEnv:}]", {"": "x"}) == "[x]"


def test_workspace_folder_variables() -> None:
    text = "${localWorkspaceFolder}|${localWorkspaceFolderBasename}"
    assert _local(text) == "/home/me/project|project"


def test_container_folder_resolved_first() -> None:
    value = _local(
        "${containerWorkspaceFolder}:${containerWorkspaceFolderBasename}",
        container="/w/${localWorkspaceFolderBasename}",
    )
    assert value == "/w/project:project"


def test_container_folder_unknown_left() -> None:
    assert _local("${containerWorkspaceFolder}") == "${containerWorkspaceFolder}"


def test_unknown_and_later_phase_left() -> None:
    for text in (
        "${workspaceFolder}",
        "${templateOption:imageVariant}",
        "${VAR:-x}",
        "$${HOME}",
        "${containerEnv:PATH}",
        "${devcontainerId}",
    ):
        assert _local(text) == text


def test_first_closing_brace_ends_variable() -> None:
    assert _local("${localEnv:A${x}}", {"A${x": "v"}) == "v}"


def test_keys_and_scalars_untouched() -> None:
    value = {"${localEnv:A}": ["${localEnv:A}", 1, True, None], "n": 2.5}
    assert _local(value, {"A": "x"}) == {"${localEnv:A}": ["x", 1, True, None], "n": 2.5}


def test_devcontainer_id_phase() -> None:
    value = {"m": "vol-${devcontainerId}", "k": "${devcontainerId:x}", "o": "${localEnv:A}"}
    replaced = substitute_devcontainer_id(value, "ID")
    assert replaced == {"m": "vol-ID", "k": "ID", "o": "${localEnv:A}"}


def test_container_env_phase_with_default() -> None:
    value = "${containerEnv:PATH}:${containerEnv:NONE:d}:${containerEnv:EMPTY:d}:${localEnv:A}"
    replaced = substitute_container_env(value, {"PATH": "/bin", "EMPTY": ""})
    assert replaced == "/bin:d::${localEnv:A}"


def test_devcontainer_id_known_value() -> None:
    # Computed independently with Node.js: JSON.stringify, sha256, BigInt.toString(32).
    labels = id_labels(Path("/tmp/dc1"), Path("/tmp/dc1/.devcontainer/devcontainer.json"))
    assert devcontainer_id(labels) == "08b2rn2g1uvptejnr4l3mg9mrheuro35g9g0a973b4pm2jrf8be1"


def test_devcontainer_id_non_ascii_value() -> None:
    assert devcontainer_id({"a": 'é/\n"x\u2028'}) == (
        "06o04u80lia5kkbtb91frspn1roamaek7grdi49pi1h28utp6rvj"
    )


@given(st.dictionaries(st.text(), st.text(), min_size=1))
def test_devcontainer_id_format_and_order(labels: dict[str, str]) -> None:
    identifier = devcontainer_id(labels)
    assert re.fullmatch(r"[0-9a-v]{52}", identifier)
    assert devcontainer_id(dict(reversed(list(labels.items())))) == identifier


def test_posix_basename_like_node() -> None:
    assert posix_basename("/a/b/") == "b"
    assert posix_basename("/") == ""
    assert posix_basename("b") == "b"


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []


@given(json_like)
def test_values_without_dollar_brace_unchanged(value: object) -> None:
    if any("${" in text for text in _strings(value)):
        return
    assert _local(value, {"A": "x"}, "/w") == value


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=5), max_size=5))
def test_keys_never_substituted(value: dict[str, str]) -> None:
    keyed = {f"${{localEnv:{key}}}": text for key, text in value.items()}
    assert list(_local(keyed, {"A": "x"}, "/w")) == list(keyed)  # type: ignore[arg-type]


names = st.text(alphabet=st.characters(blacklist_characters=":}\n\r"), min_size=1, max_size=8)
defaults = st.text(alphabet=st.characters(blacklist_characters=":}\n\r"), max_size=8)


@given(names, defaults, st.one_of(st.none(), st.text(max_size=6)))
def test_local_env_default_semantics(name: str, default: str, value: str | None) -> None:
    env = {} if value is None else {name: value}
    result = _local(f"${{localEnv:{name}:{default}}}", env)
    assert result == (default if value is None else value)


@given(names, defaults, defaults)
def test_default_extra_parts_dropped(name: str, default: str, extra: str) -> None:
    assert _local(f"${{localEnv:{name}:{default}:{extra}}}") == default
