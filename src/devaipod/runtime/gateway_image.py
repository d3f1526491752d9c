"""The gateway image: devaipod, its dependencies and git on a Python base image.

Wheels are gathered on the host and installed with `pip --no-index` inside `podman build`,
which runs offline unless git must be installed. The tag hashes every input for reuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from devaipod import __version__
from devaipod.config import load_config
from devaipod.errors import EngineError, UserError
from devaipod.runtime.gateway_wheels import (
    TargetPython,
    download_wheels,
    installed_constraints,
    pack_devaipod_wheel,
    pip_version,
    runtime_requirements,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_IMAGE = "docker.io/library/python:3.11-slim"
BASE_IMAGE_ENV = "DEVAIPOD_GATEWAY_BASE_IMAGE"
IMAGE_REPOSITORY = "localhost/devaipod-gateway"
VENV = "/opt/devaipod"
LABEL_INPUTS = "devaipod.gateway-inputs"
MIN_PYTHON = (3, 11)

# Prints what wheel selection needs to know about the base image's Python as JSON.
_PROBE = """
import json, os, platform, shutil, sys
libc, version = platform.libc_ver()
if not libc and any(name.startswith("ld-musl") for name in os.listdir("/lib")):
    libc, version = "musl", "1.2"
print(json.dumps({"major": sys.version_info[0], "minor": sys.version_info[1],
    "implementation": sys.implementation.name, "machine": platform.machine(),
    "libc": libc, "libc_version": version, "git": shutil.which("git") is not None}))
"""

# The wheels are bind-mounted for the one RUN step, so they add no layer to the image.
# Buildah's layer cache ignores the content of bind mounts, so the inputs label comes
# first: new inputs then miss the cache. pip runs from its own wheel file, which works
# on base images that ship no pip.
_CONTAINERFILE = """\
FROM {base_image}
LABEL {label}={inputs_hash} devaipod.role=gateway-image
{git_step}RUN --mount=type=bind,source=wheels,target=/tmp/devaipod-wheels \\
    python3 -m venv --without-pip {venv} \\
    && {venv}/bin/python /tmp/devaipod-wheels/{pip_wheel}/pip install \\
        --no-index --no-cache-dir --disable-pip-version-check \\
        --find-links /tmp/devaipod-wheels {requirement} \\
    && {venv}/bin/devaipod --version
ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["{venv}/bin/devaipod"]
"""

# Added only when the base image has no git (the broker's mirror and the local upstream
# run it). This one step needs the network, so such a build runs with the engine's
# default network; a base image with git builds with --network=none.
_GIT_STEP = """\
RUN if command -v apt-get >/dev/null; then \\
        apt-get update && apt-get install -y --no-install-recommends git \\
        && rm -rf /var/lib/apt/lists/*; \\
    elif command -v apk >/dev/null; then apk add --no-cache git; \\
    else echo "no apt-get or apk to install git with" >&2; exit 1; fi \\
    && git --version
"""


@dataclass(frozen=True)
class GatewayImage:
    """A gateway image that exists locally, and what making it cost."""

    name: str
    inputs_hash: str
    base_image: str
    reused: bool
    seconds: float
    size_bytes: int


def resolve_base_image(explicit: str | None = None) -> str:
    """Return the base image: `explicit`, else DEVAIPOD_GATEWAY_BASE_IMAGE, else the config file."""
    if explicit:
        return explicit
    from_env = os.environ.get(BASE_IMAGE_ENV, "").strip()
    if from_env:
        return from_env
    configured = load_config().gateway.base_image
    return configured or DEFAULT_BASE_IMAGE


def wheel_cache_dir() -> Path:
    """Return the directory that keeps downloaded gateway wheels between builds."""
    return Path(platformdirs.user_cache_dir("devaipod")) / "gateway-wheels"


def ensure_gateway_image(
    base_image: str | None = None,
    *,
    podman: str = "podman",
    rebuild: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> GatewayImage:
    """Return the gateway image for the running devaipod, building it when its inputs changed.

    Raises UserError when the base image has no usable Python or the wheels cannot be
    gathered, and EngineError when podman fails.
    """
    progress = on_progress or (lambda message: log.info("%s", message))
    started = time.monotonic()
    base = resolve_base_image(base_image)

    with tempfile.TemporaryDirectory(prefix="devaipod-gateway-") as context_text:
        context = Path(context_text)
        wheels = context / "wheels"
        progress(f"checking the Python in {base}")
        target, has_git = _probe_base(base, podman)
        base_id = _podman(podman, "image", "inspect", "--format", "{{.Id}}", base).strip()

        devaipod_wheel = pack_devaipod_wheel(wheels)
        requirements = [*runtime_requirements(), f"pip=={pip_version()}"]
        constraints = installed_constraints(requirements)
        containerfile_template = _containerfile_template(has_git)
        inputs_hash = _hash_inputs(
            base_id, target, devaipod_wheel, requirements, constraints, containerfile_template
        )
        name = f"{IMAGE_REPOSITORY}:{_tag_safe(__version__)}-{inputs_hash[:12]}"

        if not rebuild and _image_exists(podman, name):
            log.info("reusing gateway image %s", name)
            return GatewayImage(
                name, inputs_hash, base, True, time.monotonic() - started, _size(podman, name)
            )

        progress(f"gathering wheels for Python {target.major}.{target.minor} ({target.machine})")
        download_wheels(target, requirements, constraints, wheels, wheel_cache_dir(), progress)
        pip_wheel = _find_pip_wheel(wheels)
        containerfile = context / "Containerfile"
        containerfile.write_text(
            containerfile_template.format(
                base_image=base,
                venv=VENV,
                pip_wheel=pip_wheel.name,
                requirement=f"devaipod=={_wheel_version(devaipod_wheel)}",
                label=LABEL_INPUTS,
                inputs_hash=inputs_hash,
            )
        )

        if not has_git:
            progress(f"{base} has no git: the build installs it with the network on")
        progress(f"building {name} from {base}")
        _build(podman, name, context, containerfile, progress, offline=has_git)

    _remove_other_images(podman, keep=name)
    image = GatewayImage(
        name, inputs_hash, base, False, time.monotonic() - started, _size(podman, name)
    )
    log.info("built gateway image %s in %.1f s (%d bytes)", name, image.seconds, image.size_bytes)
    return image


def probe_python(base_image: str, podman: str = "podman") -> TargetPython:
    """Run the base image's `python3` once and return what wheel selection needs."""
    return _probe_base(base_image, podman)[0]


def _probe_base(base_image: str, podman: str) -> tuple[TargetPython, bool]:
    """Return the base image's Python facts and whether it has git, from one container run."""
    completed = subprocess.run(
        [podman, "run", "--rm", "--network=none", "--entrypoint", "python3", base_image,
         "-c", _PROBE],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if completed.returncode != 0:
        # podman prints its pull retries before the final error, so the last line is the cause.
        stderr_lines = [line.strip() for line in completed.stderr.splitlines() if line.strip()]
        reason = f"exit code {completed.returncode}"
        if stderr_lines:
            reason = stderr_lines[-1][-500:]
        raise UserError(
            f"cannot run python3 in the gateway base image {base_image}: {reason}",
            fix=f"build or pull {base_image} first, or name an image with python3 >= "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} with --gateway-base-image, {BASE_IMAGE_ENV} "
            "or [gateway] base_image in the config file",
        )
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    if (data["major"], data["minor"]) < MIN_PYTHON or data["implementation"] != "cpython":
        raise UserError(
            f"the gateway base image {base_image} has {data['implementation']} "
            f"{data['major']}.{data['minor']}, and devaipod needs CPython "
            f">= {MIN_PYTHON[0]}.{MIN_PYTHON[1]}",
            fix=f"set {BASE_IMAGE_ENV} to an image such as {DEFAULT_BASE_IMAGE}",
        )
    if data["libc"] not in ("glibc", "musl"):
        raise UserError(
            f"unknown C library {data['libc']!r} in the gateway base image {base_image}",
            fix=f"use a glibc or musl based image such as {DEFAULT_BASE_IMAGE}",
        )
    target = TargetPython(
        major=int(data["major"]),
        minor=int(data["minor"]),
        implementation=str(data["implementation"]),
        machine=str(data["machine"]),
        libc=str(data["libc"]),
        libc_version=_parse_libc_version(str(data["libc_version"])),
    )
    return target, bool(data.get("git", False))


def _containerfile_template(has_git: bool) -> str:
    return _CONTAINERFILE.replace("{git_step}", "" if has_git else _GIT_STEP)


def _parse_libc_version(text: str) -> tuple[int, int]:
    numbers = re.findall(r"\d+", text)
    if not numbers:
        raise UserError(
            f"invalid C library version {text!r} in the gateway base image",
            fix=f"use a glibc or musl based image such as {DEFAULT_BASE_IMAGE}",
        )
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0


def _hash_inputs(
    base_id: str,
    target: TargetPython,
    devaipod_wheel: Path,
    requirements: list[str],
    constraints: list[str],
    containerfile_template: str,
) -> str:
    digest = hashlib.sha256()
    for part in (base_id, repr(target), *requirements, *constraints, containerfile_template):
        digest.update(part.encode() + b"\0")
    # The packed wheel is reproducible, but hashing its members keeps the key independent
    # of zip details.
    with zipfile.ZipFile(devaipod_wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()


def _tag_safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", version)


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def _find_pip_wheel(wheels: Path) -> Path:
    found = sorted(wheels.glob("pip-*.whl"))
    if not found:
        raise UserError(
            f"no pip wheel among the downloaded wheels in {wheels}",
            fix="check that pip can download itself (pip download pip)",
        )
    return found[-1]


def _build(
    podman: str,
    name: str,
    context: Path,
    containerfile: Path,
    progress: Callable[[str], None],
    *,
    offline: bool = True,
) -> None:
    network = ["--network=none"] if offline else []
    command = [podman, "build", *network, "--pull=missing", "-t", name,
               "-f", str(containerfile), str(context)]  # fmt: skip
    log.info("running %s", " ".join(command))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        tail = [*tail[-19:], line]
        progress(line)
    if process.wait() != 0:
        raise EngineError(
            f"podman build of the gateway image {name} failed (exit {process.returncode}): "
            + " | ".join(tail[-5:]),
            fix="rerun with -v to see the whole build output",
        )


def _remove_other_images(podman: str, keep: str) -> None:
    """Remove older gateway images; podman keeps those that a container still uses.

    A failure only logs a warning, because the new image is built and usable already.
    """
    try:
        listed = _podman(
            podman, "images", "--filter", f"reference={IMAGE_REPOSITORY}",
            "--format", "{{.Repository}}:{{.Tag}}",
        )  # fmt: skip
    except EngineError as error:
        # Another devaipod removing an image while podman lists them fails the listing.
        log.warning("listing older gateway images failed, none removed: %s", error.message)
        return
    for image in sorted(set(listed.split())):
        if image == keep or not image.startswith(f"{IMAGE_REPOSITORY}:"):
            continue
        removed = subprocess.run([podman, "rmi", image], capture_output=True, text=True)
        if removed.returncode == 0:
            log.info("removed the older gateway image %s", image)
        else:
            log.info("kept the older gateway image %s: %s", image, removed.stderr.strip()[-200:])


def _image_exists(podman: str, name: str) -> bool:
    completed = subprocess.run([podman, "image", "exists", name], capture_output=True)
    return completed.returncode == 0


def _size(podman: str, name: str) -> int:
    return int(_podman(podman, "image", "inspect", "--format", "{{.Size}}", name).strip())


def _podman(podman: str, *args: str) -> str:
    completed = subprocess.run([podman, *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise EngineError(
            f"podman {' '.join(args)} failed: {completed.stderr.strip()[-500:]}",
            fix="check that podman works (podman info)",
        )
    return completed.stdout
