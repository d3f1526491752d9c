"""Finding a workspace's devcontainer.json, in the Dev Containers reference CLI's order.

Without an explicit path, `.devcontainer/devcontainer.json` wins over
`.devcontainer.json`. Configs in `.devcontainer/<folder>/devcontainer.json` are
never picked silently: they are listed and must be chosen with `--config`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from devaipod.errors import UserError

DEFAULT_CONFIG_PATHS = (
    Path(".devcontainer") / "devcontainer.json",
    Path(".devcontainer.json"),
)

# The reference CLI (0.88.0) accepts an explicit config only under these names.
_CONFIG_NAME = re.compile(r"/\.?devcontainer\.json$")


def absolute_path(path: Path | str, base: Path | None = None) -> Path:
    """Make `path` absolute and normalise `.`/`..` without resolving symlinks.

    The reference CLI uses Node's `path.resolve`, which keeps symlinked folder
    names; `Path.resolve()` would change the id labels and the workspace mount.
    """
    start = os.fspath(base) if base is not None else os.getcwd()
    return Path(os.path.normpath(os.path.join(start, os.fspath(path))))


def list_folder_configs(workspace_folder: Path) -> list[Path]:
    """Return the `.devcontainer/<folder>/devcontainer.json` files, sorted by folder name."""
    config_root = workspace_folder / ".devcontainer"
    if not config_root.is_dir():
        return []
    found = [
        entry / "devcontainer.json"
        for entry in config_root.iterdir()
        if entry.is_dir() and (entry / "devcontainer.json").is_file()
    ]
    return sorted(found)


def list_configs(workspace_folder: Path) -> list[Path]:
    """Return every config of the workspace: the default paths that exist, then folder configs."""
    defaults = [workspace_folder / path for path in DEFAULT_CONFIG_PATHS]
    return [path for path in defaults if path.is_file()] + list_folder_configs(workspace_folder)


def find_config(workspace_folder: Path, config: Path | None = None) -> Path:
    """Return the absolute path of the devcontainer.json to use for `workspace_folder`.

    `config` (relative paths are taken from the current directory, as the
    reference CLI does) must be named `devcontainer.json` or `.devcontainer.json`.
    Raises `UserError` when nothing is found or the choice is ambiguous.
    """
    if config is not None:
        return _check_explicit_config(config)

    for relative in DEFAULT_CONFIG_PATHS:
        candidate = workspace_folder / relative
        if candidate.is_file():
            return candidate

    folder_configs = list_folder_configs(workspace_folder)
    if len(folder_configs) == 1:
        only = folder_configs[0].relative_to(workspace_folder)
        raise UserError(
            f"no .devcontainer/devcontainer.json or .devcontainer.json in {workspace_folder}, "
            f"only {only}",
            fix=f"choose it with --config {only}",
        )
    if folder_configs:
        names = ", ".join(str(path.relative_to(workspace_folder)) for path in folder_configs)
        raise UserError(
            f"several dev container configs in {workspace_folder}: {names}",
            fix="choose one with --config PATH",
        )
    raise UserError(
        f"no dev container config in {workspace_folder} "
        "(looked for .devcontainer/devcontainer.json and .devcontainer.json)",
        fix="create .devcontainer/devcontainer.json or pass --config PATH; "
        "`devaipod up` also runs without one when given --image IMAGE",
    )


def _check_explicit_config(config: Path) -> Path:
    path = absolute_path(config)
    if not _CONFIG_NAME.search(path.as_posix()):
        raise UserError(
            f"config file name must be devcontainer.json or .devcontainer.json: {path}",
            fix="rename the file, or point --config at a devcontainer.json",
        )
    try:
        found = path.is_file()
    except OSError:
        # A name longer than the system allows, for example.
        found = False
    if not found:
        raise UserError(
            f"dev container config {path} not found",
            fix="check the path given with --config",
        )
    return path
