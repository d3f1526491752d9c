"""`devaipod scope`: show the scope a session would run with."""

from __future__ import annotations

import click

from devaipod import output
from devaipod.config import load_config
from devaipod.forge.urls import parse_forge_url
from devaipod.scope.derive import derive_scope
from devaipod.scope.model import dump_scope


@click.group("scope")
def scope_group() -> None:
    """Inspect session scopes: what an agent may read, push and comment on."""


@scope_group.command("init")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option(
    "--branch",
    "target_branch",
    metavar="NAME",
    help="Branch the agent pushes to (default: devaipod/issue-N, devaipod/pr-N or devaipod/work).",
)
def scope_init(url: str, as_json: bool, target_branch: str | None) -> None:
    """Print the scope that `devaipod run URL` would use, without network access.

    URL is an issue, pull/merge request or repository URL on GitHub, GitLab or
    Forgejo/Gitea. Hosts other than github.com, gitlab.com, codeberg.org and
    gitea.com must be declared in the config file. Save the output, edit it,
    and pass it to `run --scope FILE` to narrow or widen what the agent may do.
    """
    forge_url = parse_forge_url(url, load_config())
    scope = derive_scope(forge_url, target_branch=target_branch)
    if as_json:
        output.print_json(scope.model_dump(mode="json", exclude_none=True))
    else:
        output.result(dump_scope(scope))
