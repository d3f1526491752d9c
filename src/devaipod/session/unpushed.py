"""Find commits that exist only in a session's code volume, before `delete` drops it.

The agent controls the session repository's config, hooks and attributes, so none of
them is ever used on the host: only objects and refs are copied out of the exported
volume into a fresh bare repository with devaipod's own config, and git runs there
with hooks, fsmonitor and credential helpers disabled.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from devaipod.runtime.engine import Engine
from devaipod.runtime.plan import CodeSource
from devaipod.session.safe_git import redact_url, run_git

log = logging.getLogger(__name__)

# Only these parts of `.git` are copied out: enough to walk history, nothing that runs.
_COPIED = ("objects", "refs", "packed-refs", "HEAD")


def find_unpushed_commits(
    engine: Engine, code_volume: str, base_tips: Sequence[str], source: CodeSource | None
) -> list[str]:
    """Return the commits in `code_volume` that are neither in `base_tips` nor in the source.

    The source (a local repository, or a remote URL) is fetched for its current refs, so
    commits pushed since the session started count as saved. A source that cannot be
    fetched is skipped with a warning in the log, which can only make the list longer.
    """
    with tempfile.TemporaryDirectory(prefix="devaipod-inspect-") as scratch:
        workdir = Path(scratch)
        tar_path = workdir / "code.tar"
        engine.export_volume(code_volume, tar_path)

        repo = workdir / "inspect.git"
        run_git(["init", "--quiet", "--bare", str(repo)])
        if not _copy_git_data(tar_path, repo):
            log.warning("volume %s contains no git repository", code_volume)
            return []

        if source is not None:
            _fetch_source(repo, source)

        tips = _session_tips(repo)
        if not tips:
            return []
        known = [oid for oid in base_tips if _has_commit(repo, oid)]
        excluded = ["--not", *known, "--remotes=source"]
        result = run_git(["rev-list", *tips, *excluded], cwd=repo)
        return result.stdout.split()


def _copy_git_data(tar_path: Path, repo: Path) -> bool:
    """Extract `.git/objects`, `.git/refs`, `packed-refs` and `HEAD` into `repo`."""
    copied = False
    with tarfile.open(tar_path) as archive:
        for member in archive.getmembers():
            relative = _git_relative(member.name)
            if relative is None or not (member.isfile() or member.isdir()):
                continue
            if relative.parts[:3] == ("objects", "info", "alternates"):
                continue
            target = repo.joinpath(*relative.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = archive.extractfile(member)
            if extracted is None:
                continue
            with extracted, open(target, "wb") as out:
                out.write(extracted.read())
            copied = True
    return copied


def _git_relative(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name.removeprefix("./"))
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        return None
    if path.parts[0] != ".git" or path.parts[1] not in _COPIED:
        return None
    return PurePosixPath(*path.parts[1:])


def _fetch_source(repo: Path, source: CodeSource) -> None:
    result = run_git(
        ["fetch", "--quiet", "--no-tags", source.location, "+refs/heads/*:refs/remotes/source/*"],
        cwd=repo,
        check=False,
        keep_credentials=source.kind == "remote",
    )
    if result.returncode != 0:
        log.warning(
            "cannot fetch %s to compare commits: %s",
            redact_url(source.location),
            redact_url(result.stderr.strip()),
        )


def _session_tips(repo: Path) -> list[str]:
    refs = run_git(
        ["for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags"], cwd=repo
    ).stdout.split()
    head = run_git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=repo, check=False)
    if head.returncode == 0:
        refs.append(head.stdout.strip())
    return sorted({oid for oid in refs if _has_commit(repo, oid)})


def _has_commit(repo: Path, oid: str) -> bool:
    result = run_git(["cat-file", "-e", f"{oid}^{{commit}}"], cwd=repo, check=False)
    return result.returncode == 0
