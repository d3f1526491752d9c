"""The agent container's security profile, as engine options.

The agent gets no capabilities, no privilege gain, a non-root user, a read-only root
with tmpfs scratch space, a loopback-only network namespace, pids and memory limits,
and no mounts except its code volume and its home volume.
"""

from __future__ import annotations

from dataclasses import dataclass

# Options that would undo the profile if a caller slipped them into the agent's options.
FORBIDDEN_AGENT_OPTIONS = (
    "--privileged",
    "--cap-add",
    "--network=host",
    "--net=host",
    "--pid=host",
    "--ipc=host",
    "--userns=host",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=label=disable",
)


@dataclass(frozen=True)
class AgentLimits:
    """Resource limits of the agent container (`memory` in podman's size syntax)."""

    memory: str = "4g"
    pids: int = 2048
    tmp_size: str = "1g"


@dataclass(frozen=True)
class AgentUser:
    """The non-root user the agent runs as: the `--user` value and its home directory."""

    user: str
    uid: int
    gid: int
    home: str


def agent_security_options(user: AgentUser, limits: AgentLimits) -> list[str]:
    """Return the hardening options of the agent container.

    The root filesystem is read-only: agent programs write to their home volume, the
    code volume and /tmp, which covers npm, pip --user, git and tmux. Programs that
    write elsewhere in the image must be configured to use $HOME or /tmp.
    """
    if user.uid == 0:
        raise ValueError("the agent user must not be root")
    tmpfs_options = f"rw,nosuid,nodev,size={limits.tmp_size},mode=1777"
    return [
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--user={user.user}",
        "--network=none",
        "--read-only",
        "--read-only-tmpfs=false",
        f"--tmpfs=/tmp:{tmpfs_options}",
        f"--tmpfs=/var/tmp:{tmpfs_options}",
        f"--pids-limit={limits.pids}",
        f"--memory={limits.memory}",
        "--init",
        f"--env=HOME={user.home}",
    ]


def check_agent_options(options: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError when agent options mount host paths or undo the profile."""
    for option in options:
        for forbidden in FORBIDDEN_AGENT_OPTIONS:
            if option == forbidden or option.startswith(forbidden + "="):
                raise ValueError(f"agent option {option} defeats the agent's isolation")
        if option.startswith(("--volume=", "--mount=")):
            source = option.split("=", 1)[1]
            if source.startswith(("/", ".", "~")) or "src=/" in source or "source=/" in source:
                raise ValueError(f"agent option {option} mounts a host path")
        if "podman.sock" in option or "docker.sock" in option:
            raise ValueError(f"agent option {option} exposes an engine socket")
