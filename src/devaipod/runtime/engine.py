"""The container engine interface devaipod drives: podman today, docker through the same calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ContainerInfo:
    """One container as the engine lists it."""

    id: str
    name: str
    image: str
    state: str
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None

    @property
    def running(self) -> bool:
        """Whether the container is running (or paused)."""
        return self.state in ("running", "paused")


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run in a container or by the engine."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SessionObjects:
    """Every engine object carrying one session's label."""

    containers: list[ContainerInfo]
    volumes: list[str]
    networks: list[str]
    secrets: list[str]

    def is_empty(self) -> bool:
        """Whether no object is left."""
        return not (self.containers or self.volumes or self.networks or self.secrets)


class Engine(Protocol):
    """Operations on containers, images, volumes, networks and secrets."""

    program: str

    def run_engine(
        self, argv: Sequence[str], *, input_bytes: bytes | None = None, check: bool = True
    ) -> ExecResult: ...

    def run_interactive(self, argv: Sequence[str]) -> int: ...

    def image_exists(self, image: str) -> bool: ...

    def inspect_image(self, image: str) -> dict[str, object]: ...

    def build_image(self, argv: Sequence[str]) -> None: ...

    def create_volume(self, argv: Sequence[str]) -> str: ...

    def import_volume(self, volume: str, tar_path: Path) -> None: ...

    def export_volume(self, volume: str, tar_path: Path) -> None: ...

    def create_network(self, argv: Sequence[str]) -> str: ...

    def create_secret(self, argv: Sequence[str], value: bytes) -> str: ...

    def create_container(self, argv: Sequence[str]) -> str: ...

    def start_container(self, *names: str) -> None: ...

    def stop_container(self, name: str, timeout_seconds: int) -> None: ...

    def inspect_container(self, name: str) -> dict[str, object] | None: ...

    def exec_in_container(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> ExecResult: ...

    def list_containers(self, labels: dict[str, str | None]) -> list[ContainerInfo]: ...

    def session_objects(self, session: str) -> SessionObjects: ...

    def remove_container(self, *names: str) -> None: ...

    def remove_volume(self, *names: str) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def remove_secret(self, name: str) -> None: ...
