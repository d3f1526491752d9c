"""Checks of the container engine set-up, each with the fix for a failure.

Recognises podman missing, no subordinate ids for a rootless user, and /dev/net/tun
closed to rootless networking. It also spots OCI runtimes that cannot raise
RLIMIT_NOFILE, which crun reports as "setrlimit RLIMIT_NOFILE" and runc as
"setting rlimit type 7".
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RLIMIT_FIX = (
    "the OCI runtime may not raise the open-files limit here: in containers.conf "
    "(~/.config/containers/containers.conf, or the file CONTAINERS_CONF names) set "
    '[containers] default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"], '
    "or for rootless podman run containers with --ulimit host"
)
CGROUP_FIX = 'set [engine] runtime = "runc" in containers.conf (and apt-get install runc)'


@dataclass(frozen=True)
class Check:
    """One check: its name, whether it passed, what was found, and the fix on failure."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def run_checks(program: str = "podman", probe_image: str | None = None) -> list[Check]:
    """Run every check in order; later checks are skipped when podman is missing."""
    checks: list[Check] = []
    path = shutil.which(program)
    if path is None:
        checks.append(
            Check(
                "engine",
                False,
                f"{program} not found on PATH",
                "install podman (Debian, Ubuntu: apt-get install podman; "
                "Fedora: dnf install podman)",
            )
        )
        return checks

    info = _podman_info(path)
    if isinstance(info, str):
        checks.append(Check("engine", False, f"podman info failed: {info}", _fix_for(info)))
        return checks
    version = info.get("version", {}).get("Version", "?")
    host = info.get("host", {})
    rootless = bool(host.get("security", {}).get("rootless"))
    runtime = host.get("ociRuntime", {}).get("name", "?")
    checks.append(
        Check(
            "engine",
            True,
            f"podman {version} at {path}, runtime {runtime}, "
            f"{'rootless' if rootless else 'rootful'}",
        )
    )

    if rootless:
        checks.append(_subid_check())
        checks.append(_tun_check())

    checks.append(_container_check(path, probe_image or _any_local_image(path)))
    return checks


def _podman_info(path: str) -> dict[str, Any] | str:
    completed = subprocess.run(
        [path, "info", "--format=json"], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        return completed.stderr.strip() or f"exit code {completed.returncode}"
    data: dict[str, Any] = json.loads(completed.stdout)
    return data


def _subid_check() -> Check:
    user = getpass.getuser()
    uid = str(os.getuid())
    missing = []
    for file_name in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(file_name).read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.split(":", 1)[0] in (user, uid) for line in lines):
            missing.append(file_name)
    if missing:
        return Check(
            "subordinate ids",
            False,
            f"no entry for {user} in {', '.join(missing)}",
            f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}, "
            "then podman system migrate",
        )
    return Check("subordinate ids", True, f"{user} has /etc/subuid and /etc/subgid entries")


def _tun_check() -> Check:
    try:
        mode = os.stat("/dev/net/tun").st_mode
    except OSError as error:
        return Check("/dev/net/tun", False, str(error), "load the tun module: modprobe tun")
    if not mode & stat.S_IWOTH:
        return Check(
            "/dev/net/tun",
            False,
            f"mode {stat.filemode(mode)}: rootless networking (slirp4netns) cannot open it",
            "sudo chmod 0666 /dev/net/tun (desktop distributions ship it that way)",
        )
    return Check("/dev/net/tun", True, f"mode {stat.filemode(mode)}")


def _any_local_image(path: str) -> str | None:
    completed = subprocess.run(
        [path, "images", "--format=json"], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        return None
    for row in json.loads(completed.stdout or "[]"):
        names = row.get("Names") or []
        if names:
            return str(names[0])
    return None


def _container_check(path: str, image: str | None) -> Check:
    if image is None:
        return Check(
            "run a container",
            True,
            "skipped: no local image to run (pull or build one, then run doctor again)",
        )
    completed = subprocess.run(
        [path, "run", "--rm", "--network=none", "--entrypoint=/bin/sh", image, "-c", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode == 0:
        return Check("run a container", True, f"ran /bin/sh in {image}")
    message = completed.stderr.strip()
    log.info("doctor: test container of %s failed: %s", image, message)
    return Check("run a container", False, message[-400:], _fix_for(message))


def _fix_for(message: str) -> str | None:
    if "RLIMIT_NOFILE" in message or "rlimit type 7" in message:
        return RLIMIT_FIX
    if "cgroup" in message and "crun" in message:
        return CGROUP_FIX
    if "newuidmap" in message or "subuid" in message:
        return (
            "give your user subordinate ids: sudo usermod --add-subuids 100000-165535 "
            "--add-subgids 100000-165535 $USER"
        )
    return None
