"""The workspace container's settings: from `--image`, or from the project's devcontainer.json."""

from __future__ import annotations

import logging
from pathlib import Path

from devaipod.errors import UserError
from devaipod.runtime.planner import WorkspaceConfig

log = logging.getLogger(__name__)

CONFIG_CANDIDATES = (".devcontainer/devcontainer.json", ".devcontainer.json")


def find_devcontainer_config(project_dir: Path) -> Path | None:
    """Return the project's devcontainer.json in the reference CLI's lookup order, if any."""
    for candidate in CONFIG_CANDIDATES:
        path = project_dir / candidate
        if path.is_file():
            return path
    return None


def workspace_config(
    project_dir: Path, project_name: str, image: str | None, config: Path | None
) -> WorkspaceConfig:
    """Return the workspace settings: `image` alone, else the devcontainer.json found or given.

    Raises UserError when neither an image nor a devcontainer.json is available.
    """
    if image is not None and config is None:
        return WorkspaceConfig(image=image, workspace_folder=f"/workspaces/{project_name}")

    path = config or find_devcontainer_config(project_dir)
    if path is None:
        raise UserError(
            f"no devcontainer.json in {project_dir}",
            fix="add .devcontainer/devcontainer.json, pass --config FILE, or pass --image IMAGE",
        )
    # NOTE: the devcontainer.json reader lands separately; until then only --image works.
    raise UserError(
        f"reading {path} is not supported yet",
        fix="pass --image IMAGE to run the session on an image without devcontainer.json",
    )
