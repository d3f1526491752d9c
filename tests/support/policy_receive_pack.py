"""A receive-pack program for `git push --receive-pack=...` that applies devaipod's push
policy in front of the real `git receive-pack`, over git's local (pipe) transport.

It exercises the broker's sans-IO pieces against the real git client without HTTP:
the advertisement rewrite, the request parser, the policy and the report-status
encoding. Configuration comes from the environment: DEVAIPOD_TEST_TARGET_BRANCH,
DEVAIPOD_TEST_ALLOW_FORCE and DEVAIPOD_TEST_ALLOW_CI ("1" or absent) and
DEVAIPOD_TEST_CLIENT_REPO (a repository holding the pushed commits, used for the ancestry
and CI checks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import IO

from devaipod.broker.advertisement import parse_ref_advertisement
from devaipod.broker.receive_pack import ReceivePackParser
from devaipod.broker.ref_policy import (
    decide_push,
    encode_report_status,
    is_ci_path,
    rewrite_receive_pack_advertisement,
)
from devaipod.scope.model import RepoOutput


def _copy(source_fd: int, sink: IO[bytes]) -> None:
    while chunk := os.read(source_fd, 65536):
        sink.write(chunk)
        sink.flush()
    sink.close()


def _has_object(repository: str, oid: str) -> bool:
    check = ["git", "-C", repository, "cat-file", "-e", f"{oid}^{{commit}}"]
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def main() -> int:
    repository = sys.argv[-1]
    output = RepoOutput(
        targetBranch=os.environ["DEVAIPOD_TEST_TARGET_BRANCH"],
        allowForcePush=os.environ.get("DEVAIPOD_TEST_ALLOW_FORCE") == "1",
        allowCiChanges=os.environ.get("DEVAIPOD_TEST_ALLOW_CI") == "1",
    )
    client_repo = os.environ["DEVAIPOD_TEST_CLIENT_REPO"]
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    upstream = subprocess.run(
        ["git", "receive-pack", "--advertise-refs", repository], capture_output=True, check=True
    ).stdout
    stdout.write(rewrite_receive_pack_advertisement(upstream, output.target_ref))
    stdout.flush()

    parser = ReceivePackParser()
    received = b""
    while not parser.head_complete:
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            return 0
        received += chunk
        parser.feed(chunk)
    if not parser.commands:
        return 0

    def is_ancestor(ancestor: str, descendant: str) -> bool:
        check = ["git", "-C", client_repo, "merge-base", "--is-ancestor", ancestor, descendant]
        return subprocess.run(check, check=False).returncode == 0

    tips = parse_ref_advertisement(upstream).tips

    def find_ci_path(new: str) -> str | None:
        known = [tip for tip in tips.values() if _has_object(client_repo, tip)]
        listing = [
            "git",
            "-C",
            client_repo,
            "log",
            "--format=",
            "--name-only",
            "-z",
            "--no-renames",
            "--root",
            "--diff-merges=combined",
            new,
            "--not",
            *known,
        ]
        paths = subprocess.run(listing, capture_output=True, check=True).stdout
        changed = (path.decode("utf-8", "surrogateescape") for path in paths.split(b"\0"))
        return next((path for path in changed if path and is_ci_path(path)), None)

    decision = decide_push(
        parser.commands,
        parser.capabilities,
        output,
        tips,
        is_ancestor,
        find_ci_path=find_ci_path,
        push_certificate=parser.push_certificate,
        push_options=parser.push_options,
    )
    if not decision.allowed:
        sideband = "side-band-64k" in parser.capabilities
        stdout.write(encode_report_status(decision, unpack_ok=True, sideband=sideband))
        stdout.flush()
        return 0

    backend = subprocess.Popen(
        ["git", "receive-pack", "--stateless-rpc", repository],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert backend.stdin is not None and backend.stdout is not None
    backend.stdin.write(received)
    backend.stdin.flush()
    threading.Thread(target=_copy, args=(stdin.fileno(), backend.stdin), daemon=True).start()
    _copy(backend.stdout.fileno(), stdout)
    return backend.wait()


if __name__ == "__main__":
    sys.exit(main())
