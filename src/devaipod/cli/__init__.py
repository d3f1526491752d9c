"""The `devaipod` command line: global options, error handling, and the command groups."""

from __future__ import annotations

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register_commands() -> None:
    # One module per command group; each exposes click commands to add here.
    # Each helper module adds its commands with cli.add_command(...).
    from devaipod.cli.audit_cmd import audit

    cli.add_command(audit)
    from devaipod.cli.egress_cmd import egress_proxy

    cli.add_command(egress_proxy)
    from devaipod.cli.broker_cmd import broker
    from devaipod.cli.scope_cmd import scope_group

    cli.add_command(scope_group)
    cli.add_command(broker)
    from devaipod.cli.session_cmd import SESSION_COMMANDS

    for command in SESSION_COMMANDS:
        cli.add_command(command)
    from devaipod.cli.doctor_cmd import doctor_command

    cli.add_command(doctor_command)
    from devaipod.cli.config_cmd import config_group

    cli.add_command(config_group)
    from devaipod.cli.relay_cmd import relay

    cli.add_command(relay)
    from devaipod.cli.gateway_cmd import gateway_image

    cli.add_command(gateway_image)
    from devaipod.cli.local_upstream_cmd import serve_local_upstream

    cli.add_command(serve_local_upstream)
    from devaipod.cli.demo_cmd import demo

    cli.add_command(demo)


_register_commands()


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
