"""Benchmark: throughput of one large download direct, through the devaipod egress proxy
(CONNECT tunnel and plain http:// forwarding), and through tinyproxy, measured side by side.

Everything runs on 127.0.0.1: a target server sending SIZE bytes with sendfile, the
proxies as separate processes, and curl as the client. Run from the repository root:

    .venv/bin/python bench/egress_proxy.py --size-mb 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CREDENTIAL = "bench-credential-0123456789"
TARGET_NAME = "target.bench"


def serve_target(listener: socket.socket, payload: Path) -> None:
    """Serve the payload file for every request on `listener`, one thread per client."""
    size = payload.stat().st_size

    def handle(connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(65536)
                if not data:
                    return
                request += data
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            connection.sendall(head.encode())
            with payload.open("rb") as body:
                connection.sendfile(body)

    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(connection,), daemon=True).start()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within 20 s")


@contextmanager
def running(command: list[str], port: int, name: str) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, name)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def devaipod_proxy_command(workdir: Path, port: int, target_port: int) -> list[str]:
    credential_file = workdir / "credential"
    credential_file.write_text(CREDENTIAL)
    return [
        sys.executable,
        "-m",
        "devaipod",
        "egress-proxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--no-default-allow",
        "--allow",
        f"{TARGET_NAME}:{target_port}",
        "--allow",
        f"127.0.0.1:{target_port}",
        "--resolve",
        f"{TARGET_NAME}=127.0.0.1",
        "--credential-file",
        str(credential_file),
        "--audit-log",
        str(workdir / "audit.jsonl"),
    ]


def tinyproxy_command(workdir: Path, port: int, target_port: int) -> list[str]:
    # A minimal tinyproxy 1.11 configuration: loopback only, Basic authentication like
    # the devaipod proxy, CONNECT allowed to the target's port, critical log lines only.
    config = workdir / "tinyproxy.conf"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "Listen 127.0.0.1",
                "Timeout 600",
                "MaxClients 100",
                "Allow 127.0.0.1",
                f"BasicAuth bench {CREDENTIAL}",
                f"ConnectPort {target_port}",
                "LogLevel Critical",
                "DisableViaHeader Yes",
                "User nobody" if os.geteuid() == 0 else "",
                "Group nogroup" if os.geteuid() == 0 else "",
            ]
        )
        + "\n"
    )
    tinyproxy = shutil.which("tinyproxy")
    if tinyproxy is None:
        raise RuntimeError("tinyproxy is not installed: apt-get install -y tinyproxy")
    return [tinyproxy, "-d", "-c", str(config)]


def download_seconds(url: str, proxy: list[str], size: int) -> float:
    """Download `url` with curl and return curl's total transfer time in seconds.

    curl's own `time_total` leaves out the start-up of the curl process itself.
    """
    completed = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--output",
            "/dev/null",
            "--write-out",
            "%{size_download} %{time_total}",
            *proxy,
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"curl failed for {url}: {completed.stderr.strip()}")
    received, seconds = completed.stdout.split()
    if int(received) != size:
        raise RuntimeError(f"curl received {received} bytes, expected {size}")
    return float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mb", type=int, default=20, help="Transfer size in MiB (default: 20)."
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="Downloads per route; median and best are reported (default: 5).",
    )
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024

    with tempfile.TemporaryDirectory(prefix="devaipod-bench-") as directory:
        workdir = Path(directory)
        payload = workdir / "payload"
        with payload.open("wb") as file:
            file.truncate(size)

        listener = socket.create_server(("127.0.0.1", 0))
        target_port = int(listener.getsockname()[1])
        threading.Thread(target=serve_target, args=(listener, payload), daemon=True).start()

        devaipod_port, tinyproxy_port = free_port(), free_port()
        target_url = f"http://{TARGET_NAME}:{target_port}/payload"
        direct_url = f"http://127.0.0.1:{target_port}/payload"
        devaipod_proxy = [
            "--proxy",
            f"http://127.0.0.1:{devaipod_port}",
            "--proxy-user",
            f"agent:{CREDENTIAL}",
        ]
        tiny_proxy = [
            "--proxy",
            f"http://127.0.0.1:{tinyproxy_port}",
            "--proxy-user",
            f"bench:{CREDENTIAL}",
        ]

        routes: dict[str, tuple[str, list[str]]] = {
            "direct": (direct_url, []),
            "devaipod CONNECT": (target_url, [*devaipod_proxy, "--proxytunnel"]),
            "tinyproxy CONNECT": (direct_url, [*tiny_proxy, "--proxytunnel"]),
            "devaipod http://": (target_url, devaipod_proxy),
            "tinyproxy http://": (direct_url, tiny_proxy),
        }
        timings: dict[str, list[float]] = {name: [] for name in routes}

        with (
            running(
                devaipod_proxy_command(workdir, devaipod_port, target_port),
                devaipod_port,
                "devaipod egress-proxy",
            ),
            running(
                tinyproxy_command(workdir, tinyproxy_port, target_port), tinyproxy_port, "tinyproxy"
            ),
        ):
            # Interleave the routes so that drift of the machine's load affects all alike.
            for _ in range(args.repeat):
                for name, (url, proxy) in routes.items():
                    timings[name].append(download_seconds(url, proxy, size))

        listener.close()

    mebibytes = size / (1024 * 1024)
    median_rate = {name: mebibytes / statistics.median(times) for name, times in timings.items()}
    best_rate = {name: mebibytes / min(times) for name, times in timings.items()}
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"transfer: {args.size_mb} MiB per download, {args.repeat} downloads per route, "
        f"curl client, load average {load}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'route':<18} {'median MiB/s':>12} {'best MiB/s':>11} {'vs direct':>10} "
        f"{'vs tinyproxy':>13}"
    )
    for name, rate in median_rate.items():
        tiny_name = "tinyproxy http://" if name.endswith("http://") else "tinyproxy CONNECT"
        versus_tiny = rate / median_rate[tiny_name] if name.startswith("devaipod") else None
        tiny_text = f"{versus_tiny:>12.2f}x" if versus_tiny is not None else ""
        print(
            f"{name:<18} {rate:>12.1f} {best_rate[name]:>11.1f} "
            f"{rate / median_rate['direct']:>9.2f}x {tiny_text}"
        )
    print("ratios compare medians")
    return 0


if __name__ == "__main__":
    sys.exit(main())
