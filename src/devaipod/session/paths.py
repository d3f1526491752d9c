"""Paths of a session's files on the host: its state directory and audit log."""

from __future__ import annotations

from pathlib import Path

from devaipod.errors import UserError
from devaipod.logs import state_dir

SESSION_PREFIX = "devaipod-"


# NOTE: devaipod.session.naming validates names more strictly; this module only needs a
# name that is one safe path component.
def _full_session_name(name: str) -> str:
    """Return the full session name, adding the `devaipod-` prefix when `name` lacks it."""
    if not name or "/" in name or name in (".", "..") or name == SESSION_PREFIX:
        raise UserError(
            f"invalid session name {name!r}",
            fix="pass a session name as shown by 'devaipod list', such as devaipod-demo",
        )
    if name.startswith(SESSION_PREFIX):
        return name
    return SESSION_PREFIX + name


def session_dir(name: str) -> Path:
    """Return `<state dir>/sessions/devaipod-<name>` (not created here)."""
    return state_dir() / "sessions" / _full_session_name(name)


def session_audit_path(name: str) -> Path:
    """Return the path of the session's audit log, `<session dir>/audit.jsonl`."""
    return session_dir(name) / "audit.jsonl"
