"""`run URL`: a headless session on a forge issue, pull request or repository, in forge mode.

The host reads the forge (default branch, issue or pull request) and clones the repository
at the target branch. The session starts with the broker in front of the forge, and `run`
waits for the agent, then summarises the deliveries in the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devaipod.agents.adapters import resolve_agent
from devaipod.agents.mcp_config import McpEndpointInfo, agent_home_files, has_mcp_client
from devaipod.broker.audit import AuditFormatError, read_entries
from devaipod.broker.server import DEFAULT_UPSTREAM_USERNAME
from devaipod.config import ForgeSettings, UserConfig, load_config
from devaipod.errors import EngineError, UserError
from devaipod.forge.clients import ForgeContext, fetch_forge_context
from devaipod.forge.tokens import ForgeToken, discover_token, environment_variables
from devaipod.forge.urls import ForgeUrl, parse_forge_url
from devaipod.runtime.engine import Engine
from devaipod.runtime.plan import LABEL_ROLE, LABEL_SESSION, LABEL_TMUX, CodeSource, Role
from devaipod.runtime.planner import AGENT_EXIT_FILE
from devaipod.scope.derive import derive_scope, push_to_pull_request_head
from devaipod.scope.model import RepoOutput, RepoScope, Scope, load_scope
from devaipod.session import gateway
from devaipod.session.code import DEFAULT_GIT_EMAIL, DEFAULT_GIT_NAME, ClonedCode
from devaipod.session.delivery import Delivery, summarise_delivery
from devaipod.session.manage import stop_session
from devaipod.session.naming import generate_session_name, session_name
from devaipod.session.paths import session_audit_path, session_dir
from devaipod.session.safe_git import GitError, redact_url, run_git
from devaipod.session.task_prompt import build_task_prompt
from devaipod.session.up import (
    PreparedSession,
    UpRequest,
    apply_session,
    plan_agent_session,
)
from devaipod.session.workspace import workspace_settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

DEFAULT_TIMEOUT_SECONDS = 3600.0
POLL_SECONDS = 1.0
# How often the wait reports that the agent still runs.
PROGRESS_EVERY_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10

# The ref of a pull/merge request's head commit in the base repository, per forge.
_PULL_HEAD_REFS = {
    "github": "refs/pull/{number}/head",
    "forgejo": "refs/pull/{number}/head",
    "gitlab": "refs/merge-requests/{number}/head",
}


@dataclass(frozen=True)
class RunRequest:
    """The `run` command's inputs."""

    url: str
    task: str | None = None
    agent: str | None = None
    scope_file: Path | None = None
    name: str | None = None
    image: str | None = None
    network: str | None = None
    gateway_base_image: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    wait: bool = True


@dataclass(frozen=True)
class RunTarget:
    """The forge facts, scope and branches `run` resolves before it creates anything."""

    forge_url: ForgeUrl
    settings: ForgeSettings
    token: ForgeToken = field(repr=False)
    context: ForgeContext
    scope: Scope
    branch: str
    base_branch: str


@dataclass(frozen=True)
class RunResult:
    """A run session, and once the agent finished, what it delivered."""

    session: str
    target: RunTarget
    agent_exit_code: int | None
    finished: bool
    timed_out: bool
    delivery: Delivery
    audit_log: Path

    def to_json(self) -> dict[str, Any]:
        """Return the object `run --json` prints."""
        forge_url = self.target.forge_url
        return {
            "session": self.session,
            "url": forge_url.item_url or forge_url.repo_url,
            "forge": forge_url.kind,
            "repository": forge_url.repo_path,
            "branch": self.target.branch,
            "base_branch": self.target.base_branch,
            "agent_exit_code": self.agent_exit_code,
            **self.delivery.to_json(),
            "audit_log": str(self.audit_log),
        }


def resolve_target(
    request: RunRequest,
    config: UserConfig,
    env: dict[str, str],
    progress: Progress,
) -> RunTarget:
    """Parse the URL, find the token, read the forge and settle the scope and the branches.

    Raises UserError for a bad URL, a repository URL without a task, a missing token, a
    forge error, or a `--scope` file that does not cover the URL's repository.
    """
    forge_url = parse_forge_url(request.url, config)
    if forge_url.number is None and not request.task:
        raise UserError(
            f"{forge_url.repo_url} is a repository URL, which gives the agent no task",
            fix="add a TASK argument, or pass an issue or pull request URL",
        )
    settings = config.forge_settings(forge_url.host)
    assert settings is not None, "parse_forge_url accepts known hosts only"

    token = discover_token(forge_url.kind, forge_url.host, settings, env=env)
    if token is None:
        raise UserError(
            f"no {forge_url.kind} token found for {forge_url.host}",
            fix=_token_fix(forge_url, settings),
        )

    progress(f"reading {forge_url.item_url or forge_url.repo_url}")
    context = asyncio.run(fetch_forge_context(forge_url, config, env=env))

    if request.scope_file is not None:
        scope = load_scope(request.scope_file)
    else:
        scope = derive_scope(forge_url)
        if context.item is not None:
            scope = push_to_pull_request_head(
                scope, forge_url, context.item,
                default_branch=context.repository.default_branch,
            )
    index, output = _output_of(scope, forge_url, request.scope_file)
    base_branch = output.baseBranch or context.repository.default_branch
    if output.baseBranch is None:
        # The broker pins the same default branch at start, and the scope names it explicitly.
        output = RepoOutput.model_validate(output.model_dump() | {"baseBranch": base_branch})
        repos = list(scope.repos)
        repos[index] = RepoScope(input=repos[index].input, output=output)
        scope = scope.model_copy(update={"repos": repos})
    return RunTarget(
        forge_url=forge_url,
        settings=settings,
        token=token,
        context=context,
        scope=scope,
        branch=output.targetBranch,
        base_branch=base_branch,
    )


def _token_fix(forge_url: ForgeUrl, settings: ForgeSettings) -> str:
    variables = " or ".join(environment_variables(forge_url.kind, forge_url.host))
    if forge_url.kind == "gitlab" and forge_url.host != "gitlab.com":
        variables += f" with GITLAB_HOST={forge_url.host}"
    cli = {"github": "`gh auth login`", "gitlab": "`glab auth login`", "forgejo": "`tea login add`"}
    secret = f'token_secret = "NAME" under [forges."{forge_url.host}"] in the config file'
    if settings.token_secret:
        secret = f"create the podman secret {settings.token_secret!r} (token_secret)"
    return f"set {variables}, {secret}, or log in with {cli[forge_url.kind]}"


def _output_of(
    scope: Scope, forge_url: ForgeUrl, scope_file: Path | None
) -> tuple[int, RepoOutput]:
    """Return the index and output of the scope's repository that `forge_url` names."""
    expected = forge_url.clone_url.removesuffix(".git").casefold()
    for index, repo in enumerate(scope.repos):
        if repo.input.url.rstrip("/").removesuffix(".git").casefold() != expected:
            continue
        if repo.output is None:
            raise UserError(
                f"scope {scope_file}: repos[{index}] ({repo.input.url}) has no output branch",
                fix="add output.targetBranch to that repository in the scope file",
            )
        return index, repo.output
    raise UserError(
        f"scope {scope_file} does not declare the repository {forge_url.clone_url}",
        fix=f"add it to the scope's repos (input.url: {forge_url.clone_url}), "
        "or leave out --scope to use the derived scope",
    )


def clone_target(target: RunTarget, workdir: Path, progress: Progress) -> ClonedCode:
    """Clone the repository into `workdir/<name>` and check out the target branch.

    The token reaches git as an `http.<url>.extraHeader` in its environment, so it is in
    no argv, log line or config file of the clone. The branch starts from its current tip
    when it exists on the forge, from a fork's pull request head when the forge has it,
    and otherwise from the base branch.
    """
    forge_url = target.forge_url
    destination = workdir / forge_url.name
    header = base64.b64encode(
        f"{DEFAULT_UPSTREAM_USERNAME}:{target.token.value}".encode()
    ).decode("ascii")
    secret_config = {f"http.{forge_url.web_base}/.extraHeader": f"Authorization: Basic {header}"}
    fixed = ["-c", "http.followRedirects=false"]

    progress(f"cloning {forge_url.clone_url}")
    try:
        run_git(
            [*fixed, "clone", "--quiet", "--no-checkout", "--", forge_url.clone_url,
             str(destination)],
            secret_config=secret_config,
        )  # fmt: skip
        start = _branch_start(target, destination, fixed, secret_config)
        run_git(["checkout", "--quiet", "-B", target.branch, start], cwd=destination)
    except GitError as error:
        raise UserError(
            f"cannot clone {forge_url.clone_url}: {redact_url(error.message)}",
            fix="check that the token can read the repository and the forge is reachable",
        ) from error
    for key, value in (("user.name", DEFAULT_GIT_NAME), ("user.email", DEFAULT_GIT_EMAIL)):
        run_git(["config", key, value], cwd=destination)

    head = run_git(["rev-parse", "HEAD"], cwd=destination).stdout.strip()
    tips = run_git(["for-each-ref", "--format=%(objectname)"], cwd=destination).stdout.split()
    log.info("cloned %s at %s on branch %s", forge_url.repo_path, head[:12], target.branch)
    return ClonedCode(
        path=destination,
        head=head,
        branch=target.branch,
        base_tips=tuple(sorted({*tips, head})),
    )


def _branch_start(
    target: RunTarget, clone: Path, fixed: list[str], secret_config: dict[str, str]
) -> str:
    existing = f"refs/remotes/origin/{target.branch}"
    if _has_ref(clone, existing):
        return existing

    item = target.context.item
    forge_url = target.forge_url
    if item is not None and item.is_pull_request and forge_url.number is not None:
        pull_head = _PULL_HEAD_REFS[forge_url.kind].format(number=forge_url.number)
        fetched = run_git(
            [*fixed, "fetch", "--quiet", "origin", f"+{pull_head}:refs/devaipod/pull-head"],
            cwd=clone,
            check=False,
            secret_config=secret_config,
        )
        if fetched.returncode == 0:
            return "refs/devaipod/pull-head"
        log.warning("cannot fetch %s of %s; starting %s from %s: %s", pull_head,
                    forge_url.repo_path, target.branch, target.base_branch,
                    redact_url(fetched.stderr.strip()[-300:]))

    base = f"refs/remotes/origin/{target.base_branch}"
    if _has_ref(clone, base):
        return base
    raise GitError(f"the repository has no branch {target.base_branch!r}")


def _has_ref(clone: Path, ref: str) -> bool:
    result = run_git(["rev-parse", "--verify", "--quiet", ref], cwd=clone, check=False)
    return result.returncode == 0


def _item_name(forge_url: ForgeUrl) -> str:
    if forge_url.item == "issue":
        return f"{forge_url.name}-issue-{forge_url.number}"
    if forge_url.item == "pull_request":
        return f"{forge_url.name}-pr-{forge_url.number}"
    return forge_url.name


def export_base_tree(clone: Path, base_branch: str, destination: Path) -> Path:
    """Write the files of `base_branch`'s tip in `clone` to `destination` and return it.

    `run` reads devcontainer.json and builds the image from this tree, not from the
    checked-out branch. That branch may come from a fork or from an earlier agent, and
    its devcontainer.json could mount host folders or pass host variables into the session.
    """
    destination.mkdir(parents=True)
    tar_path = destination.with_suffix(".tar")
    try:
        run_git(["archive", "--format=tar", f"--output={tar_path}",
                 f"refs/remotes/origin/{base_branch}"], cwd=clone)
        with tarfile.open(tar_path) as tar:
            tar.extractall(destination, filter="data")
    except GitError as error:
        raise UserError(
            f"cannot read branch {base_branch!r} of the clone: {error.message}",
            fix="check that the repository's base branch exists",
        ) from error
    finally:
        tar_path.unlink(missing_ok=True)
    return destination


def _agent_has_mcp_client(request: RunRequest, clone: Path, env: dict[str, str]) -> bool:
    """Return whether the session's agent reads an MCP registration (aider and commands do not).

    Resolves the agent as `plan_agent_session` does: `--agent`, else the devcontainer's
    `customizations.devaipod.agent`, else the default agent.
    """
    agent = request.agent
    if agent is None:
        found = workspace_settings(clone, clone.name, request.image, None, env)
        agent = found.customizations.agent
    return has_mcp_client(resolve_agent(agent).name)


def prepare_run(
    request: RunRequest,
    target: RunTarget,
    engine: Engine,
    *,
    name: str,
    env: dict[str, str],
    config: UserConfig,
    progress: Progress,
) -> PreparedSession:
    """Clone, write the task prompt, plan session `name` and add the forge-mode gateway.

    Creates no engine object except built images; call `cleanup()` on the result.
    """
    forge_url = target.forge_url
    scratch = Path(tempfile.mkdtemp(prefix="devaipod-run-"))
    try:
        cloned = clone_target(target, scratch, progress)
        trusted = export_base_tree(cloned.path, target.base_branch, scratch / "base-tree")
        progress(f"reading the devcontainer configuration from {target.base_branch}")
        prompt = build_task_prompt(
            forge_url,
            target.context.item,
            request.task,
            branch=target.branch,
            base_branch=target.base_branch,
            mcp=bool(target.scope.attachedContexts)
            and _agent_has_mcp_client(request, trusted, env),
        )
        up_request = UpRequest(
            source=forge_url.clone_url,
            task=prompt,
            agent=request.agent,
            name=name,
            image=request.image,
            interactive=False,
            gateway=True,
            gateway_base_image=request.gateway_base_image,
            network=request.network,
        )
        source = CodeSource(kind="remote", location=forge_url.clone_url)
        planned = plan_agent_session(
            up_request, engine, env, config, source, name, trusted, progress,
            broker_tokens=(target.token.value,),
        )  # fmt: skip
        network = gateway.resolve_network_mode(request.network, with_gateway=True)
        progress("preparing the gateway (forge mode)")
        plan, secret_values = gateway.add_forge_gateway(
            planned.plan,
            planned.secret_values,
            gateway.ForgeGateway(
                forge_url=forge_url,
                settings=target.settings,
                scope=gateway.with_network_allow(target.scope, planned.allow),
                token=target.token.value,
                target_branch=target.branch,
            ),
            clone=cloned.path,
            base_image=request.gateway_base_image,
            network=network,
            agent_uid=planned.agent_user.uid,
            agent_gid=planned.agent_user.gid,
            engine=engine,
        )
        home_files: dict[str, bytes] = {}
        if target.scope.attachedContexts:
            endpoint = McpEndpointInfo(
                url=gateway.forge_agent_env(forge_url.host)[gateway.MCP_URL_ENV],
                credential=gateway.session_credential(plan, secret_values),
            )
            home_files = agent_home_files(plan.agent.name, endpoint)
        return PreparedSession(
            plan=plan,
            secret_values=secret_values,
            agent_uid=planned.agent_user.uid,
            agent_gid=planned.agent_user.gid,
            source_dir=None,
            cloned=cloned,
            scratch=scratch,
            home_files=home_files,
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def run_session(
    request: RunRequest,
    engine: Engine,
    *,
    host_env: dict[str, str] | None = None,
    user_config: UserConfig | None = None,
    progress: Progress = lambda message: None,
) -> RunResult:
    """Run `devaipod run`: resolve, clone, start, and (unless `request.wait` is off) wait.

    When planning or starting fails, `apply_session` removes the engine objects it
    created, and the state directory of a new session is removed too. Once the agent
    finishes or the timeout passes, the session's containers are stopped and kept for
    inspection.
    """
    env = dict(os.environ if host_env is None else host_env)
    config = user_config if user_config is not None else load_config()
    target = resolve_target(request, config, env, progress)
    name = session_name(request.name) if request.name else generate_session_name(
        _item_name(target.forge_url)
    )

    state = session_dir(name)
    new_state = not state.exists()
    try:
        prepared = prepare_run(
            request, target, engine, name=name, env=env, config=config, progress=progress
        )
        try:
            record = apply_session(prepared, engine, progress=progress)
        finally:
            prepared.cleanup()
    except BaseException:
        if new_state:
            shutil.rmtree(state, ignore_errors=True)
        raise
    session = record.session
    progress(f"session {session} started; the agent works on {target.branch}")

    exit_code: int | None = None
    finished = timed_out = False
    if request.wait:
        progress(f"waiting for the agent to finish (at most {request.timeout_seconds:.0f} s)")
        try:
            exit_code, finished = wait_for_agent(
                engine, session, request.timeout_seconds, progress=progress
            )
        except KeyboardInterrupt:
            progress(f"stopped waiting; session {session} keeps running "
                     f"(`devaipod logs --follow {session}`, `devaipod delete {session}`)")
            raise
        timed_out = not finished
        if finished:
            # The exit status comes from a file the agent can write, so an agent could
            # report itself finished and go on working: stop it before summarising.
            progress(f"the agent finished; stopping session {session} so that nothing of it "
                     f"keeps working (`devaipod start {session}` starts it again)")
        # The gateway has the forge token, so no container of the session keeps running.
        stop_session(engine, session)
    audit_log = session_audit_path(session)
    return RunResult(
        session=session,
        target=target,
        agent_exit_code=exit_code,
        finished=finished,
        timed_out=timed_out,
        delivery=summarise(audit_log),
        audit_log=audit_log,
    )


def wait_for_agent(
    engine: Engine,
    session: str,
    timeout_seconds: float,
    *,
    progress: Progress = lambda message: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int | None, bool]:
    """Wait until the agent program of `session` exits; return (exit code, finished).

    With tmux the container outlives the program, which writes its exit status to
    AGENT_EXIT_FILE. After `timeout_seconds` the agent container is stopped, and
    (None, False) is returned.
    """
    started = clock()
    reported = started
    while True:
        finished, exit_code = _agent_exit(engine, session)
        if finished:
            return exit_code, True
        now = clock()
        if now - started >= timeout_seconds:
            progress(f"the agent did not finish within {timeout_seconds:.0f} s; stopping the "
                     f"session (it stays: `devaipod logs {session}`, `devaipod delete {session}`)")
            engine.stop_container(f"{session}-agent", STOP_TIMEOUT_SECONDS)
            return None, False
        if now - reported >= PROGRESS_EVERY_SECONDS:
            reported = now
            progress(f"the agent is still working ({now - started:.0f} s)")
        sleep(POLL_SECONDS)


EXIT_READ_TIMEOUT_SECONDS = 10.0
_READ_EXIT_FILE = (
    f'f={AGENT_EXIT_FILE}; [ -f "$f" ] && [ ! -h "$f" ] && exec head -c 16 -- "$f" </dev/null'
)


def _agent_exit(engine: Engine, session: str) -> tuple[bool, int | None]:
    agents = engine.list_containers({LABEL_SESSION: session, LABEL_ROLE: Role.AGENT.value})
    if not agents:
        raise UserError(
            f"the agent container of {session} is gone",
            fix=f"see `devaipod status {session}`",
        )
    agent = agents[0]
    if not agent.running:
        return True, agent.exit_code
    if agent.labels.get(LABEL_TMUX) != "1":
        return False, None
    # The agent can write this file, so only a regular file is read, at most 16 bytes, and
    # the read is bounded in time: a FIFO or a link to /dev/zero must not stall `run`.
    try:
        result = engine.exec_in_container(
            agent.name, ["sh", "-c", _READ_EXIT_FILE], timeout_seconds=EXIT_READ_TIMEOUT_SECONDS
        )
    except EngineError as error:
        log.warning("reading the agent's exit file in %s failed: %s", agent.name, error.message)
        return False, None
    text = result.stdout.strip()
    if result.returncode != 0 or not text.lstrip("-").isdigit():
        return False, None
    return True, int(text)


def summarise(audit_log: Path) -> Delivery:
    """Read the session's audit log and summarise what the agent delivered."""
    try:
        entries = read_entries(audit_log, on_invalid=_skip_invalid)
    except FileNotFoundError:
        entries = []
    return summarise_delivery(entries)


def _skip_invalid(error: AuditFormatError) -> None:
    log.warning("skipping an audit line: %s", error)


def describe(result: RunResult) -> list[str]:
    """Return the lines `run` prints for a human."""
    target = result.target
    forge_url = target.forge_url
    lines = [f"session {result.session} on {forge_url.item_url or forge_url.repo_url}"]
    if not result.finished and not result.timed_out:
        lines.append(f"the agent works on {target.branch}; follow it with "
                     f"`devaipod logs --follow {result.session}`")
        return lines
    if result.timed_out:
        lines.append("the agent timed out, so the session was stopped")
    else:
        lines.append(f"the agent exited with status {result.agent_exit_code}")
    delivery = result.delivery
    if delivery.pushes:
        for push in delivery.pushes:
            lines.append(f"pushed {push.ref} at {push.new_oid[:12]}")
    else:
        lines.append(f"nothing pushed to {target.branch}")
    for pull in delivery.pull_requests:
        lines.append(f"opened pull request #{pull.number}: {pull.url or '(no URL)'}")
    for comment in delivery.comments:
        lines.append(f"commented: {comment.url or comment.id}")
    if delivery.denied:
        lines.append(f"{delivery.denied} request(s) denied by the broker "
                     f"(`devaipod audit {result.session}`)")
    lines.append(f"audit log: {result.audit_log}")
    return lines

