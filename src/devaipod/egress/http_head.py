"""Sans-IO pieces of the HTTP/1.1 proxy protocol: request heads, request targets
(CONNECT authority-form and absolute-form), Proxy-Authorization and chunked body framing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_MAX_CHUNK_LINE = 4096


class HeadError(ValueError):
    """A request head the proxy rejects, with `status` the HTTP status of the error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and header fields, in the order received."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def get(self, name: str) -> str | None:
        """Return the only value of a header, None when absent; raise HeadError if repeated."""
        values = self.get_all(name)
        if len(values) > 1:
            raise HeadError(400, f"repeated {name} header")
        return values[0] if values else None


def parse_request_head(data: bytes, *, max_headers: int) -> RequestHead:
    """Parse a request head ending in CRLF CRLF; raise HeadError on anything malformed."""
    if not data.endswith(b"\r\n\r\n"):
        raise HeadError(400, "request head does not end with an empty line")
    text = data[:-4].decode("latin-1")
    lines = text.split("\r\n")
    if any("\n" in line or "\r" in line or "\x00" in line for line in lines):
        raise HeadError(400, "bare CR, LF or NUL in request head")

    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HeadError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HeadError(400, "malformed request method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HeadError(505, f"unsupported protocol version {version[:20]!r}")

    header_lines = lines[1:]
    if len(header_lines) > max_headers:
        raise HeadError(431, f"more than {max_headers} header fields")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        if line[:1] in (" ", "\t"):
            raise HeadError(400, "obsolete line folding in header")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise HeadError(400, "malformed header field")
        headers.append((name, value.strip(" \t")))
    return RequestHead(method=method, target=target, version=version, headers=headers)


def split_authority(authority: str, *, default_port: int | None) -> tuple[str, int]:
    """Split `host:port` or `[ipv6]:port` into host text and port number.

    Raises HeadError when the port is missing (and there is no default) or invalid, and
    for unbracketed IPv6, whose port cannot be separated from the address.
    """
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise HeadError(400, "missing ']' in request target")
        host, rest = authority[: close + 1], authority[close + 1 :]
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise HeadError(400, "unexpected text after ']' in request target")
    elif authority.count(":") > 1:
        raise HeadError(400, "IPv6 addresses in a request target must be in brackets")
    else:
        host, colon, port_text_or_empty = authority.partition(":")
        port_text = port_text_or_empty if colon else None

    if host == "":
        raise HeadError(400, "empty host in request target")
    if port_text is None or port_text == "":
        if default_port is None:
            raise HeadError(400, "missing port in CONNECT target")
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise HeadError(400, "invalid port in request target")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise HeadError(400, "port out of range in request target")
    return host, port


@dataclass(frozen=True)
class AbsoluteTarget:
    """An `http://authority/path` request target split for forwarding."""

    authority: str
    host: str
    port: int
    origin_form: str


def parse_absolute_target(target: str) -> AbsoluteTarget:
    """Split an absolute-form `http://` target; other schemes and userinfo are rejected."""
    scheme, separator, rest = target.partition("://")
    if not separator:
        raise HeadError(400, "the proxy needs CONNECT or an absolute http:// request target")
    if scheme.lower() != "http":
        raise HeadError(400, f"unsupported scheme {scheme[:20]!r}: use CONNECT for https")

    end = len(rest)
    for delimiter in "/?#":
        position = rest.find(delimiter)
        if position != -1:
            end = min(end, position)
    authority, remainder = rest[:end], rest[end:]
    if "@" in authority:
        raise HeadError(400, "user information in the request target is not allowed")
    remainder = remainder.partition("#")[0]
    if remainder == "" or remainder.startswith("?"):
        remainder = "/" + remainder

    host, port = split_authority(authority, default_port=80)
    return AbsoluteTarget(authority=authority, host=host, port=port, origin_form=remainder)


def credential_matches(header_value: str, credential: str) -> bool:
    """Check a Proxy-Authorization value (Basic with any user, or Bearer) in constant time."""
    scheme, _, parameter = header_value.strip().partition(" ")
    expected = credential.encode("utf-8")
    parameter = parameter.strip()

    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(parameter, validate=True)
        except (binascii.Error, ValueError):
            return False
        _, colon, password = decoded.partition(b":")
        if not colon:
            return False
        return hmac.compare_digest(password, expected)
    if scheme.lower() == "bearer":
        return hmac.compare_digest(parameter.encode("utf-8", "surrogateescape"), expected)
    return False


class ChunkedBodyTracker:
    """Find where a chunked request body ends, so the proxy forwards exactly that body.

    `feed` returns how many of the given bytes belong to the body; once `done` is true
    the rest is not part of this request. Chunk extensions and trailers are passed on.
    """

    def __init__(self) -> None:
        self.done = False
        self._state = "size"
        self._line = b""
        self._remaining = 0

    def feed(self, data: bytes) -> int:
        position = 0
        while position < len(data) and not self.done:
            if self._state == "data":
                taken = min(self._remaining, len(data) - position)
                position += taken
                self._remaining -= taken
                if self._remaining == 0:
                    self._state = "data-end"
                continue
            position = self._feed_line(data, position)
        return position

    def _feed_line(self, data: bytes, position: int) -> int:
        end = data.find(b"\n", position)
        if end == -1:
            self._line += data[position:]
            self._check_line_length()
            return len(data)
        self._line += data[position : end + 1]
        self._check_line_length()
        line, self._line = self._line, b""
        if not line.endswith(b"\r\n"):
            raise HeadError(400, "chunked body line does not end with CRLF")
        content = line[:-2]

        if self._state == "size":
            size_text = content.split(b";", 1)[0].strip(b" \t")
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise HeadError(400, "invalid chunk size")
            if len(size_text) > 16:
                raise HeadError(400, "chunk size too large")
            self._remaining = int(size_text, 16)
            self._state = "data" if self._remaining else "trailer"
        elif self._state == "data-end":
            if content:
                raise HeadError(400, "chunk data longer than its size")
            self._state = "size"
        elif content == b"":
            self.done = True
        return end + 1

    def _check_line_length(self) -> None:
        if len(self._line) > _MAX_CHUNK_LINE:
            raise HeadError(400, "chunk size or trailer line too long")
