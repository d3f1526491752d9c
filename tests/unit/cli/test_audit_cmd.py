"""Tests of `devaipod audit`: table, JSON lines and chain verification, run as the real CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from devaipod import output
from devaipod.broker.audit import AuditLog
from devaipod.cli import main
from devaipod.session.paths import session_audit_path


def run_cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run `devaipod ARGS` in this process, through the same entry point as the console script."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv, sys.stdout, sys.stderr, os.environ.get("DEVAIPOD_STATE_DIR")
    sys.argv = ["devaipod", *args]
    sys.stdout, sys.stderr = stdout, stderr
    os.environ["DEVAIPOD_STATE_DIR"] = str(state_dir)
    code = 0
    try:
        main()
    except SystemExit as exit_request:
        code = exit_request.code if isinstance(exit_request.code, int) else 1
    finally:
        sys.argv, sys.stdout, sys.stderr, previous = saved
        if previous is None:
            del os.environ["DEVAIPOD_STATE_DIR"]
        else:
            os.environ["DEVAIPOD_STATE_DIR"] = previous
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def write_session_log(state_dir: Path, name: str = "demo") -> Path:
    os.environ["DEVAIPOD_STATE_DIR"] = str(state_dir)
    try:
        path = session_audit_path(name)
    finally:
        del os.environ["DEVAIPOD_STATE_DIR"]
    with AuditLog(path, f"devaipod-{name}") as audit:
        audit.record(
            kind="git-push",
            decision="allow",
            reason="devaipod: creates refs/heads/devaipod/demo",
            repository="http://127.0.0.1:9/repo.git",
            ref="refs/heads/devaipod/demo",
            old_oid="0" * 40,
            new_oid="a" * 40,
            upstream_status=200,
        )
        audit.record(
            kind="git-push",
            decision="deny",
            reason="devaipod: tags may not be pushed [v1]",
            ref="refs/tags/v1",
        )
    return path


def test_audit_table_by_session_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_session_log(tmp_path)
    # A terminal wide enough that no cell checked below wraps (a pipe gets plain lines).
    monkeypatch.setattr(output, "stdout", Console(force_terminal=True, width=250,
                                                  soft_wrap=True, highlight=False))

    result = run_cli("audit", "demo", state_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "refs/heads/devaipod/demo" in result.stdout
    assert "devaipod: tags may not be pushed [v1]" in result.stdout
    assert "deny" in result.stdout
    assert "200" in result.stdout
    assert "━" in result.stdout


def test_audit_accepts_prefixed_name(tmp_path: Path) -> None:
    write_session_log(tmp_path)

    result = run_cli("audit", "devaipod-demo", "--json", state_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_audit_json_lines(tmp_path: Path) -> None:
    path = write_session_log(tmp_path)

    result = run_cli("audit", "--file", str(path), "--json", state_dir=tmp_path)

    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entry["decision"] for entry in entries] == ["allow", "deny"]
    assert entries[0]["session"] == "devaipod-demo"
    assert entries[0]["upstream_status"] == 200


def test_audit_verify_ok(tmp_path: Path) -> None:
    write_session_log(tmp_path)

    result = run_cli("audit", "demo", "--verify", state_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "2 lines, hash chain intact" in result.stdout


def test_audit_verify_edited_line(tmp_path: Path) -> None:
    path = write_session_log(tmp_path)
    path.write_text(path.read_text().replace('"decision":"deny"', '"decision":"allow"'))

    result = run_cli("audit", "demo", "--verify", state_dir=tmp_path)

    assert result.returncode == 1
    assert "failed verification at line 2" in result.stderr
    assert "was edited" in result.stderr


def test_audit_verify_json_bad(tmp_path: Path) -> None:
    path = write_session_log(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[1])

    result = run_cli("audit", "--file", str(path), "--verify", "--json", state_dir=tmp_path)

    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert report["ok"] is False
    assert report["first_bad_line"] == 1


def test_audit_missing_session_log(tmp_path: Path) -> None:
    result = run_cli("audit", "nosuch", state_dir=tmp_path)

    assert result.returncode == 2
    assert "devaipod-nosuch/audit.jsonl not found" in result.stderr


def test_audit_needs_name_or_file(tmp_path: Path) -> None:
    result = run_cli("audit", state_dir=tmp_path)

    assert result.returncode == 2
    assert "give either a session NAME or --file FILE" in result.stderr


def test_audit_unreadable_entry_skipped(tmp_path: Path) -> None:
    path = write_session_log(tmp_path)
    with path.open("a") as handle:
        handle.write("not json\n")

    result = run_cli("audit", "--file", str(path), "--json", state_dir=tmp_path)

    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2
    assert "line 3 is not valid JSON" in result.stderr
    assert "--verify" in result.stderr


# An OSC title change, a screen clear, an 8-bit CSI and a right-to-left override.
HOSTILE_REF = "refs/heads/\x1b]0;owned\x07x\x1b[2J\x9b31m\u202edecoy"


def _write_hostile_log(path: Path) -> None:
    with AuditLog(path, "devaipod-demo") as audit:
        audit.record(kind="git-push", decision="deny", reason="devaipod: invalid ref \x1b[2J",
                     repository="http://127.0.0.1:9/repo.git", ref=HOSTILE_REF,
                     old_oid="0" * 40, new_oid="a" * 40)


def test_audit_table_escapes_control_sequences(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_hostile_log(path)

    result = run_cli("audit", "--file", str(path), state_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    for sequence in ("\x1b]0;owned", "\x1b[2J", "\x9b", "\x07", "\u202e"):
        assert sequence not in result.stdout
    assert "\\x1b" in result.stdout


def test_audit_json_escapes_c1_controls(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_hostile_log(path)

    result = run_cli("audit", "--file", str(path), "--json", state_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "\x9b" not in result.stdout
    assert "\x1b" not in result.stdout
    assert "\\u009b31m" in result.stdout


def test_audit_piped_lines_keep_values_whole(tmp_path: Path) -> None:
    write_session_log(tmp_path)

    # run_cli captures stdout in a StringIO, which is not a terminal, like a pipe.
    result = run_cli("audit", "demo", state_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    allowed = lines[0].split("\t")
    assert allowed[1:] == [
        "git-push", "allow", "http://127.0.0.1:9/repo.git",
        f"refs/heads/devaipod/demo {'0' * 10}..{'a' * 10}",
        "devaipod: creates refs/heads/devaipod/demo", "200",
    ]  # fmt: skip
    denied = lines[1].split("\t")
    assert denied[2] == "deny"
    assert denied[5] == "devaipod: tags may not be pushed [v1]"
    assert "━" not in result.stdout

