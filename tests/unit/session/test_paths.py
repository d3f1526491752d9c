"""Tests of session path helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.errors import UserError
from devaipod.session.paths import _full_session_name, session_audit_path


def test_full_session_name_adds_prefix() -> None:
    assert _full_session_name("demo") == "devaipod-demo"
    assert _full_session_name("devaipod-demo") == "devaipod-demo"


@pytest.mark.parametrize("name", ["", "a/b", "..", "devaipod-"])
def test_full_session_name_rejects_invalid(name: str) -> None:
    with pytest.raises(UserError):
        _full_session_name(name)


def test_audit_path_under_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))

    assert session_audit_path("demo") == tmp_path / "sessions" / "devaipod-demo" / "audit.jsonl"
    assert session_audit_path("devaipod-demo") == session_audit_path("demo")
