"""Tests of the gateway image's settings and input hash, without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.config import parse_config
from devaipod.errors import UserError
from devaipod.runtime import gateway_image
from devaipod.runtime.gateway_image import (
    BASE_IMAGE_ENV,
    DEFAULT_BASE_IMAGE,
    resolve_base_image,
)
from devaipod.runtime.gateway_wheels import TargetPython, pack_devaipod_wheel


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("DEVAIPOD_CONFIG", str(path))
    monkeypatch.delenv(BASE_IMAGE_ENV, raising=False)
    return path


def test_base_image_default_without_settings(config_file: Path) -> None:
    assert resolve_base_image() == DEFAULT_BASE_IMAGE


def test_base_image_from_config_file(config_file: Path) -> None:
    config_file.write_text('[gateway]\nbase_image = "localhost/py:3.12"\n')
    assert resolve_base_image() == "localhost/py:3.12"


def test_base_image_env_beats_config(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text('[gateway]\nbase_image = "localhost/py:3.12"\n')
    monkeypatch.setenv(BASE_IMAGE_ENV, "localhost/from-env:1")
    assert resolve_base_image() == "localhost/from-env:1"
    assert resolve_base_image("localhost/explicit:2") == "localhost/explicit:2"


def test_gateway_config_unknown_key_rejected() -> None:
    with pytest.raises(UserError) as raised:
        parse_config('[gateway]\nbase = "x"\n', "config.toml")
    assert "gateway.base" in raised.value.message


def test_libc_version_parsing() -> None:
    assert gateway_image._parse_libc_version("2.36") == (2, 36)
    assert gateway_image._parse_libc_version("1.2") == (1, 2)
    assert gateway_image._parse_libc_version("2") == (2, 0)
    with pytest.raises(UserError):
        gateway_image._parse_libc_version("unknown")


def test_inputs_hash_tracks_each_input(tmp_path: Path) -> None:
    wheel = pack_devaipod_wheel(tmp_path)
    target = TargetPython(3, 11, "cpython", "x86_64", "glibc", (2, 36))
    arguments = ("sha256:base", target, wheel, ["click==8.5.1"], ["idna==3.20"], "FROM x")
    reference = gateway_image._hash_inputs(*arguments)

    assert gateway_image._hash_inputs(*arguments) == reference
    assert gateway_image._hash_inputs("sha256:other", *arguments[1:]) != reference
    other_target = TargetPython(3, 12, "cpython", "x86_64", "glibc", (2, 36))
    assert gateway_image._hash_inputs(arguments[0], other_target, *arguments[2:]) != reference
    changed_pins = (*arguments[:4], ["idna==3.21"], arguments[5])
    assert gateway_image._hash_inputs(*changed_pins) != reference
    changed_file = (*arguments[:5], "FROM y")
    assert gateway_image._hash_inputs(*changed_file) != reference


def test_tag_safe_replaces_plus() -> None:
    assert gateway_image._tag_safe("0.0.0+unknown") == "0.0.0-unknown"
    assert gateway_image._tag_safe("0.1.0") == "0.1.0"
