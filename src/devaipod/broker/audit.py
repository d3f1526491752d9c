"""The broker's audit log: one JSON line per decision, hash-chained so that an edited,
removed or reordered line shows, and written with fsync before the decision takes effect.

Each line is a JSON object whose last two fields are `prev` and `hash`. `prev` is the
SHA-256 (hex) of the previous line's bytes without its newline, "0" * 64 on the first
line. `hash` is the SHA-256 of the line's own bytes before `,"hash":`. `hash` locates an
edit of a single line, including the last one, and `prev` catches removed and reordered
lines.

NOTE: the chain has no key and no anchor outside the file. Someone who can write the
file can drop lines from its end, rewrite the last line with a recomputed `hash`, or
rewrite every line from an edit onwards, and `verify_chain` still passes. Detecting that
needs the head hash recorded elsewhere (or a key the writer of the file does not hold).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

CHAIN_START = "0" * 64
REDACTED = "[redacted]"

_HASH_KEY = b',"hash":"'
_HASH_SUFFIX_LENGTH = len(_HASH_KEY) + 64 + len(b'"}')
_RESERVED_FIELDS = frozenset({"time", "session", "prev", "hash"})
_TAIL_CHUNK = 64 * 1024


class AuditWriteError(Exception):
    """The audit line could not be written; the caller must deny the operation."""


class AuditFormatError(ValueError):
    """A line of the audit log is not a JSON object."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking a log's hash chain; `first_bad_line` is 1-based."""

    ok: bool
    lines: int
    first_bad_line: int | None
    reason: str


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _redact(value: object, secrets: Sequence[str]) -> object:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(item, secrets) for item in value]
    return value


def _encode_line(entry: dict[str, object]) -> tuple[bytes, str]:
    """Serialise `entry` (ending with `prev`), append its `hash`, and return line and hash."""
    body = json.dumps(entry, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    prefix = body[:-1]
    line_hash = _sha256_hex(prefix)
    return prefix + _HASH_KEY + line_hash.encode("ascii") + b'"}', line_hash


def _read_last_line(fd: int, size: int) -> bytes:
    """Return the bytes of the file's last line, without its newline (b"" for an empty file)."""
    if size == 0:
        return b""
    end = size
    if os.pread(fd, 1, size - 1) == b"\n":
        end = size - 1

    collected = b""
    position = end
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        chunk = os.pread(fd, position - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return chunk[newline + 1 :] + collected
        collected = chunk + collected
        position = start
    return collected


class AuditLog:
    """An append-only audit log file for one session, safe to share between threads.

    Several processes may append to the same file: each append takes an exclusive
    `flock` and re-reads the last line when the file changed since this process wrote.
    """

    def __init__(self, path: Path, session: str, *, secrets: Sequence[str] = ()) -> None:
        self.path = path
        self.session = session
        # Values that must never reach the log (tokens, the session credential).
        self._secrets = [secret for secret in secrets if secret]
        self._lock = threading.Lock()
        self._known_size = -1
        self._prev = CHAIN_START
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if not existed:
                directory_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory_fd)
                finally:
                    os.close(directory_fd)
        except OSError as error:
            raise AuditWriteError(f"cannot open audit log {path}: {error.strerror}") from error
        log.debug("audit log %s opened for session %s", path, session)

    def close(self) -> None:
        """Close the file; later `record` calls raise AuditWriteError."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def record(
        self,
        *,
        kind: str,
        decision: Literal["allow", "deny"],
        reason: str,
        repository: str | None = None,
        ref: str | None = None,
        path: str | None = None,
        old_oid: str | None = None,
        new_oid: str | None = None,
        upstream_status: int | None = None,
        **extra: object,
    ) -> dict[str, object]:
        """Append one decision as a JSON line, fsync it, and return the entry as written.

        Fields that are None are left out. Raises AuditWriteError when the line cannot
        be serialised or written, so the caller can deny the operation.
        """
        if decision not in ("allow", "deny"):
            raise ValueError(f"audit decision must be 'allow' or 'deny', not {decision!r}")
        clashing = _RESERVED_FIELDS.intersection(extra)
        if clashing:
            raise ValueError(f"audit fields set by the log itself: {sorted(clashing)}")

        fields: dict[str, object] = {
            "kind": kind,
            "decision": decision,
            "reason": reason,
            "repository": repository,
            "ref": ref,
            "path": path,
            "old_oid": old_oid,
            "new_oid": new_oid,
            "upstream_status": upstream_status,
            **extra,
        }
        content = {key: value for key, value in fields.items() if value is not None}
        content = {key: _redact(value, self._secrets) for key, value in content.items()}

        with self._lock:
            return self._append(content)

    def _append(self, content: dict[str, object]) -> dict[str, object]:
        if self._fd < 0:
            raise AuditWriteError(f"audit log {self.path} is closed")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as error:
            raise AuditWriteError(f"cannot lock audit log {self.path}: {error.strerror}") from error

        try:
            size = os.fstat(self._fd).st_size
            separator = b""
            if size != self._known_size:
                self._prev = _sha256_hex(_read_last_line(self._fd, size)) if size else CHAIN_START
                if size and os.pread(self._fd, 1, size - 1) != b"\n":
                    # A torn last line (a crash mid-write) stays as evidence; verify flags it.
                    log.warning("audit log %s ends with an incomplete line", self.path)
                    separator = b"\n"

            now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            entry: dict[str, object] = {"time": now, "session": self.session, **content}
            entry["prev"] = self._prev
            try:
                line, line_hash = _encode_line(entry)
            except (TypeError, ValueError) as error:
                raise AuditWriteError(f"audit entry is not serialisable: {error}") from error

            data = separator + line + b"\n"
            self._known_size = -1
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)

            self._known_size = size + len(data)
            self._prev = _sha256_hex(line)
            entry["hash"] = line_hash
            return entry
        except OSError as error:
            raise AuditWriteError(
                f"cannot write audit log {self.path}: {error.strerror}"
            ) from error
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def _split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Split file bytes into lines; the flag is True when the last line lacks its newline."""
    if not data:
        return [], False
    lines = data.split(b"\n")
    if lines[-1] == b"":
        return lines[:-1], False
    return lines, True


def read_entries(
    path: Path, *, on_invalid: Callable[[AuditFormatError], None] | None = None
) -> list[dict[str, object]]:
    """Read every entry of an audit log.

    An unreadable line raises AuditFormatError naming it, unless `on_invalid` is given:
    then the error goes to `on_invalid` and the line is skipped.
    """
    lines, _ = _split_lines(path.read_bytes())
    entries = []
    for number, line in enumerate(lines, start=1):
        problem: AuditFormatError | None = None
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            problem = AuditFormatError(f"{path} line {number} is not valid JSON: {error}")
        else:
            if not isinstance(entry, dict):
                problem = AuditFormatError(f"{path} line {number} is not a JSON object")

        if problem is None:
            entries.append(entry)
        elif on_invalid is None:
            raise problem
        else:
            on_invalid(problem)
    return entries


def _line_problem(line: bytes, expected_prev: str, number: int) -> str | None:
    try:
        entry = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return f"line {number} is not valid JSON"
    if not isinstance(entry, dict):
        return f"line {number} is not a JSON object"

    suffix = line[-_HASH_SUFFIX_LENGTH:]
    if len(line) <= _HASH_SUFFIX_LENGTH or not suffix.startswith(_HASH_KEY):
        return f"line {number} has no hash field at its end"
    if _sha256_hex(line[:-_HASH_SUFFIX_LENGTH]) != entry.get("hash"):
        return f"line {number} was edited: its content does not match its hash"

    if entry.get("prev") != expected_prev:
        if number == 1:
            return "line 1 does not start the chain: lines before it were removed"
        return (
            f"line {number} does not follow line {number - 1}: "
            "a line between them was removed, or lines were reordered or rewritten"
        )
    return None


def verify_chain(path: Path) -> VerifyResult:
    """Check every line's hash and its link to the previous line; report the first bad line.

    Reads the file line by line, so the log's size does not bound memory. Raises OSError
    when the file cannot be read.
    """
    expected_prev = CHAIN_START
    number = 0
    first_bad: tuple[int, str] | None = None
    with path.open("rb") as handle:
        for raw_line in handle:
            number += 1
            if first_bad is not None:
                continue
            if not raw_line.endswith(b"\n"):
                reason = f"line {number} is incomplete (no newline at the end of the file)"
                first_bad = (number, reason)
                continue

            line = raw_line[:-1]
            problem = _line_problem(line, expected_prev, number)
            if problem:
                first_bad = (number, problem)
                continue
            expected_prev = _sha256_hex(line)

    if first_bad is not None:
        bad_line, reason = first_bad
        return VerifyResult(ok=False, lines=number, first_bad_line=bad_line, reason=reason)
    return VerifyResult(
        ok=True, lines=number, first_bad_line=None, reason=f"{number} lines, hash chain intact"
    )
