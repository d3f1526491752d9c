"""Shared fixtures: the podman set-up of this machine and the local Debian test image."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_ENV = "CONTAINERS_CONF"
GATEWAY_BASE_ENV = "DEVAIPOD_GATEWAY_BASE_IMAGE"


@pytest.fixture(scope="session")
def podman_env() -> Iterator[dict[str, str]]:
    """Return an environment in which podman works on this machine.

    Sets CONTAINERS_CONF in this process too, so devaipod commands that tests run
    in-process or as subprocesses reach the same engine configuration, and
    DEVAIPOD_GATEWAY_BASE_IMAGE to the test image when it is unset.
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
    previous = {name: os.environ.get(name) for name in (CONF_ENV, GATEWAY_BASE_ENV)}
    os.environ[CONF_ENV] = conf
    if not os.environ.get(GATEWAY_BASE_ENV):
        # `up` runs the gateway by default; the test image has python3 and git, so the
        # gateway image builds offline.
        os.environ[GATEWAY_BASE_ENV] = _test_image_name(dict(os.environ))
    try:
        yield dict(os.environ)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def test_image(podman_env: dict[str, str]) -> str:
    """Return the name of the local Debian test image, building it when missing."""
    return _test_image_name(podman_env)


def _test_image_name(env: dict[str, str]) -> str:
    preset = env.get("DEVAIPOD_TEST_IMAGE")
    if preset:
        return preset
    completed = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-test-image")],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return completed.stdout.strip().splitlines()[-1]
