"""Tests of forge token discovery: engine secret, environment, gh, glab and tea."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from devaipod.config import ForgeSettings
from devaipod.forge.tokens import discover_token, environment_variables


def _fake_cli(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_github_env_order() -> None:
    env = {"GITHUB_TOKEN": "second", "GH_TOKEN": "first"}

    token = discover_token("github", "github.com", env=env, which=lambda name: None)

    assert token is not None
    assert token.value == "first"
    assert token.source == "$GH_TOKEN"


def test_github_enterprise_uses_enterprise_vars() -> None:
    env = {"GH_TOKEN": "dotcom", "GH_ENTERPRISE_TOKEN": "enterprise"}

    token = discover_token("github", "ghe.example.com", env=env, which=lambda name: None)

    assert token is not None
    assert token.value == "enterprise"


def test_gitlab_and_forgejo_env_vars() -> None:
    gitlab = discover_token("gitlab", "gitlab.example.org",
                            env={"GITLAB_TOKEN": "gl", "GITLAB_HOST": "gitlab.example.org"},
                            which=lambda name: None)
    forgejo = discover_token("forgejo", "codeberg.org", env={"GITEA_TOKEN": "gt"},
                             which=lambda name: None)

    assert gitlab is not None and gitlab.value == "gl"
    assert forgejo is not None and forgejo.source == "$GITEA_TOKEN"
    assert environment_variables("forgejo", "x") == ("FORGEJO_TOKEN", "GITEA_TOKEN")


def test_token_repr_hides_value() -> None:
    token = discover_token("gitlab", "gitlab.com", env={"GITLAB_TOKEN": "glpat-secret"},
                           which=lambda name: None)

    assert "glpat-secret" not in repr(token)


def test_gh_cli_token_for_host(bin_dir: Path) -> None:
    _fake_cli(bin_dir, "gh", 'test "$*" = "auth token --hostname ghe.example.com" && echo gho_abc')

    token = discover_token("github", "ghe.example.com", env={})

    assert token is not None
    assert token.value == "gho_abc"
    assert token.source == "`gh auth token`"


def test_glab_cli_token_for_host(bin_dir: Path) -> None:
    _fake_cli(bin_dir, "glab",
              'test "$*" = "config get token --host gitlab.com" && echo glpat-1 || exit 1')

    token = discover_token("gitlab", "gitlab.com", env={})

    assert token is not None
    assert token.value == "glpat-1"


def test_failing_cli_gives_no_token(bin_dir: Path) -> None:
    _fake_cli(bin_dir, "gh", "echo 'not logged in' >&2; exit 1")

    assert discover_token("github", "github.com", env={}) is None


def test_cli_timeout_gives_no_token(bin_dir: Path) -> None:
    def slow_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(cmd="gh", timeout=5)

    _fake_cli(bin_dir, "gh", "sleep 60")

    assert discover_token("github", "github.com", env={}, run=slow_run) is None


def test_missing_cli_is_not_run(bin_dir: Path) -> None:
    calls: list[object] = []

    def record_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        raise AssertionError("must not run")

    assert discover_token("github", "github.com", env={}, run=record_run) is None
    assert calls == []


def test_tea_login_for_host(tmp_path: Path) -> None:
    config = tmp_path / "tea" / "config.yml"
    config.parent.mkdir()
    config.write_text(
        "logins:\n"
        "  - name: other\n    url: https://gitea.com\n    token: wrong\n"
        "  - name: work\n    url: https://git.example.net:3000\n    token: right\n",
        encoding="utf-8",
    )

    token = discover_token("forgejo", "git.example.net:3000",
                           env={"XDG_CONFIG_HOME": str(tmp_path)}, which=lambda name: None)

    assert token is not None
    assert token.value == "right"
    assert token.source == "tea login 'work'"


def test_engine_secret_comes_first(bin_dir: Path) -> None:
    _fake_cli(bin_dir, "podman",
              'test "$1 $2 $3" = "secret inspect --showsecret" && echo from-secret || exit 125')
    settings = ForgeSettings(kind="github", token_secret="gh-token")

    token = discover_token("github", "github.com", settings, env={"GH_TOKEN": "env"})

    assert token is not None
    assert token.value == "from-secret"
    assert token.source == "podman secret gh-token"


def test_engine_secret_unsupported_falls_back(bin_dir: Path) -> None:
    _fake_cli(bin_dir, "podman", "echo 'Error: unknown flag: --showsecret' >&2; exit 125")
    settings = ForgeSettings(kind="github", token_secret="gh-token")

    token = discover_token("github", "github.com", settings, env={"GH_TOKEN": "env"})

    assert token is not None
    assert token.value == "env"


def test_no_token_anywhere(bin_dir: Path) -> None:
    assert not os.listdir(bin_dir)

    assert discover_token("forgejo", "codeberg.org", env={"HOME": str(bin_dir)}) is None


@pytest.mark.parametrize(
    ("gitlab_host", "host", "found"),
    [
        (None, "gitlab.com", True),
        (None, "gitlab.example.org", False),
        ("gitlab.example.org", "gitlab.com", False),
        ("https://GitLab.Example.org/", "gitlab.example.org", True),
        ("https://gitlab.example.org:443", "gitlab.example.org", True),
        ("http://10.0.0.5:8080", "10.0.0.5:8080", True),
        ("http://10.0.0.5:8080", "10.0.0.5", False),
    ],
)
def test_gitlab_token_only_for_its_host(gitlab_host: str | None, host: str, found: bool) -> None:
    env = {"GITLAB_TOKEN": "gl"}
    if gitlab_host is not None:
        env["GITLAB_HOST"] = gitlab_host

    token = discover_token("gitlab", host, env=env, which=lambda name: None)

    assert (token is not None) is found
