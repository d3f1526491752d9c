"""Tests of the forge endpoint set-up helpers: API URL overrides and their errors."""

from __future__ import annotations

import pytest

from devaipod.broker.forge_endpoints import with_api_urls
from devaipod.cli.broker_cmd import parse_forge_api_urls
from devaipod.config import parse_config
from devaipod.errors import UserError

CONFIG = parse_config('[forges."git.example.com:3000"]\nkind = "forgejo"\n', "test config")


def test_api_url_overrides_declared_host() -> None:
    config = with_api_urls(CONFIG, {"git.example.com:3000": "http://127.0.0.1:9/api/v1/"})

    settings = config.forge_settings("git.example.com:3000")
    assert settings is not None
    assert settings.kind == "forgejo"
    assert settings.api_url == "http://127.0.0.1:9/api/v1"


def test_api_url_overrides_well_known_host() -> None:
    config = with_api_urls(CONFIG, {"GitHub.com": "http://127.0.0.1:9"})

    settings = config.forge_settings("github.com")
    assert settings is not None
    assert settings.kind == "github"
    assert settings.api_url == "http://127.0.0.1:9"


def test_api_url_unknown_host_rejected() -> None:
    with pytest.raises(UserError) as caught:
        with_api_urls(CONFIG, {"forge.invalid": "http://127.0.0.1:9"})
    assert "forge.invalid" in str(caught.value)
    assert 'kind = "github"' in str(caught.value.fix)


def test_api_url_invalid_url_rejected() -> None:
    with pytest.raises(UserError) as caught:
        with_api_urls(CONFIG, {"github.com": "ftp://user@host/x"})
    assert "ftp://user@host/x" in str(caught.value)


def test_api_url_leaves_config_unchanged() -> None:
    with_api_urls(CONFIG, {"git.example.com:3000": "http://127.0.0.1:9/api/v1"})

    settings = CONFIG.forge_settings("git.example.com:3000")
    assert settings is not None
    assert settings.api_url is None


@pytest.mark.parametrize("value", ["github.com", "=http://x", "github.com=", "  =  "])
def test_forge_api_url_option_invalid(value: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_forge_api_urls((value,))
    assert "HOST=URL" in str(caught.value.fix)


def test_forge_api_url_option_pairs() -> None:
    parsed = parse_forge_api_urls(("a.example=http://1.2.3.4/api", "b.example = https://b/x"))

    assert parsed == {"a.example": "http://1.2.3.4/api", "b.example": "https://b/x"}
