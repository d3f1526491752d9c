"""Where devcontainer secrets come from: the engine's store, then the host environment."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from devaipod.errors import UserError
from devaipod.runtime.engine import ExecResult
from devaipod.runtime.planner import WorkspaceSecret
from devaipod.session.secrets import resolve_workspace_secrets


class StoreEngine:
    """Answers `secret inspect` from a fixed set of names; records every call."""

    program = "podman"

    def __init__(self, stored: set[str]) -> None:
        self.stored = stored
        self.calls: list[list[str]] = []

    def run_engine(
        self, argv: Sequence[str], *, input_bytes: bytes | None = None, check: bool = True
    ) -> ExecResult:
        self.calls.append(list(argv))
        found = argv[:2] == ["secret", "inspect"] and argv[2] in self.stored
        return ExecResult(list(argv), 0 if found else 125, "", "")


def resolve(
    engine: StoreEngine, names: list[str], env: dict[str, str]
) -> tuple[tuple[WorkspaceSecret, ...], dict[str, bytes]]:
    return resolve_workspace_secrets(engine, "devaipod-demo", names, env)  # type: ignore[arg-type]


def test_store_secret_preferred_over_host() -> None:
    engine = StoreEngine({"DB_PASSWORD"})

    found, values = resolve(engine, ["DB_PASSWORD"], {"DB_PASSWORD": "host-value"})

    assert found == (WorkspaceSecret("DB_PASSWORD", from_store=True),)
    assert values == {}


def test_host_value_copied_to_session_secret() -> None:
    found, values = resolve(StoreEngine(set()), ["API_KEY"], {"API_KEY": "k-1"})

    assert found == (WorkspaceSecret("API_KEY", from_store=False),)
    assert values == {"devaipod-demo-secret-API_KEY": b"k-1"}


def test_missing_secrets_named_with_command() -> None:
    with pytest.raises(UserError) as caught:
        resolve(StoreEngine(set()), ["ONE", "TWO"], {})

    text = caught.value.render()
    assert "ONE, TWO" in text
    assert 'printf %s "$VALUE" | podman secret create ONE -' in text
    assert 'podman secret create TWO -' in text


def test_bad_secret_name_rejected() -> None:
    with pytest.raises(UserError, match="invalid devcontainer.json secret name"):
        resolve(StoreEngine(set()), ["a-b;rm"], {})
