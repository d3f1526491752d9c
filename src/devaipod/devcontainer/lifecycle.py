"""Normalised devcontainer lifecycle commands (initializeCommand ... postAttachCommand).

A string runs through `/bin/sh -c`, an array is an argv run without a shell,
and an object contains named commands of either form that run in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CommandStep:
    """One command of a lifecycle hook: exactly one of `shell` and `argv` is set."""

    name: str | None
    shell: str | None = None
    argv: tuple[str, ...] | None = None

    def as_argv(self) -> list[str]:
        """Return the argv to execute: `/bin/sh -c SCRIPT` for the shell form."""
        if self.argv is not None:
            return list(self.argv)
        return ["/bin/sh", "-c", self.shell or ""]


@dataclass(frozen=True)
class LifecycleCommand:
    """A lifecycle hook's commands; `parallel` is true for the object form."""

    hook: str
    steps: tuple[CommandStep, ...]
    parallel: bool


def _step(name: str | None, value: str | list[str]) -> CommandStep | None:
    if isinstance(value, str):
        return CommandStep(name, shell=value) if value.strip() else None
    return CommandStep(name, argv=tuple(value)) if value else None


def normalise_lifecycle_command(hook: str, value: Any) -> LifecycleCommand | None:
    """Return the normalised form of one hook's value, or None when nothing runs.

    An empty (or blank) string, an empty array and an empty object run nothing,
    as in the reference CLI. `value` must already be validated by the model.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        steps = [_step(name, command) for name, command in value.items()]
        # NOTE: an empty entry inside an object is dropped here; the reference
        # CLI would start it and it would succeed without doing anything.
        non_empty = tuple(step for step in steps if step is not None)
        return LifecycleCommand(hook, non_empty, parallel=True) if non_empty else None
    step = _step(None, value)
    return LifecycleCommand(hook, (step,), parallel=False) if step is not None else None
