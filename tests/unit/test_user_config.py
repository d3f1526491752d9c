"""Tests of the user config file: location, TOML parsing and key validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.config import config_path, load_config, normalise_host_key, parse_config
from devaipod.errors import UserError

FULL_CONFIG = """
[forges."Git.Example.com:443"]
kind = "gitlab"
api_url = "https://git.example.com/api/v4/"
token_secret = "gitlab-token"

[forges."forge.local:3000"]
kind = "forgejo"

[env]
allowlist = ["ANTHROPIC_API_KEY"]

[env.vars]
EDITOR = "vi"

[network]
allow = ["pypi.org", "*.pythonhosted.org"]

[agents.opencode]
image = "localhost/agent:1"
"""


def test_parse_config_reads_all_tables() -> None:
    config = parse_config(FULL_CONFIG, "config.toml")

    gitlab = config.forges["git.example.com"]
    assert gitlab.kind == "gitlab"
    assert gitlab.api_url == "https://git.example.com/api/v4"
    assert gitlab.token_secret == "gitlab-token"
    assert config.forges["forge.local:3000"].kind == "forgejo"
    assert config.env.allowlist == ["ANTHROPIC_API_KEY"]
    assert config.env.vars == {"EDITOR": "vi"}
    assert config.network.allow == ["pypi.org", "*.pythonhosted.org"]
    assert config.agents["opencode"].image == "localhost/agent:1"


def test_parse_config_unknown_key_is_named() -> None:
    with pytest.raises(UserError) as raised:
        parse_config('[forges."x.example"]\nkind = "github"\napi_ulr = "https://x"\n', "c.toml")

    assert 'forges."x.example".api_ulr' in raised.value.message
    assert "unknown key" in raised.value.message
    assert "c.toml" in raised.value.message


def test_parse_config_unknown_table_is_named() -> None:
    with pytest.raises(UserError) as raised:
        parse_config("[forge]\nkind = 1\n", "c.toml")

    assert "forge: unknown key" in raised.value.message


def test_parse_config_unknown_agent_key() -> None:
    with pytest.raises(UserError) as raised:
        parse_config("[agents.claude]\nimgae = 'x'\n", "c.toml")

    assert "agents.claude.imgae" in raised.value.message


def test_parse_config_invalid_kind() -> None:
    with pytest.raises(UserError) as raised:
        parse_config('[forges."x.example"]\nkind = "gitee"\n', "c.toml")

    assert "invalid kind 'gitee'" in raised.value.message
    assert raised.value.fix is not None
    assert '"forgejo"' in raised.value.fix


def test_parse_config_invalid_toml_syntax() -> None:
    with pytest.raises(UserError) as raised:
        parse_config("[forges\n", "c.toml")

    assert "invalid TOML in c.toml" in raised.value.message


def test_parse_config_rejects_host_with_scheme() -> None:
    with pytest.raises(UserError) as raised:
        parse_config('[forges."https://x.example"]\nkind = "github"\n', "c.toml")

    assert "HOST or HOST:PORT" in raised.value.message


def test_parse_config_rejects_api_url_with_user() -> None:
    with pytest.raises(UserError) as raised:
        parse_config('[forges."x.example"]\nkind = "github"\napi_url = "https://u@x/api"\n', "c")

    assert "api_url" in raised.value.message


def test_parse_config_duplicate_host_spelling() -> None:
    text = '[forges."x.example"]\nkind = "github"\n[forges."X.example."]\nkind = "gitlab"\n'

    with pytest.raises(UserError) as raised:
        parse_config(text, "c.toml")

    assert "declared twice" in raised.value.message


def test_path_prefix_is_normalised() -> None:
    config = parse_config('[forges."x.example"]\nkind = "forgejo"\npath_prefix = "git/"\n', "c")

    assert config.forges["x.example"].path_prefix == "/git"


def test_normalise_host_key_forms() -> None:
    assert normalise_host_key("GitHub.com.") == "github.com"
    assert normalise_host_key("x.example:443") == "x.example"
    assert normalise_host_key("x.example:80") == "x.example"
    assert normalise_host_key("x.example:8443") == "x.example:8443"
    assert normalise_host_key("[::1]:3000") == "[::1]:3000"
    with pytest.raises(ValueError):
        normalise_host_key("x.example/path")
    with pytest.raises(ValueError):
        normalise_host_key("user@x.example")


def test_well_known_forges_have_kinds() -> None:
    config = parse_config("", "c")

    kinds = {host: config.forge_settings(host) for host in
             ("github.com", "gitlab.com", "codeberg.org", "gitea.com", "other.example")}

    assert kinds["github.com"] is not None and kinds["github.com"].kind == "github"
    assert kinds["gitlab.com"] is not None and kinds["gitlab.com"].kind == "gitlab"
    assert kinds["codeberg.org"] is not None and kinds["codeberg.org"].kind == "forgejo"
    assert kinds["gitea.com"] is not None and kinds["gitea.com"].kind == "forgejo"
    assert kinds["other.example"] is None


def test_config_path_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "devaipod.toml"
    monkeypatch.setenv("DEVAIPOD_CONFIG", str(target))

    assert config_path() == target


def test_config_path_default_is_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEVAIPOD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))

    assert config_path() == tmp_path / "devaipod" / "config.toml"


def test_load_config_missing_file_is_empty(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")

    assert config.forges == {}
    assert config.env.allowlist == []


def test_load_config_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(FULL_CONFIG, encoding="utf-8")

    config = load_config(path)

    assert "forge.local:3000" in config.forges
