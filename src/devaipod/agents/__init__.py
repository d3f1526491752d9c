"""Agent adapters: how each coding agent program is started for a task, and what it needs."""

from __future__ import annotations

from devaipod.agents.adapters import ADAPTERS, AgentAdapter, resolve_agent
from devaipod.agents.env import FORGE_TOKEN_NAMES, agent_environment

__all__ = ["ADAPTERS", "FORGE_TOKEN_NAMES", "AgentAdapter", "agent_environment", "resolve_agent"]
