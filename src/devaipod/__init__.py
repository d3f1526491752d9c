"""devaipod: run AI coding agents in hardened devcontainers, forge credentials kept outside."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("devaipod")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
