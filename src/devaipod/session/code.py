"""The session's code: cloned on the host into a temporary directory, then copied into a volume.

The host repository is only read (clone and fetch, with hooks and fsmonitor off and
`GIT_OPTIONAL_LOCKS=0` so not even the index is refreshed); no container mounts it.
Uncommitted changes are refused rather than carried over, so the agent starts from a
state that exists as commits on the host.
"""

from __future__ import annotations

import logging
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from devaipod.errors import UserError
from devaipod.runtime.engine import Engine
from devaipod.runtime.plan import CodeSource
from devaipod.session.safe_git import GitError, redact_url, run_git

log = logging.getLogger(__name__)

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)\S+$")
_URL = re.compile(r"^(https?|ssh|git|file)://\S+$")

DEFAULT_GIT_NAME = "devaipod agent"
DEFAULT_GIT_EMAIL = "agent@devaipod.invalid"


@dataclass(frozen=True)
class ClonedCode:
    """A clone of the source on the host, ready to copy into the code volume."""

    path: Path
    head: str
    branch: str | None
    base_tips: tuple[str, ...]


def resolve_source(source: str) -> CodeSource:
    """Classify SOURCE as a remote git URL or a local repository path.

    Raises UserError for a path that does not exist or is not inside a git work tree.
    """
    if _URL.match(source) or _SCP_LIKE.match(source):
        return CodeSource(kind="remote", location=source)

    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise UserError(
            f"source {source!r} is neither an existing path nor a git URL",
            fix="give a local repository path, an https:// URL or user@host:path",
        )
    result = run_git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    if result.returncode != 0:
        raise UserError(
            f"{path} is not inside a git repository",
            fix="run `git init` and commit, or give the path of a git work tree",
        )
    return CodeSource(kind="local", location=result.stdout.strip())


def check_clean(source: CodeSource) -> None:
    """Raise UserError when a local source has uncommitted or untracked changes."""
    if source.kind != "local":
        return
    status = run_git(
        ["status", "--porcelain=v1", "--untracked-files=normal"], cwd=Path(source.location)
    )
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        raise UserError(
            f"{source.location} has uncommitted changes ({shown}); the agent only gets commits",
            fix="commit them (or `git stash -u`) and run `devaipod up` again",
        )


def clone_source(source: CodeSource, workdir: Path, directory_name: str = "code") -> ClonedCode:
    """Clone `source` into `workdir/directory_name` on the host, at the source's current HEAD."""
    destination = workdir / directory_name
    if source.kind == "remote":
        run_git(
            ["clone", "--quiet", "--", source.location, str(destination)], keep_credentials=True
        )
        head = run_git(["rev-parse", "HEAD"], cwd=destination).stdout.strip()
        branch = _current_branch(destination)
    else:
        host = Path(source.location)
        head = run_git(["rev-parse", "HEAD"], cwd=host).stdout.strip()
        branch = _current_branch(host)
        run_git(["clone", "--quiet", "--no-hardlinks", "--", str(host), str(destination)])
        _check_out_host_head(destination, host, head, branch)
        run_git(["remote", "remove", "origin"], cwd=destination)
        _copy_identity(host, destination)

    base_tips = tuple(
        sorted(
            set(run_git(["for-each-ref", "--format=%(objectname)"], cwd=destination).stdout.split())
            | {head}
        )
    )
    return ClonedCode(path=destination, head=head, branch=branch, base_tips=base_tips)


def _current_branch(repo: Path) -> str | None:
    result = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo, check=False)
    return result.stdout.strip() or None


def _check_out_host_head(destination: Path, host: Path, head: str, branch: str | None) -> None:
    """Make the clone's HEAD the host's HEAD, also for worktrees and detached heads."""
    if run_git(["cat-file", "-e", f"{head}^{{commit}}"], cwd=destination, check=False).returncode:
        run_git(["fetch", "--quiet", str(host), head], cwd=destination)
    if branch:
        run_git(["checkout", "--quiet", "-B", branch, head], cwd=destination)
    else:
        run_git(["checkout", "--quiet", "--detach", head], cwd=destination)


def _copy_identity(host: Path, destination: Path) -> None:
    """Give the session repository the host user's commit identity, or a neutral one."""
    for key, default in (("user.name", DEFAULT_GIT_NAME), ("user.email", DEFAULT_GIT_EMAIL)):
        value = run_git(["config", "--get", key], cwd=host, check=False).stdout.strip()
        run_git(["config", key, value or default], cwd=destination)


def write_tar(tree: Path, tar_path: Path, uid: int, gid: int) -> None:
    """Write `tree` into a tar archive with every entry owned by `uid`:`gid`."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid = uid, gid
        info.uname, info.gname = "", ""
        return info

    with tarfile.open(tar_path, "w") as archive:
        for child in sorted(tree.iterdir()):
            archive.add(child, arcname=child.name, filter=owned)


def import_code(engine: Engine, volume: str, cloned: ClonedCode, uid: int, gid: int) -> None:
    """Copy a host clone into `volume`, every file owned by the agent user."""
    tar_path = cloned.path.parent / f"{cloned.path.name}.tar"
    write_tar(cloned.path, tar_path, uid, gid)
    try:
        engine.import_volume(volume, tar_path)
    finally:
        tar_path.unlink(missing_ok=True)
    log.info("copied the clone at %s into volume %s", cloned.head[:12], volume)


def clone_for_session(source: CodeSource, workdir: Path, directory_name: str) -> ClonedCode:
    """Clone `source` into `workdir/directory_name`, turning git failures into a UserError."""
    try:
        return clone_source(source, workdir, directory_name)
    except GitError as error:
        raise UserError(
            f"cannot clone {redact_url(source.location)}: {redact_url(error.message)}",
            fix="check that the source is reachable and readable",
        ) from error
