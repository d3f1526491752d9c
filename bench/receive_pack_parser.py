"""Throughput and peak memory of the sans-IO receive-pack parser on a synthetic push.

Feeds a request of SIZE MB (one command, then a pack of random bytes) in 64 KiB chunks
to `ReceivePackParser` and reports the parser's rate and the process's peak RSS. Each
size runs in its own subprocess so peak RSS is per size. The parser's cost is the
request head; the pack only passes through, so the rate mostly shows per-chunk overhead.

Usage: .venv/bin/python bench/receive_pack_parser.py --sizes-mb 20 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from devaipod.broker.pktline import FLUSH, encode_pkt_line
from devaipod.broker.receive_pack import ReceivePackParser

CHUNK = 64 * 1024


def measure(size_mb: int) -> dict[str, float]:
    head = encode_pkt_line(
        b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/devaipod/bench\0report-status side-band-64k\n"
    )
    header = head + FLUSH + b"PACK\x00\x00\x00\x02\x00\x00\x00\x01"
    block = os.urandom(CHUNK)
    chunk_count = size_mb * 1024 * 1024 // CHUNK

    total = len(header) + chunk_count * len(block)
    parser = ReceivePackParser()
    start = time.perf_counter()
    parser.feed(header)
    for _ in range(chunk_count):
        parser.feed(block)
    parser.finish()
    parser_seconds = time.perf_counter() - start

    assert parser.pack_length + parser.head_length == total
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size_mb": size_mb,
        "parser_mb_per_s": size_mb / parser_seconds,
        "parser_seconds": parser_seconds,
        "peak_rss_mib": peak_kib / 1024,
    }


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--sizes-mb", type=int, nargs="+", default=[20, 200])
    arguments.add_argument("--one", type=int, help=argparse.SUPPRESS)
    options = arguments.parse_args()

    if options.one is not None:
        print(json.dumps(measure(options.one)))
        return 0

    print(f"{'size MB':>8} {'parser MB/s':>12} {'parser s':>9} {'peak RSS MiB':>13}")
    for size in options.sizes_mb:
        result = subprocess.run(
            [sys.executable, __file__, "--one", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(result.stdout)
        print(
            f"{row['size_mb']:>8} {row['parser_mb_per_s']:>12.0f} {row['parser_seconds']:>9.3f} "
            f"{row['peak_rss_mib']:>13.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
