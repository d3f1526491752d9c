"""The root group's lazily imported commands resolve to the commands they name."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from devaipod.cli import LAZY_COMMANDS, cli


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_lazy_command_resolves_by_name(name: str) -> None:
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, name)

    assert command is not None
    assert command.name == name


def test_unknown_command_resolves_to_none() -> None:
    with click.Context(cli) as ctx:
        assert cli.get_command(ctx, "no-such-command") is None


def test_version_skips_heavy_imports() -> None:
    probe = (
        "import sys\n"
        "from devaipod.cli import cli\n"
        "heavy = [m for m in ('aiohttp', 'mcp', 'devaipod.broker.server') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )

    assert completed.stdout.strip() == ""
