"""`devaipod doctor`: check the container engine set-up and print fixes."""

from __future__ import annotations

import sys
from dataclasses import asdict

import click

from devaipod import output
from devaipod.runtime.doctor import run_checks


@click.command("doctor")
@click.option("--image", metavar="IMAGE", help="Image to test-run (default: any local image).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor_command(image: str | None, as_json: bool) -> None:
    """Check podman, rootless prerequisites and container start-up; print the fix for each problem.

    Exits 1 when a check fails.
    """
    checks = run_checks(probe_image=image)
    if as_json:
        output.print_json([asdict(check) for check in checks])
    else:
        for check in checks:
            mark = "ok" if check.ok else "FAIL"
            output.result(f"{mark:4} {check.name}: {check.detail}")
            if check.fix:
                output.result(f"     fix: {check.fix}")
    if not all(check.ok for check in checks):
        sys.exit(1)
