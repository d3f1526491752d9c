"""Host-side git with hooks, fsmonitor and credential helpers disabled.

Session repositories are written by the agent, so their hooks and config are untrusted:
host-side reads run with these settings, and never in the session's own `.git` config
(see `code.py`, which copies only objects and refs out of it).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from devaipod.errors import DevaipodError

log = logging.getLogger(__name__)

SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "credential.helper=",
    "-c",
    "protocol.ext.allow=never",
)


_URL_USERINFO = re.compile(r"([a-z+]+://)([^@/\s]*)@")


def redact_url(text: str) -> str:
    """Return `text` with credentials removed from every URL's user part.

    HTTP(S) URLs lose the whole user part, because forges accept a bare token as the
    user name; other schemes (ssh://) keep the user name and lose only a password.
    """

    def keep_user(match: re.Match[str]) -> str:
        if match.group(1).startswith("http"):
            return match.group(1)
        user = match.group(2).split(":", 1)[0]
        return f"{match.group(1)}{user}@" if user else match.group(1)

    return _URL_USERINFO.sub(keep_user, text)


# An HTTP credential header inside a git argument, such as an `http.<url>.extraHeader` value.
_CREDENTIAL_HEADER = re.compile(
    r"(?i)\b((?:authorization|proxy-authorization):\s*(?:bearer\s+|basic\s+|token\s+)?"
    r"|private-token:\s*)\S+"
)


def redact_credentials(text: str) -> str:
    """Return `text` without URL credentials and without the values of credential headers."""
    return _CREDENTIAL_HEADER.sub(r"\1[REDACTED]", redact_url(text))


class GitError(DevaipodError):
    """A host-side git command failed."""


def safe_git_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment for host-side git: no system config, no prompts, no index writes."""
    env = dict(os.environ if base is None else base)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    return env


def run_git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    check: bool = True,
    keep_credentials: bool = False,
    secret_config: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` with the safe settings and return the completed process.

    `keep_credentials` keeps the user's credential helpers, for clones of a remote URL
    into a fresh directory that nothing untrusted has touched. `secret_config` contains
    config values (an `http.<url>.extraHeader` with a token) given to this git process
    only, through its environment: they are in no argv, no log line and no config file.
    """
    config = list(SAFE_CONFIG)
    if keep_credentials:
        config = [item for item in config if not item.startswith("credential.helper")]
        config = _drop_dangling_c(config)
    argv = ["git", *config, *args]
    log.debug("running %s in %s", redact_credentials(" ".join(argv)), cwd)
    env = safe_git_env()
    if secret_config:
        env["GIT_CONFIG_COUNT"] = str(len(secret_config))
        for index, (key, value) in enumerate(secret_config.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
    completed = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and completed.returncode != 0:
        where = f" in {cwd}" if cwd is not None else ""
        raise GitError(
            f"git {args[0]} failed{where}: "
            f"{redact_credentials(completed.stderr.strip()[-800:])}",
        )
    return completed


def _drop_dangling_c(config: list[str]) -> list[str]:
    cleaned: list[str] = []
    for index, item in enumerate(config):
        following = config[index + 1] if index + 1 < len(config) else None
        if item == "-c" and (following is None or following == "-c"):
            continue
        cleaned.append(item)
    return cleaned
