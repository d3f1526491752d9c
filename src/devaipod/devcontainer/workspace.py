"""Default workspaceFolder and workspaceMount, computed from the git root as the reference CLI does.

The host folder mounted is the workspace's git root (or the workspace itself
outside a repository), at `/workspaces/<its name>`. A workspace in a sub-folder
of the repository opens at the same sub-path under that target.
"""

from __future__ import annotations

import logging
import os
import posixpath
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORKSPACES_ROOT = "/workspaces"


def find_git_root(folder: Path) -> Path | None:
    """Return the root of the git work tree containing `folder`, or None outside one.

    Runs `git rev-parse --show-cdup` like the reference CLI, so the result keeps
    symlinked names in `folder` rather than resolving them.
    """
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--show-cdup"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.info("git rev-parse failed in %s: %s; mounting the folder itself", folder, error)
        return None
    if completed.returncode != 0:
        log.debug("%s is not in a git work tree: %s", folder, completed.stderr.strip())
        return None
    return Path(os.path.normpath(os.path.join(folder, completed.stdout.strip())))


def _quote_if_comma(path: str) -> str:
    return f'"{path}"' if "," in path else path


def _posix_join(*parts: str) -> str:
    joined = posixpath.join(*[part for part in parts if part])
    return posixpath.normpath(joined) if joined else "."


@dataclass(frozen=True)
class WorkspaceDefaults:
    """The raw workspace folder and mount, before variable substitution.

    `workspace_folder` is None only when there is no workspace; `workspace_mount`
    is None for Docker Compose configs, which add no workspace mount.
    """

    workspace_folder: str | None
    workspace_mount: str | None


def workspace_defaults(
    raw: dict[str, Any], local_workspace_folder: Path, *, mount_git_root: bool = True
) -> WorkspaceDefaults:
    """Return the workspace folder and mount of a raw (unsubstituted) config.

    Values set in the config are kept as written. Only when `workspaceFolder`
    is missing or empty, or the `workspaceMount` key is absent, is the git root
    looked up. An empty `workspaceMount` stays empty: no workspace mount.
    """
    if "dockerComposeFile" in raw:
        folder = raw.get("workspaceFolder")
        return WorkspaceDefaults(folder if folder else "/", None)

    folder = raw.get("workspaceFolder")
    mount = raw.get("workspaceMount")
    has_mount_key = "workspaceMount" in raw
    if folder and has_mount_key:
        return WorkspaceDefaults(folder, mount)

    git_root = find_git_root(local_workspace_folder) if mount_git_root else None
    mount_source = git_root or local_workspace_folder
    target = _posix_join(WORKSPACES_ROOT, mount_source.name)

    if not folder:
        relative = os.path.relpath(local_workspace_folder, mount_source)
        folder = _posix_join(target, "" if relative == "." else relative)
    if not has_mount_key:
        # NOTE: only the Linux form is produced. The reference CLI appends
        # ",consistency=..." on macOS and Windows hosts, and its code says podman
        # rejects that option (podman 4.3.1 on Debian 12 accepts and ignores it).
        mount = (
            f"type=bind,{_quote_if_comma('source=' + str(mount_source))},"
            f"{_quote_if_comma('target=' + target)}"
        )
    return WorkspaceDefaults(folder, mount)
