"""The gateway image on a base image without git: the build installs git with apt-get."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from devaipod.runtime.gateway_image import ensure_gateway_image
from support.sessions import podman

pytestmark = pytest.mark.e2e


@pytest.fixture
def base_without_git(podman_env: dict[str, str], test_image: str) -> Iterator[str]:
    """Return a copy of the test image (python3 3.11) with git removed by apt-get."""
    suffix = secrets.token_hex(3)
    container = f"devaipod-test-nogit-{suffix}"
    image = f"localhost/devaipod-test-nogit:{suffix}"
    try:
        podman(
            "run", f"--name={container}", "--network=none", test_image, "sh", "-c",
            "apt-get remove -y -q git >/dev/null && ! command -v git",
        )  # fmt: skip
        podman("commit", "-q", container, image)
        yield image
    finally:
        podman("rm", "--force", "--time=0", container, check=False)
        podman("rmi", "--force", image, check=False)


def test_gateway_image_build_installs_git(base_without_git: str, test_image: str) -> None:
    lines: list[str] = []
    built = ensure_gateway_image(base_without_git, on_progress=lines.append)
    try:
        version = podman("run", "--rm", "--entrypoint=git", built.name, "--version").stdout
        broker = podman("run", "--rm", built.name, "--version").stdout
    finally:
        podman("rmi", "--force", built.name, check=False)
        # The build removed the other gateway images; later tests reuse this one.
        ensure_gateway_image(test_image)

    assert not built.reused
    assert any("has no git: the build installs it" in line for line in lines), lines
    assert version.startswith("git version"), version
    assert broker.strip() != ""
