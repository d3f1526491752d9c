"""Tests of the proxy environment variables given to the agent."""

from __future__ import annotations

import base64
import urllib.request
from urllib.parse import unquote, urlsplit

from devaipod.egress.environment import proxy_environment
from devaipod.egress.http_head import credential_matches


def test_proxy_environment_variables() -> None:
    environment = proxy_environment(3128, "abc-_123")
    assert environment["HTTPS_PROXY"] == "http://agent:abc-_123@127.0.0.1:3128"
    assert environment["https_proxy"] == environment["HTTPS_PROXY"]
    assert environment["HTTP_PROXY"] == environment["HTTPS_PROXY"]
    assert environment["http_proxy"] == environment["HTTPS_PROXY"]
    assert environment["NO_PROXY"] == "localhost,127.0.0.1,::1"
    assert environment["no_proxy"] == environment["NO_PROXY"]


def test_proxy_environment_encodes_credential() -> None:
    credential = "a:b@c/d%e f"
    url = urlsplit(proxy_environment(3128, credential)["HTTPS_PROXY"])
    assert url.hostname == "127.0.0.1"
    assert url.port == 3128
    assert url.password is not None
    assert unquote(url.password) == credential


def test_proxy_environment_ipv6_host() -> None:
    url = urlsplit(proxy_environment(3128, "x", host="::1")["HTTPS_PROXY"])
    assert url.hostname == "::1"
    assert url.port == 3128


def test_proxy_environment_python_client_credential() -> None:
    # urllib builds Proxy-Authorization from the proxy URL; the proxy must accept it.
    credential = "a:b@c/d%e f"
    proxy_url = proxy_environment(3128, credential)["HTTPS_PROXY"]
    _, user, password, _ = urllib.request._parse_proxy(proxy_url)  # type: ignore[attr-defined]
    assert user is not None and password is not None
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    assert credential_matches(f"Basic {token}", credential)
