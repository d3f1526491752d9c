"""The `devaipod` command line: global options, error handling, and the command groups."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from devaipod import __version__, output
from devaipod.errors import EXIT_FAILURE, DevaipodError
from devaipod.logs import log_file, setup_logging

log = logging.getLogger(__name__)


class AppContext:
    """Options given before the command name, shared with every command."""

    def __init__(self, verbosity: int, quiet: bool) -> None:
        self.verbosity = verbosity
        self.quiet = quiet


# Command name -> (module, attribute). Modules are imported only when their
# command runs, so `devaipod config show` does not pay for importing aiohttp
# and the mcp SDK, which take seconds on a cold start.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("devaipod.cli.session_cmd", "up_command"),
    "list": ("devaipod.cli.session_cmd", "list_command"),
    "status": ("devaipod.cli.session_cmd", "status_command"),
    "logs": ("devaipod.cli.session_cmd", "logs_command"),
    "attach": ("devaipod.cli.session_cmd", "attach_command"),
    "exec": ("devaipod.cli.session_cmd", "exec_command"),
    "stop": ("devaipod.cli.session_cmd", "stop_command"),
    "start": ("devaipod.cli.session_cmd", "start_command"),
    "delete": ("devaipod.cli.session_cmd", "delete_command"),
    "completions": ("devaipod.cli.session_cmd", "completions_command"),
    "config": ("devaipod.cli.config_cmd", "config_group"),
    "scope": ("devaipod.cli.scope_cmd", "scope_group"),
    "audit": ("devaipod.cli.audit_cmd", "audit"),
    "broker": ("devaipod.cli.broker_cmd", "broker"),
    "egress-proxy": ("devaipod.cli.egress_cmd", "egress_proxy"),
    "relay": ("devaipod.cli.relay_cmd", "relay"),
    "gateway-image": ("devaipod.cli.gateway_cmd", "gateway_image"),
    "serve-local-upstream": ("devaipod.cli.local_upstream_cmd", "serve_local_upstream"),
    "doctor": ("devaipod.cli.doctor_cmd", "doctor_command"),
    "demo": ("devaipod.cli.demo_cmd", "demo"),
    "run": ("devaipod.cli.run_cmd", "run_command"),
}


class LazyGroup(click.Group):
    """A command group that imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}.{attribute} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="devaipod")
@click.option("-v", "--verbose", count=True, help="Show diagnostics on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Show only results and errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Run AI coding agents in hardened devcontainers, without handing them your credentials.

    The agent works in a container with no network and no forge token. Its
    only door out is a broker that holds the token, lets it push only its own
    branch, comment only on its own issue, and logs every decision.
    """
    if verbose and quiet:
        raise click.UsageError("-v and -q cannot be used together")
    setup_logging(verbose)
    output.set_quiet(quiet)
    ctx.obj = AppContext(verbosity=verbose, quiet=quiet)




def main() -> None:
    """Run the CLI, turning devaipod errors into one-line messages and exit codes."""
    try:
        exit_code = cli.main(standalone_mode=False, prog_name="devaipod")
    except click.exceptions.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except click.ClickException as usage_error:
        usage_error.show()
        sys.exit(usage_error.exit_code)
    except click.exceptions.Abort:
        output.error("aborted")
        sys.exit(130)
    except DevaipodError as error:
        log.info("command failed: %s", error.message)
        output.error(error.render())
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
    except Exception:
        log.exception("unexpected error")
        output.error(f"unexpected error; the traceback is in {log_file()}")
        sys.exit(EXIT_FAILURE)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
