"""Drive podman through its command line, reading its JSON output.

Every call runs `podman ARGS` with the caller's environment (so `CONTAINERS_CONF` and
rootless settings apply) and raises `EngineError` with podman's message on failure.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from devaipod.errors import EngineError
from devaipod.runtime.engine import ContainerInfo, ExecResult, SessionObjects
from devaipod.runtime.plan import LABEL_SESSION

log = logging.getLogger(__name__)

_STDERR_TAIL = 2000


class PodmanEngine:
    """The podman CLI as an `Engine`."""

    def __init__(self, program: str = "podman") -> None:
        self.program = program

    def _resolve_program(self) -> str:
        path = shutil.which(self.program)
        if path is None:
            raise EngineError(
                f"container engine {self.program!r} not found on PATH",
                fix="install podman (apt-get install podman), then run `devaipod doctor`",
            )
        return path

    def run_engine(
        self,
        argv: Sequence[str],
        *,
        input_bytes: bytes | None = None,
        check: bool = True,
        timeout_seconds: float | None = None,
    ) -> ExecResult:
        """Run `podman ARGV` and return its output; raise EngineError on failure when `check`.

        With `timeout_seconds`, a podman call that runs longer is killed and raises
        EngineError whatever `check` is.
        """
        full = [self._resolve_program(), *argv]
        log.debug("running %s", " ".join(full[:8]))
        try:
            completed = subprocess.run(
                full, input=input_bytes, capture_output=True, check=False,
                timeout=timeout_seconds,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            log.warning("podman %s timed out after %s s", " ".join(argv[:2]), timeout_seconds)
            raise EngineError(
                f"podman {' '.join(argv[:2])} timed out after {timeout_seconds} s",
                fix="see `podman ps` for a stuck container",
            ) from None
        result = ExecResult(
            argv=list(full),
            returncode=completed.returncode,
            stdout=completed.stdout.decode("utf-8", "replace"),
            stderr=completed.stderr.decode("utf-8", "replace"),
        )
        if check and completed.returncode != 0:
            message = result.stderr.strip()[-_STDERR_TAIL:] or f"exit code {completed.returncode}"
            raise EngineError(
                f"podman {argv[0]} {argv[1] if len(argv) > 1 else ''} failed: {message}".replace(
                    "  ", " "
                ),
                fix=_fix_for(message),
            )
        return result

    def run_interactive(self, argv: Sequence[str]) -> int:
        """Run `podman ARGV` on the caller's terminal (attach, exec, logs); return its exit code."""
        full = [self._resolve_program(), *argv]
        log.debug("running %s on the terminal", " ".join(full[:8]))
        return subprocess.run(full, check=False).returncode

    def _json(self, argv: Sequence[str]) -> Any:
        text = self.run_engine(argv).stdout.strip()
        return json.loads(text) if text else []

    # Images

    def image_exists(self, image: str) -> bool:
        """Return whether `image` is in local storage."""
        return self.run_engine(["image", "exists", image], check=False).returncode == 0

    def inspect_image(self, image: str) -> dict[str, object]:
        """Return `podman image inspect` of `image`."""
        data = self._json(["image", "inspect", image])
        return cast(dict[str, object], data[0])

    def build_image(self, argv: Sequence[str]) -> None:
        """Run `podman build` with its progress shown on stderr (stdout carries results)."""
        full = [self._resolve_program(), *argv]
        log.info("building image: %s", " ".join(full))
        completed = subprocess.run(full, check=False, stdout=sys.stderr)
        if completed.returncode != 0:
            raise EngineError(
                f"podman build failed with exit code {completed.returncode}",
                fix="read the build output above and fix the Containerfile or build options",
            )

    # Volumes, networks, secrets

    def create_volume(self, argv: Sequence[str]) -> str:
        """Run `podman volume create ...` and return the volume name."""
        return self.run_engine(argv).stdout.strip()

    def import_volume(self, volume: str, tar_path: Path) -> None:
        """Fill `volume` from a tar archive."""
        self.run_engine(["volume", "import", volume, str(tar_path)])

    def export_volume(self, volume: str, tar_path: Path) -> None:
        """Write the contents of `volume` to a tar archive."""
        self.run_engine(["volume", "export", f"--output={tar_path}", volume])

    def create_network(self, argv: Sequence[str]) -> str:
        """Run `podman network create ...` and return the network name."""
        return self.run_engine(argv).stdout.strip()

    def create_secret(self, argv: Sequence[str], value: bytes) -> str:
        """Run `podman secret create ... -` with the value on stdin."""
        return self.run_engine(argv, input_bytes=value).stdout.strip()

    # Containers

    def create_container(self, argv: Sequence[str]) -> str:
        """Run `podman create ...` and return the container id."""
        return self.run_engine(argv).stdout.strip()

    def start_container(self, *names: str) -> None:
        """Start created or stopped containers (podman starts several in parallel)."""
        self.run_engine(["start", *names])

    def stop_container(self, name: str, timeout_seconds: int) -> None:
        """Stop a container, killing it after `timeout_seconds`."""
        self.run_engine(["stop", f"--time={timeout_seconds}", name])

    def inspect_container(self, name: str) -> dict[str, object] | None:
        """Return `podman container inspect` of `name`, or None when it does not exist."""
        result = self.run_engine(["container", "inspect", name], check=False)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout)
        return cast(dict[str, object], data[0]) if data else None

    def exec_in_container(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> ExecResult:
        """Run `command` in a running container and return its output, whatever its exit code.

        Raises EngineError when `timeout_seconds` pass first.
        """
        argv = ["exec"]
        if user:
            argv.append(f"--user={user}")
        if workdir:
            argv.append(f"--workdir={workdir}")
        for key, value in (env or {}).items():
            argv.append(f"--env={key}={value}")
        argv.extend([name, *command])
        return self.run_engine(argv, check=False, timeout_seconds=timeout_seconds)

    def list_containers(self, labels: dict[str, str | None]) -> list[ContainerInfo]:
        """Return every container (running or not) carrying all `labels` (None: any value)."""
        argv = ["ps", "--all", "--format=json"]
        for key, value in labels.items():
            argv.append(
                f"--filter=label={key}" if value is None else f"--filter=label={key}={value}"
            )
        rows = self._json(argv)
        return [_container_info(row) for row in rows]

    def session_objects(self, session: str) -> SessionObjects:
        """Return every container, volume, network and secret labelled with `session`."""
        label = f"label={LABEL_SESSION}={session}"
        # Four independent listings: run them at once, since each podman call costs ~0.1 s.
        with ThreadPoolExecutor(max_workers=4) as pool:
            containers = pool.submit(self.list_containers, {LABEL_SESSION: session})
            volumes = pool.submit(
                self._json, ["volume", "ls", "--format=json", f"--filter={label}"]
            )
            networks = pool.submit(
                self._json, ["network", "ls", "--format=json", f"--filter={label}"]
            )
            secrets = pool.submit(self._session_secrets, session)
            return SessionObjects(
                containers=containers.result(),
                volumes=[row["Name"] for row in volumes.result()],
                networks=[row["name"] for row in networks.result()],
                secrets=secrets.result(),
            )

    def _session_secrets(self, session: str) -> list[str]:
        # podman 4.3 can neither filter secrets by label nor list them as JSON, so list
        # names and inspect each one for the session label.
        names = self.run_engine(
            ["secret", "ls", "--noheading", "--format={{.Name}}"]
        ).stdout.split()
        if not names:
            return []
        # Another program may remove a secret between the listing and the inspection;
        # podman then fails the whole call, so fall back to one inspection per name.
        result = self.run_engine(["secret", "inspect", *names], check=False)
        if result.returncode == 0:
            rows = json.loads(result.stdout or "[]")
        else:
            rows = []
            for name in names:
                single = self.run_engine(["secret", "inspect", name], check=False)
                if single.returncode == 0:
                    rows.extend(json.loads(single.stdout or "[]"))
        found: list[str] = []
        for row in rows:
            spec = row.get("Spec", {})
            if (spec.get("Labels") or {}).get(LABEL_SESSION) == session:
                found.append(spec["Name"])
        return found

    def remove_container(self, *names: str) -> None:
        """Remove containers, stopping them at once when they run; missing ones are no error."""
        self.run_engine(["rm", "--force", "--time=0", "--ignore", *names])

    def remove_volume(self, *names: str) -> None:
        """Remove volumes; missing ones are not an error."""
        result = self.run_engine(["volume", "rm", "--force", *names], check=False)
        if result.returncode != 0 and "no such volume" not in result.stderr:
            raise EngineError(f"podman volume rm {' '.join(names)} failed: {result.stderr.strip()}")

    def remove_network(self, name: str) -> None:
        """Remove a network; a missing one is not an error."""
        result = self.run_engine(["network", "rm", "--force", name], check=False)
        if result.returncode != 0 and "unable to find network" not in result.stderr:
            raise EngineError(f"podman network rm {name} failed: {result.stderr.strip()}")

    def remove_secret(self, name: str) -> None:
        """Remove a secret; a missing one is not an error."""
        result = self.run_engine(["secret", "rm", name], check=False)
        if result.returncode != 0 and "no such secret" not in result.stderr:
            raise EngineError(f"podman secret rm {name} failed: {result.stderr.strip()}")


def _container_info(row: dict[str, Any]) -> ContainerInfo:
    names = row.get("Names") or [row.get("Id", "")[:12]]
    return ContainerInfo(
        id=str(row.get("Id", "")),
        name=str(names[0]),
        image=str(row.get("Image", "")),
        state=str(row.get("State", "")),
        labels=dict(row.get("Labels") or {}),
        exit_code=row.get("ExitCode") if row.get("Exited") else None,
    )


def _fix_for(message: str) -> str | None:
    """Return the known fix for a podman error message, if there is one."""
    if "setrlimit" in message and "RLIMIT_NOFILE" in message:
        return (
            "the OCI runtime cannot raise the open-files limit here; set default_ulimits "
            "in containers.conf (see `devaipod doctor`)"
        )
    if "no subuid ranges found" in message or "newuidmap" in message:
        return (
            "give your user subordinate ids in /etc/subuid and /etc/subgid (see `devaipod doctor`)"
        )
    if "image not known" in message or "manifest unknown" in message:
        return "build or pull the image first, or name another with --image"
    return None
