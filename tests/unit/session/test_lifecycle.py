"""Lifecycle command forms (string, array, object) and failure reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from devaipod.runtime.plan import LifecycleStep
from devaipod.session.lifecycle import LifecycleError, command_argvs, run_host_command


def test_string_runs_through_shell() -> None:
    assert command_argvs("make && make test") == [["/bin/sh", "-c", "make && make test"]]


def test_array_runs_directly() -> None:
    assert command_argvs(["npm", "install"]) == [["npm", "install"]]


def test_object_runs_each_entry() -> None:
    assert command_argvs({"a": "echo a", "b": ["echo", "b"]}) == [
        ["/bin/sh", "-c", "echo a"],
        ["echo", "b"],
    ]


def test_empty_commands_run_nothing() -> None:
    assert command_argvs("") == []
    assert command_argvs([]) == []


def test_host_command_failure_reported(tmp_path: Path) -> None:
    step = LifecycleStep("initializeCommand", "host", "echo starting; echo broken >&2; exit 7")

    with pytest.raises(LifecycleError) as caught:
        run_host_command(step, tmp_path)

    assert caught.value.command_exit_code == 7
    assert caught.value.exit_code == 1
    assert caught.value.phase == "initializeCommand"
    assert "exit code 7" in caught.value.message
    assert caught.value.render().endswith("starting\nbroken")


def test_host_object_runs_in_parallel(tmp_path: Path) -> None:
    step = LifecycleStep(
        "initializeCommand",
        "host",
        {"one": "touch one", "two": ["touch", "two"]},
    )

    run_host_command(step, tmp_path)

    assert (tmp_path / "one").exists()
    assert (tmp_path / "two").exists()


def test_host_object_failure_named(tmp_path: Path) -> None:
    step = LifecycleStep("initializeCommand", "host", {"ok": "true", "bad": ["false"]})

    with pytest.raises(LifecycleError) as caught:
        run_host_command(step, tmp_path)

    assert caught.value.command == ["false"]
