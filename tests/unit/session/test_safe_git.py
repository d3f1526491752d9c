"""Tests of host-side git: credential values stay out of log lines and error messages."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from devaipod.session.safe_git import GitError, redact_credentials, run_git

CREDENTIAL = "session-credential-0123456789abcdef"


@pytest.mark.parametrize(
    "header",
    [
        f"Authorization: Bearer {CREDENTIAL}",
        f"authorization: basic {CREDENTIAL}",
        f"Authorization: token {CREDENTIAL}",
        f"Authorization: {CREDENTIAL}",
        f"PRIVATE-TOKEN: {CREDENTIAL}",
        f"Proxy-Authorization: Basic {CREDENTIAL}",
    ],
)
def test_redact_credentials_hides_header_values(header: str) -> None:
    redacted = redact_credentials(f"git config http.x.extraHeader {header}")

    assert CREDENTIAL not in redacted
    assert "[REDACTED]" in redacted


def test_redact_credentials_hides_url_passwords() -> None:
    redacted = redact_credentials(f"https://user:{CREDENTIAL}@forge.test/o/r.git")

    assert CREDENTIAL not in redacted


def test_run_git_logs_no_header_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    header = f"Authorization: Bearer {CREDENTIAL}"

    with caplog.at_level(logging.DEBUG, logger="devaipod.session.safe_git"):
        run_git(["config", "http.http://127.0.0.1:1/.extraHeader", header], cwd=tmp_path)

    assert "extraHeader" in caplog.text
    assert CREDENTIAL not in caplog.text
    stored = run_git(["config", "http.http://127.0.0.1:1/.extraHeader"], cwd=tmp_path)
    assert stored.stdout.strip() == header


def test_git_error_hides_header_value(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)

    # git echoes an invalid key in its error, so the header value reaches stderr.
    with pytest.raises(GitError) as raised:
        run_git(["config", f"Authorization: Bearer {CREDENTIAL}"], cwd=tmp_path)

    assert "key does not contain a section" in raised.value.message
    assert CREDENTIAL not in raised.value.message


def test_git_error_without_cwd_names_no_folder(tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    with pytest.raises(GitError) as raised:
        run_git(["clone", "--quiet", str(missing), str(tmp_path / "clone")])

    assert raised.value.message.startswith("git clone failed: ")
    assert "None" not in raised.value.message
