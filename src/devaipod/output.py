"""User-facing output: results on stdout, messages and progress on stderr.

Library code never prints; it logs. Commands use this module so that `--json`
output stays clean and `-q` silences everything but results and errors.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

stdout = Console(soft_wrap=True, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, highlight=False)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence informational messages (errors and results still show)."""
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    """Show a progress or status message on stderr unless `-q` was given."""
    if not _quiet:
        stderr.print(message, markup=False)


def warn(message: str) -> None:
    """Show a warning on stderr; `-q` does not hide warnings."""
    stderr.print(f"warning: {message}", markup=False, style="yellow")


def error(message: str) -> None:
    """Show an error line on stderr."""
    stderr.print(f"error: {message}", markup=False, style="red")


def result(text: str) -> None:
    """Print a result line on stdout, verbatim."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def print_json(value: Any) -> None:
    """Print one JSON document on stdout (keys in insertion order, UTF-8 kept)."""
    result(json.dumps(value, indent=2, ensure_ascii=False))
