"""Proxy environment variables that point an agent's HTTP clients at the egress proxy."""

from __future__ import annotations

from urllib.parse import quote

# Loopback stays direct, because the broker's git and API doors listen there too.
DEFAULT_NO_PROXY: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


def proxy_environment(
    port: int,
    credential: str,
    *,
    host: str = "127.0.0.1",
    user: str = "agent",
    no_proxy: tuple[str, ...] = DEFAULT_NO_PROXY,
) -> dict[str, str]:
    """Return HTTP(S)_PROXY and NO_PROXY, upper and lower case, with the credential as the
    Basic password in the proxy URL (percent-encoded).

    The values contain the session credential, so they belong in the agent's environment
    only, never in logs or plan output.
    NOTE: a client that ignores these variables gets no route out at all, because the
    agent's network namespace has only loopback.
    """
    shown_host = f"[{host}]" if ":" in host else host
    proxy_url = f"http://{quote(user, safe='')}:{quote(credential, safe='')}@{shown_host}:{port}"
    no_proxy_value = ",".join(no_proxy)
    return {
        "HTTPS_PROXY": proxy_url,
        "https_proxy": proxy_url,
        "HTTP_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "NO_PROXY": no_proxy_value,
        "no_proxy": no_proxy_value,
    }
