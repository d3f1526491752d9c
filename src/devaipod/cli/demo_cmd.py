"""`devaipod demo`: run a real local-mode session on a sample project with a scripted agent."""

from __future__ import annotations

import json

import click

from devaipod import output
from devaipod.demo import DEFAULT_IMAGE, DENIED_STEPS, SCRIPTED_AGENT_NAME, TEST_IMAGE_ENV, run_demo
from devaipod.runtime import default_engine


@click.command("demo")
@click.option(
    "--image",
    metavar="IMAGE",
    help=f"Image of the sample project's devcontainer; needs git and sh (default: "
    f"{TEST_IMAGE_ENV} when set, else {DEFAULT_IMAGE}).",
)
@click.option(
    "--gateway-base-image",
    metavar="IMAGE",
    help="Base image of the gateway image; needs python3 >= 3.11 and git (default: "
    "DEVAIPOD_GATEWAY_BASE_IMAGE or the config file's [gateway] base_image).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def demo(image: str | None, gateway_base_image: str | None, as_json: bool) -> None:
    """Show the broker at work: a session on a new sample project, with a scripted agent.

    Creates a git repository in a temporary directory, starts a session on it whose
    agent is a shell script named devaipod-scripted-demo (not an AI). The script commits
    and pushes its branch, then tries to push to main, push a tag, force-push and delete
    a branch. Prints the delivered commits and the refusals from the audit log, then
    deletes the session; the sample repository stays and its path is printed.
    """
    engine = default_engine()
    result = run_demo(
        engine, image=image, gateway_base_image=gateway_base_image, progress=output.info
    )
    if as_json:
        output.print_json(
            {
                "project": str(result.project),
                "session": result.session,
                "branch": result.branch,
                "delivered": result.delivered_commits,
                "refusals": result.refusals,
                "audit": result.audit,
            }
        )
        return

    lines = [f"Transcript of {SCRIPTED_AGENT_NAME} (a scripted agent, not an AI):"]
    lines += [f"  {line}" for line in result.transcript.splitlines()]
    lines.append("")
    lines.append(f"Delivered to {result.project} on branch {result.branch}:")
    lines += [f"  {commit}" for commit in result.delivered_commits] or ["  (nothing)"]
    lines.append("")
    lines.append("Refused pushes, as git printed them in the agent:")
    for step in DENIED_STEPS:
        lines.append(f"  {step}: {result.refusals.get(step, '(no refusal seen)')}")
    lines.append("")
    lines.append(f"Audit log ({len(result.audit)} lines), refusals:")
    for entry in result.denied_entries:
        shown = {key: entry.get(key) for key in ("time", "kind", "decision", "ref", "reason")}
        lines.append(f"  {json.dumps(shown)}")
    lines.append("")
    lines.append(f"Session {result.session} deleted; the sample project stays in {result.project}")
    output.result("\n".join(lines))
