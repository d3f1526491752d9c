"""Tests of normalising lifecycle commands in string, array and object forms."""

from __future__ import annotations

from devaipod.devcontainer.lifecycle import CommandStep, normalise_lifecycle_command


def test_string_runs_through_shell() -> None:
    command = normalise_lifecycle_command("postCreateCommand", "make && make test")
    assert command is not None
    assert command.parallel is False
    assert command.steps[0].as_argv() == ["/bin/sh", "-c", "make && make test"]


def test_array_is_argv() -> None:
    command = normalise_lifecycle_command("onCreateCommand", ["echo 'hi'", "x"])
    assert command is not None
    assert command.steps == (CommandStep(None, argv=("echo 'hi'", "x")),)


def test_object_entries_run_parallel() -> None:
    command = normalise_lifecycle_command("postStartCommand", {"a": "x", "b": ["y", "z"]})
    assert command is not None
    assert command.parallel is True
    assert [step.name for step in command.steps] == ["a", "b"]
    assert command.steps[1].as_argv() == ["y", "z"]


def test_empty_forms_run_nothing() -> None:
    for value in ("", "  ", [], {}, None, {"a": ""}):
        assert normalise_lifecycle_command("postCreateCommand", value) is None
