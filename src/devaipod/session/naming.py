"""Session names: `devaipod-<name>` everywhere, accepted with or without the prefix."""

from __future__ import annotations

import re
import secrets

from devaipod.errors import UserError
from devaipod.runtime.plan import SESSION_PREFIX

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,48}$")


def session_name(name: str) -> str:
    """Return the full session name for `name`, given with or without the `devaipod-` prefix."""
    short = name.removeprefix(SESSION_PREFIX)
    if not _NAME.match(short):
        raise UserError(
            f"invalid session name {name!r}",
            fix="use 1-49 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return SESSION_PREFIX + short


def short_name(session: str) -> str:
    """Return the session name without the `devaipod-` prefix."""
    return session.removeprefix(SESSION_PREFIX)


def generate_session_name(hint: str) -> str:
    """Return a new session name from a project name and a random suffix."""
    base = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:32] or "session"
    return f"{SESSION_PREFIX}{base}-{secrets.token_hex(3)}"
