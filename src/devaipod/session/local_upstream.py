"""The local upstream: the user's own repository served by `git http-backend` behind a token.

The gateway container runs it on its loopback, so the broker fetches from and pushes to
the user's repository over smart HTTP like any forge, and needs no network.
"""

from __future__ import annotations

import base64
import hmac
import http.server
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, BinaryIO
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Settings given to every git the server runs. They override the repository's own config,
# so a repository cannot make the server run hooks, an fsmonitor or a credential helper.
SAFE_GIT_CONFIG = {
    "http.receivepack": "true",
    "http.uploadpack": "true",
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "credential.helper": "",
    "safe.directory": "*",
    "receive.fsckObjects": "true",
}


def safe_git_env(project_root: Path) -> dict[str, str]:
    """Return the environment of `git http-backend`: no user or system config, SAFE_GIT_CONFIG."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_COUNT": str(len(SAFE_GIT_CONFIG)),
    }
    for index, (key, value) in enumerate(SAFE_GIT_CONFIG.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def presented_secret(header: str | None) -> str | None:
    """Return the password of a Basic header or the token of a Bearer header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def make_server(
    project_root: Path, token: str, host: str, port: int
) -> http.server.ThreadingHTTPServer:
    """Return a threaded HTTP server that runs `git http-backend` for each authorized request."""
    handler = _make_handler(project_root, token)
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _make_handler(project_root: Path, token: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: each response ends by closing the connection, so the CGI output streams
        # through without a length.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            # The request line contains no secret, and headers are not logged.
            log.info("local upstream: " + format, *args)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            secret = presented_secret(self.headers.get("Authorization"))
            if secret is None or not hmac.compare_digest(secret.encode(), token.encode()):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="devaipod local upstream"')
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"authentication required\n")
                return
            split = urlsplit(self.path)
            with tempfile.TemporaryFile() as body:
                length = self._read_body(body)
                body.seek(0)
                self._run_backend(split.path, split.query, body, length)

        def _read_body(self, sink: BinaryIO) -> int:
            total = 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return total
                    sink.write(self.rfile.read(size))
                    self.rfile.readline()
                    total += size
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                sink.write(chunk)
                remaining -= len(chunk)
                total += len(chunk)
            return total

        def _run_backend(self, path: str, query: str, body: BinaryIO, length: int) -> None:
            env = safe_git_env(project_root)
            env.update(
                {
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(length),
                    "REMOTE_ADDR": "127.0.0.1",
                    "REMOTE_USER": "devaipod-broker",
                    "SERVER_PROTOCOL": "HTTP/1.0",
                    "GATEWAY_INTERFACE": "CGI/1.1",
                }
            )
            for header, variable in (
                ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
            ):
                value = self.headers.get(header)
                if value:
                    env[variable] = value
            process = subprocess.Popen(
                ["git", "http-backend"],
                stdin=body,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            assert process.stdout is not None and process.stderr is not None
            status, headers = _read_cgi_headers(process.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            shutil.copyfileobj(process.stdout, self.wfile, 1 << 16)
            errors = process.stderr.read().decode(errors="replace").strip()
            if process.wait() != 0 or errors:
                log.warning("git http-backend for %s: exit %s %s", path, process.returncode, errors)

    return Handler


def _read_cgi_headers(stream: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stream.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
        if name.lower() == "status":
            status = int(value.strip().split(" ")[0])
        else:
            headers.append((name.strip(), value.strip()))
