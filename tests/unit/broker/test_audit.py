"""Tests of the hash-chained audit log: writing, continuing, and detecting tampering."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from devaipod.broker.audit import (
    CHAIN_START,
    AuditFormatError,
    AuditLog,
    AuditWriteError,
    read_entries,
    verify_chain,
)


def write_log(path: Path, count: int, session: str = "devaipod-test") -> None:
    with AuditLog(path, session) as audit:
        for index in range(count):
            audit.record(
                kind="git-push",
                decision="allow" if index % 2 else "deny",
                reason=f"decision {index}",
                repository="https://example.test/org/repo",
                ref="refs/heads/devaipod/x",
                old_oid="0" * 40,
                new_oid=f"{index:040x}",
            )


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_record_writes_chained_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    write_log(path, 3)

    entries = read_entries(path)
    assert len(entries) == 3
    assert entries[0]["prev"] == CHAIN_START
    assert entries[0]["session"] == "devaipod-test"
    assert entries[0]["kind"] == "git-push"
    assert entries[0]["decision"] == "deny"
    assert entries[0]["ref"] == "refs/heads/devaipod/x"
    assert str(entries[0]["time"]).endswith("Z")
    assert "path" not in entries[0]
    assert entries[1]["prev"] != entries[2]["prev"]
    assert verify_chain(path).ok


def test_record_returns_entry_as_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    with AuditLog(path, "s") as audit:
        entry = audit.record(kind="api", decision="allow", reason="r", upstream_status=201, n=3)

    assert read_entries(path) == [entry]
    assert entry["upstream_status"] == 201
    assert entry["n"] == 3


def test_record_continues_existing_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    write_log(path, 2)
    write_log(path, 2, session="devaipod-other")

    result = verify_chain(path)
    assert result.ok, result.reason
    assert result.lines == 4


def test_two_writers_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, "gateway")
    second = AuditLog(path, "host")

    for _ in range(3):
        first.record(kind="git-fetch", decision="allow", reason="fetch")
        second.record(kind="session", decision="allow", reason="status")
    first.close()
    second.close()

    result = verify_chain(path)
    assert result.ok, result.reason
    assert result.lines == 6


def test_concurrent_threads_keep_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, "s")

    def write_many() -> None:
        for index in range(50):
            audit.record(kind="api", decision="allow", reason=f"call {index}")

    threads = [threading.Thread(target=write_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    audit.close()

    result = verify_chain(path)
    assert result.ok, result.reason
    assert result.lines == 200


def test_file_mode_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.jsonl"

    write_log(path, 1)

    assert path.stat().st_mode & 0o777 == 0o600


def test_secrets_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    token = "ghp_SECRETSECRETSECRET"

    with AuditLog(path, "s", secrets=[token]) as audit:
        audit.record(kind="api", decision="deny", reason=f"bad header {token}", detail=[token])

    text = path.read_text()
    assert token not in text
    assert "[redacted]" in text


def test_reserved_extra_field_rejected(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", "s") as audit, pytest.raises(ValueError):
        audit.record(kind="api", decision="allow", reason="r", prev="x")


def test_unserialisable_value_raises_write_error(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", "s") as audit, pytest.raises(AuditWriteError):
        audit.record(kind="api", decision="allow", reason="r", value=object())


def test_unwritable_directory_raises_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(AuditWriteError) as caught:
        AuditLog(blocker / "audit.jsonl", "s")

    assert str(blocker) in str(caught.value)


def test_write_to_full_device_raises_write_error(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", "s")
    os.close(audit._fd)
    audit._fd = os.open("/dev/full", os.O_WRONLY)

    with pytest.raises(AuditWriteError) as caught:
        audit.record(kind="api", decision="allow", reason="r")

    assert "cannot write audit log" in str(caught.value)
    audit.close()


def test_closed_log_raises_write_error(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", "s")
    audit.close()

    with pytest.raises(AuditWriteError):
        audit.record(kind="api", decision="allow", reason="r")


def test_verify_empty_file_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")

    result = verify_chain(path)

    assert result.ok
    assert result.lines == 0


def test_verify_edited_line_names_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    lines[2] = lines[2].replace(b'"decision":"deny"', b'"decision":"allow"')
    path.write_bytes(b"".join(lines))

    result = verify_chain(path)

    assert not result.ok
    assert result.first_bad_line == 3
    assert "edited" in result.reason


def test_verify_edited_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    lines = lines_of(path)
    lines[-1] = lines[-1].replace(b"decision 2", b"decision 9")
    path.write_bytes(b"".join(lines))

    result = verify_chain(path)

    assert result.first_bad_line == 3


def test_verify_rehashed_edit_caught_by_next(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 4)
    lines = lines_of(path)
    entry = json.loads(lines[1])
    entry["reason"] = "rewritten"
    del entry["hash"]
    body = json.dumps(entry, separators=(",", ":")).encode()[:-1]
    rehashed = body + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'
    lines[1] = rehashed
    path.write_bytes(b"".join(lines))

    result = verify_chain(path)

    assert result.first_bad_line == 3
    assert "does not follow line 2" in result.reason


def test_verify_deleted_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    del lines[1]
    path.write_bytes(b"".join(lines))

    result = verify_chain(path)

    assert result.first_bad_line == 2
    assert "removed" in result.reason


def test_verify_deleted_first_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    path.write_bytes(b"".join(lines_of(path)[1:]))

    result = verify_chain(path)

    assert result.first_bad_line == 1


def test_verify_reordered_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))

    result = verify_chain(path)

    assert result.first_bad_line == 3


def test_verify_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])

    result = verify_chain(path)

    assert result.first_bad_line == 3
    assert "incomplete" in result.reason


def test_verify_garbage_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    with path.open("ab") as handle:
        handle.write(b"not json\n")

    result = verify_chain(path)

    assert result.first_bad_line == 3
    assert "not valid JSON" in result.reason


def test_append_after_torn_line_keeps_evidence(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])

    write_log(path, 2)

    result = verify_chain(path)
    assert result.lines == 4
    assert result.first_bad_line == 2
    assert "not valid JSON" in result.reason


def test_read_entries_skips_with_callback(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    with path.open("ab") as handle:
        handle.write(b"torn{\n")
    problems: list[AuditFormatError] = []

    entries = read_entries(path, on_invalid=problems.append)

    assert len(entries) == 2
    assert len(problems) == 1
    assert "line 3" in str(problems[0])


def test_record_rejects_unknown_decision(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", "s") as audit, pytest.raises(ValueError):
        audit.record(kind="api", decision="maybe", reason="r")  # type: ignore[arg-type]


def test_read_entries_bad_line_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 1)
    with path.open("ab") as handle:
        handle.write(b"[1]\n")

    with pytest.raises(AuditFormatError) as caught:
        read_entries(path)

    assert "line 2" in str(caught.value)
