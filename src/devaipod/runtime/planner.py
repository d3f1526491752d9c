"""Compute a `SessionPlan` from the resolved devcontainer settings, the agent and the source.

Pure: no engine, no files, no environment. Callers gather image facts first.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from devaipod.agents.adapters import TASK_ENV, AgentAdapter
from devaipod.runtime.hardening import AgentLimits, AgentUser, agent_security_options
from devaipod.runtime.plan import (
    LABEL_AGENT,
    LABEL_PURPOSE,
    LABEL_REMOTE_USER,
    LABEL_ROLE,
    LABEL_SESSION,
    LABEL_SOURCE,
    LABEL_TMUX,
    LABEL_WORKSPACE_FOLDER,
    AgentSummary,
    BuildStep,
    CodeSource,
    ContainerSpec,
    LifecycleStep,
    Role,
    SecretSpec,
    SessionPlan,
    VolumeSpec,
)

AGENT_COMMAND_ENV = "DEVAIPOD_AGENT_COMMAND"
TMUX_SESSION = "agent"
# Written by the pane's shell when the agent program exits: tmux 3.3 does not always
# report a dead pane's exit status, so this file is what `status` reads.
AGENT_EXIT_FILE = "/tmp/.devaipod-agent-exit"

# Keeps the workspace container alive without a program of its own; exits at once on
# SIGTERM so `stop` never waits for the engine's kill timeout.
WORKSPACE_KEEPALIVE = "trap 'exit 0' TERM INT; while sleep 3600 & wait $!; do :; done"

# Runs the agent command inside a tmux session so `attach` can reach its terminal.
# The pane stays after the program exits (remain-on-exit) so its screen can be read,
# and its output is copied to the container log.
# The command comes from an environment variable because tmux would split an argv
# on arguments ending in ';'.
# Exports each secret file /run/secrets/DEVAIPOD_ENV_<NAME> as the variable NAME. Secrets
# travel as files because podman 4.3 shows `type=env` secret values in `podman inspect`.
SECRET_FILE_PREFIX = "DEVAIPOD_ENV_"
LOAD_SECRETS = (
    f"for f in /run/secrets/{SECRET_FILE_PREFIX}*; do "
    f'[ -f "$f" ] && export "${{f#/run/secrets/{SECRET_FILE_PREFIX}}}=$(cat "$f")"; '
    "done; "
)

# Marks a workspace container that has devcontainer secrets, which its lifecycle commands
# and `exec` load from /run/secrets the way the agent loads its variables.
LABEL_WORKSPACE_SECRETS = "devaipod.workspace-secrets"
WORKSPACE_SECRET_PURPOSE = "workspace-secret"


def with_secrets(argv: list[str]) -> list[str]:
    """Return `argv` run by a shell that first exports the container's secret files."""
    return ["/bin/sh", "-c", LOAD_SECRETS + 'exec "$@"', "devaipod-secrets", *argv]


AGENT_TMUX_ENTRY = (
    LOAD_SECRETS + "set -e; "
    f"tmux -f /dev/null new-session -d -s {TMUX_SESSION} -x 200 -y 50 'exec sleep 2147483647'; "
    "tmux set-option -g remain-on-exit on; "
    f"tmux pipe-pane -t {TMUX_SESSION} -o 'cat >> /proc/1/fd/1'; "
    f"tmux respawn-pane -k -t {TMUX_SESSION} "
    f"'eval \"${AGENT_COMMAND_ENV}\"; echo $? > {AGENT_EXIT_FILE}'; "
    "trap 'tmux kill-server; exit 0' TERM INT; "
    f"while tmux has-session -t {TMUX_SESSION} 2>/dev/null; do sleep 1 & wait $!; done"
)


@dataclass(frozen=True)
class WorkspaceConfig:
    """The devcontainer settings the workspace container is created from, already resolved."""

    image: str
    workspace_folder: str
    build: BuildStep | None = None
    container_env: dict[str, str] = field(default_factory=dict)
    remote_env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    run_args: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    privileged: bool = False
    init: bool = False
    container_user: str | None = None
    remote_user: str | None = None
    override_command: bool = True
    lifecycle: tuple[LifecycleStep, ...] = ()
    config_path: str | None = None
    secrets: tuple[str, ...] = ()
    """The names devcontainer.json declares under `secrets`."""


@dataclass(frozen=True)
class WorkspaceSecret:
    """A devcontainer secret: the engine's own secret NAME, or a session copy of a host value."""

    name: str
    from_store: bool


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan depends on."""

    session: str
    source: CodeSource
    workspace: WorkspaceConfig
    agent: AgentAdapter
    task: str | None
    interactive: bool
    agent_user: AgentUser
    use_tmux: bool
    agent_image: str | None = None
    agent_env_names: tuple[str, ...] = ()
    """The agent's variables from `agents.env.agent_environment`, each sent as a secret file."""
    limits: AgentLimits = AgentLimits()
    workspace_secrets: tuple[WorkspaceSecret, ...] = ()


def session_labels(session: str) -> dict[str, str]:
    """Return the label every object of `session` carries."""
    return {LABEL_SESSION: session}


def build_session_plan(inputs: PlanInputs) -> SessionPlan:
    """Return the plan of a session: volumes, secrets, the workspace and the agent container."""
    session = inputs.session
    labels = session_labels(session)
    notes: list[str] = []
    user = inputs.agent_user

    ownership = (f"--opt=o=uid={user.uid},gid={user.gid}",)
    code_volume = VolumeSpec(
        name=f"{session}-code",
        purpose="code",
        labels={**labels, LABEL_PURPOSE: "code"},
        options=ownership,
    )
    home_volume = VolumeSpec(
        name=f"{session}-agent-home",
        purpose="agent-home",
        labels={**labels, LABEL_PURPOSE: "agent-home"},
        options=ownership,
    )

    secrets = tuple(
        SecretSpec(
            name=f"{session}-env-{name}",
            purpose="agent-env",
            target_env=name,
            labels={**labels, LABEL_PURPOSE: "agent-env"},
        )
        for name in sorted(inputs.agent_env_names)
    )
    workspace_secrets = tuple(
        SecretSpec(
            name=workspace_secret_name(session, secret.name),
            purpose=WORKSPACE_SECRET_PURPOSE,
            labels={**labels, LABEL_PURPOSE: WORKSPACE_SECRET_PURPOSE},
        )
        for secret in inputs.workspace_secrets
        if not secret.from_store
    )

    shared_labels = {
        **labels,
        LABEL_SOURCE: inputs.source.location,
        LABEL_AGENT: inputs.agent.name,
        LABEL_WORKSPACE_FOLDER: inputs.workspace.workspace_folder,
        LABEL_REMOTE_USER: _remote_user(inputs.workspace) or "",
        LABEL_TMUX: "1" if inputs.use_tmux else "0",
    }
    workspace = _workspace_container(inputs, code_volume, shared_labels)
    agent, agent_command = _agent_container(
        inputs, code_volume, home_volume, secrets, shared_labels
    )

    workspace_only = sorted(
        {*inputs.workspace.container_env, *inputs.workspace.remote_env}
        - set(inputs.agent_env_names)
    )
    if workspace_only:
        notes.append(
            f"containerEnv/remoteEnv {', '.join(workspace_only)} reach the workspace only. "
            "A name listed in customizations.devaipod.envAllowlist or the config file's "
            "[env] allowlist reaches the agent too, unless it is a forge token"
        )

    key_names = inputs.agent.api_key_vars
    if key_names and not set(key_names) & set(inputs.agent_env_names):
        notes.append(
            f"agent {inputs.agent.name} gets none of {', '.join(key_names)}: pass one as "
            "DEVAIPOD_AGENT_<NAME> or list it in [env] allowlist, unless the agent logs in "
            "another way (its home volume keeps a login)"
        )

    builds = (inputs.workspace.build,) if inputs.workspace.build else ()
    return SessionPlan(
        session=session,
        labels=labels,
        source=inputs.source,
        workspace_folder=inputs.workspace.workspace_folder,
        remote_user=_remote_user(inputs.workspace),
        builds=builds,
        networks=(),
        volumes=(code_volume, home_volume),
        secrets=(*secrets, *workspace_secrets),
        containers=(workspace, agent),
        lifecycle=inputs.workspace.lifecycle,
        remote_env=dict(inputs.workspace.remote_env),
        agent=AgentSummary(
            name=inputs.agent.name,
            command=tuple(agent_command),
            interactive=inputs.interactive,
            user=user.user,
            home=user.home,
            uses_tmux=inputs.use_tmux,
            env_names=tuple(secret.target_env or "" for secret in secrets),
        ),
        notes=tuple(notes),
    )


def workspace_secret_name(session: str, name: str) -> str:
    """Return the session's engine secret holding the host value of devcontainer secret `name`."""
    return f"{session}-secret-{name}"


def _remote_user(workspace: WorkspaceConfig) -> str | None:
    return workspace.remote_user or workspace.container_user


def _env_options(env: dict[str, str]) -> list[str]:
    return [f"--env={name}={value}" for name, value in env.items()]


def _workspace_container(
    inputs: PlanInputs, code_volume: VolumeSpec, shared_labels: dict[str, str]
) -> ContainerSpec:
    """Return the devcontainer as the reference CLI creates it, on the code volume."""
    config = inputs.workspace
    options: list[str] = [f"--label={key}={value}" for key, value in sorted(shared_labels.items())]
    options.append(f"--label={LABEL_ROLE}={Role.WORKSPACE.value}")
    options.append(f"--volume={code_volume.name}:{config.workspace_folder}")
    options.extend(_env_options(config.container_env))
    if "GIT_CONFIG_COUNT" not in config.container_env:
        # The code volume belongs to the agent's uid, so git run as another user (root, say)
        # in the workspace would reject it as "dubious ownership" without this exception.
        options.extend(
            _env_options(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "safe.directory",
                    "GIT_CONFIG_VALUE_0": config.workspace_folder,
                }
            )
        )
    options.extend(f"--mount={mount}" for mount in config.mounts)
    for secret in inputs.workspace_secrets:
        # A file, never `type=env`: podman 4.3 shows env secret values in `podman inspect`.
        # Readable by every user of the workspace; the agent's container never mounts it.
        source = secret.name
        if not secret.from_store:
            source = workspace_secret_name(inputs.session, secret.name)
        options.append(
            f"--secret={source},type=mount,mode=0444,target={SECRET_FILE_PREFIX}{secret.name}"
        )
    if inputs.workspace_secrets:
        options.append(f"--label={LABEL_WORKSPACE_SECRETS}=1")
    if config.container_user:
        options.append(f"--user={config.container_user}")
    if config.init:
        options.append("--init")
    if config.privileged:
        options.append("--privileged")
    options.extend(f"--cap-add={cap}" for cap in config.cap_add)
    options.extend(f"--security-opt={opt}" for opt in config.security_opt)
    options.extend(config.run_args)

    command: tuple[str, ...] = ()
    if config.override_command:
        options.append("--entrypoint=/bin/sh")
        command = ("-c", WORKSPACE_KEEPALIVE)
    return ContainerSpec(
        name=f"{inputs.session}-workspace",
        role=Role.WORKSPACE,
        image=config.image,
        options=tuple(options),
        command=command,
    )


def _agent_container(
    inputs: PlanInputs,
    code_volume: VolumeSpec,
    home_volume: VolumeSpec,
    secrets: tuple[SecretSpec, ...],
    shared_labels: dict[str, str],
) -> tuple[ContainerSpec, list[str]]:
    """Return the agent container: the workspace image, hardened, with only its two volumes."""
    config = inputs.workspace
    user = inputs.agent_user
    agent_command = inputs.agent.command(inputs.task, interactive=inputs.interactive)

    options: list[str] = [f"--label={key}={value}" for key, value in sorted(shared_labels.items())]
    options.append(f"--label={LABEL_ROLE}={Role.AGENT.value}")
    options.extend(agent_security_options(user, inputs.limits))
    options.append(f"--volume={code_volume.name}:{config.workspace_folder}")
    options.append(f"--volume={home_volume.name}:{user.home}")
    options.append(f"--workdir={config.workspace_folder}")

    # Only devaipod's own variables travel as `--env`. The devcontainer's containerEnv and
    # remoteEnv reach the agent only for allowlisted names, which arrive in
    # `agent_env_names` and travel as secret files like every other agent variable.
    agent_env: dict[str, str] = {}
    if inputs.task is not None:
        agent_env[TASK_ENV] = inputs.task
    agent_env[AGENT_COMMAND_ENV] = shlex.join(agent_command)
    options.extend(_env_options(agent_env))
    if secrets:
        # The root filesystem is read-only, so the secret files need a tmpfs to land on.
        options.append("--tmpfs=/run/secrets:rw,nosuid,nodev,noexec,size=1m,mode=0755")
    options.extend(
        f"--secret={secret.name},type=mount,uid={user.uid},gid={user.gid},mode=0400,"
        f"target={SECRET_FILE_PREFIX}{secret.target_env}"
        for secret in secrets
    )

    options.append("--entrypoint=/bin/sh")
    if inputs.use_tmux:
        command: tuple[str, ...] = ("-c", AGENT_TMUX_ENTRY)
    else:
        if inputs.interactive:
            options.extend(["--interactive", "--tty"])
        command = ("-c", LOAD_SECRETS + 'exec "$@"', "devaipod-agent", *agent_command)

    spec = ContainerSpec(
        name=f"{inputs.session}-agent",
        role=Role.AGENT,
        image=inputs.agent_image or config.image,
        options=tuple(options),
        command=command,
    )
    return spec, agent_command
