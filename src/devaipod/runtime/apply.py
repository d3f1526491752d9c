"""Apply a plan's objects to an engine, recording each one so a failure midway can roll back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from devaipod.errors import DevaipodError, EngineError
from devaipod.runtime.engine import Engine
from devaipod.runtime.plan import BuildStep, ContainerSpec, NetworkSpec, SecretSpec, VolumeSpec

log = logging.getLogger(__name__)


@dataclass
class CreatedObjects:
    """The objects one `up` created, in creation order, for rollback.

    Used as a context manager: leaving the block with an exception removes everything
    created so far, newest first, unless `keep()` was called.
    """

    engine: Engine
    created: list[tuple[str, str]] = field(default_factory=list)
    _kept: bool = False

    def __enter__(self) -> CreatedObjects:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and not self._kept:
            self.rollback()

    def keep(self) -> None:
        """Keep every created object: the session is complete."""
        self._kept = True

    def create_network(self, spec: NetworkSpec) -> None:
        """Create a network and record it."""
        self.engine.create_network(spec.engine_args())
        self.created.append(("network", spec.name))

    def create_volume(self, spec: VolumeSpec) -> None:
        """Create a volume and record it."""
        self.engine.create_volume(spec.engine_args())
        self.created.append(("volume", spec.name))

    def create_secret(self, spec: SecretSpec, value: bytes) -> None:
        """Create a secret from `value` and record it."""
        self.engine.create_secret(spec.engine_args(), value)
        self.created.append(("secret", spec.name))

    def create_container(self, spec: ContainerSpec) -> None:
        """Create a container (not started) and record it.

        Recorded only once created, so a name clash never removes someone else's container.
        """
        self.engine.create_container(spec.engine_args())
        self.created.append(("container", spec.name))

    def rollback(self) -> None:
        """Remove every recorded object, newest first; log what cannot be removed."""
        removers: dict[str, Callable[[str], None]] = {
            "container": self.engine.remove_container,
            "volume": self.engine.remove_volume,
            "network": self.engine.remove_network,
            "secret": self.engine.remove_secret,
        }
        for kind, name in reversed(self.created):
            try:
                removers[kind](name)
                log.info("rolled back %s %s", kind, name)
            except DevaipodError as error:
                log.error("rollback could not remove %s %s: %s", kind, name, error.message)
        self.created.clear()


def build_images(engine: Engine, builds: tuple[BuildStep, ...]) -> None:
    """Build each image whose tag is not present yet; tags hash the build inputs."""
    for step in builds:
        if engine.image_exists(step.tag):
            log.info("reusing image %s: its build inputs are unchanged", step.tag)
            continue
        engine.build_image(step.engine_args())


def apply_resources(
    objects: CreatedObjects,
    networks: tuple[NetworkSpec, ...],
    volumes: tuple[VolumeSpec, ...],
    secrets: tuple[SecretSpec, ...],
    secret_values: Mapping[str, bytes],
) -> None:
    """Create networks, volumes and secrets; a secret without a value is an error."""
    for network in networks:
        objects.create_network(network)
    for volume in volumes:
        objects.create_volume(volume)
    for secret in secrets:
        if secret.name not in secret_values:
            raise EngineError(f"no value given for secret {secret.name}")
        objects.create_secret(secret, secret_values[secret.name])
