"""Benchmark: `git push` of a generated repository through the devaipod broker versus
straight to the same kind of upstream, with the broker's peak resident memory per size.

Everything runs on 127.0.0.1: `git http-backend` behind a token check as the upstream
(tests/support/git_server.py, in this process), the broker as a separate process (one
fresh process per size, so its peak RSS belongs to that size), and the real git client.
For each size the repository is one commit of incompressible random files. Two pushes
are timed per path: creating the branch, then a fast-forward update that adds a tenth of
the size again (the broker's ancestry check: mirror fetch plus `git index-pack`).
Run from the repository root:

    .venv/bin/python bench/broker_push.py --sizes-mb 20,200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from support.git_server import (  # noqa: E402
    GitHttpServer,
    create_bare_repo,
    isolated_git_env,
    run_git,
)

TOKEN = "bench-upstream-token-5d1e"
TARGET_BRANCH = "devaipod/bench"
FILE_BYTES = 1024 * 1024


@dataclass
class SizeResult:
    """Timings (seconds) and the broker's peak RSS for one repository size."""

    size_mb: int
    create_direct_s: float
    create_broker_s: float
    update_direct_s: float
    update_broker_s: float
    broker_peak_rss_mib: float

    @property
    def create_ratio(self) -> float:
        return self.create_broker_s / self.create_direct_s

    @property
    def update_ratio(self) -> float:
        return self.update_broker_s / self.update_direct_s


def write_random_files(work: Path, prefix: str, total_bytes: int) -> None:
    """Write `total_bytes` of random data into 1 MiB files named `prefix-N.bin`."""
    remaining = total_bytes
    index = 0
    while remaining > 0:
        size = min(FILE_BYTES, remaining)
        (work / f"{prefix}-{index:05d}.bin").write_bytes(os.urandom(size))
        remaining -= size
        index += 1


def commit_all(work: Path, message: str) -> None:
    run_git("add", "--all", cwd=work)
    run_git("commit", "--quiet", "-m", message, cwd=work)


def peak_rss_mib(pid: int) -> float:
    """Return a process's peak resident set size (VmHWM) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM line for process {pid}")


@contextmanager
def running_broker(
    scope_file: Path, state_dir: Path
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """Start `devaipod broker` as a subprocess; yield (process, URL, session credential)."""
    env = dict(os.environ)
    env["DEVAIPOD_FORGE_TOKEN"] = TOKEN
    env["DEVAIPOD_STATE_DIR"] = str(state_dir)
    credential_file = state_dir / "credential"
    command = [
        sys.executable,
        "-m",
        "devaipod",
        "broker",
        "--scope",
        str(scope_file),
        "--credential-file",
        str(credential_file),
        "--state-dir",
        str(state_dir / "broker"),
        "--session",
        "bench",
        "--json",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield process, str(ready["url"]), credential_file.read_text().strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def timed_push(work: Path, env: dict[str, str], url: str, ref: str) -> float:
    started = time.perf_counter()
    run_git("push", "--quiet", url, f"HEAD:{ref}", cwd=work, env=env)
    return time.perf_counter() - started


def git_env_with_header(authorization: str) -> dict[str, str]:
    env = isolated_git_env()
    env["GIT_CONFIG_COUNT"] = "1"
    env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
    env["GIT_CONFIG_VALUE_0"] = f"Authorization: {authorization}"
    return env


def measure_size(size_mb: int, scratch: Path, *, broker_first: bool = False) -> SizeResult:
    """Push a `size_mb` repository direct and through a fresh broker, create then update."""
    root = scratch / f"upstream-{size_mb}"
    create_bare_repo(root, "direct.git")
    create_bare_repo(root, "brokered.git")

    work = scratch / f"work-{size_mb}"
    run_git("clone", "--quiet", str(root / "direct.git"), str(work))
    write_random_files(work, "base", size_mb * 1024 * 1024)
    commit_all(work, f"Add {size_mb} MB of random files")

    with GitHttpServer(root, TOKEN) as upstream:
        scope_file = scratch / f"scope-{size_mb}.yaml"
        scope_file.write_text(
            "repos:\n"
            f"  - input: {{url: '{upstream.url('brokered.git')}', allowHttp: true}}\n"
            f"    output: {{targetBranch: {TARGET_BRANCH}}}\n"
        )
        state_dir = scratch / f"state-{size_mb}"
        state_dir.mkdir()
        direct_env = git_env_with_header(f"Bearer {TOKEN}")
        direct_url = upstream.url("direct.git")

        with running_broker(scope_file, state_dir) as (process, broker_url, credential):
            broker_env = git_env_with_header(f"Bearer {credential}")
            brokered_url = f"{broker_url}/git/127.0.0.1:{upstream.port}/brokered.git"
            target_ref = f"refs/heads/{TARGET_BRANCH}"

            if broker_first:
                create_broker = timed_push(work, broker_env, brokered_url, target_ref)
                create_direct = timed_push(work, direct_env, direct_url, target_ref)
            else:
                create_direct = timed_push(work, direct_env, direct_url, target_ref)
                create_broker = timed_push(work, broker_env, brokered_url, target_ref)

            write_random_files(work, "update", max(size_mb // 10, 1) * 1024 * 1024)
            commit_all(work, "Add a tenth more random files")
            if broker_first:
                update_broker = timed_push(work, broker_env, brokered_url, target_ref)
                update_direct = timed_push(work, direct_env, direct_url, target_ref)
            else:
                update_direct = timed_push(work, direct_env, direct_url, target_ref)
                update_broker = timed_push(work, broker_env, brokered_url, target_ref)

            peak = peak_rss_mib(process.pid)

    shutil.rmtree(work)
    shutil.rmtree(root)
    return SizeResult(
        size_mb=size_mb,
        create_direct_s=create_direct,
        create_broker_s=create_broker,
        update_direct_s=update_direct,
        update_broker_s=update_broker,
        broker_peak_rss_mib=peak,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes-mb",
        default="5,20",
        help="Comma-separated repository sizes in MB (1 MB = 1 MiB of random data); default 5,20.",
    )
    parser.add_argument(
        "--broker-first",
        action="store_true",
        help="Time the push through the broker before the direct one (default: direct first).",
    )
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args()
    sizes = [int(value) for value in args.sizes_mb.split(",") if value]

    results = []
    with tempfile.TemporaryDirectory(prefix="devaipod-bench-push-") as scratch_dir:
        for size_mb in sizes:
            results.append(measure_size(size_mb, Path(scratch_dir), broker_first=args.broker_first))

    load_1, load_5, load_15 = os.getloadavg()
    if args.json:
        print(json.dumps([asdict(result) for result in results], indent=2))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {load_1:.1f} {load_5:.1f} {load_15:.1f}")
    print(
        f"{'size':>7} {'create direct':>14} {'create broker':>14} {'ratio':>6} "
        f"{'update direct':>14} {'update broker':>14} {'ratio':>6} {'broker peak RSS':>16}"
    )
    for result in results:
        print(
            f"{result.size_mb:>4} MB {result.create_direct_s:>13.2f}s "
            f"{result.create_broker_s:>13.2f}s {result.create_ratio:>6.2f} "
            f"{result.update_direct_s:>13.2f}s {result.update_broker_s:>13.2f}s "
            f"{result.update_ratio:>6.2f} {result.broker_peak_rss_mib:>12.1f} MiB"
        )


if __name__ == "__main__":
    main()
