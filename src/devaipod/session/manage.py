"""Operate on existing sessions: list, status, stop, start, delete, logs, attach, exec.

Sessions are found by their engine labels, so these work without any local record.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

from devaipod.broker.audit import read_entries
from devaipod.errors import UserError
from devaipod.runtime.engine import ContainerInfo, Engine
from devaipod.runtime.plan import (
    LABEL_AGENT,
    LABEL_REMOTE_USER,
    LABEL_ROLE,
    LABEL_SESSION,
    LABEL_SOURCE,
    LABEL_TMUX,
    LABEL_WORKSPACE_FOLDER,
    CodeSource,
    LifecycleStep,
    Role,
)
from devaipod.runtime.planner import (
    AGENT_EXIT_FILE,
    LABEL_WORKSPACE_SECRETS,
    TMUX_SESSION,
    with_secrets,
)
from devaipod.session import gateway, lifecycle
from devaipod.session.delivery import summarise_delivery
from devaipod.session.naming import session_name
from devaipod.session.paths import session_audit_path
from devaipod.session.state import (
    SessionRecord,
    SessionState,
    delete_record,
    load_record,
    move_state,
    observed_state,
)
from devaipod.session.unpushed import find_unpushed_commits

log = logging.getLogger(__name__)

# Both containers exit at once on SIGTERM (the workspace's keepalive traps it, the agent
# runs under --init), so the kill timeout only matters for a wedged program.
STOP_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class AgentStatus:
    """Whether the agent program still runs, and its exit status once it ended."""

    running: bool
    exit_code: int | None


@dataclass(frozen=True)
class SessionStatus:
    """A session as the engine and the state record show it."""

    session: str
    state: SessionState
    source: str
    agent: str
    workspace_folder: str
    containers: list[ContainerInfo]
    volumes: list[str] | None
    """None in `list`, which does not look volumes and secrets up (one call per secret)."""
    secrets: list[str] | None
    agent_status: AgentStatus | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        agent_status = None
        if self.agent_status is not None:
            agent_status = {
                "running": self.agent_status.running,
                "exitCode": self.agent_status.exit_code,
            }
        data: dict[str, Any] = {
            "session": self.session,
            "state": self.state.value,
            "source": self.source,
            "agent": self.agent,
            "workspaceFolder": self.workspace_folder,
            "containers": [
                {
                    "name": container.name,
                    "role": container.labels.get(LABEL_ROLE, ""),
                    "state": container.state,
                    "image": container.image,
                    "exitCode": container.exit_code,
                }
                for container in self.containers
            ],
            "agentProgram": agent_status,
        }
        if self.volumes is not None:
            data["volumes"] = self.volumes
        if self.secrets is not None:
            data["secrets"] = self.secrets
        return data


def list_sessions(engine: Engine) -> list[SessionStatus]:
    """Return every session that has containers, from the engine's labels."""
    containers = engine.list_containers({LABEL_SESSION: None})
    names = sorted({container.labels[LABEL_SESSION] for container in containers})
    statuses = []
    for name in names:
        own = [container for container in containers if container.labels[LABEL_SESSION] == name]
        statuses.append(_status_from(engine, name, own, volumes=None, secrets=None, probe=False))
    return statuses


def session_status(engine: Engine, name: str) -> SessionStatus:
    """Return the status of session `name`; UserError when it does not exist."""
    session = session_name(name)
    objects = engine.session_objects(session)
    if objects.is_empty():
        raise _not_found(session)
    return _status_from(
        engine, session, objects.containers, objects.volumes, objects.secrets, probe=True
    )


def _status_from(
    engine: Engine,
    session: str,
    containers: list[ContainerInfo],
    volumes: list[str] | None,
    secrets: list[str] | None,
    *,
    probe: bool,
) -> SessionStatus:
    record = load_record(session)
    state = record.state if record is not None else observed_state(containers)
    if (
        record is not None
        and state == SessionState.RUNNING
        and not any(container.running for container in containers)
    ):
        # The engine was restarted or the containers stopped outside devaipod.
        state = SessionState.STOPPED
    agent = _container(containers, Role.AGENT)
    # The gateway and relay lack the source, agent and folder labels, so read the agent's.
    labelled = agent or _container(containers, Role.WORKSPACE)
    if labelled is None and containers:
        labelled = containers[0]
    labels = labelled.labels if labelled is not None else {}
    agent_status = _agent_status(engine, agent) if probe and agent is not None else None
    return SessionStatus(
        session=session,
        state=state,
        source=labels.get(LABEL_SOURCE, record.source_location if record else ""),
        agent=labels.get(LABEL_AGENT, ""),
        workspace_folder=labels.get(LABEL_WORKSPACE_FOLDER, ""),
        containers=sorted(containers, key=lambda container: container.name),
        volumes=volumes,
        secrets=secrets,
        agent_status=agent_status,
    )


def _agent_status(engine: Engine, agent: ContainerInfo) -> AgentStatus:
    if not agent.running:
        return AgentStatus(running=False, exit_code=agent.exit_code)
    if agent.labels.get(LABEL_TMUX) != "1":
        return AgentStatus(running=True, exit_code=None)
    result = engine.exec_in_container(agent.name, ["cat", AGENT_EXIT_FILE])
    text = result.stdout.strip()
    if result.returncode != 0 or not text.lstrip("-").isdigit():
        # The file appears when the agent program exits, so the agent still runs.
        return AgentStatus(running=True, exit_code=None)
    return AgentStatus(running=False, exit_code=int(text))


def stop_session(engine: Engine, name: str) -> SessionRecord:
    """Stop the session's containers (agent first); volumes and work stay."""
    session = session_name(name)
    containers = _containers_or_fail(engine, session)
    for role in (Role.AGENT, Role.RELAY, Role.GATEWAY, Role.WORKSPACE):
        for container in containers:
            if container.labels.get(LABEL_ROLE) == role.value and container.running:
                engine.stop_container(container.name, STOP_TIMEOUT_SECONDS)
    return move_state(_record_for(session, containers), SessionState.STOPPED)


def start_session(engine: Engine, name: str) -> SessionRecord:
    """Start a stopped session: the workspace (and its postStartCommand), then the agent."""
    session = session_name(name)
    containers = _containers_or_fail(engine, session)
    workspace = _container(containers, Role.WORKSPACE)
    if workspace is not None and not workspace.running:
        engine.start_container(workspace.name)
        _run_stored_steps(engine, session, workspace, lifecycle.START_PHASES)
    for role in (Role.GATEWAY, Role.RELAY, Role.AGENT):
        for container in containers:
            if container.labels.get(LABEL_ROLE) == role.value and not container.running:
                engine.start_container(container.name)
                if role in (Role.GATEWAY, Role.RELAY):
                    # The agent may push at once, so the broker must serve before it starts.
                    gateway.wait_until_serving(engine, container.name, role)
    return move_state(_record_for(session, containers), SessionState.RUNNING)


def _run_stored_steps(
    engine: Engine, session: str, workspace: ContainerInfo, phases: tuple[str, ...]
) -> None:
    """Run lifecycle steps kept in the session record (read from devcontainer.json at `up`)."""
    record = load_record(session)
    if record is None:
        log.warning("session %s has no record, so its %s is skipped", session, "/".join(phases))
        return
    steps = [LifecycleStep(**step) for step in record.lifecycle]
    lifecycle.run_container_steps(
        engine,
        workspace.name,
        steps,
        phases,
        user=workspace.labels.get(LABEL_REMOTE_USER) or None,
        workdir=workspace.labels.get(LABEL_WORKSPACE_FOLDER) or "/",
        env=record.remote_env,
        load_secrets=workspace.labels.get(LABEL_WORKSPACE_SECRETS) == "1",
    )


def delete_session(engine: Engine, name: str, *, force: bool) -> list[str]:
    """Remove every object labelled with the session; return the commits dropped with `force`.

    Raises UserError when the code volume contains commits that exist nowhere else and
    `force` is false.
    """
    session = session_name(name)
    objects = engine.session_objects(session)
    record = load_record(session)
    if objects.is_empty():
        if record is not None:
            delete_record(session)
            return []
        raise _not_found(session)

    code_volume = f"{session}-code"
    unpushed: list[str] = []
    if code_volume in objects.volumes:
        source = _source_of(record, objects.containers)
        known = [*(record.base_tips if record else []), *delivered_commits(session)]
        unpushed = find_unpushed_commits(engine, code_volume, known, source)
    if unpushed and not force:
        raise UserError(
            f"session {session} contains {len(unpushed)} commit(s) that exist nowhere else "
            f"(newest {unpushed[0][:12]})",
            fix=f"push them, or run `devaipod delete --force {session}` to drop them",
        )

    if objects.containers:
        engine.remove_container(*(container.name for container in objects.containers))
    # The pod carries no label, so it is removed by name even when no relay container is
    # left (a relay removed by hand, or an up that stopped between pod and relay).
    gateway.remove_pod(engine, session)
    for network in objects.networks:
        engine.remove_network(network)
    if objects.volumes:
        engine.remove_volume(*objects.volumes)
    for secret in objects.secrets:
        engine.remove_secret(secret)
    delete_record(session)
    log.info("deleted session %s", session)
    return unpushed


def delivered_commits(session: str) -> list[str]:
    """Return the commits the broker's audit log shows an upstream accepted as ref tips.

    They exist on the forge (or the local repository) even when `delete` cannot fetch it,
    as with a forge that needs a token the host's git has no credential helper for.
    """
    path = session_audit_path(session)
    try:
        entries = read_entries(path, on_invalid=lambda error: log.warning("%s", error))
    except FileNotFoundError:
        return []
    except OSError as error:
        log.warning("cannot read the audit log %s: %s", path, error)
        return []
    return [push.new_oid for push in summarise_delivery(entries).pushes]


def _source_of(record: SessionRecord | None, containers: list[ContainerInfo]) -> CodeSource | None:
    if record is not None and record.source_location:
        return CodeSource(kind=record.source_kind, location=record.source_location)
    for container in containers:
        location = container.labels.get(LABEL_SOURCE)
        if location:
            kind = "local" if location.startswith("/") else "remote"
            return CodeSource(kind=kind, location=location)
    return None


def logs_argv(engine: Engine, name: str, role: str, follow: bool) -> list[str]:
    """Return the `logs` arguments for the session container with `role`."""
    session = session_name(name)
    container = _container_with_role(engine, session, role)
    return ["logs", *(["--follow"] if follow else []), container.name]


def attach_argv(engine: Engine, name: str) -> list[str]:
    """Return the arguments that attach the terminal to the agent (tmux, or the container's tty)."""
    session = session_name(name)
    agent = _container_with_role(engine, session, Role.AGENT.value)
    if not agent.running:
        raise UserError(
            f"the agent container of {session} is not running",
            fix=f"run `devaipod start {session}` first, or read `devaipod logs {session}`",
        )
    _run_attach_steps(engine, session)
    if agent.labels.get(LABEL_TMUX) == "1":
        return ["exec", "--interactive", "--tty", agent.name, "tmux", "attach", "-t", TMUX_SESSION]
    return ["attach", agent.name]


def exec_argv(engine: Engine, name: str, role: str, command: list[str]) -> list[str]:
    """Return the `exec` arguments for COMMAND (default: a login shell) in a session container."""
    session = session_name(name)
    container = _container_with_role(engine, session, role)
    if not container.running:
        raise UserError(
            f"container {container.name} is not running",
            fix=f"run `devaipod start {session}` first",
        )
    argv = ["exec", "--interactive"]
    if sys.stdin.isatty():
        argv.append("--tty")
    user = container.labels.get(LABEL_REMOTE_USER)
    if user and role == Role.WORKSPACE.value:
        argv.append(f"--user={user}")
    folder = container.labels.get(LABEL_WORKSPACE_FOLDER)
    if folder:
        argv.append(f"--workdir={folder}")
    record = load_record(session)
    if record is not None and role == Role.WORKSPACE.value:
        argv.extend(f"--env={key}={value}" for key, value in record.remote_env.items())
    if not command:
        if role == Role.WORKSPACE.value:
            _run_attach_steps(engine, session)
        command = ["/bin/sh", "-c", "command -v bash >/dev/null && exec bash -l || exec sh -l"]
    if role == Role.WORKSPACE.value and container.labels.get(LABEL_WORKSPACE_SECRETS) == "1":
        command = with_secrets(command)
    return [*argv, container.name, *command]


def _run_attach_steps(engine: Engine, session: str) -> None:
    workspace = _container(engine.list_containers({LABEL_SESSION: session}), Role.WORKSPACE)
    if workspace is not None and workspace.running:
        _run_stored_steps(engine, session, workspace, lifecycle.ATTACH_PHASES)


def _container_with_role(engine: Engine, session: str, role: str) -> ContainerInfo:
    containers = _containers_or_fail(engine, session)
    for container in containers:
        if container.labels.get(LABEL_ROLE) == role:
            return container
    roles = ", ".join(sorted({c.labels.get(LABEL_ROLE, "?") for c in containers}))
    raise UserError(
        f"session {session} has no {role} container",
        fix=f"use one of its roles: {roles}",
    )


def _containers_or_fail(engine: Engine, session: str) -> list[ContainerInfo]:
    containers = engine.list_containers({LABEL_SESSION: session})
    if not containers:
        raise _not_found(session)
    return containers


def _container(containers: list[ContainerInfo], role: Role) -> ContainerInfo | None:
    for container in containers:
        if container.labels.get(LABEL_ROLE) == role.value:
            return container
    return None


def _record_for(session: str, containers: list[ContainerInfo]) -> SessionRecord:
    record = load_record(session)
    if record is not None:
        return record
    return SessionRecord(session=session, state=observed_state(containers))


def _not_found(session: str) -> UserError:
    return UserError(f"session {session} not found", fix="run `devaipod list` to see sessions")
