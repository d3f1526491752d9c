"""`devaipod run URL [TASK]`: an agent on a forge issue, pull request or repository."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devaipod import output
from devaipod.errors import EXIT_FAILURE
from devaipod.runtime import default_engine
from devaipod.session.run import DEFAULT_TIMEOUT_SECONDS, RunRequest, describe, run_session


@click.command("run")
@click.argument("url")
@click.argument("task", required=False)
@click.option(
    "--agent",
    metavar="NAME|COMMAND",
    help="Agent: opencode (default), claude, codex, goose, aider, or a command line.",
)
@click.option(
    "--scope",
    "scope_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scope YAML file to use instead of the one derived from URL (see `devaipod scope "
    "init URL`). It must declare URL's repository with an output branch.",
)
@click.option(
    "--name",
    metavar="NAME",
    help="Session name (default: repository name, issue or PR number, random suffix).",
)
@click.option(
    "--image",
    metavar="IMAGE",
    help="Run on IMAGE instead of the repository's devcontainer.json.",
)
@click.option(
    "--network",
    type=click.Choice(["proxy", "none", "open"]),
    default=None,
    help="What the agent reaches besides the broker: proxy (the allowlisted egress proxy; "
    "default), none (nothing) or open (the engine's default network, unfiltered).",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    metavar="SECONDS",
    type=click.FloatRange(min=1),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for the agent; then the session is stopped (not deleted).",
)
@click.option(
    "--no-wait", is_flag=True, help="Return once the agent has started, without waiting."
)
@click.option(
    "--gateway-base-image",
    metavar="IMAGE",
    help="Base image of the gateway image (default: DEVAIPOD_GATEWAY_BASE_IMAGE, the config "
    "file's [gateway] base_image, or python:3.11-slim).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def run_command(
    url: str,
    task: str | None,
    agent: str | None,
    scope_file: Path | None,
    name: str | None,
    image: str | None,
    network: str | None,
    timeout_seconds: float,
    no_wait: bool,
    gateway_base_image: str | None,
    as_json: bool,
) -> None:
    """Run an agent on a forge issue, pull request or repository URL, and report what it did.

    URL is an issue, pull/merge request or repository URL on GitHub, GitLab or
    Forgejo (https, ssh:// or git@host:path). A repository URL needs TASK. With an
    issue or pull request URL, TASK is given to the agent with the issue's text. The forge token
    (GH_TOKEN, GITLAB_TOKEN, FORGEJO_TOKEN, ..., or the forge CLI's login) stays on
    the host and in the gateway; the agent pushes and calls the forge API through the
    broker, within the scope (default: `devaipod scope init URL`).

    Waits for the agent to exit (up to --timeout seconds), then prints the pushed
    branch, the pull requests and comments it made, and the denied requests. Exits
    1 when the agent timed out or exited with a non-zero status.
    """
    if network == "open":
        output.warn(
            "--network open: the agent has an ordinary, unfiltered network and can send "
            "anything it reads anywhere"
        )
    request = RunRequest(
        url=url,
        task=task,
        agent=agent,
        scope_file=scope_file,
        name=name,
        image=image,
        network=network,
        gateway_base_image=gateway_base_image,
        timeout_seconds=timeout_seconds,
        wait=not no_wait,
    )
    result = run_session(request, default_engine(), progress=output.info)

    if as_json:
        output.print_json(result.to_json())
    else:
        for line in describe(result):
            output.result(line)
    if result.timed_out or (result.agent_exit_code or 0) != 0:
        sys.exit(EXIT_FAILURE)
