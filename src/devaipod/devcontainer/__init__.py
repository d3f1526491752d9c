"""devcontainer.json support: discovery, JSONC loading, the config model and variables."""

from devaipod.devcontainer.lifecycle import CommandStep, LifecycleCommand
from devaipod.devcontainer.loader import (
    ConfigKind,
    DockerfileBuild,
    ResolvedDevcontainer,
    load_devcontainer,
)
from devaipod.devcontainer.model import DevaipodCustomizations, DevcontainerConfig

__all__ = [
    "CommandStep",
    "ConfigKind",
    "DevaipodCustomizations",
    "DevcontainerConfig",
    "DockerfileBuild",
    "LifecycleCommand",
    "ResolvedDevcontainer",
    "load_devcontainer",
]
