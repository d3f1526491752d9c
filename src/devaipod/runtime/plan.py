"""The session plan: every image build, network, volume, secret and container of a session, as data.

A plan is computed without touching an engine. Engines apply it, `--dry-run` prints it,
and most tests assert on it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

LABEL_SESSION = "devaipod.session"
LABEL_ROLE = "devaipod.role"
LABEL_PURPOSE = "devaipod.purpose"
LABEL_SOURCE = "devaipod.source"
LABEL_AGENT = "devaipod.agent"
LABEL_WORKSPACE_FOLDER = "devaipod.workspace-folder"
LABEL_REMOTE_USER = "devaipod.remote-user"
LABEL_TMUX = "devaipod.tmux"

SESSION_PREFIX = "devaipod-"


class Role(StrEnum):
    """What a container does in a session; stored in the `devaipod.role` label."""

    WORKSPACE = "workspace"
    AGENT = "agent"
    GATEWAY = "gateway"
    RELAY = "relay"


def _label_args(labels: dict[str, str]) -> list[str]:
    return [f"--label={key}={value}" for key, value in sorted(labels.items())]


@dataclass(frozen=True)
class BuildStep:
    """An image build: `podman build` of a context and Containerfile into `tag`."""

    tag: str
    context: str
    dockerfile: str
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    options: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def engine_args(self) -> list[str]:
        """Return the `build` arguments, without the engine program name."""
        argv = ["build", f"--tag={self.tag}", f"--file={self.dockerfile}"]
        for name, value in sorted(self.args.items()):
            argv.append(f"--build-arg={name}={value}")
        if self.target:
            argv.append(f"--target={self.target}")
        argv.extend(_label_args(self.labels))
        argv.extend(self.options)
        argv.append(self.context)
        return argv


@dataclass(frozen=True)
class VolumeSpec:
    """A named volume owned by the session; `purpose` is `code`, `agent-home`, ..."""

    name: str
    purpose: str
    labels: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()

    def engine_args(self) -> list[str]:
        """Return the `volume create` arguments."""
        return ["volume", "create", *self.options, *_label_args(self.labels), self.name]


@dataclass(frozen=True)
class NetworkSpec:
    """A network owned by the session."""

    name: str
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def engine_args(self) -> list[str]:
        """Return the `network create` arguments."""
        internal = ["--internal"] if self.internal else []
        return ["network", "create", *internal, *_label_args(self.labels), self.name]


@dataclass(frozen=True)
class SecretSpec:
    """An engine secret; the plan names it and its consumer, never its value."""

    name: str
    purpose: str
    target_env: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def engine_args(self) -> list[str]:
        """Return the `secret create` arguments; the value is read from stdin (`-`)."""
        return ["secret", "create", *_label_args(self.labels), self.name, "-"]


@dataclass(frozen=True)
class ContainerSpec:
    """A container: its name, role, image, and the exact options given to `create`."""

    name: str
    role: Role
    image: str
    options: tuple[str, ...]
    command: tuple[str, ...] = ()

    def engine_args(self) -> list[str]:
        """Return the `create` arguments, without the engine program name."""
        return ["create", f"--name={self.name}", *self.options, self.image, *self.command]

    def option_values(self, option: str) -> list[str]:
        """Return the values of every `--option=value` given (for tests and display)."""
        prefix = option + "="
        return [arg[len(prefix) :] for arg in self.options if arg.startswith(prefix)]

    def has_flag(self, flag: str) -> bool:
        """Return whether `flag` is among the options, exactly as written."""
        return flag in self.options


@dataclass(frozen=True)
class LifecycleStep:
    """One devcontainer lifecycle command, where it runs and when."""

    phase: str
    where: str
    command: str | list[str] | dict[str, str | list[str]]


@dataclass(frozen=True)
class CodeSource:
    """Where the session's code comes from."""

    kind: str
    location: str
    ref: str | None = None


@dataclass(frozen=True)
class AgentSummary:
    """The agent program the session runs, and how."""

    name: str
    command: tuple[str, ...]
    interactive: bool
    user: str
    home: str
    uses_tmux: bool
    env_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionPlan:
    """Everything `up` creates for one session, in the order it is created."""

    session: str
    labels: dict[str, str]
    source: CodeSource
    workspace_folder: str
    remote_user: str | None
    builds: tuple[BuildStep, ...]
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    secrets: tuple[SecretSpec, ...]
    containers: tuple[ContainerSpec, ...]
    lifecycle: tuple[LifecycleStep, ...]
    agent: AgentSummary
    remote_env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def container(self, role: Role) -> ContainerSpec:
        """Return the container with `role`; KeyError when the plan has none."""
        for spec in self.containers:
            if spec.role == role:
                return spec
        raise KeyError(role)

    def volume(self, purpose: str) -> VolumeSpec:
        """Return the volume with `purpose`; KeyError when the plan has none."""
        for spec in self.volumes:
            if spec.purpose == purpose:
                return spec
        raise KeyError(purpose)

    def images(self) -> list[str]:
        """Return the images the containers use, each once, in order."""
        seen: list[str] = []
        for spec in self.containers:
            if spec.image not in seen:
                seen.append(spec.image)
        return seen

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form with the full engine arguments of each step."""
        return {
            "session": self.session,
            "labels": dict(self.labels),
            "source": {
                "kind": self.source.kind,
                "location": self.source.location,
                "ref": self.source.ref,
            },
            "workspaceFolder": self.workspace_folder,
            "remoteUser": self.remote_user,
            "remoteEnv": dict(self.remote_env),
            "images": self.images(),
            "builds": [{"tag": step.tag, "argv": step.engine_args()} for step in self.builds],
            "networks": [
                {"name": net.name, "internal": net.internal, "argv": net.engine_args()}
                for net in self.networks
            ],
            "volumes": [
                {"name": vol.name, "purpose": vol.purpose, "argv": vol.engine_args()}
                for vol in self.volumes
            ],
            "secrets": [
                {
                    "name": secret.name,
                    "purpose": secret.purpose,
                    "targetEnv": secret.target_env,
                    "argv": secret.engine_args(),
                }
                for secret in self.secrets
            ],
            "containers": [
                {
                    "name": spec.name,
                    "role": spec.role.value,
                    "image": spec.image,
                    "argv": spec.engine_args(),
                }
                for spec in self.containers
            ],
            "lifecycle": [
                {"phase": step.phase, "where": step.where, "command": step.command}
                for step in self.lifecycle
            ],
            "agent": {
                "name": self.agent.name,
                "command": list(self.agent.command),
                "interactive": self.agent.interactive,
                "user": self.agent.user,
                "home": self.agent.home,
                "tmux": self.agent.uses_tmux,
                "env": list(self.agent.env_names),
            },
            "notes": list(self.notes),
        }

    def render_text(self, engine_program: str = "podman") -> str:
        """Return the plan as the shell commands an engine would run, one step a line."""
        lines = [f"session {self.session}"]
        lines.append(f"  source: {self.source.kind} {self.source.location}")
        lines.append(f"  workspace folder: {self.workspace_folder}")
        lines.append(
            f"  agent: {self.agent.name} as {self.agent.user}: {shlex.join(self.agent.command)}"
        )
        sections: list[tuple[str, list[list[str]]]] = [
            ("builds", [step.engine_args() for step in self.builds]),
            ("networks", [net.engine_args() for net in self.networks]),
            ("volumes", [vol.engine_args() for vol in self.volumes]),
            ("secrets", [secret.engine_args() for secret in self.secrets]),
            ("containers", [spec.engine_args() for spec in self.containers]),
        ]
        for title, commands in sections:
            if not commands:
                continue
            lines.append(f"{title}:")
            for argv in commands:
                lines.append("  " + shlex.join([engine_program, *argv]))
        if self.lifecycle:
            lines.append("lifecycle:")
            for step in self.lifecycle:
                lines.append(f"  {step.phase} ({step.where}): {step.command!r}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)
