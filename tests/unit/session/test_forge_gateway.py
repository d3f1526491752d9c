"""Unit tests of the gateway's forge mode: the plan `run` gets, without an engine."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from devaipod.config import ForgeSettings, parse_config
from devaipod.errors import UserError
from devaipod.forge.urls import parse_forge_url
from devaipod.runtime.gateway_image import GatewayImage
from devaipod.runtime.plan import AgentSummary, CodeSource, ContainerSpec, Role, SessionPlan
from devaipod.scope.derive import derive_scope
from devaipod.scope.model import parse_scope
from devaipod.session import gateway
from support.git_server import isolated_git_env, run_git

SESSION = "devaipod-fx-1"
TOKEN = "forge-token-value-0123456789"
FORGE = "10.88.0.1:3000"
CONFIG = parse_config(
    f'[forges."{FORGE}"]\nkind = "forgejo"\napi_url = "http://{FORGE}/api/v1"\n', "test"
)


def _plan() -> SessionPlan:
    agent = ContainerSpec(
        name=f"{SESSION}-agent",
        role=Role.AGENT,
        image="img",
        options=("--network=none", "--read-only", "--env=DEVAIPOD_TASK=do it"),
    )
    return SessionPlan(
        session=SESSION,
        labels={},
        source=CodeSource(kind="remote", location=f"http://{FORGE}/octo/hello.git"),
        workspace_folder="/workspaces/hello",
        remote_user=None,
        builds=(),
        networks=(),
        volumes=(),
        secrets=(),
        containers=(agent,),
        lifecycle=(),
        remote_env={},
        agent=AgentSummary(
            name="command", command=("sh",), interactive=False, user="dev", home="/home/dev",
            uses_tmux=False,
        ),
        notes=(),
    )


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEVAIPOD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(
        gateway,
        "ensure_gateway_image",
        lambda base: GatewayImage("localhost/gw:test", "h", "base", True, 0.0, 0),
    )
    path = tmp_path / "clone"
    run_git("init", "-q", str(path))
    run_git("remote", "add", "origin", f"http://{FORGE}/octo/hello.git", cwd=path)
    return path


def _add(clone: Path, network: gateway.NetworkMode) -> tuple[SessionPlan, dict[str, bytes]]:
    forge_url = parse_forge_url(f"http://{FORGE}/octo/hello/issues/7", CONFIG)
    settings = CONFIG.forge_settings(FORGE)
    assert settings is not None
    return gateway.add_forge_gateway(
        _plan(),
        {},
        gateway.ForgeGateway(
            forge_url=forge_url,
            settings=settings,
            scope=derive_scope(forge_url),
            token=TOKEN,
            target_branch="devaipod/issue-7",
        ),
        clone=clone,
        base_image=None,
        network=network,
    )


def test_forge_token_only_in_secret_value(clone: Path) -> None:
    plan, values = _add(clone, gateway.NetworkMode.PROXY)

    token_specs = [spec for spec in plan.secrets if spec.purpose == "forge-token"]
    assert len(token_specs) == 1
    assert values[token_specs[0].name] == TOKEN.encode()
    assert TOKEN not in plan.render_text("podman")
    assert TOKEN not in str(plan.to_dict())
    state = Path(gateway.session_dir(SESSION))
    assert all(TOKEN not in path.read_text() for path in state.iterdir())


def test_forge_gateway_on_network_with_none(clone: Path) -> None:
    plan, _ = _add(clone, gateway.NetworkMode.NONE)

    gateway_spec = plan.container(Role.GATEWAY)
    assert "--network=none" not in gateway_spec.options
    assert not any(option.startswith("--network") for option in gateway_spec.options)
    assert "serve-local-upstream" not in " ".join(gateway_spec.command)
    assert "--egress-listen" not in " ".join(gateway_spec.command)
    assert gateway.network_mode(plan) == gateway.NetworkMode.NONE


def test_forge_agent_env_names_and_secret(clone: Path) -> None:
    plan, values = _add(clone, gateway.NetworkMode.PROXY)
    agent = plan.container(Role.AGENT)
    env = dict(value.split("=", 1) for value in agent.option_values("--env"))

    assert env["DEVAIPOD_BROKER_URL"] == "http://127.0.0.1:8417"
    assert env["DEVAIPOD_FORGE_API_URL"] == f"http://127.0.0.1:8417/api/{FORGE}"
    assert env["DEVAIPOD_MCP_URL"] == "http://127.0.0.1:8417/mcp"
    assert "DEVAIPOD_BROKER_TOKEN" not in env
    credential = gateway.session_credential(plan, values)
    assert values[f"{SESSION}-env-DEVAIPOD_BROKER_TOKEN"] == credential.encode()
    mounts = agent.option_values("--secret")
    assert any(
        mount.startswith(f"{SESSION}-env-DEVAIPOD_BROKER_TOKEN,")
        and mount.endswith("target=DEVAIPOD_ENV_DEVAIPOD_BROKER_TOKEN")
        for mount in mounts
    )
    assert credential not in " ".join(agent.options)


def test_forge_scope_and_config_written(clone: Path) -> None:
    plan, _ = _add(clone, gateway.NetworkMode.PROXY)
    state = gateway.session_dir(SESSION)

    scope = parse_scope(yaml.safe_load((state / "scope.yaml").read_text()), "test")
    assert scope.repos[0].input.url == f"http://{FORGE}/octo/hello.git"
    assert scope.repos[0].input.allowHttp is True
    assert scope.attachedContexts[0].url == f"http://{FORGE}/octo/hello/issues/7"
    written = tomllib.loads((state / "config.toml").read_text())
    assert written == {
        "forges": {FORGE: {"kind": "forgejo", "api_url": f"http://{FORGE}/api/v1"}}
    }
    options = plan.container(Role.GATEWAY).options
    assert "--env=DEVAIPOD_CONFIG=/run/devaipod/state/config.toml" in options


def test_forge_clone_origin_points_at_broker(clone: Path) -> None:
    plan, values = _add(clone, gateway.NetworkMode.PROXY)

    def config(key: str) -> str:
        return subprocess.run(
            ["git", "config", "--get", key], cwd=clone, env=isolated_git_env(),
            capture_output=True, text=True,
        ).stdout.strip()

    assert config("remote.origin.url") == f"http://127.0.0.1:8417/git/{FORGE}/octo/hello.git"
    assert config("remote.origin.push") == "HEAD:refs/heads/devaipod/issue-7"
    credential = gateway.session_credential(plan, values)
    header = config("http.http://127.0.0.1:8417/.extraheader")
    assert header == f"Authorization: Bearer {credential}"


def test_forge_config_keeps_path_prefix() -> None:
    config = parse_config(
        '[forges."git.example.test"]\nkind = "gitlab"\npath_prefix = "/git"\n'
        'token_secret = "gl"\n',
        "test",
    )
    forge_url = parse_forge_url("https://git.example.test/git/g/sub/p/-/issues/3", config)
    settings = config.forge_settings("git.example.test")
    assert isinstance(settings, ForgeSettings)

    text = gateway.forge_config_toml(forge_url, settings)

    assert tomllib.loads(text)["forges"]["git.example.test"] == {
        "kind": "gitlab",
        "api_url": "https://git.example.test/git/api/v4",
        "path_prefix": "/git",
    }
    assert parse_config(text, "written").forge_settings("git.example.test") is not None


def test_forge_origin_outside_scope_rejected() -> None:
    forge_url = parse_forge_url(f"http://{FORGE}/octo/hello/issues/7", CONFIG)
    with pytest.raises(UserError, match="does not declare the repository"):
        gateway.forge_origin_url(derive_scope(forge_url), f"http://{FORGE}/octo/other.git")
