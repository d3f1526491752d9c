"""Session scopes: the model, YAML loading and validation."""

from __future__ import annotations

from devaipod.scope.model import (
    AttachedContext,
    NetworkScope,
    RepoInput,
    RepoOutput,
    RepoScope,
    Scope,
    dump_scope,
    load_scope,
    parse_scope,
)

__all__ = [
    "AttachedContext",
    "NetworkScope",
    "RepoInput",
    "RepoOutput",
    "RepoScope",
    "Scope",
    "dump_scope",
    "load_scope",
    "parse_scope",
]
