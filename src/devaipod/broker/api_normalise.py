"""Normalise an agent's forge API request: path segments, query, headers and JSON body.

Each function raises Denied with a reason when the request uses a form
that no API client needs, such as dot segments, double encoding or `Sudo`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from devaipod.config import ForgeKind

# Request bodies larger than this are denied; comment and pull request bodies are far smaller.
MAX_BODY_BYTES = 1024 * 1024

# Headers whose presence denies the request: impersonation, one-time passwords and
# method overrides that would make the forge run another operation than the one checked.
_DENIED_HEADERS = frozenset({
    "sudo", "x-forgejo-otp", "x-gitea-otp", "x-http-method-override", "x-http-method",
    "x-method-override",
})
# Headers that carry the agent's session credential. They are checked by the gate's
# server and then dropped here, so the agent's value never reaches the forge.
STRIPPED_AUTH_HEADERS = frozenset({
    "authorization", "private-token", "job-token", "cookie", "proxy-authorization",
})
# Request headers passed to the forge; every other header is dropped.
_FORWARDED_HEADERS = frozenset({
    "accept", "x-github-api-version", "if-none-match", "if-modified-since",
})
# Query parameters that carry credentials or impersonation, denied on every request.
_DENIED_QUERY_PARAMETERS = frozenset({"sudo", "private_token", "access_token", "token",
                                      "job_token"})
_READ_QUERY_PARAMETERS: dict[ForgeKind, frozenset[str]] = {
    "github": frozenset({"page", "per_page", "since"}),
    "gitlab": frozenset({"page", "per_page", "sort", "order_by"}),
    "forgejo": frozenset({"page", "limit", "since", "before"}),
}
_QUERY_VALUE = {
    "page": re.compile(r"^[0-9]{1,6}$"),
    "per_page": re.compile(r"^[0-9]{1,3}$"),
    "limit": re.compile(r"^[0-9]{1,3}$"),
    "since": re.compile(r"^[0-9T:.+Z-]{1,40}$"),
    "before": re.compile(r"^[0-9T:.+Z-]{1,40}$"),
    "sort": re.compile(r"^(asc|desc)$"),
    "order_by": re.compile(r"^(created_at|updated_at)$"),
}
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{0,200}$")


class Denied(Exception):
    """A request the gate rejects, with the `reason` and the `operation` it attempted."""

    def __init__(self, reason: str, operation: str = "unknown") -> None:
        super().__init__(reason)
        self.reason = reason
        self.operation = operation


def normalise_path(kind: ForgeKind, raw_path: str) -> list[str]:
    """Split a raw API path into segments, percent-decoded once.

    Repeated and trailing slashes are dropped. Dot segments, double encoding,
    backslashes, control characters and encoded slashes are denied, except the
    encoded slashes of a GitLab project path (`/projects/group%2Fproject`).
    Raises Denied.
    """
    if not raw_path.startswith("/"):
        raise Denied("the path does not start with /")
    if not raw_path.isascii() or any(ord(char) < 0x21 or char in "\\#" for char in raw_path):
        raise Denied("the path contains non-ASCII, control, backslash or # characters")

    segments: list[str] = []
    for raw_segment in raw_path.split("/"):
        if raw_segment == "":
            continue
        try:
            segment = urllib.parse.unquote(raw_segment, errors="strict")
        except UnicodeDecodeError:
            raise Denied(f"path segment {raw_segment!r} is not UTF-8 after decoding") from None
        if segment in (".", ".."):
            raise Denied("the path contains a dot segment")
        if "%" in segment:
            raise Denied(f"path segment {raw_segment!r} is percent-encoded twice")
        if any(ord(char) < 0x21 or char == "\\" for char in segment):
            raise Denied(f"path segment {raw_segment!r} decodes to a control or space character")
        is_gitlab_project = kind == "gitlab" and len(segments) == 1 and segments[0] == "projects"
        if "/" in segment and not is_gitlab_project:
            raise Denied(f"path segment {raw_segment!r} contains an encoded slash")
        if is_gitlab_project and any(part in ("", ".", "..") for part in segment.split("/")):
            raise Denied(f"project path {segment!r} contains an empty or dot segment")
        segments.append(segment)
    return segments


def normalise_query(kind: ForgeKind, query: str, *, is_write: bool) -> dict[str, str]:
    """Parse the query string and keep only the known read parameters.

    Writes take no query (GitLab would read write parameters from it). Credential
    and impersonation parameters, repeated keys and unknown keys are denied.
    Raises Denied.
    """
    if not query:
        return {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True,
                                       errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise Denied("the query string is malformed") from None

    parameters: dict[str, str] = {}
    for name, value in pairs:
        folded = name.casefold()
        if folded in _DENIED_QUERY_PARAMETERS:
            raise Denied(f"query parameter {name!r} is denied (credentials or impersonation)")
        if is_write:
            raise Denied(f"query parameter {name!r} on a write request")
        if name not in _READ_QUERY_PARAMETERS[kind]:
            raise Denied(f"query parameter {name!r} is not allowed")
        if name in parameters:
            raise Denied(f"query parameter {name!r} is repeated")
        if not _QUERY_VALUE[name].fullmatch(value):
            raise Denied(f"query parameter {name!r} has an invalid value")
        parameters[name] = value
    return parameters


def normalise_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Return the headers to forward, dropping the agent's credential headers.

    Impersonation (`Sudo`), one-time-password and method-override headers are
    denied. Raises Denied.
    """
    forwarded: dict[str, str] = {}
    for name, value in headers:
        folded = name.casefold()
        if folded in STRIPPED_AUTH_HEADERS:
            continue
        if folded in _DENIED_HEADERS:
            raise Denied(f"header {name!r} is denied (impersonation or method override)")
        if folded in _FORWARDED_HEADERS:
            if not _HEADER_VALUE.fullmatch(value):
                raise Denied(f"header {name!r} has an invalid value")
            forwarded[folded] = value
    return forwarded


def parse_json_body(method: str, headers: Sequence[tuple[str, str]], body: bytes
                    ) -> dict[str, Any] | None:
    """Parse a write's JSON object body; reads and deletes must have none.

    Bodies over MAX_BODY_BYTES, non-JSON content types, duplicate keys and
    non-object documents are denied. Raises Denied.
    """
    if len(body) > MAX_BODY_BYTES:
        raise Denied(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    if method in ("GET", "DELETE"):
        if body:
            raise Denied(f"a {method} request must not have a body")
        return None
    if not body:
        return None

    content_type = next((value for name, value in headers if name.casefold() == "content-type"),
                        "")
    media_type = content_type.split(";", 1)[0].strip().casefold()
    if media_type != "application/json":
        raise Denied(f"a write must have Content-Type application/json, not {media_type!r}")

    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise Denied(f"the JSON body repeats the key {key!r}")
            result[key] = value
        return result

    def reject_constant(name: str) -> None:
        raise Denied(f"the JSON body contains {name}")

    try:
        document = json.loads(body.decode("utf-8"), object_pairs_hook=reject_duplicates,
                              parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise Denied("the request body is not valid UTF-8 JSON") from None
    except RecursionError:
        raise Denied("the JSON body is nested too deeply") from None
    if not isinstance(document, dict):
        raise Denied("the JSON body must be an object")
    return document
