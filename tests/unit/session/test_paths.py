"""Tests of session path helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.errors import UserError
from devaipod.session.paths import session_audit_path, session_dir


def test_session_dir_adds_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))

    assert session_dir("demo") == tmp_path / "sessions" / "devaipod-demo"
    assert session_dir("devaipod-demo") == tmp_path / "sessions" / "devaipod-demo"


@pytest.mark.parametrize("name", ["", "a/b", "..", "devaipod-"])
def test_session_dir_rejects_invalid(name: str) -> None:
    with pytest.raises(UserError):
        session_dir(name)


def test_audit_path_under_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))

    assert session_audit_path("demo") == tmp_path / "sessions" / "devaipod-demo" / "audit.jsonl"
    assert session_audit_path("devaipod-demo") == session_audit_path("demo")
