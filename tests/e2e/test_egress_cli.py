"""End-to-end test of `devaipod egress-proxy` run as a subprocess and used by curl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devaipod.broker.audit import read_entries, verify_chain

pytestmark = pytest.mark.e2e

CREDENTIAL = "cli-test-credential-abcdef"


@pytest.fixture
def http_target(tmp_path: Path) -> Iterator[int]:
    """A plain HTTP file server on 127.0.0.1 serving one file, index.html."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("hello through the proxy\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        yield int(line.split(" port ")[1].split(" ")[0])
    finally:
        process.terminate()
        process.wait(timeout=10)


def start_proxy(tmp_path: Path, *arguments: str) -> tuple[subprocess.Popen[str], int]:
    credential_file = tmp_path / "credential"
    credential_file.write_text(CREDENTIAL + "\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devaipod",
            "egress-proxy",
            "--listen",
            "127.0.0.1:0",
            "--credential-file",
            str(credential_file),
            "--audit-log",
            str(tmp_path / "audit.jsonl"),
            *arguments,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DEVAIPOD_STATE_DIR": str(tmp_path / "state")},
    )
    assert process.stdout is not None
    # The command prints its ready line once the socket listens; pytest-timeout bounds
    # the wait if it never does.
    ready = process.stdout.readline()
    if not ready.startswith("listening on "):
        process.kill()
        _, stderr = process.communicate(timeout=10)
        pytest.fail(f"egress-proxy did not start: {ready!r} {stderr}")
    return process, int(ready.strip().rpartition(":")[2])


def curl(proxy_port: int, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--proxy",
            f"http://127.0.0.1:{proxy_port}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_egress_proxy_command_serves_and_denies(tmp_path: Path, http_target: int) -> None:
    process, port = start_proxy(
        tmp_path,
        "--no-default-allow",
        "--allow",
        f"site.test:{http_target}",
        "--allow",
        f"127.0.0.1:{http_target}",
        "--resolve",
        "site.test=127.0.0.1",
        "--resolve",
        "inside.test=127.0.0.1",
        "--allow",
        "inside.test:443",
    )
    try:
        allowed = curl(
            port,
            f"http://site.test:{http_target}/index.html",
            "--proxy-user",
            f"agent:{CREDENTIAL}",
        )
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout == "hello through the proxy\n"

        tunnelled = curl(
            port,
            f"http://site.test:{http_target}/index.html",
            "--proxytunnel",
            "--proxy-user",
            f"agent:{CREDENTIAL}",
        )
        assert tunnelled.returncode == 0, tunnelled.stderr
        assert tunnelled.stdout == "hello through the proxy\n"

        no_credential = curl(port, f"http://site.test:{http_target}/index.html", "--include")
        assert no_credential.stdout.startswith("HTTP/1.1 407")

        default_host = curl(
            port, "https://api.anthropic.com/", "--proxy-user", f"agent:{CREDENTIAL}"
        )
        assert default_host.returncode != 0
        assert "403" in default_host.stderr

        loopback_name = curl(port, "https://inside.test/", "--proxy-user", f"agent:{CREDENTIAL}")
        assert loopback_name.returncode != 0
        assert "403" in loopback_name.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr

    audit_path = tmp_path / "audit.jsonl"
    entries = read_entries(audit_path)
    assert [entry["decision"] for entry in entries] == ["allow", "allow", "deny", "deny", "deny"]
    assert entries[0]["method"] == "GET"
    assert entries[1]["method"] == "CONNECT"
    assert entries[2]["reason"] == "missing proxy credential"
    assert entries[3]["reason"] == "host api.anthropic.com is not in the allowlist"
    assert "inside.test resolves to 127.0.0.1, a loopback address" in str(entries[4]["reason"])
    assert all(entry["session"] == "egress-proxy" for entry in entries)
    assert verify_chain(audit_path).ok
    assert CREDENTIAL not in audit_path.read_text()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--allow", "bad..host"], "invalid egress allowlist entry 'bad..host'"),
        (["--resolve", "site.test"], "invalid --resolve value 'site.test'"),
        (["--resolve", "site.test=not-an-ip"], "has no IP address"),
    ],
)
def test_egress_proxy_command_bad_input(tmp_path: Path, arguments: list[str], message: str) -> None:
    credential_file = tmp_path / "credential"
    credential_file.write_text(CREDENTIAL)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "devaipod",
            "egress-proxy",
            "--listen",
            "127.0.0.1:0",
            "--credential-file",
            str(credential_file),
            "--audit-log",
            str(tmp_path / "a.jsonl"),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEVAIPOD_STATE_DIR": str(tmp_path / "state")},
    )
    assert completed.returncode == 2
    assert message in completed.stderr


def test_egress_proxy_command_empty_credential(tmp_path: Path) -> None:
    credential_file = tmp_path / "credential"
    credential_file.write_text("\n")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "devaipod",
            "egress-proxy",
            "--listen",
            "127.0.0.1:0",
            "--credential-file",
            str(credential_file),
            "--audit-log",
            str(tmp_path / "a.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEVAIPOD_STATE_DIR": str(tmp_path / "state")},
    )
    assert completed.returncode == 2
    assert "is empty" in completed.stderr


def test_broker_egress_listen_option(tmp_path: Path, http_target: int) -> None:
    # The scope allows the target's address; the config file and --egress-allow add
    # entries of their own, so all three sources of the broker's allowlist are used.
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(
        "repos:\n"
        "  - input: {url: 'http://127.0.0.1:9/owner/repo.git', branch: main, allowHttp: true}\n"
        "    output: {targetBranch: devaipod/test}\n"
        f"network:\n  allow: ['127.0.0.1:{http_target}']\n"
    )
    config_file = tmp_path / "config.toml"
    config_file.write_text("[network]\nallow = ['config-entry.test']\n")
    credential_file = tmp_path / "credential"
    credential_file.write_text(CREDENTIAL + "\n")
    audit_path = tmp_path / "audit.jsonl"
    env = {
        **os.environ,
        "DEVAIPOD_STATE_DIR": str(tmp_path / "state"),
        "DEVAIPOD_CONFIG": str(config_file),
        "DEVAIPOD_FORGE_TOKEN": "forge-token-not-used-here",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devaipod",
            "broker",
            "--scope",
            str(scope_file),
            "--listen",
            "127.0.0.1:0",
            "--egress-listen",
            "127.0.0.1:0",
            "--egress-allow",
            "cli-entry.test:8443",
            "--credential-file",
            str(credential_file),
            "--audit-log",
            str(audit_path),
            "--session",
            "broker-egress",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        ready_line = process.stdout.readline()
        if not ready_line:
            process.kill()
            pytest.fail(f"broker exited early: {process.communicate(timeout=10)[1]}")
        ready = json.loads(ready_line)
        egress_port = int(ready["egress_proxy"].rpartition(":")[2])

        allowed = curl(
            egress_port,
            f"http://127.0.0.1:{http_target}/index.html",
            "--proxy-user",
            f"agent:{CREDENTIAL}",
        )
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout == "hello through the proxy\n"

        unlisted = curl(
            egress_port,
            f"http://127.0.0.1:{http_target + 1}/",
            "--proxy-user",
            f"agent:{CREDENTIAL}",
            "--include",
        )
        assert unlisted.stdout.startswith("HTTP/1.1 403")

        # A request on another port of a listed name is denied before any DNS lookup, and
        # the reason names the entry's port, which shows the entry is in the allowlist.
        config_entry = curl(
            egress_port, "http://config-entry.test/", "--proxy-user", f"agent:{CREDENTIAL}"
        )
        assert "(allowed: 443)" in config_entry.stdout
        cli_entry = curl(
            egress_port, "http://cli-entry.test/", "--proxy-user", f"agent:{CREDENTIAL}"
        )
        assert "(allowed: 8443)" in cli_entry.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr

    entries = [entry for entry in read_entries(audit_path) if entry["kind"] == "egress"]
    assert [entry["decision"] for entry in entries] == ["allow", "deny", "deny", "deny"]
    assert all(entry["session"] == "broker-egress" for entry in entries)
    assert (
        entries[1]["reason"]
        == f"IP address 127.0.0.1 port {http_target + 1} is not in the allowlist"
    )
