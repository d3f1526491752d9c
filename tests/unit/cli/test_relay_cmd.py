"""Tests of `devaipod relay` run as a real subprocess: ready line, relaying, signals, errors."""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


class _Upper(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.read().upper())


@pytest.fixture
def upper_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket server that replies with the request upper-cased, after EOF."""
    path = tmp_path / "upper.sock"
    server = socketserver.ThreadingUnixStreamServer(str(path), _Upper)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()


def start_relay(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devaipod", "-v", "relay", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_relay_command_relays_until_sigterm(upper_socket: Path) -> None:
    process = start_relay("--map", f"127.0.0.1:0={upper_socket}", "--json")
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "listening"
        assert ready["maps"][0]["socket"] == str(upper_socket)
        port = ready["maps"][0]["port"]
        assert port > 0

        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"through the relay")
            client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
        assert reply == b"THROUGH THE RELAY"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "relay received a stop signal" in stderr
    assert "relay connection 1 opened" in stderr


def test_relay_command_invalid_map_exits_2() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "devaipod", "relay", "--map", "127.0.0.1:80"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2
    assert "invalid relay map '127.0.0.1:80'" in completed.stderr
    assert "Fix:" in completed.stderr


def test_relay_command_text_ready_lines(tmp_path: Path) -> None:
    first, second = tmp_path / "a.sock", tmp_path / "b.sock"
    process = start_relay("--map", f"127.0.0.1:0={first}", "--map", f"127.0.0.1:0={second}")
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(2)]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert lines[0].startswith("relaying 127.0.0.1:")
    assert lines[0].endswith(f"={first}")
    assert lines[1].endswith(f"={second}")
    assert process.returncode == 0
