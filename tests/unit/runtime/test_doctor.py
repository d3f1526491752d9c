"""Doctor checks against fake podman programs: missing engine, rlimit errors, success."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.runtime.doctor import RLIMIT_FIX, run_checks

INFO = (
    '{"version": {"Version": "4.3.1"}, '
    '"host": {"security": {"rootless": false}, "ociRuntime": {"name": "runc"}}}'
)


def fake_podman(directory: Path, run_stderr: str, run_exit: int) -> str:
    script = directory / "podman"
    script.write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = info ]; then echo '{INFO}'; exit 0; fi\n"
        "if [ \"$1\" = images ]; then echo '[]'; exit 0; fi\n"
        f"if [ \"$1\" = run ]; then echo '{run_stderr}' >&2; exit {run_exit}; fi\n"
        "exit 0\n"
    )
    script.chmod(0o755)
    return str(script)


def test_missing_engine_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    checks = run_checks("podman")

    assert [check.ok for check in checks] == [False]
    assert checks[0].fix is not None
    assert "apt-get install podman" in checks[0].fix


@pytest.mark.parametrize(
    "message",
    [
        "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied",
        "Error: runc: error setting rlimit type 7: operation not permitted",
    ],
)
def test_rlimit_error_gets_fix(tmp_path: Path, message: str) -> None:
    program = fake_podman(tmp_path, message, 126)

    checks = run_checks(program, probe_image="img")

    assert checks[0].ok
    assert checks[-1].ok is False
    assert checks[-1].fix == RLIMIT_FIX


def test_working_engine_passes(tmp_path: Path) -> None:
    program = fake_podman(tmp_path, "", 0)

    checks = run_checks(program, probe_image="img")

    assert all(check.ok for check in checks)
    assert "podman 4.3.1" in checks[0].detail


def test_no_image_skips_run(tmp_path: Path) -> None:
    program = fake_podman(tmp_path, "", 1)

    checks = run_checks(program)

    assert checks[-1].ok
    assert "skipped" in checks[-1].detail
