"""Tests of the gateway image's settings and input hash, without an engine."""

from __future__ import annotations

import json
import logging
import subprocess
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


def fake_probe(monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: str) -> None:
    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert command[:2] == ["podman", "run"]
        return subprocess.CompletedProcess(command, returncode, stdout, "python3: not found")

    monkeypatch.setattr(subprocess, "run", run)


def probe_output(**changes: object) -> str:
    data: dict[str, object] = {
        "major": 3, "minor": 11, "implementation": "cpython", "machine": "x86_64",
        "libc": "glibc", "libc_version": "2.36",
    }  # fmt: skip
    data.update(changes)
    return json.dumps(data) + "\n"


def test_probe_python_reads_target(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, 0, probe_output())
    target = gateway_image.probe_python("localhost/base")
    assert target == TargetPython(3, 11, "cpython", "x86_64", "glibc", (2, 36))


def test_probe_python_old_version_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, 0, probe_output(minor=10))
    with pytest.raises(UserError) as raised:
        gateway_image.probe_python("localhost/base")
    assert "3.10" in raised.value.message
    assert BASE_IMAGE_ENV in (raised.value.fix or "")


def test_probe_python_missing_python_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, 127, "")
    with pytest.raises(UserError) as raised:
        gateway_image.probe_python("localhost/base")
    assert "cannot run python3 in the gateway base image localhost/base" in raised.value.message
    assert "python3: not found" in raised.value.message


def test_probe_python_missing_image_last_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = (
        'Trying to pull localhost/nope:2...\n'
        'time="..." level=warning msg="Failed, retrying in 1s ... (3/3)"\n'
        "Error: initializing source docker://localhost/nope:2: connection refused\n"
    )

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 125, "", stderr)

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(UserError) as raised:
        gateway_image.probe_python("localhost/nope:2")

    assert raised.value.message.endswith(
        "localhost/nope:2: Error: initializing source docker://localhost/nope:2: "
        "connection refused")
    assert "retrying" not in raised.value.message
    assert "--gateway-base-image" in (raised.value.fix or "")
    assert BASE_IMAGE_ENV in (raised.value.fix or "")


def test_probe_python_unknown_libc_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, 0, probe_output(libc="", libc_version=""))
    with pytest.raises(UserError) as raised:
        gateway_image.probe_python("localhost/base")
    assert "unknown C library" in raised.value.message


def test_probe_base_reports_git(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, 0, probe_output(git=True))
    assert gateway_image._probe_base("localhost/base", "podman")[1] is True
    fake_probe(monkeypatch, 0, probe_output(git=False))
    assert gateway_image._probe_base("localhost/base", "podman")[1] is False


def test_containerfile_installs_git_only_when_missing() -> None:
    with_git = gateway_image._containerfile_template(has_git=True)
    without_git = gateway_image._containerfile_template(has_git=False)
    assert "apt-get install" not in with_git
    assert "{git_step}" not in with_git
    assert "apt-get install -y --no-install-recommends git" in without_git
    assert "apk add --no-cache git" in without_git
    assert without_git.index("git --version") < without_git.index("pip install")


def test_build_network_only_without_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commands: list[list[str]] = []

    class FakeProcess:
        def __init__(self, command: list[str], **_: object) -> None:
            commands.append(command)
            self.stdout = iter(["STEP 1/3"])
            self.returncode = 0

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    containerfile = tmp_path / "Containerfile"
    gateway_image._build("podman", "img", tmp_path, containerfile, lambda _: None)
    gateway_image._build("podman", "img", tmp_path, containerfile, lambda _: None, offline=False)
    assert "--network=none" in commands[0]
    assert not any(part.startswith("--network") for part in commands[1])


def test_cleanup_listing_failure_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_podman = tmp_path / "podman"
    fake_podman.write_text("#!/bin/sh\necho 'Error: image not known' >&2\nexit 125\n")
    fake_podman.chmod(0o755)

    with caplog.at_level(logging.WARNING, logger="devaipod.runtime.gateway_image"):
        gateway_image._remove_other_images(str(fake_podman), keep="localhost/x:1")

    assert "image not known" in caplog.text
