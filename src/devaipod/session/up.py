"""`up`: resolve the inputs of a session, plan it, and apply the plan with rollback on failure."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from devaipod.agents.adapters import AgentAdapter, resolve_agent
from devaipod.agents.env import agent_environment
from devaipod.config import UserConfig, load_config
from devaipod.errors import UserError
from devaipod.runtime.apply import CreatedObjects, apply_resources, build_images
from devaipod.runtime.engine import Engine
from devaipod.runtime.hardening import AgentUser
from devaipod.runtime.plan import CodeSource, Role, SessionPlan
from devaipod.runtime.planner import LABEL_WORKSPACE_SECRETS, PlanInputs, build_session_plan
from devaipod.session import gateway, lifecycle
from devaipod.session.code import (
    ClonedCode,
    check_clean,
    clone_for_session,
    import_code,
    resolve_source,
)
from devaipod.session.naming import generate_session_name, session_name
from devaipod.session.probe import choose_agent_user, probe_image
from devaipod.session.safe_git import redact_url
from devaipod.session.secrets import resolve_workspace_secrets
from devaipod.session.state import (
    SessionRecord,
    SessionState,
    delete_record,
    move_state,
    save_record,
)
from devaipod.session.workspace import workspace_settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpRequest:
    """The `up` command's inputs."""

    source: str = "."
    task: str | None = None
    agent: str | None = None
    name: str | None = None
    image: str | None = None
    config: Path | None = None
    interactive: bool | None = None
    gateway: bool | None = None
    """Run the gateway (local mode); None means yes for a local SOURCE and no for a git URL."""
    gateway_base_image: str | None = None
    network: str | None = None
    """`proxy`, `none` or `open`; None means proxy with the gateway and none without."""


@dataclass(frozen=True)
class PreparedSession:
    """A plan plus what applying it needs besides the plan (secret values stay out of the plan).

    Holds a host clone of the source in a temporary directory: call `cleanup()` when done.
    """

    plan: SessionPlan
    secret_values: dict[str, bytes]
    agent_uid: int
    agent_gid: int
    source_dir: Path | None
    cloned: ClonedCode
    scratch: Path
    home_files: dict[str, bytes] = field(default_factory=dict, repr=False)
    """Files written into the agent's home volume before it starts (path relative to home)."""

    def cleanup(self) -> None:
        """Remove the host clone."""
        shutil.rmtree(self.scratch, ignore_errors=True)


def prepare_session(
    request: UpRequest,
    engine: Engine,
    *,
    host_env: dict[str, str] | None = None,
    user_config: UserConfig | None = None,
    progress: Progress = lambda message: None,
) -> PreparedSession:
    """Resolve the source, the devcontainer, the image facts and the agent, and plan the session.

    Reads the host repository, clones it into a temporary directory and inspects images;
    creates no engine object except built images.
    """
    env = dict(os.environ if host_env is None else host_env)
    settings = user_config if user_config is not None else load_config()

    source = resolve_source(request.source)
    check_clean(source)
    source_dir = Path(source.location) if source.kind == "local" else None
    name = session_name(request.name) if request.name else generate_session_name(_hint(source))

    scratch = Path(tempfile.mkdtemp(prefix="devaipod-up-"))
    try:
        progress(f"cloning {redact_url(source.location)}")
        cloned = clone_for_session(source, scratch, _hint(source))
        # The plan, labels and state record keep the URL without its password or token.
        shown_source = replace(source, location=redact_url(source.location))
        return _plan_session(
            request,
            engine,
            env,
            settings,
            shown_source,
            source_dir,
            name,
            cloned,
            scratch,
            progress,
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


@dataclass(frozen=True)
class AgentSessionPlan:
    """A session's plan without its gateway, and the facts a gateway needs to be added."""

    plan: SessionPlan
    secret_values: dict[str, bytes]
    agent_user: AgentUser
    allow: tuple[str, ...]
    """Egress allowlist entries from the config file and devcontainer.json."""


def plan_agent_session(
    request: UpRequest,
    engine: Engine,
    env: dict[str, str],
    settings: UserConfig,
    source: CodeSource,
    name: str,
    config_dir: Path,
    progress: Progress,
    broker_tokens: Sequence[str] = (),
) -> AgentSessionPlan:
    """Resolve the devcontainer in `config_dir`, build its image, probe it and plan the session.

    The plan has the workspace and the agent; `up` and `run` add their gateway to it.
    `broker_tokens` are the forge tokens the broker will hold: no agent variable may
    carry one.
    """
    found = workspace_settings(config_dir, _hint(source), request.image, request.config, env)
    workspace = found.workspace
    customizations = found.customizations

    adapter = resolve_agent(request.agent or customizations.agent)
    adapter = _apply_agent_settings(adapter, settings)
    agent_settings = settings.agents.get(adapter.name)
    if workspace.build is not None:
        if engine.image_exists(workspace.build.tag):
            progress(f"reusing image {workspace.build.tag}: its build inputs are unchanged")
        else:
            progress(f"building image {workspace.build.tag}")
            build_images(engine, (workspace.build,))

    agent_image = customizations.agentImage
    if agent_settings is not None and agent_settings.image:
        agent_image = agent_settings.image
    image = agent_image or workspace.image
    facts = probe_image(engine, image, ["tmux", "git", adapter.binary])
    if facts.programs.get(adapter.binary) is None and not adapter.binary.startswith("/"):
        raise UserError(
            f"agent {adapter.name}: program {adapter.binary!r} not found in image {image}",
            fix=f"install {adapter.binary} in the image (devcontainer Dockerfile) or choose "
            "another --agent",
        )
    agent_user = choose_agent_user(facts, workspace.remote_user or workspace.container_user)
    if workspace.config_path is None and workspace.remote_user is None:
        # Without devcontainer.json there is no remote user: the human works as the agent does.
        workspace = replace(workspace, remote_user=agent_user.user)

    passed = agent_environment(
        env,
        [*settings.env.allowlist, *customizations.envAllowlist],
        fixed={**settings.env.vars, **(agent_settings.env if agent_settings else {})},
        withheld=workspace.secrets,
        devcontainer_env={**workspace.container_env, **workspace.remote_env},
        broker_tokens=broker_tokens,
    )
    workspace_secrets, workspace_secret_values = resolve_workspace_secrets(
        engine, name, workspace.secrets, env
    )
    interactive = request.interactive if request.interactive is not None else request.task is None

    inputs = PlanInputs(
        session=name,
        source=source,
        workspace=workspace,
        agent=adapter,
        task=request.task,
        interactive=interactive,
        agent_user=agent_user,
        use_tmux=facts.programs.get("tmux") is not None,
        agent_image=agent_image,
        agent_env_names=tuple(sorted(passed)),
        workspace_secrets=workspace_secrets,
    )
    plan = build_session_plan(inputs)
    secret_values = {
        secret.name: passed[secret.target_env].encode()
        for secret in plan.secrets
        if secret.target_env is not None
    }
    secret_values.update(workspace_secret_values)
    return AgentSessionPlan(
        plan=plan,
        secret_values=secret_values,
        agent_user=agent_user,
        allow=(*settings.network.allow, *customizations.allowedDomains),
    )


def _plan_session(
    request: UpRequest,
    engine: Engine,
    env: dict[str, str],
    settings: UserConfig,
    source: CodeSource,
    source_dir: Path | None,
    name: str,
    cloned: ClonedCode,
    scratch: Path,
    progress: Progress,
) -> PreparedSession:
    config_dir = source_dir if source_dir is not None else cloned.path
    planned = plan_agent_session(request, engine, env, settings, source, name, config_dir, progress)
    plan, secret_values = planned.plan, planned.secret_values
    agent_user = planned.agent_user

    with_gateway = use_gateway(request, source_dir)
    network = gateway.resolve_network_mode(request.network, with_gateway=with_gateway)
    if with_gateway:
        progress("preparing the gateway (local mode)")
        plan, secret_values = gateway.add_gateway(
            plan,
            secret_values,
            source_dir=gateway.require_local_source(source_dir),
            clone=cloned.path,
            base_image=request.gateway_base_image,
            network=network,
            allow=planned.allow,
            agent_uid=agent_user.uid,
            agent_gid=agent_user.gid,
            engine=engine,
        )
    elif network == gateway.NetworkMode.OPEN:
        plan = gateway.open_agent_network(plan)
    return PreparedSession(
        plan=plan,
        secret_values=secret_values,
        agent_uid=agent_user.uid,
        agent_gid=agent_user.gid,
        source_dir=source_dir,
        cloned=cloned,
        scratch=scratch,
    )


def use_gateway(request: UpRequest, source_dir: Path | None) -> bool:
    """Return whether the session gets the gateway: by default only for a local SOURCE.

    NOTE: a git URL SOURCE has no gateway by default, because the broker would need a
    forge token for that upstream and `up` does not take one yet.
    """
    if request.gateway is None:
        return source_dir is not None
    return request.gateway


def apply_session(
    prepared: PreparedSession, engine: Engine, *, progress: Progress = lambda message: None
) -> SessionRecord:
    """Create the session; on any failure remove everything created and re-raise.

    Raises UserError when a session of that name already exists.
    """
    plan = prepared.plan
    existing = engine.session_objects(plan.session)
    if not existing.is_empty():
        raise UserError(
            f"session {plan.session} already exists",
            fix=f"pick another --name, or `devaipod delete {plan.session}` first",
        )

    record = SessionRecord(
        session=plan.session,
        state=SessionState.PLANNED,
        source_kind=plan.source.kind,
        source_location=plan.source.location,
        lifecycle=[
            {"phase": step.phase, "where": step.where, "command": step.command}
            for step in plan.lifecycle
        ],
        remote_env=dict(plan.remote_env),
    )
    save_record(record)
    move_state(record, SessionState.CREATING)

    try:
        _run_initialize(plan, prepared.source_dir, progress)
        with CreatedObjects(engine) as objects:
            apply_resources(
                objects, plan.networks, plan.volumes, plan.secrets, prepared.secret_values
            )

            code_volume = plan.volume("code").name
            progress(f"copying {plan.source.location} into volume {code_volume}")
            import_code(
                engine, code_volume, prepared.cloned, prepared.agent_uid, prepared.agent_gid
            )
            record.base_tips = list(prepared.cloned.base_tips)
            if prepared.home_files:
                home_volume = plan.volume("agent-home").name
                progress(f"writing the agent's settings into volume {home_volume}")
                _copy_up_home(engine, home_volume, agent_image=plan.container(Role.AGENT).image,
                              home=plan.agent.home)
                _import_home_files(
                    engine, home_volume, prepared.home_files, prepared.agent_uid,
                    prepared.agent_gid, prepared.scratch,
                )  # fmt: skip

            workspace = plan.container(Role.WORKSPACE)
            agent = plan.container(Role.AGENT)
            if gateway.has_gateway(plan):
                progress("starting the gateway and the relay")
                gateway.create_pod(engine, plan)
                objects.create_container(plan.container(Role.GATEWAY))
                objects.create_container(plan.container(Role.RELAY))
                gateway.start_gateway(engine, plan)
            objects.create_container(workspace)
            objects.create_container(agent)
            phases = (*lifecycle.CREATE_PHASES, *lifecycle.START_PHASES)
            if any(step.phase in phases for step in plan.lifecycle):
                # The agent starts after the create commands, which may fill the code volume
                # (dependencies, generated files) that the agent works on.
                engine.start_container(workspace.name)
                progress("running lifecycle commands in the workspace")
                _run_workspace_steps(plan, engine, phases)
                engine.start_container(agent.name)
            else:
                engine.start_container(workspace.name, agent.name)
            objects.keep()
    except BaseException as error:
        reason = getattr(error, "message", None) or str(error) or type(error).__name__
        log.error("up of session %s failed, created objects removed: %s", plan.session, reason)
        if gateway.has_gateway(plan):
            gateway.remove_pod(engine, plan.session)
        delete_record(plan.session)
        raise

    return move_state(record, SessionState.RUNNING)


def _copy_up_home(engine: Engine, volume: str, *, agent_image: str, home: str) -> None:
    """Let the engine copy the image's home folder into the new home volume, running nothing.

    podman copies an image's files into a named volume only while the volume is empty, so
    files written first would hide what the image keeps in the home (shell profile, an
    agent installed under ~/.local).
    """
    engine.run_engine(
        [
            "run", "--rm", "--network=none", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--read-only", "--entrypoint=/bin/sh",
            f"--volume={volume}:{home}", agent_image, "-c", ":",
        ]
    )  # fmt: skip


def _import_home_files(
    engine: Engine, volume: str, files: dict[str, bytes], uid: int, gid: int, scratch: Path
) -> None:
    """Write `files` (paths relative to the home) into `volume`, owned by `uid`:`gid`.

    The files may hold the session credential, so the tar is private and removed at once.
    """
    tar_path = scratch / "agent-home.tar"
    descriptor = os.open(tar_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            directories: set[PurePosixPath] = set()
            for relative in sorted(files):
                path = PurePosixPath(relative)
                if path.is_absolute() or ".." in path.parts:
                    raise ValueError(f"home file {relative!r} is not a relative path")
                for parent in reversed(path.parents[:-1]):
                    if parent not in directories:
                        directories.add(parent)
                        tar.addfile(_tar_entry(str(parent), uid, gid, tarfile.DIRTYPE, 0o700))
                content = files[relative]
                entry = _tar_entry(str(path), uid, gid, tarfile.REGTYPE, 0o600)
                entry.size = len(content)
                tar.addfile(entry, io.BytesIO(content))
        engine.import_volume(volume, tar_path)
    finally:
        tar_path.unlink(missing_ok=True)
    log.info("wrote %d file(s) into the agent home volume %s", len(files), volume)


def _tar_entry(name: str, uid: int, gid: int, kind: bytes, mode: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type, entry.mode, entry.uid, entry.gid = kind, mode, uid, gid
    entry.mtime = int(time.time())
    return entry


def _run_initialize(plan: SessionPlan, source_dir: Path | None, progress: Progress) -> None:
    for step in plan.lifecycle:
        if step.phase in lifecycle.HOST_PHASES:
            if source_dir is None:
                # NOTE: remote sources have no host folder, so initializeCommand is skipped.
                log.warning("skipping initializeCommand: the source is not a local folder")
                continue
            progress("running initializeCommand on the host")
            lifecycle.run_host_command(step, source_dir)


def _run_workspace_steps(plan: SessionPlan, engine: Engine, phases: tuple[str, ...]) -> None:
    workspace = plan.container(Role.WORKSPACE)
    lifecycle.run_container_steps(
        engine,
        workspace.name,
        plan.lifecycle,
        phases,
        user=plan.remote_user,
        workdir=plan.workspace_folder,
        env=dict(plan.remote_env),
        load_secrets=f"--label={LABEL_WORKSPACE_SECRETS}=1" in workspace.options,
    )


def _apply_agent_settings(adapter: AgentAdapter, settings: UserConfig) -> AgentAdapter:
    """Use the config file's `[agents.NAME] command` in place of the adapter's own command."""
    agent_settings = settings.agents.get(adapter.name)
    if agent_settings is None or agent_settings.command is None or adapter.is_custom:
        return adapter
    command = agent_settings.command
    if isinstance(command, str):
        custom = resolve_agent(command)
        return replace(custom, name=adapter.name)
    return replace(adapter, custom_argv=tuple(command), binary=command[0])


def _hint(source: CodeSource) -> str:
    tail = source.location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git") or "code"
