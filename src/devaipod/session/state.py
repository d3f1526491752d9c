"""A session's lifecycle state (planned, creating, running, stopped, failed) and its transitions.

The record is `state.json` in the session's state directory. Engine labels stay
the source of truth for which sessions exist: a session whose record is missing (after a
reinstall, say) is still listed, with its state derived from its containers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from devaipod.runtime.engine import ContainerInfo
from devaipod.session.paths import session_dir

log = logging.getLogger(__name__)


class SessionState(StrEnum):
    """Where a session is in its life."""

    PLANNED = "planned"
    CREATING = "creating"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.PLANNED: frozenset({SessionState.CREATING, SessionState.FAILED}),
    SessionState.CREATING: frozenset({SessionState.RUNNING, SessionState.FAILED}),
    SessionState.RUNNING: frozenset(
        {SessionState.STOPPED, SessionState.FAILED, SessionState.RUNNING}
    ),
    SessionState.STOPPED: frozenset(
        {SessionState.RUNNING, SessionState.FAILED, SessionState.STOPPED}
    ),
    SessionState.FAILED: frozenset(
        {SessionState.RUNNING, SessionState.STOPPED, SessionState.FAILED}
    ),
}


class InvalidTransition(Exception):
    """A state change that the lifecycle does not allow, naming both states."""

    def __init__(self, session: str, current: SessionState, target: SessionState) -> None:
        super().__init__(f"session {session} cannot go from {current} to {target}")
        self.current = current
        self.target = target


@dataclass
class SessionRecord:
    """What devaipod remembers about a session beyond its engine labels."""

    session: str
    state: SessionState
    source_kind: str = ""
    source_location: str = ""
    base_tips: list[str] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    remote_env: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    updated: str = ""

    def to_json(self) -> str:
        """Return the record as JSON text."""
        data = asdict(self)
        data["state"] = self.state.value
        return json.dumps(data, indent=2)


def _record_path(session: str) -> Path:
    return session_dir(session) / "state.json"


def load_record(session: str) -> SessionRecord | None:
    """Return the stored record of `session`, or None when there is none or it is unreadable."""
    path = _record_path(session)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["state"] = SessionState(data["state"])
        return SessionRecord(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as error:
        log.warning("ignoring unreadable session record %s: %s", path, error)
        return None


def save_record(record: SessionRecord) -> None:
    """Write `record` atomically."""
    path = _record_path(record.session)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".tmp-", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(record.to_json())
        temporary = Path(handle.name)
    os.replace(temporary, path)


def delete_record(session: str) -> None:
    """Forget `session`; a missing record is fine. Other files (the audit log) stay."""
    path = _record_path(session)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # not empty: the session directory keeps its audit log


def move_state(record: SessionRecord, target: SessionState, reason: str = "") -> SessionRecord:
    """Move `record` to `target` and persist it; this is the only place a state changes.

    Raises InvalidTransition when the lifecycle does not allow the change.
    """
    if target not in _TRANSITIONS[record.state]:
        raise InvalidTransition(record.session, record.state, target)
    log.info("session %s: %s -> %s %s", record.session, record.state, target, reason)
    record.state = target
    record.reason = reason
    record.updated = datetime.now(UTC).isoformat(timespec="seconds")
    save_record(record)
    return record


def observed_state(containers: list[ContainerInfo]) -> SessionState:
    """Derive a session's state from its containers, for sessions without a record.

    A session runs while any container runs: a headless agent container that finished
    its task exits, and the workspace keeps running.
    """
    if not containers:
        return SessionState.FAILED
    if any(container.running for container in containers):
        return SessionState.RUNNING
    return SessionState.STOPPED
