"""Option parsing and secret loading of `devaipod broker`."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from devaipod.cli import cli
from devaipod.cli.broker_cmd import (
    TOKEN_ENV,
    load_or_create_credential,
    parse_listen_address,
    parse_unix_listen_address,
    read_forge_token,
)
from devaipod.cli.egress_cmd import broker_egress_allowlist
from devaipod.errors import UserError
from devaipod.scope.model import Scope, load_scope


@pytest.mark.parametrize(
    "value,expected",
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:8417", ("0.0.0.0", 8417)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_listen_address_parses_host_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize("value", ["8080", ":8080", "host:", "host:http", "host:65536", ""])
def test_listen_address_rejects_bad_values(value: str) -> None:
    with pytest.raises(UserError, match="--listen"):
        parse_listen_address(value)


def test_unix_listen_address_returns_path() -> None:
    assert parse_unix_listen_address("unix:/run/broker.sock") == Path("/run/broker.sock")
    assert parse_unix_listen_address("127.0.0.1:0") is None
    with pytest.raises(UserError, match="invalid --listen address") as raised:
        parse_unix_listen_address("unix:")
    assert "unix:PATH" in (raised.value.fix or "")


def test_forge_token_from_file_is_stripped(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  file-token\n")

    assert read_forge_token(token_file) == "file-token"


def test_forge_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "env-token")

    assert read_forge_token(None) == "env-token"


def test_forge_token_missing_is_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("\n")

    with pytest.raises(UserError, match="no forge token"):
        read_forge_token(None)
    with pytest.raises(UserError, match="is empty"):
        read_forge_token(empty)
    with pytest.raises(UserError, match="cannot read token file"):
        read_forge_token(tmp_path / "missing")


def test_credential_file_created_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "credential"

    created = load_or_create_credential(path)

    assert len(created) >= 40
    assert path.read_text() == created + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_credential(path) == created


def test_credential_file_content_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "credential"
    path.write_text("chosen-credential\n")

    assert load_or_create_credential(path) == "chosen-credential"


def test_broker_without_token_exits_with_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    scope = tmp_path / "scope.yaml"
    scope.write_text("repos:\n  - input: {url: 'https://github.com/org/repo'}\n")

    result = CliRunner().invoke(cli, ["broker", "--scope", str(scope)])

    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)
    assert TOKEN_ENV in (result.exception.fix or "")


def test_egress_host_address_invalid_rejected(tmp_path: Path) -> None:
    scope = tmp_path / "scope.yaml"
    scope.write_text("repos:\n  - input: {url: 'https://github.com/org/repo'}\n")

    result = CliRunner().invoke(
        cli,
        ["broker", "--scope", str(scope), "--egress-listen", "127.0.0.1:0",
         "--egress-host-address", "gateway.example.test"],
    )  # fmt: skip

    assert isinstance(result.exception, UserError)
    assert "invalid --egress-host-address value 'gateway.example.test'" in str(result.exception)


def test_egress_host_address_denied_as_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVAIPOD_CONFIG", str(tmp_path / "none.toml"))
    scope = load_scope_text(tmp_path, "network:\n  allow: ['api.example.test']\n")
    host = ipaddress.ip_address("1.2.3.4")

    with_host = broker_egress_allowlist(scope, (), [host])
    without_host = broker_egress_allowlist(scope, (), [])

    reason = with_host.check_resolved("api.example.test", host, 443)
    assert reason is not None
    assert "resolves to 1.2.3.4, an address of this host" in reason
    assert without_host.check_resolved("api.example.test", host, 443) is None


def load_scope_text(directory: Path, text: str) -> Scope:
    path = directory / "scope.yaml"
    path.write_text("repos:\n  - input: {url: 'https://github.com/org/repo'}\n" + text)
    return load_scope(path)
