"""A real smart-HTTP git upstream for tests: `git http-backend` behind a token check.

`GitHttpServer` is a small threaded CGI host on 127.0.0.1 that runs `git
http-backend` for each request and records what reached it, so tests can
assert which requests the upstream saw and which credential they carried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO
from urllib.parse import urlsplit

GIT_IDENTITY_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
}

_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie"}


def isolated_git_env(home: Path | None = None) -> dict[str, str]:
    """Return an environment for running `git` without the user's or system's config."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in {"HOME", "XDG_CONFIG_HOME"}
    }
    env.update(GIT_IDENTITY_ENV)
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    if home is not None:
        env["HOME"] = str(home)
    return env


def run_git(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` with an isolated environment and fail the test on a non-zero exit."""
    completed = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env if env is not None else isolated_git_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed with exit code {completed.returncode}:\n"
            f"{completed.stderr}"
        )
    return completed


def create_bare_repo(
    root: Path,
    name: str,
    files: dict[str, bytes | str] | None = None,
    *,
    branch: str = "main",
    message: str = "Initial commit",
) -> Path:
    """Create the bare repository `root/name` with one commit of `files` on `branch`."""
    bare = root / name
    run_git("init", "--bare", "--quiet", f"--initial-branch={branch}", str(bare))

    with tempfile.TemporaryDirectory(prefix="devaipod-seed-") as work_dir:
        work = Path(work_dir)
        run_git("init", "--quiet", f"--initial-branch={branch}", str(work))
        for relative, content in (files or {"README.md": "seed\n"}).items():
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                path.write_bytes(content)
        run_git("add", "--all", cwd=work)
        run_git("commit", "--quiet", "-m", message, cwd=work)
        run_git("push", "--quiet", str(bare), f"HEAD:refs/heads/{branch}", cwd=work)

    return bare


def list_refs(bare: Path) -> dict[str, str]:
    """Return every ref of a repository as {refname: oid}."""
    listing = run_git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare).stdout
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        name, oid = line.split(" ")
        refs[name] = oid
    return refs


@dataclass
class RecordedRequest:
    """One request as the upstream received it, with secret headers removed."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    auth_scheme: str | None
    credential_sha256: str | None
    authorized: bool
    body_bytes: int = 0
    status: int = 0


@dataclass
class GitHttpServer:
    """A token-protected `git http-backend` host serving the bare repositories under `root`."""

    root: Path
    token: str
    bind_host: str = "127.0.0.1"
    """The address to listen on: loopback, or a test host such as podman's bridge address."""
    requests: list[RecordedRequest] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.bind_host}:{self.port}"

    def url(self, repo_name: str) -> str:
        """Return the clone URL of the repository `root/repo_name`."""
        return f"{self.base_url}/{repo_name}"

    def start(self) -> GitHttpServer:
        handler = _make_handler(self)
        self._server = http.server.ThreadingHTTPServer((self.bind_host, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="git-http-backend-host", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def receive_pack_posts(self) -> list[RecordedRequest]:
        """Return the recorded `POST .../git-receive-pack` requests (pushes that reached git)."""
        return [
            request
            for request in self.recorded()
            if request.method == "POST" and request.path.endswith("/git-receive-pack")
        ]


def _classify_authorization(header: str | None, token: str) -> tuple[str | None, str | None, bool]:
    """Return (scheme, sha256 of the presented secret, whether it equals `token`)."""
    if not header:
        return None, None, False
    scheme, _, value = header.partition(" ")
    secret: str | None = None
    if scheme.lower() == "bearer":
        secret = value.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return scheme, None, False
        secret = decoded.partition(":")[2]
    if secret is None:
        return scheme, None, False
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return scheme, digest, hmac.compare_digest(secret.encode(), token.encode())


def _make_handler(server: GitHttpServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: each response ends by closing the connection, so the CGI body streams
        # through without a length.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            split = urlsplit(self.path)
            scheme, digest, authorized = _classify_authorization(
                self.headers.get("Authorization"), server.token
            )
            recorded = RecordedRequest(
                method=self.command,
                path=split.path,
                query=split.query,
                headers={
                    key: value
                    for key, value in self.headers.items()
                    if key.lower() not in _SECRET_HEADERS
                },
                auth_scheme=scheme,
                credential_sha256=digest,
                authorized=authorized,
            )
            try:
                if not authorized:
                    recorded.status = 401
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test upstream"')
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"authentication required\n")
                    return
                with tempfile.TemporaryFile() as body:
                    recorded.body_bytes = self._read_body(body)
                    body.seek(0)
                    recorded.status = self._run_backend(split.path, split.query, body)
            finally:
                server.record(recorded)

        def _read_body(self, sink: BinaryIO) -> int:
            total = 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size_line = self.rfile.readline()
                    size = int(size_line.split(b";")[0].strip(), 16)
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

        def _run_backend(self, path: str, query: str, body: BinaryIO) -> int:
            env = isolated_git_env()
            body.seek(0, os.SEEK_END)
            length = body.tell()
            body.seek(0)
            env.update(
                {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.receivepack",
                    "GIT_CONFIG_VALUE_0": "true",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(length),
                    "REMOTE_ADDR": "127.0.0.1",
                    "REMOTE_USER": "upstream-user",
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
                stderr=subprocess.DEVNULL,
                env=env,
            )
            assert process.stdout is not None
            status, headers = _read_cgi_headers(process.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            shutil.copyfileobj(process.stdout, self.wfile, 1 << 16)
            process.wait()
            return status

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
