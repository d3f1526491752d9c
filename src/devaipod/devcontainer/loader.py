"""Loading a workspace's devcontainer.json into a resolved, typed configuration.

`load_devcontainer` finds and parses the file, moves legacy VS Code keys,
applies phase-1 variable substitution, computes the workspace folder and mount,
validates the types and resolves the Dockerfile and build context.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devaipod.devcontainer.discovery import absolute_path, find_config
from devaipod.devcontainer.jsonc import load_jsonc_object
from devaipod.devcontainer.lifecycle import LifecycleCommand, normalise_lifecycle_command
from devaipod.devcontainer.model import (
    LIFECYCLE_COMMAND_NAMES,
    DevaipodCustomizations,
    DevcontainerConfig,
    parse_config,
    unknown_properties,
)
from devaipod.devcontainer.variables import (
    LocalVariables,
    devcontainer_id,
    id_labels,
    substitute_container_env,
    substitute_devcontainer_id,
    substitute_local,
)
from devaipod.devcontainer.workspace import workspace_defaults
from devaipod.errors import UserError

log = logging.getLogger(__name__)


class ConfigKind(enum.StrEnum):
    """The source of the container: a Dockerfile build, an image, or Docker Compose."""

    DOCKERFILE = "dockerfile"
    IMAGE = "image"
    COMPOSE = "compose"


@dataclass(frozen=True)
class DockerfileBuild:
    """The resolved inputs of an image build (absolute host paths)."""

    dockerfile: Path
    context: Path
    args: dict[str, str]
    target: str | None
    cache_from: list[str]
    options: list[str]


def _js_truthy(value: Any) -> bool:
    # JavaScript truthiness: empty arrays and objects are true, 0 and "" are false.
    if isinstance(value, list | dict):
        return True
    return bool(value)


def move_legacy_properties(raw: dict[str, Any]) -> dict[str, Any]:
    """Move top-level `extensions`, `settings` and `devPort` into `customizations.vscode`.

    Follows the reference CLI: extensions are appended to existing ones,
    existing `customizations.vscode.settings` override top-level settings, and
    `devPort` moves only when `customizations.vscode.devPort` is not set.
    Returns a new object; `raw` is not changed.
    """
    if not (
        _js_truthy(raw.get("extensions")) or _js_truthy(raw.get("settings")) or "devPort" in raw
    ):
        return raw
    customizations = raw.get("customizations")
    if customizations and not isinstance(customizations, dict):
        return raw  # The model rejects a non-object customizations with a clear error.
    vscode = (customizations or {}).get("vscode")
    if vscode and not isinstance(vscode, dict):
        return raw

    moved = dict(raw)
    new_vscode: dict[str, Any] = dict(vscode or {})
    new_customizations: dict[str, Any] = dict(customizations or {})

    extensions = moved.get("extensions")
    if _js_truthy(extensions):
        existing = new_vscode.get("extensions") or []
        existing = existing if isinstance(existing, list) else [existing]
        added = extensions if isinstance(extensions, list) else [extensions]
        new_vscode["extensions"] = existing + added
        del moved["extensions"]

    settings = moved.get("settings")
    if _js_truthy(settings):
        merged = dict(settings) if isinstance(settings, dict) else {}
        existing_settings = new_vscode.get("settings")
        merged.update(existing_settings if isinstance(existing_settings, dict) else {})
        new_vscode["settings"] = merged
        del moved["settings"]

    if "devPort" in moved and "devPort" not in new_vscode:
        new_vscode["devPort"] = moved.pop("devPort")

    new_customizations["vscode"] = new_vscode
    moved["customizations"] = new_customizations
    return moved


def config_kind(config: Mapping[str, Any]) -> ConfigKind | None:
    """Return the config's kind by key presence, in the reference CLI's precedence.

    A Dockerfile (`dockerFile`, or `build.dockerfile`) beats `image`, which
    beats `dockerComposeFile`. None means the config names none of them.
    """
    build = config.get("build")
    if "dockerFile" in config or (isinstance(build, dict) and "dockerfile" in build):
        return ConfigKind.DOCKERFILE
    if "image" in config:
        return ConfigKind.IMAGE
    if "dockerComposeFile" in config:
        return ConfigKind.COMPOSE
    return None


@dataclass(frozen=True)
class ResolvedDevcontainer:
    """A devcontainer.json read for one workspace, with phase-1 variables substituted.

    `configuration` is the substituted object, in the shape that the reference
    CLI's `read-configuration` prints. `raw` is the file's object after legacy
    keys moved and before substitution. `config` is the typed `configuration`.
    """

    config_file: Path
    local_workspace_folder: Path
    raw: dict[str, Any]
    configuration: dict[str, Any]
    config: DevcontainerConfig
    kind: ConfigKind
    workspace_folder: str | None
    workspace_mount: str | None
    id_labels: dict[str, str]
    devcontainer_id: str
    build: DockerfileBuild | None
    compose_files: list[Path]
    unknown_properties: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def devaipod(self) -> DevaipodCustomizations:
        """devaipod's own settings from `customizations.devaipod`."""
        return self.config.devaipod()

    def lifecycle_commands(self) -> dict[str, LifecycleCommand]:
        """Return the non-empty lifecycle hooks, in the order they run, with `${devcontainerId}`."""
        substituted = self.with_devcontainer_id()
        commands: dict[str, LifecycleCommand] = {}
        for hook in LIFECYCLE_COMMAND_NAMES:
            command = normalise_lifecycle_command(hook, substituted.get(hook))
            if command is not None:
                commands[hook] = command
        return commands

    def with_devcontainer_id(self) -> dict[str, Any]:
        """Return `configuration` after phase 2: `${devcontainerId}` replaced."""
        result: dict[str, Any] = substitute_devcontainer_id(
            self.configuration, self.devcontainer_id
        )
        return result

    def config_with_devcontainer_id(self) -> DevcontainerConfig:
        """Return the typed config after phase 2, for the values a container is created with."""
        return parse_config(self.with_devcontainer_id(), str(self.config_file))

    def with_container_env(self, container_env: Mapping[str, str]) -> dict[str, Any]:
        """Return the configuration after phases 2 and 3, given the container's configured env."""
        result: dict[str, Any] = substitute_container_env(
            self.with_devcontainer_id(), container_env, self.config_file
        )
        return result

    def unsupported_features(self) -> list[str]:
        """Return the `features` keys, in file order, which devaipod cannot install yet."""
        return list((self.config.features or {}).keys())

    def unsupported_reasons(self) -> list[str]:
        """Return one line per property that `up` cannot honour yet (features, Compose)."""
        reasons: list[str] = []
        features = self.unsupported_features()
        if features:
            reasons.append(f"features are not supported yet: {', '.join(features)}")
        if self.kind is ConfigKind.COMPOSE:
            files = ", ".join(str(path) for path in self.compose_files) or "none"
            reasons.append(
                f"Docker Compose configs are not supported yet (dockerComposeFile: {files})"
            )
        return reasons

    def show_json(self) -> dict[str, Any]:
        """Return `{"configuration": ..., "workspace": ...}` as `read-configuration` prints it."""
        workspace: dict[str, Any] = {}
        if self.workspace_folder is not None:
            workspace["workspaceFolder"] = self.workspace_folder
        if "dockerComposeFile" not in self.configuration:
            # As in the reference CLI, the key's presence decides (even for an image
            # config), and a `"workspaceMount": null` in the file shows as null.
            workspace["workspaceMount"] = self.workspace_mount
        return {"configuration": self.configuration, "workspace": workspace}


def load_devcontainer(
    workspace_folder: Path,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_dockerfile: bool = True,
) -> ResolvedDevcontainer:
    """Find, read and resolve the devcontainer.json of `workspace_folder`.

    `config` chooses the file explicitly (relative to the current directory);
    `env` is the host environment for `${localEnv:...}` (default: this
    process's). Raises `UserError` for every invalid input, including a
    missing Dockerfile when `require_dockerfile` is true.
    """
    environment = os.environ if env is None else env
    local_folder = absolute_path(workspace_folder)
    if not _is_dir(local_folder):
        raise UserError(
            f"workspace folder {local_folder} does not exist or is not a directory",
            fix="pass an existing folder with --workspace-folder",
        )
    config_file = find_config(local_folder, config)
    source = str(config_file)

    raw = move_legacy_properties(load_jsonc_object(config_file))
    _check_workspace_types(raw, source)

    defaults = workspace_defaults(raw, local_folder)
    variables = LocalVariables(
        env=environment,
        local_workspace_folder=str(local_folder),
        container_workspace_folder=defaults.workspace_folder,
        config_file=config_file,
    )
    configuration: dict[str, Any] = substitute_local(raw, variables)
    typed = parse_config(configuration, source)

    workspace_folder_value = defaults.workspace_folder
    if isinstance(configuration.get("workspaceFolder"), str):
        workspace_folder_value = configuration["workspaceFolder"]
    workspace_mount_value = defaults.workspace_mount
    if "workspaceMount" in configuration:
        workspace_mount_value = configuration["workspaceMount"]

    kind = config_kind(configuration)
    if kind is None:
        raise UserError(
            f"{source} is missing one of image, dockerFile or dockerComposeFile",
            fix='add "image" (for example "debian:bookworm") or "build": {"dockerfile": ...}',
        )
    if kind is ConfigKind.IMAGE and typed.image is None:
        raise UserError(f"{source}: image is null", fix="set image to an image name")
    if kind is ConfigKind.COMPOSE and typed.dockerComposeFile is None:
        raise UserError(
            f"{source}: dockerComposeFile is null", fix="set it to a Compose file name or a list"
        )
    warnings = _late_variable_warnings(configuration)
    for warning in warnings:
        log.info("%s: %s", source, warning)

    build = None
    if kind is ConfigKind.DOCKERFILE:
        build = resolve_build(typed, config_file, require_dockerfile=require_dockerfile)
    compose_files = (
        resolve_compose_files(typed, config_file, local_folder, environment)
        if kind is ConfigKind.COMPOSE
        else []
    )

    labels = id_labels(local_folder, config_file)
    unknown = unknown_properties(typed)
    if unknown:
        log.info("%s: unknown properties kept as written: %s", source, ", ".join(unknown))

    return ResolvedDevcontainer(
        config_file=config_file,
        local_workspace_folder=local_folder,
        raw=raw,
        configuration=configuration,
        config=typed,
        kind=kind,
        workspace_folder=workspace_folder_value,
        workspace_mount=workspace_mount_value,
        id_labels=labels,
        devcontainer_id=devcontainer_id(labels),
        build=build,
        compose_files=compose_files,
        unknown_properties=unknown,
        warnings=warnings,
    )


# Properties that reach the engine or the image build before the container
# exists, so `${containerEnv:...}` in them is passed on literally.
_CREATE_TIME_PROPERTIES = (
    "image",
    "build",
    "dockerFile",
    "containerEnv",
    "mounts",
    "runArgs",
    "appPort",
    "workspaceMount",
    "workspaceFolder",
    "containerUser",
)


def _late_variable_warnings(configuration: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    for key in _CREATE_TIME_PROPERTIES:
        if key in configuration and "${containerEnv:" in json.dumps(configuration[key]):
            warnings.append(
                f"${{containerEnv:...}} in {key} is not replaced: the container does not "
                f"exist yet when {key} is used, so the text is passed on as written"
            )
    for key in ("image", "build", "dockerFile"):
        if key in configuration and "${devcontainerId}" in json.dumps(configuration[key]):
            warnings.append(
                f"${{devcontainerId}} in {key} makes the image differ per workspace; "
                "the Dev Containers spec does not allow it in build inputs"
            )
    return warnings


def _check_workspace_types(raw: dict[str, Any], source: str) -> None:
    # The defaults are computed from the raw values, so their types must be
    # right before the full (post-substitution) validation runs.
    subset: dict[str, Any] = {
        key: raw[key] for key in ("workspaceFolder", "workspaceMount") if key in raw
    }
    parse_config(subset, source)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    """Return whether `path` is a regular file; a name the system rejects is no file."""
    try:
        return path.is_file()
    except OSError:
        # ENAMETOOLONG and similar errors that pathlib does not swallow itself.
        return False


def resolve_config_relative(config_file: Path, path: str) -> Path:
    """Resolve `path` against the folder of devcontainer.json (absolute paths are kept)."""
    return absolute_path(path, config_file.parent)


def resolve_build(
    config: DevcontainerConfig, config_file: Path, *, require_dockerfile: bool = True
) -> DockerfileBuild:
    """Return the Dockerfile build of a Dockerfile config, paths resolved like the reference CLI.

    The legacy top-level `dockerFile` wins over `build.dockerfile`. An unset
    context defaults to the Dockerfile's own folder (the spec says the
    devcontainer.json folder; the reference CLI and devaipod use the former).
    """
    build = config.build
    legacy = "dockerFile" in config.model_fields_set
    if legacy:
        dockerfile_value = config.dockerFile
        context_value = config.context
    elif build is not None:
        dockerfile_value = build.dockerfile
        context_value = build.context
    else:
        dockerfile_value = None
        context_value = None
    if dockerfile_value is None:
        raise UserError(
            f"{config_file}: the Dockerfile path is null",
            fix='set "build": {"dockerfile": "Dockerfile"} to a file name',
        )

    dockerfile = resolve_config_relative(config_file, dockerfile_value)
    context = (
        resolve_config_relative(config_file, context_value) if context_value else dockerfile.parent
    )
    if require_dockerfile and not _is_file(dockerfile):
        raise UserError(
            f"Dockerfile {dockerfile} not found (from {config_file})",
            fix="create it, or correct build.dockerfile (relative to the devcontainer.json folder)",
        )

    cache_from = build.cacheFrom if build else None
    return DockerfileBuild(
        dockerfile=dockerfile,
        context=context,
        args=dict(build.args or {}) if build else {},
        target=build.target if build else None,
        cache_from=[cache_from] if isinstance(cache_from, str) else list(cache_from or []),
        options=list(build.options or []) if build else [],
    )


_ENV_COMPOSE_FILE = re.compile(r"^COMPOSE_FILE=(.+)$", re.MULTILINE)


def resolve_compose_files(
    config: DevcontainerConfig,
    config_file: Path,
    local_workspace_folder: Path,
    env: Mapping[str, str],
) -> list[Path]:
    """Return the Compose files in `-f` order, with the reference CLI's fallbacks.

    A string or non-empty array resolves against the devcontainer.json folder.
    An empty array falls back to `COMPOSE_FILE` from the environment, then from
    the workspace's `.env`, then `docker-compose.yml` (plus
    `docker-compose.override.yml` when present) in the workspace.
    """
    value = config.dockerComposeFile
    if isinstance(value, str):
        return [resolve_config_relative(config_file, value)]
    if value:
        return [resolve_config_relative(config_file, item) for item in value]

    from_env = env.get("COMPOSE_FILE")
    if from_env:
        return [absolute_path(item, local_workspace_folder) for item in from_env.split(os.pathsep)]

    dotenv = local_workspace_folder / ".env"
    if _is_file(dotenv):
        match = _ENV_COMPOSE_FILE.search(dotenv.read_text(encoding="utf-8", errors="replace"))
        if match and match.group(1).strip():
            names = match.group(1).strip().split(os.pathsep)
            return [absolute_path(item, local_workspace_folder) for item in names]

    files = [local_workspace_folder / "docker-compose.yml"]
    override = local_workspace_folder / "docker-compose.override.yml"
    if _is_file(override):
        files.append(override)
    return files
