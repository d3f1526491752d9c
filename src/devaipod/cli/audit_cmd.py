"""`devaipod audit`: show a session's audit log as a table or JSON lines, or verify its chain."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from devaipod import output
from devaipod.broker.audit import AuditFormatError, read_entries, verify_chain
from devaipod.errors import DevaipodError, UserError
from devaipod.session.paths import session_audit_path

SHORT_OID_LENGTH = 10

# Characters that would act on the terminal rather than show: C0 and C1 controls, DEL,
# and the bidirectional formatting marks that reorder text on screen.
_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_TERMINAL_CONTROLS = {
    code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]
} | {ord(char): f"\\u{ord(char):04x}" for char in _BIDI_CONTROLS}
# JSON output needs only DEL, C1 controls and bidirectional marks escaped, because
# json.dumps already escapes C0 controls. The replacements are valid JSON string escapes.
_JSON_CONTROLS = {code: f"\\u{code:04x}" for code in [0x7F, *range(0x80, 0xA0)]} | {
    ord(char): f"\\u{ord(char):04x}" for char in _BIDI_CONTROLS
}


def _resolve_path(name: str | None, file: Path | None) -> Path:
    if (name is None) == (file is None):
        raise UserError(
            "give either a session NAME or --file FILE",
            fix="run 'devaipod audit NAME' for a session, or 'devaipod audit --file PATH'",
        )
    path = file if file is not None else session_audit_path(name or "")
    if not path.is_file():
        hint = (
            "check the path"
            if file is not None
            else "check the session name; the log appears with the session's first decision"
        )
        raise UserError(f"audit log {path} not found", fix=hint)
    return path


def _short(oid: object) -> str:
    return str(oid)[:SHORT_OID_LENGTH] if oid else ""


def _target(entry: dict[str, object]) -> str:
    target = str(entry.get("ref") or entry.get("path") or "")
    old_oid, new_oid = entry.get("old_oid"), entry.get("new_oid")
    if old_oid or new_oid:
        target += f" {_short(old_oid)}..{_short(new_oid)}"
    return target


def _columns(entry: dict[str, object]) -> list[str]:
    """Return the table's columns for one entry, with terminal controls (tabs too) escaped.

    Audit entries hold agent-chosen strings (ref names, paths), which must not move the
    cursor, retitle the window, reorder what the reader sees or add a column.
    """
    time = str(entry.get("time", "")).replace("T", " ")[:19]
    status = entry.get("upstream_status")
    values = [
        time,
        entry.get("kind", ""),
        entry.get("decision", ""),
        entry.get("repository") or "",
        _target(entry),
        entry.get("reason", ""),
        "" if status is None else status,
    ]
    return [str(value).translate(_TERMINAL_CONTROLS) for value in values]


def _table(entries: list[dict[str, object]], path: Path) -> Table:
    table = Table(title=str(path), title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("kind")
    table.add_column("decision")
    table.add_column("repository")
    table.add_column("ref or path")
    table.add_column("reason")
    table.add_column("upstream", justify="right")

    for entry in entries:
        columns = _columns(entry)
        style = "green" if columns[2] == "allow" else "red"
        # Text cells, because entries hold agent-chosen strings that must not act as markup.
        cells = [Text(value) for value in columns]
        cells[2].stylize(style)
        table.add_row(*cells)
    return table


def _verify(path: Path, as_json: bool) -> None:
    result = verify_chain(path)
    if as_json:
        output.result(
            json.dumps(
                {
                    "file": str(path),
                    "ok": result.ok,
                    "lines": result.lines,
                    "first_bad_line": result.first_bad_line,
                    "reason": result.reason,
                }
            )
        )
        if not result.ok:
            raise click.exceptions.Exit(1)
        return

    if not result.ok:
        raise DevaipodError(
            f"audit log {path} failed verification at line {result.first_bad_line}: "
            f"{result.reason}",
            fix="treat the log as tampered with from that line on, and keep a copy as evidence",
        )
    output.result(f"ok: {path}: {result.reason}")


@click.command("audit")
@click.argument("name", required=False)
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read this audit log file instead of a session's.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per entry (JSON lines)."
)
@click.option(
    "--verify",
    is_flag=True,
    help="Check the hash chain instead; exit 1 and name the first bad line when it is broken.",
)
def audit(name: str | None, file: Path | None, as_json: bool, verify: bool) -> None:
    """Show the audit log of session NAME (with or without the devaipod- prefix).

    Every broker decision is one entry: time, kind, decision, repository, ref or path,
    reason, and the upstream's HTTP status. A terminal gets a table; a pipe or file gets
    one tab-separated line per entry with the same columns.
    """
    path = _resolve_path(name, file)
    if verify:
        _verify(path, as_json)
        return

    unreadable: list[AuditFormatError] = []
    entries = read_entries(path, on_invalid=unreadable.append)
    for problem in unreadable:
        output.warn(f"{problem}; the line is left out (check the log with --verify)")

    if as_json:
        for entry in entries:
            output.result(json.dumps(entry, ensure_ascii=False).translate(_JSON_CONTROLS))
        return
    if not entries:
        output.info(f"audit log {path} is empty")
        return
    if not output.stdout.is_terminal:
        # A table sized for an 80-column pipe cuts most cells, so grep, less and files get
        # one tab-separated line per entry with every value whole.
        for entry in entries:
            output.result("\t".join(_columns(entry)))
        return
    output.stdout.print(_table(entries, path))
