"""Paths of a session's files on the host: its state directory and audit log."""

from __future__ import annotations

from pathlib import Path

from devaipod.logs import state_dir
from devaipod.session.naming import session_name


def session_dir(name: str) -> Path:
    """Return `<state dir>/sessions/devaipod-<name>` (not created here)."""
    return state_dir() / "sessions" / session_name(name)


def session_audit_path(name: str) -> Path:
    """Return the path of the session's audit log, `<session dir>/audit.jsonl`."""
    return session_dir(name) / "audit.jsonl"
