"""The machine's podman set-up runs the test image, as every other e2e test assumes."""

from __future__ import annotations

import subprocess
import uuid

import pytest

pytestmark = pytest.mark.e2e


def test_test_image_runs_git(podman_env: dict[str, str], test_image: str) -> None:
    name = f"devaipod-setup-check-{uuid.uuid4().hex[:8]}"
    try:
        completed = subprocess.run(
            ["podman", "run", "--name", name, "--rm", test_image, "git", "--version"],
            capture_output=True,
            text=True,
            env=podman_env,
            timeout=120,
        )
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, env=podman_env)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("git version")


def test_test_image_has_dev_user(podman_env: dict[str, str], test_image: str) -> None:
    completed = subprocess.run(
        ["podman", "run", "--rm", "--user", "dev", test_image, "id", "-u"],
        capture_output=True,
        text=True,
        env=podman_env,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "1000"
