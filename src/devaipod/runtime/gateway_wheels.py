"""Wheels for the gateway image: devaipod packed from its installed files, dependencies from pip.

Everything is gathered on the host, so the image build needs no index and no network.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import devaipod
from devaipod.errors import UserError

log = logging.getLogger(__name__)

DISTRIBUTION = "devaipod"
# A fixed timestamp makes the packed wheel byte-for-byte reproducible (zip needs >= 1980).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class TargetPython:
    """The base image's Python, as far as wheel compatibility tags need it."""

    major: int
    minor: int
    implementation: str
    machine: str
    libc: str  # "glibc" or "musl"
    libc_version: tuple[int, int]

    @property
    def abi(self) -> str:
        """Return the CPython ABI tag, such as cp311."""
        return f"cp{self.major}{self.minor}"

    def platform_tags(self) -> list[str]:
        """Return the manylinux or musllinux platform tags this Python accepts, newest first."""
        arch = self.machine
        major, minor = self.libc_version
        if self.libc == "musl":
            return [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
        tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
        # The legacy aliases of PEP 600: manylinux2014 = glibc 2.17, 2010 = 2.12, 1 = 2.5.
        for alias, needed in (("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5)):
            if major == 2 and minor >= needed:
                tags.append(f"{alias}_{arch}")
        return tags


def canonical_name(name: str) -> str:
    """Return the normalised project name of PEP 503 (lower case, runs of -_. as -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pack_devaipod_wheel(destination: Path) -> Path:
    """Write a wheel of the running devaipod, built from its installed files, into `destination`.

    Works for editable and regular installs alike, needs no build backend, and gives the
    same bytes for the same files.
    """
    distribution = importlib.metadata.distribution(DISTRIBUTION)
    version = distribution.version
    package_dir = Path(devaipod.__file__).resolve().parent
    dist_info = f"{DISTRIBUTION}-{version}.dist-info"
    wheel_path = destination / f"{DISTRIBUTION}-{version}-py3-none-any.whl"

    members: list[tuple[str, bytes]] = []
    for path in sorted(package_dir.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        relative = path.relative_to(package_dir.parent).as_posix()
        members.append((relative, path.read_bytes()))

    metadata = distribution.read_text("METADATA")
    if metadata is None:
        raise UserError(
            f"the installed {DISTRIBUTION} {version} has no METADATA file",
            fix="reinstall devaipod (pip install -e . in its source tree)",
        )
    members.append((f"{dist_info}/METADATA", metadata.encode()))
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        members.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    wheel_info = (
        "Wheel-Version: 1.0\nGenerator: devaipod\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    members.append((f"{dist_info}/WHEEL", wheel_info.encode()))

    record_lines = [f"{name},sha256={_urlsafe_digest(data)},{len(data)}" for name, data in members]
    record_lines.append(f"{dist_info}/RECORD,,")
    members.append((f"{dist_info}/RECORD", ("\n".join(record_lines) + "\n").encode()))

    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    log.info("packed %s (%d files)", wheel_path.name, len(members))
    return wheel_path


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def runtime_requirements() -> list[str]:
    """Return devaipod's declared runtime requirements (extras left out), as in its METADATA."""
    requires = importlib.metadata.requires(DISTRIBUTION) or []
    return [line for line in requires if "extra ==" not in line]


def installed_constraints(requirements: Iterable[str]) -> list[str]:
    """Return `name==version` of every installed distribution that `requirements` pull in.

    These pin the transitive dependencies to the versions devaipod runs with on the host.
    Environment markers are not evaluated, so the walk may include a few distributions
    the image does not need; pip ignores constraints on those.
    """
    pins: dict[str, str] = {}
    pending = [_requirement_name(line) for line in requirements]
    while pending:
        name = pending.pop()
        if name is None or name in pins:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins[name] = distribution.version
        for line in distribution.requires or []:
            if "extra ==" not in line:
                pending.append(_requirement_name(line))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _requirement_name(line: str) -> str | None:
    match = _NAME.match(line)
    return canonical_name(match.group(1)) if match else None


def pip_version() -> str:
    """Return the version of the pip that runs on the host, which the image bootstraps from."""
    try:
        return importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            "pip is not installed in devaipod's Python environment; the gateway image "
            "build uses it to download wheels",
            fix=f"install pip into that environment: {sys.executable} -m ensurepip",
        ) from None


def download_wheels(
    target: TargetPython,
    requirements: list[str],
    constraints: list[str],
    destination: Path,
    cache_dir: Path,
    on_progress: Callable[[str], None],
) -> None:
    """Download binary wheels of `requirements` for `target` into `destination`.

    Tries the wheel cache alone first, so a rebuild with unchanged pins works offline,
    and falls back to the package indexes of the host's pip configuration. Wheels fetched
    from an index are added to the cache.
    """
    destination.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirements_file = destination.parent / "requirements.txt"
    constraints_file = destination.parent / "constraints.txt"
    requirements_file.write_text("\n".join(requirements) + "\n")
    constraints_file.write_text("\n".join(constraints) + "\n")

    command = [
        sys.executable, "-m", "pip", "download",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--dest", str(destination),
        "--python-version", f"{target.major}.{target.minor}",
        "--implementation", "cp",
        "--abi", target.abi,
        "--abi", "abi3",
        "--abi", "none",
        *[option for tag in target.platform_tags() for option in ("--platform", tag)],
        "--find-links", str(cache_dir),
        "-r", str(requirements_file),
        "-c", str(constraints_file),
    ]  # fmt: skip

    on_progress(f"looking for {len(constraints)} pinned wheels in the cache {cache_dir}")
    offline = subprocess.run([*command, "--no-index"], capture_output=True, text=True)
    if offline.returncode == 0:
        log.info("gateway wheels all found in the cache %s", cache_dir)
        return

    log.info("wheel cache incomplete; downloading: %s", _tail(offline.stderr))
    on_progress("downloading wheels with pip (the host's pip configuration applies)")
    online = subprocess.run(command, capture_output=True, text=True)
    if online.returncode != 0:
        raise UserError(
            f"pip download of the gateway image's wheels failed: {_tail(online.stderr)}",
            fix="check that pip can reach a package index (pip config list), or fill the "
            f"wheel cache {cache_dir} with the wheels for Python {target.major}.{target.minor}",
        )
    for wheel in destination.glob("*.whl"):
        cached = cache_dir / wheel.name
        if not cached.exists():
            shutil.copy2(wheel, cached)


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
