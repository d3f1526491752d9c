"""Container runtime: the session plan, the hardening profile, and the engines that apply plans."""

from __future__ import annotations

from devaipod.runtime.engine import Engine
from devaipod.runtime.podman import PodmanEngine


def default_engine() -> Engine:
    """Return the engine devaipod drives: podman, via the `podman` program on PATH."""
    return PodmanEngine()
