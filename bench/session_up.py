"""Time `devaipod up` (until the agent runs) and `delete` against `devcontainer up`.

Both tools start the same project (a git repository whose devcontainer.json names IMAGE)
in the same run, interleaved, so machine load hits both alike. devaipod runs its default
(with the gateway) and `--no-gateway`. Prints medians and ratios.

Usage: .venv/bin/python bench/session_up.py --image IMAGE [--rounds N]
(CONTAINERS_CONF must be set where podman needs it; see scripts/prepare-podman. Offline,
set DEVAIPOD_GATEWAY_BASE_IMAGE to a local image with python3 >= 3.11 and git.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """Run `argv`, fail loudly on a non-zero exit, and return its wall time in seconds."""
    started = time.perf_counter()
    completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({completed.returncode}):\n{completed.stderr}")
    return elapsed


def make_project(root: Path, image: str) -> Path:
    project = root / "project"
    (project / ".devcontainer").mkdir(parents=True)
    (project / ".devcontainer" / "devcontainer.json").write_text(
        # No remoteUser: with one, the reference CLI adds --userns=keep-id, which rootful
        # podman rejects.
        json.dumps({"image": image})
    )
    (project / "README").write_text("benchmark project\n")
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True, env=git_env)
    subprocess.run(["git", "add", "."], cwd=project, check=True, env=git_env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=project, check=True, env=git_env)
    return project


def agent_running(session: str, env: dict[str, str]) -> bool:
    """Return whether the agent program runs in its tmux pane right now."""
    completed = subprocess.run(
        [
            "podman",
            "exec",
            f"{session}-agent",
            "tmux",
            "list-panes",
            "-t",
            "agent",
            "-F",
            "#{pane_dead} #{pane_current_command}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    return completed.returncode == 0 and completed.stdout.startswith("0 ")


def time_devaipod(
    project: Path, session: str, env: dict[str, str], options: tuple[str, ...] = ()
) -> tuple[float, float]:
    """Return (seconds until the agent runs, seconds to delete) for one devaipod session."""
    devaipod = [sys.executable, "-m", "devaipod", "-q"]
    started = time.perf_counter()
    up = [*devaipod, "up", str(project), "--name", session, "--agent", "sleep 600", *options]
    run([*up, "bench"], env)
    while not agent_running(session, env):
        if time.perf_counter() - started > 120:
            sys.exit(f"agent of {session} did not start")
        time.sleep(0.05)
    up_seconds = time.perf_counter() - started
    delete_seconds = run([*devaipod, "delete", session], env)
    return up_seconds, delete_seconds


def time_reference(project: Path, env: dict[str, str]) -> tuple[float, float]:
    """Return (seconds for `devcontainer up`, seconds to remove its container)."""
    up_seconds = run(
        ["devcontainer", "up", "--docker-path", "podman", "--workspace-folder", str(project)], env
    )
    label = f"label=devcontainer.local_folder={project}"
    ids = subprocess.run(
        ["podman", "ps", "-aq", "--filter", label], env=env, capture_output=True, text=True
    ).stdout.split()
    delete_seconds = run(["podman", "rm", "--force", *ids], env) if ids else 0.0
    return up_seconds, delete_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image", required=True, help="image the project's devcontainer.json names"
    )
    parser.add_argument("--rounds", type=int, default=5, help="sessions per tool (default 5)")
    args = parser.parse_args()
    env = dict(os.environ)

    with tempfile.TemporaryDirectory(prefix="devaipod-bench-") as scratch:
        root = Path(scratch)
        env["DEVAIPOD_STATE_DIR"] = str(root / "state")
        project = make_project(root, args.image)
        devaipod_up, devaipod_delete, reference_up, reference_delete = [], [], [], []
        bare_up, bare_delete = [], []
        # An untimed first session builds the gateway image, once per devaipod version.
        time_devaipod(project, f"devaipod-bench-{os.getpid()}-warm", env)
        for round_number in range(args.rounds):
            session = f"devaipod-bench-{os.getpid()}-{round_number}"
            up_seconds, delete_seconds = time_devaipod(project, session, env)
            devaipod_up.append(up_seconds)
            devaipod_delete.append(delete_seconds)
            up_seconds, delete_seconds = time_devaipod(
                project, f"{session}-bare", env, ("--no-gateway",)
            )
            bare_up.append(up_seconds)
            bare_delete.append(delete_seconds)
            up_seconds, delete_seconds = time_reference(project, env)
            reference_up.append(up_seconds)
            reference_delete.append(delete_seconds)

    rows = [
        ("devaipod up (agent running)", devaipod_up),
        ("devaipod up --no-gateway", bare_up),
        ("devcontainer up", reference_up),
        ("devaipod delete", devaipod_delete),
        ("devaipod delete (--no-gateway session)", bare_delete),
        ("podman rm -f (reference container)", reference_delete),
    ]
    print(f"rounds: {args.rounds}, load average: {os.getloadavg()[0]:.1f}")
    for name, values in rows:
        print(
            f"{name:40} median {statistics.median(values):6.2f} s  "
            f"min {min(values):6.2f} s  max {max(values):6.2f} s"
        )
    up_ratio = statistics.median(devaipod_up) / statistics.median(reference_up)
    delete_ratio = statistics.median(devaipod_delete) / statistics.median(reference_delete)
    gateway_cost = statistics.median(devaipod_up) - statistics.median(bare_up)
    print(f"up ratio devaipod / devcontainer: {up_ratio:.2f}")
    print(f"gateway cost on up (median difference): {gateway_cost:.2f} s")
    print(f"delete ratio devaipod delete / podman rm -f: {delete_ratio:.2f}")


if __name__ == "__main__":
    main()
