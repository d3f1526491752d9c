"""`devaipod demo`: a real local-mode session on a sample project, driven by a scripted agent.

The scripted agent is a shell script, not an AI: it delivers one commit on its branch,
then tries four pushes the broker must refuse.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devaipod.broker.audit import read_entries
from devaipod.errors import UserError
from devaipod.runtime.engine import Engine
from devaipod.session import gateway
from devaipod.session.manage import delete_session, session_status
from devaipod.session.naming import generate_session_name
from devaipod.session.paths import session_audit_path
from devaipod.session.safe_git import run_git
from devaipod.session.up import UpRequest, apply_session, prepare_session

log = logging.getLogger(__name__)

SCRIPTED_AGENT_NAME = "devaipod-scripted-demo"
DEFAULT_IMAGE = "docker.io/library/buildpack-deps:bookworm-scm"
TEST_IMAGE_ENV = "DEVAIPOD_TEST_IMAGE"
AGENT_TIMEOUT_SECONDS = 300.0

# Each step prints a marker line, so the transcript can be split per attempt.
_SCRIPT = """\
export GIT_PAGER=cat GIT_TERMINAL_PROMPT=0
git config color.ui never
git config user.name "{name}"
git config user.email "scripted-demo@devaipod.invalid"
echo "{name}: a scripted agent (a shell script, not an AI)"
echo "demo change made in the session" >> DEMO.md
git add DEMO.md && git commit -q -m "Add a note from the demo session"
echo "== step deliver: push the session branch"
git push origin HEAD:refs/heads/{branch} 2>&1
echo "== step main: push to main"
git push origin HEAD:refs/heads/main 2>&1
echo "== step tag: push a tag"
git tag demo-v1 && git push origin refs/tags/demo-v1 2>&1
echo "== step force: rewrite the delivered commit and force-push"
git commit -q --amend -m "Rewritten note" && git push --force origin HEAD:refs/heads/{branch} 2>&1
echo "== step delete: delete the session branch"
git push origin :refs/heads/{branch} 2>&1
echo "== {name}: done"
"""

DENIED_STEPS = ("main", "tag", "force", "delete")


@dataclass
class DemoResult:
    """The outcome of a demo: the delivered commits and the rejected pushes."""

    project: Path
    session: str
    branch: str
    delivered_commits: list[str]
    transcript: str
    audit: list[dict[str, object]]
    refusals: dict[str, str] = field(default_factory=dict)
    """Step name (main, tag, force, delete) -> the `! [remote rejected]` line git printed."""

    @property
    def denied_entries(self) -> list[dict[str, object]]:
        return [entry for entry in self.audit if entry.get("decision") == "deny"]


def default_image() -> str:
    """Return the demo's image: DEVAIPOD_TEST_IMAGE when set, else DEFAULT_IMAGE."""
    return os.environ.get(TEST_IMAGE_ENV, "").strip() or DEFAULT_IMAGE


def create_sample_project(parent: Path, image: str) -> Path:
    """Create a git repository with one commit and a devcontainer.json that uses `image`."""
    project = parent / "sample-project"
    (project / ".devcontainer").mkdir(parents=True)
    (project / "README.md").write_text("# Sample project\n\nCreated by `devaipod demo`.\n")
    (project / "hello.py").write_text('print("hello from the sample project")\n')
    (project / ".devcontainer" / "devcontainer.json").write_text(
        json.dumps({"name": "devaipod demo", "image": image}, indent=2) + "\n"
    )
    identity = ["-c", "user.name=devaipod demo", "-c", "user.email=demo@devaipod.invalid"]
    run_git(["init", "-q", "-b", "main"], cwd=project)
    run_git(["add", "."], cwd=project)
    run_git([*identity, "commit", "-q", "-m", "Start the sample project"], cwd=project)
    return project


def scripted_agent_command(branch: str) -> str:
    """Return the `--agent` command line of the scripted agent, named SCRIPTED_AGENT_NAME."""
    script = _SCRIPT.format(name=SCRIPTED_AGENT_NAME, branch=branch)
    quoted = "'" + script.replace("'", "'\"'\"'") + "'"
    return f"sh -c {quoted} {SCRIPTED_AGENT_NAME}"


def run_demo(
    engine: Engine,
    *,
    image: str | None = None,
    gateway_base_image: str | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> DemoResult:
    """Create the sample project, run the session to the end, collect the results, delete it.

    The sample project stays on disk; its path is in the result.
    """
    parent = workdir or Path(tempfile.mkdtemp(prefix="devaipod-demo-"))
    chosen_image = image or default_image()
    progress(f"creating the sample project in {parent} (image {chosen_image})")
    project = create_sample_project(parent, chosen_image)
    session = generate_session_name("demo")
    branch = gateway.output_branch(session)

    request = UpRequest(
        source=str(project),
        task="demo",
        agent=scripted_agent_command(branch),
        name=session,
        interactive=False,
        gateway=True,
        gateway_base_image=gateway_base_image,
    )
    prepared = prepare_session(request, engine, progress=progress)
    try:
        progress(f"starting session {session}")
        apply_session(prepared, engine, progress=progress)
    finally:
        prepared.cleanup()

    try:
        progress(f"the scripted agent {SCRIPTED_AGENT_NAME} is running")
        _wait_for_agent(engine, session)
        transcript = _agent_output(engine, session)
        audit = read_entries(session_audit_path(session))
    finally:
        progress(f"deleting session {session}")
        delete_session(engine, session, force=True)

    delivered = run_git(
        ["log", "--format=%h %s", f"main..refs/heads/{branch}"], cwd=project, check=False
    ).stdout.splitlines()
    return DemoResult(
        project=project,
        session=session,
        branch=branch,
        delivered_commits=delivered,
        transcript=transcript,
        audit=audit,
        refusals=_refusals(transcript),
    )


def _wait_for_agent(engine: Engine, session: str) -> None:
    deadline = time.monotonic() + AGENT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = session_status(engine, session).agent_status
        if status is not None and not status.running:
            return
        time.sleep(0.5)
    raise UserError(
        f"the scripted agent of {session} did not finish in {AGENT_TIMEOUT_SECONDS:.0f} s",
        fix=f"see `devaipod logs {session}`",
    )


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# git's progress lines, which show nothing about the broker's decisions.
_PROGRESS = re.compile(
    r"^(Enumerating objects|Counting objects|Compressing objects|Writing objects|"
    r"Delta compression|Total \d)"
)


def _agent_output(engine: Engine, session: str) -> str:
    logs = engine.run_engine(["logs", f"{session}-agent"], check=False)
    text = _ANSI.sub("", logs.stdout + logs.stderr).replace("\r", "\n")
    return "\n".join(
        line for line in text.splitlines() if line.strip() and not _PROGRESS.match(line)
    )


def _refusals(transcript: str) -> dict[str, str]:
    refusals: dict[str, str] = {}
    step: str | None = None
    for line in transcript.splitlines():
        found = re.match(r"== step (\w+):", line)
        if found:
            step = found.group(1)
        elif step in DENIED_STEPS and "[remote rejected]" in line:
            refusals.setdefault(step, line.strip())
    return refusals
