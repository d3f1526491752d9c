"""Bare mirrors of upstream repositories and pack quarantines for the push ancestry check.

The broker fetches the upstream tip into a mirror with its own token, indexes an
incoming pack into a temporary object directory that borrows the mirror's objects, and
runs git there to check fast-forwards and to list the paths that new commits change.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Settings that keep repository config, hooks and helpers from running code in the broker.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "credential.helper=",
    "http.followRedirects=false",
    "protocol.file.allow=never",
    "protocol.ext.allow=never",
)


_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_PATHS_CHUNK_BYTES = 65536


class MirrorError(Exception):
    """A git command on a mirror or quarantine failed. Its message contains no secret."""


def _base_env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in {"HOME", "XDG_CONFIG_HOME"}
    }
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
        }
    )
    return env


def _git_command(*args: str) -> list[str]:
    command = ["git"]
    for setting in _SAFE_CONFIG:
        command += ["-c", setting]
    return command + list(args)


def basic_authorization(username: str, token: str) -> str:
    """Return the value of an HTTP Basic `Authorization` header for the upstream token."""
    encoded = base64.b64encode(f"{username}:{token}".encode()).decode("ascii")
    return f"Basic {encoded}"


class RepoMirror:
    """A bare mirror of one upstream repository under the broker's state directory."""

    def __init__(self, state_dir: Path, upstream_url: str) -> None:
        digest = hashlib.sha256(upstream_url.encode()).hexdigest()[:24]
        self.upstream_url = upstream_url
        self.path = state_dir / "mirrors" / f"{digest}.git"
        self._home = state_dir / "git-home"
        self._lock = threading.Lock()

    def env(self) -> dict[str, str]:
        env = _base_env(self._home)
        env["GIT_DIR"] = str(self.path)
        return env

    def ensure(self) -> None:
        """Create the bare mirror repository if it does not exist yet."""
        if (self.path / "objects").is_dir():
            return
        self._home.mkdir(parents=True, exist_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._run(["init", "--bare", "--quiet", str(self.path)], env=_base_env(self._home))

    def fetch(self, refspecs: list[str], authorization: str) -> None:
        """Fetch `refspecs` from the upstream into the mirror, authenticated by `authorization`.

        The `Authorization` header reaches git through the environment, so it is not in any
        process's argument list. Only the broker's own user can read it there.
        """
        with self._lock:
            self.ensure()
            env = self.env()
            env["GIT_CONFIG_COUNT"] = "1"
            env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
            env["GIT_CONFIG_VALUE_0"] = f"Authorization: {authorization}"
            self._run(
                [
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--no-recurse-submodules",
                    self.upstream_url,
                    *refspecs,
                ],
                env=env,
            )

    def _run(self, args: list[str], *, env: dict[str, str]) -> None:
        completed = subprocess.run(
            _git_command(*args), env=env, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            # git does not print http.extraHeader values in its errors, so stderr is safe to log.
            raise MirrorError(
                f"git {args[0]} on mirror {self.path} failed with exit code "
                f"{completed.returncode}: {completed.stderr.strip()[:500]}"
            )


class PackQuarantine:
    """An incoming pack indexed into a temporary object directory next to a mirror.

    The quarantine reads the mirror's objects through `GIT_ALTERNATE_OBJECT_DIRECTORIES`
    and writes only to its own directory, so a refused pack never enters the mirror.
    """

    def __init__(self, mirror: RepoMirror, directory: Path) -> None:
        self._mirror = mirror
        self._objects = directory / "objects"
        self._indexed = False

    def _env(self) -> dict[str, str]:
        env = self._mirror.env()
        env["GIT_OBJECT_DIRECTORY"] = str(self._objects)
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(self._mirror.path / "objects")
        return env

    def index_pack(self, spool: Path, offset: int) -> None:
        """Index the pack that starts at byte `offset` of `spool`, resolving thin deltas."""
        if self._indexed:
            return
        self._mirror.ensure()
        (self._objects / "pack").mkdir(parents=True, exist_ok=True)
        with spool.open("rb") as pack:
            pack.seek(offset)
            completed = subprocess.run(
                _git_command("index-pack", "--stdin", "--fix-thin"),
                stdin=pack,
                env=self._env(),
                capture_output=True,
                text=True,
                check=False,
            )
        if completed.returncode != 0:
            raise MirrorError(
                f"git index-pack of the pushed pack failed with exit code "
                f"{completed.returncode}: {completed.stderr.strip()[:500]}"
            )
        self._indexed = True

    def is_ancestor(self, ancestor_oid: str, descendant_oid: str) -> bool:
        """Return whether `ancestor_oid` is reachable from `descendant_oid`.

        A missing object or any git error counts as "not an ancestor", so the check fails
        closed.
        """
        completed = subprocess.run(
            _git_command("merge-base", "--is-ancestor", ancestor_oid, descendant_oid),
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode not in (0, 1):
            log.warning(
                "ancestry check %s..%s failed with exit code %d: %s",
                ancestor_oid,
                descendant_oid,
                completed.returncode,
                completed.stderr.strip()[:500],
            )
        return completed.returncode == 0

    def first_changed_path(self, tip_oid: str, matches: Callable[[str], bool]) -> str | None:
        """Return the first path matching `matches` that a new commit changes, or None.

        New commits are those reachable from `tip_oid` and from no ref of the mirror. A
        commit's paths are compared with its parent (the empty tree for a root commit),
        renames count as a deletion and an addition, and a merge changes only the paths
        that differ from every parent. Commits are read newest first, as git writes
        them, and git is stopped at the first match. Raises MirrorError when git fails,
        for example on a missing object, so the caller can fail closed.
        """
        if not _OID.fullmatch(tip_oid):
            raise MirrorError(f"not an object id: {tip_oid!r}")
        self._objects.mkdir(parents=True, exist_ok=True)
        command = _git_command(
            "log", "--format=", "--name-only", "-z", "--no-renames", "--root",
            "--diff-merges=combined", tip_oid, "--not", "--all",
        )  # fmt: skip
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                command, env=self._env(), stdout=subprocess.PIPE, stderr=errors
            )
            assert process.stdout is not None
            found = _first_match(process.stdout.fileno(), matches)
            if found is not None:
                process.kill()
            process.stdout.close()
            returncode = process.wait()
            if found is None and returncode != 0:
                errors.seek(0)
                stderr = errors.read(500).decode("utf-8", "replace").strip()
                raise MirrorError(
                    f"git log of the pushed commits failed with exit code {returncode}: {stderr}"
                )
        return found


def _first_match(fd: int, matches: Callable[[str], bool]) -> str | None:
    """Read NUL-separated paths from `fd` until one matches; return it, or None at the end."""
    pending = b""
    while chunk := os.read(fd, _PATHS_CHUNK_BYTES):
        *paths, pending = (pending + chunk).split(b"\0")
        for raw in paths:
            path = raw.decode("utf-8", "surrogateescape")
            if path and matches(path):
                return path
    path = pending.decode("utf-8", "surrogateescape")
    return path if path and matches(path) else None
