"""Find the user's forge token on the host: engine secret, environment, or the forge CLI's login.

Discovery order for a host: the engine secret named by `token_secret` in the
config file, then the forge's environment variables, then the forge CLI's stored
login (`gh`, `glab`, or tea's config file). The token value is never logged.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from devaipod.config import ForgeKind, ForgeSettings

log = logging.getLogger(__name__)

CLI_TIMEOUT_SECONDS = 5.0

Runner = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class ForgeToken:
    """A forge token and where it was found (for messages; the value is never shown)."""

    value: str = field(repr=False)
    source: str


def environment_variables(kind: ForgeKind, host: str) -> tuple[str, ...]:
    """Return the environment variables that may hold a token for `host`, in order.

    As the `gh` CLI does, GH_TOKEN and GITHUB_TOKEN apply to github.com only, and
    GH_ENTERPRISE_TOKEN and GITHUB_ENTERPRISE_TOKEN to GitHub Enterprise hosts.
    GITLAB_TOKEN applies to one host only (see `gitlab_token_host`), and the Forgejo
    variables to every Forgejo host.
    """
    if kind == "github":
        if host == "github.com":
            return ("GH_TOKEN", "GITHUB_TOKEN")
        return ("GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN")
    if kind == "gitlab":
        return ("GITLAB_TOKEN",)
    return ("FORGEJO_TOKEN", "GITEA_TOKEN")


def gitlab_token_host(env: Mapping[str, str]) -> str:
    """Return the one host GITLAB_TOKEN is for: GITLAB_HOST's host, else gitlab.com.

    The `glab` CLI reads the two variables this way. Sending the token to any other
    GitLab host would hand one server's credential to another.
    """
    value = env.get("GITLAB_HOST", "").strip()
    if not value:
        return "gitlab.com"
    parts = urlsplit(value if "://" in value else f"https://{value}")
    host = (parts.hostname or "").rstrip(".")
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    if parts.port is not None and parts.port != default_port:
        host = f"{host}:{parts.port}"
    return host


def discover_token(
    kind: ForgeKind,
    host: str,
    settings: ForgeSettings | None = None,
    *,
    env: Mapping[str, str] | None = None,
    run: Runner = subprocess.run,
    which: Callable[[str], str | None] = shutil.which,
) -> ForgeToken | None:
    """Return the first token found for forge `host`, or None when there is none."""
    env = env if env is not None else os.environ

    if settings is not None and settings.token_secret:
        token = _engine_secret(settings.token_secret, run, which)
        if token is not None:
            return token

    for name in environment_variables(kind, host):
        if name == "GITLAB_TOKEN" and host != gitlab_token_host(env):
            log.debug("not using $GITLAB_TOKEN for %s: it is for %s ($GITLAB_HOST)",
                      host, gitlab_token_host(env))
            continue
        value = env.get(name, "").strip()
        if value:
            log.debug("using the %s token for %s from $%s", kind, host, name)
            return ForgeToken(value, f"${name}")

    if kind == "github":
        return _cli_token(["gh", "auth", "token", "--hostname", host], run, which)
    if kind == "gitlab":
        return _cli_token(["glab", "config", "get", "token", "--host", host], run, which)
    return _tea_token(host, env)


def _engine_secret(name: str, run: Runner, which: Callable[[str], str | None]
                   ) -> ForgeToken | None:
    # NOTE: `podman secret inspect --showsecret` needs podman 4.5 or later; on older
    # podman this fails and discovery falls through to the environment.
    command = ["podman", "secret", "inspect", "--showsecret", "--format", "{{.SecretData}}",
               name]
    token = _cli_token(command, run, which)
    if token is None:
        log.warning("cannot read podman secret %r (podman is missing, older than 4.5, or has "
                    "no such secret); looking for the token in the environment instead", name)
        return None
    return ForgeToken(token.value, f"podman secret {name}")


def _cli_token(command: list[str], run: Runner, which: Callable[[str], str | None]
               ) -> ForgeToken | None:
    """Run a CLI that prints a token on stdout; None when missing, failing or silent."""
    if which(command[0]) is None:
        return None
    try:
        completed = run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS,
                        check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        log.warning("%s timed out after %.0f s; not using its token", " ".join(command[:3]),
                    CLI_TIMEOUT_SECONDS)
        return None
    except OSError as error:
        log.warning("cannot run %s: %s", command[0], error)
        return None
    if completed.returncode != 0:
        log.debug("%s exited with %d", " ".join(command[:3]), completed.returncode)
        return None
    value = completed.stdout.strip()
    if not value or "\n" in value:
        return None
    return ForgeToken(value, f"`{' '.join(command[:3])}`")


def _tea_token(host: str, env: Mapping[str, str]) -> ForgeToken | None:
    """Read the Forgejo/Gitea token of the `tea` CLI login whose URL is on `host`."""
    config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    path = Path(config_home).expanduser() / "tea" / "config.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        log.warning("cannot read tea's config %s: %s", path, error)
        return None

    logins = data.get("logins") if isinstance(data, dict) else None
    for login in logins if isinstance(logins, list) else []:
        if not isinstance(login, dict):
            continue
        url = str(login.get("url", ""))
        parts = urlsplit(url)
        login_host = parts.netloc.lower()
        if parts.port in (443, 80):
            login_host = parts.hostname or login_host
        token = login.get("token")
        if login_host == host and isinstance(token, str) and token.strip():
            return ForgeToken(token.strip(), f"tea login {login.get('name', url)!r}")
    return None
