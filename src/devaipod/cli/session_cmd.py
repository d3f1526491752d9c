"""Session commands: up, list, status, logs, attach, exec, stop, start, delete."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devaipod import output
from devaipod.errors import EXIT_FAILURE, UserError
from devaipod.runtime import default_engine
from devaipod.runtime.plan import Role
from devaipod.session import manage
from devaipod.session.up import UpRequest, apply_session, prepare_session

ROLES = click.Choice([role.value for role in Role])


@click.command("up")
@click.argument("source", required=False, default=".")
@click.argument("task", required=False)
@click.option(
    "--agent",
    metavar="NAME|COMMAND",
    help="Agent: opencode (default), claude, codex, goose, aider, or a command line.",
)
@click.option(
    "--name", metavar="NAME", help="Session name (default: project name + random suffix)."
)
@click.option(
    "--image", metavar="IMAGE", help="Run on IMAGE instead of the project's devcontainer.json."
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="devcontainer.json to use (default: .devcontainer/devcontainer.json in SOURCE).",
)
@click.option(
    "--interactive/--headless",
    default=None,
    help="Run the agent's terminal UI, or run TASK to completion (default: headless with a TASK).",
)
@click.option(
    "--gateway/--no-gateway",
    default=None,
    help="Local mode (default for a local SOURCE): the agent's only way out is the broker "
    "and the egress proxy, and it may push only the branch devaipod/NAME into the SOURCE "
    "repository. Builds the gateway image on first use. A git URL SOURCE runs without "
    "the gateway (the broker has no forge token for it yet); --gateway with one is an error. "
    "--no-gateway: no broker, the agent's clone has no remote it can push to.",
)
@click.option(
    "--gateway-base-image",
    metavar="IMAGE",
    help="Base image of the gateway image (default: DEVAIPOD_GATEWAY_BASE_IMAGE, the config "
    "file's [gateway] base_image, or python:3.11-slim, which gets git from apt at build).",
)
@click.option(
    "--network",
    type=click.Choice(["proxy", "none", "open"]),
    default=None,
    help="What the agent reaches besides the broker: proxy (the allowlisted egress proxy; "
    "the default with the gateway, and needs it), none (nothing; the default without "
    "the gateway) or open (the engine's default network, unfiltered).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (every engine command); create nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result (or plan) as JSON.")
def up_command(
    source: str,
    task: str | None,
    agent: str | None,
    name: str | None,
    image: str | None,
    config: Path | None,
    interactive: bool | None,
    gateway: bool | None,
    gateway_base_image: str | None,
    network: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Start a session: clone SOURCE into a volume and run the agent on TASK.

    SOURCE is a local repository (default: the current directory) or a git URL
    (https://... or user@host:path). The local repository must have no uncommitted
    changes; it is only read, never mounted into a container. Prints the session name.
    """
    engine = default_engine()
    request = UpRequest(
        source=source,
        task=task,
        agent=agent,
        name=name,
        image=image,
        config=config,
        interactive=interactive,
        gateway=gateway,
        gateway_base_image=gateway_base_image,
        network=network,
    )
    if network == "open":
        output.warn(
            "--network open: the agent has an ordinary, unfiltered network and can send "
            "anything it reads anywhere"
        )
    prepared = prepare_session(request, engine, progress=output.info)
    try:
        plan = prepared.plan
        if dry_run:
            if as_json:
                output.print_json(plan.to_dict())
            else:
                output.result(plan.render_text(engine.program))
            return
        record = apply_session(prepared, engine, progress=output.info)
    finally:
        prepared.cleanup()

    if as_json:
        output.print_json(
            {"session": record.session, "state": record.state.value, "plan": plan.to_dict()}
        )
        return
    output.result(record.session)
    output.info(f"attach with `devaipod attach {record.session}`")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List sessions found by their engine labels."""
    sessions = manage.list_sessions(default_engine())
    if as_json:
        output.print_json([status.to_dict() for status in sessions])
        return
    if not sessions:
        output.info("no sessions")
        return
    for status in sessions:
        roles = ",".join(
            f"{container.labels.get('devaipod.role', '?')}:{container.state}"
            for container in status.containers
        )
        output.result(
            f"{status.session}\t{status.state.value}\t{status.agent}\t{roles}\t{status.source}"
        )


@click.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(name: str, as_json: bool) -> None:
    """Show a session's state, containers, volumes and whether the agent still runs."""
    status = manage.session_status(default_engine(), name)
    if as_json:
        output.print_json(status.to_dict())
        return
    output.result(f"session: {status.session}")
    output.result(f"state: {status.state.value}")
    output.result(f"source: {status.source}")
    output.result(f"agent: {status.agent}")
    if status.agent_status is not None:
        if status.agent_status.running:
            output.result("agent program: running")
        else:
            output.result(f"agent program: exited ({status.agent_status.exit_code})")
    for container in status.containers:
        role = container.labels.get("devaipod.role", "?")
        output.result(f"container {role}: {container.name} ({container.state})")
    for volume in status.volumes or []:
        output.result(f"volume: {volume}")


@click.command("logs")
@click.argument("name")
@click.option(
    "-c",
    "--container",
    "role",
    type=ROLES,
    default="agent",
    show_default=True,
    help="Container role to show.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
def logs_command(name: str, role: str, follow: bool) -> None:
    """Print a session container's output (the agent's terminal output by default)."""
    engine = default_engine()
    sys.exit(engine.run_interactive(manage.logs_argv(engine, name, role, follow)))


@click.command("attach")
@click.argument("name")
def attach_command(name: str) -> None:
    """Attach to the agent's terminal; detach with Ctrl-b d (tmux) and the agent keeps running."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(
            "devaipod attach needs a terminal on stdin and stdout",
            fix=f"run it from an interactive shell, or read the output with `devaipod logs {name}`",
        )
    engine = default_engine()
    sys.exit(engine.run_interactive(manage.attach_argv(engine, name)))


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option(
    "-c",
    "--container",
    "role",
    type=ROLES,
    default="workspace",
    show_default=True,
    help="Container role to run in.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def exec_command(name: str, role: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a session container (default: a shell in the workspace as the remote user).

    Put `--` before a COMMAND that has options of its own.
    """
    engine = default_engine()
    sys.exit(engine.run_interactive(manage.exec_argv(engine, name, role, list(command))))


@click.command("stop")
@click.argument("name")
def stop_command(name: str) -> None:
    """Stop a session's containers; volumes keep the work."""
    record = manage.stop_session(default_engine(), name)
    output.info(f"stopped {record.session}")


@click.command("start")
@click.argument("name")
def start_command(name: str) -> None:
    """Start a stopped session (runs postStartCommand in the workspace)."""
    record = manage.start_session(default_engine(), name)
    output.info(f"started {record.session}")


@click.command("delete")
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Delete even when the session contains commits that were never pushed.",
)
def delete_command(name: str, force: bool) -> None:
    """Remove every container, volume, network and secret of a session.

    Refuses when the session's repository contains commits that exist neither in the
    source repository nor were there when the session started, unless --force.
    """
    dropped = manage.delete_session(default_engine(), name, force=force)
    if dropped:
        output.warn(f"dropped {len(dropped)} commit(s) that existed only in the session")
    output.info("deleted")


@click.command("completions")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completions_command(shell: str) -> None:
    """Print the shell completion script for SHELL; source it from your shell's startup file."""
    from click.shell_completion import get_completion_class

    from devaipod.cli import cli

    completion_class = get_completion_class(shell)
    if completion_class is None:
        sys.exit(EXIT_FAILURE)
    completion = completion_class(cli, {}, "devaipod", "_DEVAIPOD_COMPLETE")
    output.result(completion.source())


SESSION_COMMANDS = (
    up_command,
    list_command,
    status_command,
    logs_command,
    attach_command,
    exec_command,
    stop_command,
    start_command,
    delete_command,
    completions_command,
)
