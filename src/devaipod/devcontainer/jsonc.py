"""JSON with Comments (JSONC) as devcontainer.json uses it.

Accepts `//` and `/* */` comments, trailing commas in objects and arrays, and a
leading UTF-8 BOM. Duplicate keys keep the last value at the first key's place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devaipod.errors import UserError

# This module uses a pre-pass plus the standard json module rather than json5.
# json5 accepts the whole JSON5 language (single-quoted strings, unquoted keys,
# hex numbers, Infinity and NaN). The reference CLI's jsonc-parser does not read
# those as values, so accepting them would silently give a configuration that
# differs from the editor's. json5 also reports error positions only inside its
# message text. The pre-pass blanks comments and trailing commas with spaces
# (line breaks kept), so json's error positions are those of the original file.

BOM = "\ufeff"
# Arrays and objects nested deeper than this are an error, because the recursive steps
# after parsing (substitution, validation) hit Python 3.11's recursion limit at about 500
# levels. NOTE: 200 is an estimate of what configs need; jsonc-parser has no limit.
MAX_NESTING_DEPTH = 200


@dataclass(frozen=True)
class JsoncSyntaxError(Exception):
    """A JSONC syntax error at a 1-based line and column."""

    message: str
    line: int
    column: int


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def strip_jsonc(text: str) -> str:
    """Return `text` with comments and trailing commas blanked out, as plain JSON.

    Every blanked character becomes a space except line breaks, so offsets,
    lines and columns are unchanged. Raises `JsoncSyntaxError` for an
    unterminated block comment.
    """
    chars = list(text)
    length = len(chars)
    index = 0
    pending_comma: int | None = None

    while index < length:
        char = chars[index]

        if char == '"':
            pending_comma = None
            start = index
            index += 1
            while index < length and chars[index] != '"':
                if chars[index] in "\r\n" or (
                    chars[index] == "\\" and index + 1 < length and chars[index + 1] in "\r\n"
                ):
                    line, column = _position(text, start)
                    raise JsoncSyntaxError("unterminated string (line break inside)", line, column)
                index += 2 if chars[index] == "\\" else 1
            index += 1
            continue

        if char == "/" and index + 1 < length and chars[index + 1] == "/":
            while index < length and chars[index] not in "\r\n":
                chars[index] = " "
                index += 1
            continue

        if char == "/" and index + 1 < length and chars[index + 1] == "*":
            end = text.find("*/", index + 2)
            if end == -1:
                line, column = _position(text, index)
                raise JsoncSyntaxError("unterminated block comment", line, column)
            for blank in range(index, end + 2):
                if chars[blank] not in "\r\n":
                    chars[blank] = " "
            index = end + 2
            continue

        if char == ",":
            # A second comma in a row is invalid; leaving both lets json report it.
            pending_comma = index if pending_comma is None else None
        elif char in "}]":
            if pending_comma is not None:
                chars[pending_comma] = " "
            pending_comma = None
        elif not char.isspace():
            pending_comma = None
        index += 1

    return "".join(chars)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_nesting(plain: str) -> None:
    """Raise `JsoncSyntaxError` at the first bracket nested deeper than MAX_NESTING_DEPTH."""
    depth = 0
    index = 0
    length = len(plain)
    while index < length:
        char = plain[index]
        if char == '"':
            index += 1
            while index < length and plain[index] != '"':
                index += 2 if plain[index] == "\\" else 1
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                line, column = _position(plain, index)
                raise JsoncSyntaxError(
                    f"arrays and objects nested deeper than {MAX_NESTING_DEPTH} levels",
                    line,
                    column,
                )
        elif char in "]}":
            depth -= 1
        index += 1


def parse_jsonc(text: str) -> Any:
    """Parse JSONC text and return the value; raise `JsoncSyntaxError` on invalid input."""
    if text.startswith(BOM):
        text = text[1:]
    plain = strip_jsonc(text)
    _check_nesting(plain)

    try:
        # strict=False accepts tabs and other control characters inside strings,
        # as jsonc-parser does; line breaks inside strings are rejected above.
        return json.loads(
            plain, object_pairs_hook=dict, parse_constant=_reject_constant, strict=False
        )
    except json.JSONDecodeError as error:
        raise JsoncSyntaxError(error.msg, error.lineno, error.colno) from error
    except ValueError as error:
        # parse_constant raised: NaN, Infinity or -Infinity somewhere in the text.
        line, column = _position(plain, _find_constant(plain))
        raise JsoncSyntaxError(str(error), line, column) from error


def _find_constant(plain: str) -> int:
    positions = [plain.find(name) for name in ("NaN", "-Infinity", "Infinity")]
    found = [position for position in positions if position >= 0]
    return min(found) if found else 0


def load_jsonc_object(path: Path) -> dict[str, Any]:
    """Read a JSONC file holding one object, as the devcontainer.json loader needs it.

    Raises `UserError` for an unreadable, empty, non-UTF-8 or invalid file, and
    for a file whose top-level value is not an object.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"dev container config {path} not found",
            fix="create it, or pass the path of an existing devcontainer.json with --config",
        ) from None
    except OSError as error:
        raise UserError(
            f"cannot read dev container config {path}: {error.strerror}",
            fix="check the file's permissions",
        ) from None

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path}: invalid UTF-8 at byte {error.start}",
            fix="save the file as UTF-8",
        ) from None

    if not text.strip(BOM + " \t\r\n"):
        raise UserError(
            f"dev container config {path} is empty",
            fix='put a JSON object in it, for example {"image": "debian:bookworm"}',
        )

    try:
        if not strip_jsonc(text.removeprefix(BOM)).strip():
            raise UserError(
                f"dev container config {path} contains only comments",
                fix='put a JSON object in it, for example {"image": "debian:bookworm"}',
            )
        value = parse_jsonc(text)
    except JsoncSyntaxError as error:
        raise UserError(
            f"{path}:{error.line}:{error.column}: invalid JSON: {error.message}",
            fix="correct the syntax at that line and column (comments and trailing commas "
            "are allowed)",
        ) from None

    if not isinstance(value, dict):
        raise UserError(
            f"dev container config {path} must contain a JSON object, not {json_type_name(value)}",
            fix="wrap the properties in { }",
        )
    _check_strings(value, path)
    return value


def _check_strings(value: dict[str, Any], path: Path) -> None:
    """Raise `UserError` for a key or string with a NUL or an unpaired UTF-16 surrogate.

    JSON escapes can spell both (`\\u0000`, `\\ud800`), but neither can reach a command
    line, a file name or UTF-8 output, so they are rejected here with the field's path.
    """
    pending: list[tuple[str, object]] = [("", value)]
    while pending:
        location, item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                child_location = f"{location}.{key}" if location else key
                _check_string(key, child_location, path)
                pending.append((child_location, child))
        elif isinstance(item, list):
            pending.extend((f"{location}[{index}]", child) for index, child in enumerate(item))
        elif isinstance(item, str):
            _check_string(item, location, path)


def _check_string(text: str, location: str, path: Path) -> None:
    problem = None
    if "\x00" in text:
        problem = "a NUL character (\\u0000)"
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problem = "an unpaired UTF-16 surrogate (\\ud800 to \\udfff)"
    if problem is not None:
        shown = json.dumps(location)[1:-1]
        raise UserError(
            f"{path}: invalid string at {shown}: it contains {problem}",
            fix="remove that escape from the string",
        )


def json_type_name(value: object) -> str:
    """Return the JSON name of a parsed value's type (object, array, string...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
