"""Unit tests of local mode's scope, names and agent clone settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devaipod.broker.upstreams import RepoMap, broker_git_path
from devaipod.errors import UserError
from devaipod.runtime.plan import AgentSummary, CodeSource, ContainerSpec, Role, SessionPlan
from devaipod.scope.model import dump_scope, parse_scope
from devaipod.session import gateway
from support.git_server import isolated_git_env, run_git


def test_output_branch_drops_session_prefix() -> None:
    assert gateway.output_branch("devaipod-fix-42") == "devaipod/fix-42"


def test_repo_name_replaces_unsafe_characters() -> None:
    assert gateway.upstream_repo_name(Path("/home/a/my project!")) == "my-project"
    assert gateway.upstream_repo_name(Path("/home/a/...")) == "project"


def test_local_scope_survives_yaml_round_trip() -> None:
    scope = gateway.local_scope("devaipod-demo-1", "proj")
    reloaded = parse_scope(yaml.safe_load(dump_scope(scope)), "test")
    repo = reloaded.repos[0]
    assert repo.input.url == "http://127.0.0.1:9419/proj"
    assert repo.input.allowHttp is True
    assert repo.output is not None
    assert repo.output.targetBranch == "devaipod/demo-1"
    assert repo.output.allowForcePush is False


def test_local_scope_carries_network_allow() -> None:
    allow = ["api.example.test", "*.pkg.example.test:8443", "api.example.test"]

    scope = gateway.local_scope("devaipod-demo-1", "proj", allow)
    reloaded = parse_scope(yaml.safe_load(dump_scope(scope)), "test")

    assert reloaded.network.allow == ["api.example.test", "*.pkg.example.test:8443"]


def test_local_scope_rejects_bad_allow_entry() -> None:
    with pytest.raises(UserError, match="egress allowlist entry"):
        gateway.local_scope("devaipod-demo-1", "proj", ["a.*.example.test"])


def test_origin_url_matches_broker_path() -> None:
    scope = gateway.local_scope("devaipod-demo-1", "proj")
    served = RepoMap(scope).repos()[0]
    origin = gateway.broker_origin_url("proj")
    assert origin == f"http://127.0.0.1:8417{broker_git_path(served)}"
    assert "@" not in origin


def test_configure_clone_sets_origin_and_header(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    run_git("init", "-q", str(clone))
    gateway.configure_agent_clone(clone, "devaipod-demo-1", "proj", "CREDENTIAL-VALUE")
    env = isolated_git_env()

    def config(key: str) -> str:
        return subprocess.run(
            ["git", "config", "--get", key], cwd=clone, env=env, capture_output=True, text=True
        ).stdout.strip()

    assert config("remote.origin.url") == gateway.broker_origin_url("proj")
    assert config("remote.origin.push") == "HEAD:refs/heads/devaipod/demo-1"
    header = config("http.http://127.0.0.1:8417/.extraheader")
    assert header == "Authorization: Bearer CREDENTIAL-VALUE"
    assert "CREDENTIAL-VALUE" not in config("remote.origin.url")


def test_network_mode_defaults_by_gateway() -> None:
    assert gateway.resolve_network_mode(None, with_gateway=True) == gateway.NetworkMode.PROXY
    assert gateway.resolve_network_mode(None, with_gateway=False) == gateway.NetworkMode.NONE


def test_network_proxy_without_gateway_rejected() -> None:
    with pytest.raises(UserError, match="needs the gateway"):
        gateway.resolve_network_mode("proxy", with_gateway=False)


def test_network_mode_unknown_value_rejected() -> None:
    with pytest.raises(UserError, match="invalid --network value 'wide'"):
        gateway.resolve_network_mode("wide", with_gateway=True)


def test_open_network_drops_none_option() -> None:
    agent = ContainerSpec(
        name="s-agent", role=Role.AGENT, image="img", options=("--network=none", "--read-only")
    )
    plan = SessionPlan(
        session="devaipod-s",
        labels={},
        source=CodeSource(kind="local", location="/src"),
        workspace_folder="/workspaces/s",
        remote_user=None,
        builds=(),
        networks=(),
        volumes=(),
        secrets=(),
        containers=(agent,),
        lifecycle=(),
        remote_env={},
        agent=AgentSummary(
            name="sh",
            command=("sh",),
            interactive=False,
            user="dev",
            home="/home/dev",
            uses_tmux=False,
        ),
        notes=(),
    )
    opened = gateway.open_agent_network(plan)
    options = opened.container(Role.AGENT).options
    assert "--network=none" not in options
    assert "--read-only" in options
    assert gateway.network_mode(opened) == gateway.NetworkMode.OPEN
    assert gateway.network_mode(plan) == gateway.NetworkMode.NONE
