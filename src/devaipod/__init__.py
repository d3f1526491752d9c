"""devaipod: run AI coding agents in hardened devcontainers without handing them forge credentials."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("devaipod")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
