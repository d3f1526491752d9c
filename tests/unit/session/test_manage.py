"""Tests of session listing as `list --json` prints it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devaipod.broker.audit import AuditLog
from devaipod.runtime.engine import ContainerInfo
from devaipod.runtime.plan import LABEL_SESSION
from devaipod.session.manage import delivered_commits, list_sessions
from devaipod.session.paths import session_audit_path


class _ListingEngine:
    """An engine that only lists containers: `list` must need nothing else."""

    def __init__(self, containers: list[ContainerInfo]) -> None:
        self.containers = containers

    def list_containers(self, labels: dict[str, str | None]) -> list[ContainerInfo]:
        return self.containers

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"list_sessions called engine.{name}")


def test_list_json_omits_volumes_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))
    agent = ContainerInfo(
        id="1",
        name="devaipod-demo-agent",
        image="localhost/test",
        state="running",
        labels={LABEL_SESSION: "devaipod-demo", "devaipod.role": "agent"},
    )
    engine = _ListingEngine([agent])

    [status] = list_sessions(engine)  # type: ignore[arg-type]
    data = status.to_dict()

    assert data["session"] == "devaipod-demo"
    assert "volumes" not in data
    assert "secrets" not in data


def test_delivered_commits_from_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))
    path = session_audit_path("devaipod-demo")
    path.parent.mkdir(parents=True)
    audit = AuditLog(path, "devaipod-demo")
    ref = "refs/heads/devaipod/issue-1"
    audit.record(kind="git-push", decision="allow", reason="creates it", ref=ref,
                 old_oid="0" * 40, new_oid="a" * 40)
    audit.record(kind="git-push", decision="allow", reason="upstream accepted the update",
                 ref=ref, old_oid="0" * 40, new_oid="b" * 40, upstream_status=200)
    audit.record(kind="git-push", decision="deny", reason="only the branch", ref="refs/heads/main",
                 old_oid="b" * 40, new_oid="c" * 40)

    assert delivered_commits("devaipod-demo") == ["b" * 40]
    assert delivered_commits("devaipod-other") == []


def test_list_reads_labels_from_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path))
    session_labels = {LABEL_SESSION: "devaipod-demo"}
    gateway = ContainerInfo(
        id="1", name="devaipod-demo-gateway", image="gw", state="running",
        labels={**session_labels, "devaipod.role": "gateway"},
    )  # fmt: skip
    agent = ContainerInfo(
        id="2", name="devaipod-demo-agent", image="img", state="running",
        labels={**session_labels, "devaipod.role": "agent", "devaipod.agent": "opencode",
                "devaipod.source": "https://forge.test/o/r.git"},
    )  # fmt: skip

    [status] = list_sessions(_ListingEngine([gateway, agent]))  # type: ignore[arg-type]

    assert status.agent == "opencode"
    assert status.source == "https://forge.test/o/r.git"
