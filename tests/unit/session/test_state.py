"""The session lifecycle state machine and its stored record."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.runtime.engine import ContainerInfo
from devaipod.session.state import (
    InvalidTransition,
    SessionRecord,
    SessionState,
    load_record,
    move_state,
    observed_state,
)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))
    return tmp_path


def test_normal_lifecycle_persisted() -> None:
    record = SessionRecord(session="devaipod-x", state=SessionState.PLANNED)

    for target in (SessionState.CREATING, SessionState.RUNNING, SessionState.STOPPED):
        move_state(record, target)
        loaded = load_record("devaipod-x")
        assert loaded is not None
        assert loaded.state == target


def test_invalid_transition_names_states() -> None:
    record = SessionRecord(session="devaipod-x", state=SessionState.PLANNED)

    with pytest.raises(InvalidTransition, match="planned to running"):
        move_state(record, SessionState.RUNNING)


def test_stopped_cannot_go_back_to_creating() -> None:
    record = SessionRecord(session="devaipod-x", state=SessionState.STOPPED)

    with pytest.raises(InvalidTransition):
        move_state(record, SessionState.CREATING)


def test_missing_record_is_none() -> None:
    assert load_record("devaipod-none") is None


def container(state: str) -> ContainerInfo:
    return ContainerInfo(id="1", name="c", image="i", state=state)


def test_observed_state_from_containers() -> None:
    assert observed_state([container("running"), container("exited")]) == SessionState.RUNNING
    assert observed_state([container("exited"), container("created")]) == SessionState.STOPPED
    assert observed_state([]) == SessionState.FAILED
