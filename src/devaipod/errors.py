"""The error types devaipod raises, and the exit codes they map to.

A `UserError` is bad input or an invalid request: it is shown as one line with
the value and the fix, and exits with code 2. Anything else is unexpected: the
CLI prints one line naming the log file that holds the traceback, and exits 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class DevaipodError(Exception):
    """Base class of the errors devaipod raises on purpose."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        """Return the one-line form shown to the user."""
        if not self.fix:
            return self.message
        separator = " " if self.message.endswith(".") else ". "
        return f"{self.message}{separator}Fix: {self.fix}"


class UserError(DevaipodError):
    """Invalid input or request: a config file, an option value, a URL, a scope."""

    exit_code = EXIT_USAGE


class EngineError(DevaipodError):
    """The container engine failed or is misconfigured."""

    exit_code = EXIT_FAILURE
