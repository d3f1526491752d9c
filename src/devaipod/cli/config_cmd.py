"""`devaipod config`: show a project's devcontainer.json as devaipod resolves it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from devaipod import output
from devaipod.devcontainer import ResolvedDevcontainer, load_devcontainer
from devaipod.devcontainer.discovery import DEFAULT_CONFIG_PATHS, absolute_path, list_configs


def example_path() -> Path:
    """Return the folder of the bundled example project (it contains a .devcontainer/)."""
    return Path(str(resources.files("devaipod") / "examples" / "hello"))


@click.group("config")
def config_group() -> None:
    """Inspect the dev container configuration of a project."""


@config_group.command("show")
@click.option(
    "--workspace-folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default="the current directory",
    help="Project folder whose devcontainer.json is read.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="devcontainer.json to use (named devcontainer.json or .devcontainer.json); "
    "default: .devcontainer/devcontainer.json, then .devcontainer.json.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object {configuration, workspace, devaipod}; configuration and "
    "workspace have the shape of `devcontainer read-configuration`.",
)
@click.option(
    "--example",
    is_flag=True,
    help="Read the bundled example project instead of --workspace-folder "
    "(see `devaipod config example-path`).",
)
def show(workspace_folder: Path, config_file: Path | None, as_json: bool, example: bool) -> None:
    """Show the resolved devcontainer.json: local variables substituted, workspace computed.

    ${containerEnv:...} and ${devcontainerId} stay as written, because they are
    only known once a container exists.
    """
    if example:
        if config_file is not None:
            raise click.UsageError("--example and --config cannot be used together")
        workspace_folder = example_path()
    resolved = load_devcontainer(workspace_folder, config_file)
    for warning in resolved.warnings:
        output.warn(f"{resolved.config_file}: {warning}")

    if as_json:
        document = resolved.show_json()
        document["devaipod"] = _devaipod_details(resolved)
        output.print_json(document)
        return
    _print_summary(resolved)


@config_group.command("list")
@click.option(
    "--workspace-folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default="the current directory",
    help="Project folder to search.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects.")
def list_command(workspace_folder: Path, as_json: bool) -> None:
    """List the devcontainer.json files of a project and which one is used by default.

    Files in .devcontainer/<folder>/ are used only when chosen with --config.
    """
    folder = absolute_path(workspace_folder)
    configs = list_configs(folder)
    default_paths = {folder / path for path in DEFAULT_CONFIG_PATHS}
    default = next((path for path in configs if path in default_paths), None)
    rows = [{"path": str(path.relative_to(folder)), "default": path == default} for path in configs]
    if as_json:
        output.print_json(rows)
        return
    if not rows:
        output.info(f"no devcontainer.json in {folder}")
        return
    for row in rows:
        marker = "(default)" if row["default"] else "(use --config)"
        output.result(f"{row['path']}  {marker}")


@config_group.command("example-path")
def example_path_command() -> None:
    """Print the folder of the bundled example project, for `config show --workspace-folder`."""
    output.result(str(example_path()))


def _devaipod_details(resolved: ResolvedDevcontainer) -> dict[str, Any]:
    build = resolved.build
    return {
        "configFile": str(resolved.config_file),
        "kind": resolved.kind.value,
        "idLabels": resolved.id_labels,
        "devcontainerId": resolved.devcontainer_id,
        "build": None
        if build is None
        else {
            "dockerfile": str(build.dockerfile),
            "context": str(build.context),
            "args": build.args,
            "target": build.target,
            "cacheFrom": build.cache_from,
            "options": build.options,
        },
        "composeFiles": [str(path) for path in resolved.compose_files],
        "unknownProperties": resolved.unknown_properties,
        "unsupported": resolved.unsupported_reasons(),
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _print_summary(resolved: ResolvedDevcontainer) -> None:
    config = resolved.config
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")

    def row(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            table.add_row(label, _text(value))

    row("config file", str(resolved.config_file))
    row("name", config.name)
    row("kind", resolved.kind.value)
    row("image", config.image)
    if resolved.build is not None:
        row("dockerfile", str(resolved.build.dockerfile))
        row("build context", str(resolved.build.context))
        row("build args", resolved.build.args)
        row("build target", resolved.build.target)
    row("compose files", ", ".join(str(path) for path in resolved.compose_files))
    row("service", config.service)
    row("workspace folder", resolved.workspace_folder)
    if resolved.workspace_mount == "":
        table.add_row("workspace mount", "none (workspaceMount is empty)")
    row("workspace mount", resolved.workspace_mount)
    row("devcontainerId", resolved.devcontainer_id)
    row("container user", config.containerUser)
    row("remote user", config.remoteUser)
    for key, value in (config.containerEnv or {}).items():
        row(f"containerEnv {key}", value)
    for key, env_value in (config.remoteEnv or {}).items():
        table.add_row(f"remoteEnv {key}", "(unset)" if env_value is None else env_value)
    for index, mount in enumerate(resolved.configuration.get("mounts") or []):
        row(f"mount {index + 1}", mount)
    row("runArgs", " ".join(config.runArgs or []))
    for key in (
        "capAdd",
        "securityOpt",
        "privileged",
        "init",
        "overrideCommand",
        "appPort",
        "forwardPorts",
        "hostRequirements",
        "waitFor",
        "shutdownAction",
    ):
        row(key, resolved.configuration.get(key))
    for hook, command in resolved.lifecycle_commands().items():
        for step in command.steps:
            label = f"{hook} {step.name}" if step.name else hook
            row(label, step.shell if step.shell is not None else list(step.argv or ()))
    settings = resolved.devaipod
    row("devaipod envAllowlist", ", ".join(settings.envAllowlist))
    row("devaipod allowedDomains", ", ".join(settings.allowedDomains))
    row("devaipod agent", settings.agent)
    row("devaipod agentImage", settings.agentImage)
    row("features", ", ".join(resolved.unsupported_features()))
    row("unknown properties", ", ".join(resolved.unknown_properties))

    output.stdout.print(table)
    for reason in resolved.unsupported_reasons():
        output.warn(f"{reason}; `devaipod up` rejects this config until they are")
