"""Shared fixtures: the podman set-up of this machine and the local Debian test image."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def podman_env() -> Iterator[dict[str, str]]:
    """Return an environment in which podman works on this machine.

    Sets CONTAINERS_CONF in this process too, so devaipod commands that tests run
    in-process or as subprocesses reach the same engine configuration.
    """
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed; run .ci/run or scripts/install-deps")
    conf = os.environ.get("CONTAINERS_CONF")
    if not conf:
        conf = subprocess.run(
            [str(REPO_ROOT / "scripts" / "prepare-podman")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    previous = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = conf
    try:
        yield dict(os.environ)
    finally:
        if previous is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = previous


@pytest.fixture(scope="session")
def test_image(podman_env: dict[str, str]) -> str:
    """Return the name of the local Debian test image, building it when missing."""
    preset = os.environ.get("DEVAIPOD_TEST_IMAGE")
    if preset:
        return preset
    completed = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-test-image")],
        check=True,
        capture_output=True,
        text=True,
        env=podman_env,
    )
    return completed.stdout.strip().splitlines()[-1]
