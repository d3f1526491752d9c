"""One adapter per agent program: its command line for a task, its state, its API key variables.

An agent given as a command line instead of a known name runs as is, with the task in
the `DEVAIPOD_TASK` environment variable.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from devaipod.errors import UserError

TASK_ENV = "DEVAIPOD_TASK"


@dataclass(frozen=True)
class AgentAdapter:
    """How to start one agent program, headless or interactive, and what it keeps where."""

    name: str
    binary: str
    headless_args: tuple[str, ...]
    interactive_args: tuple[str, ...]
    interactive_task_args: tuple[str, ...] | None
    state_dirs: tuple[str, ...]
    api_key_vars: tuple[str, ...]
    custom_argv: tuple[str, ...] = ()

    @property
    def is_custom(self) -> bool:
        """Whether this adapter runs a user-given command line."""
        return bool(self.custom_argv)

    def command(self, task: str | None, *, interactive: bool) -> list[str]:
        """Return the argv that runs the agent on `task`.

        Headless runs need a task and run to completion. Interactive runs open the
        agent's own terminal UI, seeded with the task when the program accepts one
        (`interactive_task_args` is None when it does not).
        """
        if self.is_custom:
            return list(self.custom_argv)
        if not interactive:
            if not task:
                raise UserError(
                    f"agent {self.name} needs a task to run headless",
                    fix="give a TASK argument, or start the agent interactively",
                )
            return [self.binary, *self.headless_args, task]
        if task and self.interactive_task_args is not None:
            return [self.binary, *self.interactive_args, *self.interactive_task_args, task]
        return [self.binary, *self.interactive_args]


_COMMON_MODEL_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY")

ADAPTERS: dict[str, AgentAdapter] = {
    "opencode": AgentAdapter(
        name="opencode",
        binary="opencode",
        headless_args=("run",),
        interactive_args=(),
        interactive_task_args=("--prompt",),
        state_dirs=(".local/share/opencode", ".config/opencode", ".cache/opencode"),
        api_key_vars=_COMMON_MODEL_KEYS,
    ),
    "claude": AgentAdapter(
        name="claude",
        binary="claude",
        headless_args=("--print",),
        interactive_args=(),
        interactive_task_args=(),
        state_dirs=(".claude", ".claude.json"),
        api_key_vars=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
    ),
    "codex": AgentAdapter(
        name="codex",
        binary="codex",
        headless_args=("exec",),
        interactive_args=(),
        interactive_task_args=(),
        state_dirs=(".codex",),
        api_key_vars=("OPENAI_API_KEY",),
    ),
    "goose": AgentAdapter(
        name="goose",
        binary="goose",
        headless_args=("run", "--text"),
        interactive_args=("session",),
        interactive_task_args=None,
        state_dirs=(".config/goose", ".local/share/goose", ".local/state/goose"),
        api_key_vars=(*_COMMON_MODEL_KEYS, "GOOSE_PROVIDER", "GOOSE_MODEL"),
    ),
    "aider": AgentAdapter(
        name="aider",
        binary="aider",
        headless_args=("--yes-always", "--message"),
        interactive_args=(),
        interactive_task_args=None,
        state_dirs=(".aider", ".aider.conf.yml"),
        api_key_vars=_COMMON_MODEL_KEYS,
    ),
}

DEFAULT_AGENT = "opencode"


def resolve_agent(value: str | None) -> AgentAdapter:
    """Return the adapter for an agent name, or a command adapter for a command line."""
    if value is None:
        return ADAPTERS[DEFAULT_AGENT]
    if value in ADAPTERS:
        return ADAPTERS[value]

    try:
        argv = shlex.split(value)
    except ValueError as error:
        raise UserError(
            f"invalid --agent command {value!r}: {error}",
            fix="quote the command as a shell would, for example --agent \"sh -c 'make test'\"",
        ) from error
    if not argv:
        raise UserError(
            "empty --agent value",
            fix=f"name an agent ({', '.join(sorted(ADAPTERS))}) or give a command line",
        )
    return AgentAdapter(
        name="command",
        binary=argv[0],
        headless_args=(),
        interactive_args=(),
        interactive_task_args=(),
        state_dirs=(),
        api_key_vars=(),
        custom_argv=tuple(argv),
    )
