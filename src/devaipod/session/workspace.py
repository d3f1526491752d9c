"""The workspace container's settings: from `--image`, or from the project's devcontainer.json."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devaipod.devcontainer import (
    DevaipodCustomizations,
    DockerfileBuild,
    LifecycleCommand,
    ResolvedDevcontainer,
    load_devcontainer,
)
from devaipod.devcontainer.model import MountObject
from devaipod.errors import UserError
from devaipod.runtime.plan import BuildStep, LifecycleStep
from devaipod.runtime.planner import WorkspaceConfig

log = logging.getLogger(__name__)

BUILD_IMAGE_REPOSITORY = "localhost/devaipod-build"


@dataclass(frozen=True)
class WorkspaceSettings:
    """The workspace container settings plus devaipod's own devcontainer customizations."""

    workspace: WorkspaceConfig
    customizations: DevaipodCustomizations


def workspace_settings(
    project_dir: Path,
    project_name: str,
    image: str | None,
    config: Path | None,
    host_env: Mapping[str, str],
) -> WorkspaceSettings:
    """Return the workspace settings: `image` alone, else the project's devcontainer.json.

    With `image` and `config` both given, the devcontainer.json is used with its image
    replaced. Raises UserError
    when the devcontainer.json is invalid or uses what devaipod cannot run (features,
    Docker Compose).
    """
    if image is not None and config is None:
        # An explicit --image without --config runs the image without devcontainer.json.
        return WorkspaceSettings(
            WorkspaceConfig(image=image, workspace_folder=f"/workspaces/{project_name}"),
            DevaipodCustomizations(),
        )

    resolved = load_devcontainer(project_dir, config, host_env)
    reasons = resolved.unsupported_reasons()
    if reasons:
        raise UserError(
            f"{resolved.config_file}: {'; '.join(reasons)}",
            fix="remove them (install tools in the Dockerfile instead) or pass --image IMAGE",
        )
    return WorkspaceSettings(workspace_from_devcontainer(resolved, image), resolved.devaipod)


def workspace_from_devcontainer(
    resolved: ResolvedDevcontainer, image_override: str | None = None
) -> WorkspaceConfig:
    """Map a resolved devcontainer.json onto the workspace container's settings."""
    config = resolved.config
    configuration = resolved.with_devcontainer_id()
    container_env = dict(config.containerEnv or {})

    build_step: BuildStep | None = None
    if image_override is not None:
        image = image_override
    elif resolved.build is not None:
        build_step = build_step_for(resolved.build)
        image = build_step.tag
    else:
        image = str(config.image)

    if resolved.workspace_mount:
        # NOTE: the code volume always replaces workspaceMount: the host folder is never mounted.
        log.info(
            "ignoring workspaceMount %r: the code volume is mounted instead",
            resolved.workspace_mount,
        )

    remote_env = {
        name: value
        for name, value in (
            resolved.with_container_env(container_env).get("remoteEnv") or {}
        ).items()
        if value is not None
    }
    return WorkspaceConfig(
        image=image,
        workspace_folder=resolved.workspace_folder
        or f"/workspaces/{resolved.local_workspace_folder.name}",
        build=build_step,
        container_env=container_env,
        remote_env=remote_env,
        mounts=tuple(_mount_option(mount) for mount in configuration.get("mounts") or []),
        run_args=tuple(config.runArgs or ()),
        cap_add=tuple(config.capAdd or ()),
        security_opt=tuple(config.securityOpt or ()),
        privileged=bool(config.privileged),
        init=bool(config.init),
        container_user=config.containerUser,
        remote_user=config.remoteUser,
        override_command=config.overrideCommand is not False,
        lifecycle=tuple(
            lifecycle_step(command) for command in resolved.lifecycle_commands().values()
        ),
        config_path=str(resolved.config_file),
        secrets=tuple(sorted(config.secrets or {})),
    )


def lifecycle_step(command: LifecycleCommand) -> LifecycleStep:
    """Return a plan step in devcontainer.json's own form: string, array or object."""
    where = "host" if command.hook == "initializeCommand" else "workspace"

    def value(shell: str | None, argv: tuple[str, ...] | None) -> str | list[str]:
        return shell if shell is not None else list(argv or ())

    if command.parallel:
        named = {
            step.name or str(index): value(step.shell, step.argv)
            for index, step in enumerate(command.steps)
        }
        return LifecycleStep(command.hook, where, named)
    step = command.steps[0]
    return LifecycleStep(command.hook, where, value(step.shell, step.argv))


def _mount_option(mount: str | dict[str, Any] | MountObject) -> str:
    """Return a devcontainer.json mount in `--mount` syntax."""
    if isinstance(mount, str):
        return mount
    data = mount.model_dump(exclude_none=True) if isinstance(mount, MountObject) else mount
    parts = [f"type={data['type']}"]
    if data.get("source"):
        parts.append(f"source={data['source']}")
    parts.append(f"target={data['target']}")
    return ",".join(parts)


def build_step_for(build: DockerfileBuild) -> BuildStep:
    """Return the build of a Dockerfile config, tagged with a hash of everything it reads.

    The hash covers the Dockerfile, build args, target and options, and the path, size and
    modification time of each file in the context, so an unchanged project reuses its image.
    """
    digest = hashlib.sha256()
    digest.update(build.dockerfile.read_bytes())
    settings = {"args": build.args, "target": build.target, "options": build.options}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(_context_files(build.context)):
        info = path.stat()
        digest.update(
            f"{path.relative_to(build.context)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode()
        )
    options = [*build.options, *(f"--cache-from={image}" for image in build.cache_from)]
    return BuildStep(
        tag=f"{BUILD_IMAGE_REPOSITORY}:{digest.hexdigest()[:16]}",
        context=str(build.context),
        dockerfile=str(build.dockerfile),
        args=dict(build.args),
        target=build.target,
        options=tuple(options),
    )


def _context_files(context: Path) -> list[Path]:
    # NOTE: .dockerignore is not applied, so files it excludes still change the hash.
    files: list[Path] = []
    for root, directories, names in os.walk(context):
        directories[:] = [name for name in directories if name != ".git"]
        files.extend(Path(root) / name for name in names)
    return [path for path in files if path.is_file()]
