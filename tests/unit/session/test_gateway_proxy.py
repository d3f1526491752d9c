"""The gateway's egress proxy wiring: the host's addresses and the agent's proxy variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from devaipod.errors import UserError
from devaipod.runtime.gateway_image import GatewayImage
from devaipod.runtime.plan import (
    AgentSummary,
    CodeSource,
    ContainerSpec,
    Role,
    SecretSpec,
    SessionPlan,
)
from devaipod.session import gateway
from support.git_server import run_git

SESSION = "devaipod-hosts-1"
HOST_ADDRESSES = [ipaddress.ip_address("1.2.3.4"), ipaddress.ip_address("2a00:1450::5")]


def agent_plan(*agent_variables: str) -> SessionPlan:
    agent = ContainerSpec(
        name=f"{SESSION}-agent", role=Role.AGENT, image="img", options=("--network=none",)
    )
    return SessionPlan(
        session=SESSION,
        labels={},
        source=CodeSource(kind="local", location="/src/project"),
        workspace_folder="/workspaces/project",
        remote_user=None,
        builds=(),
        networks=(),
        volumes=(),
        secrets=tuple(
            SecretSpec(name=f"{SESSION}-env-{name}", purpose="agent-env", target_env=name)
            for name in agent_variables
        ),
        containers=(agent,),
        lifecycle=(),
        remote_env={},
        agent=AgentSummary(
            name="command", command=("sh",), interactive=False, user="dev", home="/home/dev",
            uses_tmux=False,
        ),
        notes=(),
    )  # fmt: skip


@pytest.fixture
def repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(
        gateway,
        "ensure_gateway_image",
        lambda base: GatewayImage("localhost/gw:test", "h", "base", True, 0.0, 0),
    )
    monkeypatch.setattr(gateway, "global_host_addresses", lambda: HOST_ADDRESSES)
    source = tmp_path / "project"
    clone = tmp_path / "clone"
    run_git("init", "-q", str(source))
    run_git("init", "-q", str(clone))
    return source, clone


def broker_command(repos: tuple[Path, Path], network: gateway.NetworkMode) -> str:
    source, clone = repos
    plan, _ = gateway.add_gateway(
        agent_plan(), {}, source_dir=source, clone=clone, base_image=None, network=network
    )
    return " ".join(plan.container(Role.GATEWAY).command)


def test_proxy_mode_passes_host_addresses(repos: tuple[Path, Path]) -> None:
    command = broker_command(repos, gateway.NetworkMode.PROXY)

    assert "--egress-host-address=1.2.3.4" in command
    assert "--egress-host-address=2a00:1450::5" in command


def test_no_proxy_no_host_addresses(repos: tuple[Path, Path]) -> None:
    command = broker_command(repos, gateway.NetworkMode.NONE)

    assert "--egress-listen" not in command
    assert "--egress-host-address" not in command


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "NO_PROXY"])
def test_agent_proxy_variable_rejected(repos: tuple[Path, Path], name: str) -> None:
    source, clone = repos

    with pytest.raises(UserError, match=f"agent variables {name} would replace the egress"):
        gateway.add_gateway(
            agent_plan("OPENAI_API_KEY", name), {}, source_dir=source, clone=clone,
            base_image=None, network=gateway.NetworkMode.PROXY,
        )  # fmt: skip


def test_agent_proxy_variable_kept_without_proxy(repos: tuple[Path, Path]) -> None:
    source, clone = repos

    plan, _ = gateway.add_gateway(
        agent_plan("HTTPS_PROXY"), {}, source_dir=source, clone=clone, base_image=None,
        network=gateway.NetworkMode.NONE,
    )  # fmt: skip

    assert [spec.target_env for spec in plan.secrets].count("HTTPS_PROXY") == 1
