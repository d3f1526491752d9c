"""Run devcontainer lifecycle commands with the reference semantics.

A string runs through `/bin/sh -c`, an array is executed directly, and the entries of
an object run in parallel. The first failing command stops the chain with an error
naming the command, its exit code and the tail of its output.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devaipod.errors import DevaipodError
from devaipod.runtime.engine import Engine
from devaipod.runtime.plan import LifecycleStep
from devaipod.runtime.planner import with_secrets

log = logging.getLogger(__name__)

CREATE_PHASES = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
START_PHASES = ("postStartCommand",)
ATTACH_PHASES = ("postAttachCommand",)
HOST_PHASES = ("initializeCommand",)

_OUTPUT_TAIL_LINES = 15


@dataclass(frozen=True)
class CommandOutcome:
    """One command's exit code and combined output."""

    argv: list[str]
    exit_code: int
    output: str


_Runner = Callable[[list[str]], CommandOutcome]


class LifecycleError(DevaipodError):
    """A lifecycle command failed; `command_exit_code` is the command's own exit code."""

    def __init__(self, phase: str, command: Sequence[str], exit_code: int, output: str) -> None:
        super().__init__(
            f"{phase} failed with exit code {exit_code}: {shlex.join(command)}",
            fix=f"fix the {phase} in devcontainer.json and run `devaipod up` again",
        )
        self.phase = phase
        self.command = list(command)
        self.command_exit_code = exit_code
        self.output = output

    def render(self) -> str:
        """Return the message and fix, then the tail of the command's output."""
        tail = "\n".join(self.output.rstrip().splitlines()[-_OUTPUT_TAIL_LINES:])
        rendered = super().render()
        return f"{rendered}\n--- last output ---\n{tail}" if tail else rendered


def command_argvs(command: str | list[str] | dict[str, str | list[str]]) -> list[list[str]]:
    """Return the argv of each process a lifecycle command value runs (several for an object)."""
    if isinstance(command, str):
        return [["/bin/sh", "-c", command]] if command.strip() else []
    if isinstance(command, list):
        return [list(command)] if command else []
    argvs: list[list[str]] = []
    for value in command.values():
        argvs.extend(command_argvs(value))
    return argvs


def run_host_command(step: LifecycleStep, cwd: Path) -> None:
    """Run a host-side lifecycle command (initializeCommand) in `cwd`."""

    def run(argv: list[str]) -> CommandOutcome:
        completed = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        return CommandOutcome(argv, completed.returncode, completed.stdout + completed.stderr)

    _run_all(step, run)


def run_container_steps(
    engine: Engine,
    container: str,
    steps: Iterable[LifecycleStep],
    phases: Sequence[str],
    *,
    user: str | None,
    workdir: str,
    env: dict[str, str],
    load_secrets: bool = False,
) -> None:
    """Run the steps whose phase is in `phases`, in phase order, inside `container`.

    With `load_secrets`, each command first exports the container's secret files.
    """
    by_phase = {step.phase: step for step in steps}
    for phase in phases:
        step = by_phase.get(phase)
        if step is None:
            continue

        def run(argv: list[str]) -> CommandOutcome:
            command = with_secrets(argv) if load_secrets else argv
            result = engine.exec_in_container(
                container, command, user=user, workdir=workdir, env=env
            )
            return CommandOutcome(argv, result.returncode, result.stdout + result.stderr)

        log.info("running %s in %s", phase, container)
        _run_all(step, run)


def _run_all(step: LifecycleStep, run: _Runner) -> None:
    argvs = command_argvs(step.command)
    if not argvs:
        return
    if len(argvs) == 1 or not isinstance(step.command, dict):
        outcomes = [run(argvs[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
            outcomes = list(pool.map(run, argvs))
    for outcome in outcomes:
        if outcome.exit_code != 0:
            raise LifecycleError(step.phase, outcome.argv, outcome.exit_code, outcome.output)
