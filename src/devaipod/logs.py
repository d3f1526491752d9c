"""Diagnostic logging: a rotating log file in the state directory, stderr with `-v`."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

import platformdirs

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def state_dir() -> Path:
    """Return devaipod's state directory (`DEVAIPOD_STATE_DIR` overrides the XDG default)."""
    override = os.environ.get("DEVAIPOD_STATE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_state_dir("devaipod"))


def log_file() -> Path:
    """Return the path of the diagnostic log file."""
    return state_dir() / "devaipod.log"


def setup_logging(verbosity: int) -> None:
    """Send DEBUG and up to the log file, and to stderr when `verbosity` > 0."""
    root = logging.getLogger("devaipod")
    root.setLevel(logging.DEBUG)
    root.handlers.clear()

    try:
        path = log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=5_000_000, backupCount=2, encoding="utf-8"
        )
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(file_handler)
    except OSError:
        # A read-only home must not stop the CLI; diagnostics then go to stderr only.
        pass

    if verbosity > 0:
        console_handler = logging.StreamHandler()
        console_handler.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
        console_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(console_handler)
