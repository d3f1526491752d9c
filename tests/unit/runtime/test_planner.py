"""Plans over a matrix of devcontainer settings: workspace options, agent hardening, labels."""

from __future__ import annotations

import itertools
import shlex
from dataclasses import replace

import pytest

from devaipod.agents.adapters import ADAPTERS, resolve_agent
from devaipod.runtime.hardening import AgentLimits, AgentUser
from devaipod.runtime.plan import CodeSource, LifecycleStep, Role, SessionPlan
from devaipod.runtime.planner import (
    AGENT_COMMAND_ENV,
    LABEL_WORKSPACE_SECRETS,
    PlanInputs,
    WorkspaceConfig,
    WorkspaceSecret,
    build_session_plan,
    with_secrets,
)

IMAGE = "localhost/devaipod-test:abc"
DEV = AgentUser(user="dev", uid=1000, gid=1000, home="/home/dev")

HARDENING_FLAGS = (
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--network=none",
    "--read-only",
    "--init",
)


def make_inputs(**overrides: object) -> PlanInputs:
    base = PlanInputs(
        session="devaipod-demo",
        source=CodeSource(kind="local", location="/src/demo"),
        workspace=WorkspaceConfig(image=IMAGE, workspace_folder="/workspaces/demo"),
        agent=resolve_agent("sh -c 'echo hi'"),
        task="fix the bug",
        interactive=False,
        agent_user=DEV,
        use_tmux=True,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


WORKSPACE_MATRIX = [
    WorkspaceConfig(image=IMAGE, workspace_folder="/workspaces/demo"),
    WorkspaceConfig(
        image=IMAGE,
        workspace_folder="/work",
        container_env={"FOO": "bar", "GH_TOKEN": "ghp_fake"},
        remote_env={"EDITOR": "vim"},
        mounts=("type=bind,source=/home/me/.ssh,target=/root/.ssh,readonly",),
        run_args=("--device=/dev/fuse", "--volume=/:/host"),
        cap_add=("SYS_PTRACE",),
        security_opt=("seccomp=unconfined",),
        privileged=True,
        init=True,
        container_user="vscode",
        remote_user="vscode",
    ),
    WorkspaceConfig(
        image=IMAGE,
        workspace_folder="/workspaces/x",
        override_command=False,
        remote_user="root",
        lifecycle=(LifecycleStep("postCreateCommand", "workspace", "make"),),
    ),
]


def agent_options(plan: SessionPlan) -> tuple[str, ...]:
    return plan.container(Role.AGENT).options


@pytest.mark.parametrize(
    ("workspace", "use_tmux", "interactive"),
    list(itertools.product(WORKSPACE_MATRIX, [True, False], [True, False])),
)
def test_agent_hardening_in_every_plan(
    workspace: WorkspaceConfig, use_tmux: bool, interactive: bool
) -> None:
    plan = build_session_plan(
        make_inputs(workspace=workspace, use_tmux=use_tmux, interactive=interactive)
    )
    options = agent_options(plan)

    for flag in HARDENING_FLAGS:
        assert flag in options
    assert "--user=dev" in options
    assert "--env=HOME=/home/dev" in options
    assert any(option.startswith("--pids-limit=") for option in options)
    assert any(option.startswith("--memory=") for option in options)
    assert any(option.startswith("--tmpfs=/tmp:") for option in options)
    assert "--privileged" not in options
    assert not any(option.startswith("--cap-add") for option in options)
    assert not any(option.startswith("--mount=") for option in options)
    assert not any("/dev/fuse" in option or "/:/host" in option for option in options)
    volumes = plan.container(Role.AGENT).option_values("--volume")
    assert volumes == [
        f"devaipod-demo-code:{workspace.workspace_folder}",
        "devaipod-demo-agent-home:/home/dev",
    ]
    assert not any(
        option.startswith("--network=") and option != "--network=none" for option in options
    )


@pytest.mark.parametrize("workspace", WORKSPACE_MATRIX)
def test_workspace_follows_devcontainer_settings(workspace: WorkspaceConfig) -> None:
    plan = build_session_plan(make_inputs(workspace=workspace))
    spec = plan.container(Role.WORKSPACE)
    options = spec.options

    assert f"--volume=devaipod-demo-code:{workspace.workspace_folder}" in options
    for name, value in workspace.container_env.items():
        assert f"--env={name}={value}" in options
    for mount in workspace.mounts:
        assert f"--mount={mount}" in options
    for cap in workspace.cap_add:
        assert f"--cap-add={cap}" in options
    for opt in workspace.security_opt:
        assert f"--security-opt={opt}" in options
    for arg in workspace.run_args:
        assert arg in options
    assert ("--privileged" in options) == workspace.privileged
    assert ("--init" in options) == workspace.init
    if workspace.container_user:
        assert f"--user={workspace.container_user}" in options
    assert ("--entrypoint=/bin/sh" in options) == workspace.override_command
    assert spec.image == IMAGE
    assert "--cap-drop=ALL" not in options


def test_devcontainer_env_kept_from_agent() -> None:
    plan = build_session_plan(make_inputs(workspace=WORKSPACE_MATRIX[1]))
    agent_env = plan.container(Role.AGENT).option_values("--env")
    workspace_env = plan.container(Role.WORKSPACE).option_values("--env")

    names = [value.split("=", 1)[0] for value in agent_env]
    assert names == ["HOME", "DEVAIPOD_TASK", AGENT_COMMAND_ENV]
    assert "FOO=bar" in workspace_env
    assert "GH_TOKEN=ghp_fake" in workspace_env
    assert plan.remote_env == {"EDITOR": "vim"}
    [note] = [note for note in plan.notes if note.startswith("containerEnv/remoteEnv")]
    assert "EDITOR, FOO, GH_TOKEN reach the workspace only" in note


def test_allowlisted_devcontainer_env_as_secret() -> None:
    plan = build_session_plan(make_inputs(workspace=WORKSPACE_MATRIX[1], agent_env_names=("FOO",)))
    agent = plan.container(Role.AGENT)

    assert [secret.target_env for secret in plan.secrets] == ["FOO"]
    assert (
        "devaipod-demo-env-FOO,type=mount,uid=1000,gid=1000,mode=0400,target=DEVAIPOD_ENV_FOO"
        in agent.option_values("--secret")
    )
    assert not any(value.startswith("FOO=") for value in agent.option_values("--env"))
    [note] = [note for note in plan.notes if note.startswith("containerEnv/remoteEnv")]
    assert "EDITOR, GH_TOKEN reach the workspace only" in note


def test_every_object_has_session_label() -> None:
    plan = build_session_plan(make_inputs(agent_env_names=("OPENAI_API_KEY",)))

    for volume in plan.volumes:
        assert volume.labels["devaipod.session"] == "devaipod-demo"
    for secret in plan.secrets:
        assert secret.labels["devaipod.session"] == "devaipod-demo"
    for container in plan.containers:
        assert "--label=devaipod.session=devaipod-demo" in container.options
        assert f"--label=devaipod.role={container.role.value}" in container.options


def test_api_keys_travel_as_secrets() -> None:
    plan = build_session_plan(make_inputs(agent_env_names=("OPENAI_API_KEY", "ANTHROPIC_API_KEY")))
    agent = plan.container(Role.AGENT)

    assert [secret.target_env for secret in plan.secrets] == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    assert agent.option_values("--secret") == [
        "devaipod-demo-env-ANTHROPIC_API_KEY,type=mount,uid=1000,gid=1000,mode=0400,"
        "target=DEVAIPOD_ENV_ANTHROPIC_API_KEY",
        "devaipod-demo-env-OPENAI_API_KEY,type=mount,uid=1000,gid=1000,mode=0400,"
        "target=DEVAIPOD_ENV_OPENAI_API_KEY",
    ]
    assert any(option.startswith("--tmpfs=/run/secrets:") for option in agent.options)
    assert not any("API_KEY=" in value for value in agent.option_values("--env"))


def test_agent_command_in_tmux_entry() -> None:
    plan = build_session_plan(make_inputs(use_tmux=True))
    agent = plan.container(Role.AGENT)

    assert "--entrypoint=/bin/sh" in agent.options
    assert agent.command[0] == "-c"
    assert "tmux" in agent.command[1]
    assert f"--env={AGENT_COMMAND_ENV}=sh -c 'echo hi'" in agent.options
    assert "--env=DEVAIPOD_TASK=fix the bug" in agent.options


def test_agent_without_tmux_runs_directly() -> None:
    plan = build_session_plan(make_inputs(use_tmux=False, interactive=True))
    agent = plan.container(Role.AGENT)

    assert agent.command[-3:] == ("sh", "-c", "echo hi")
    assert agent.command[1].endswith('exec "$@"')
    assert "--tty" in agent.options
    assert "--interactive" in agent.options


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_known_agent_headless_command(name: str) -> None:
    plan = build_session_plan(make_inputs(agent=ADAPTERS[name], task="do it"))
    command = shlex.split(plan.container(Role.AGENT).option_values("--env")[-1].split("=", 1)[1])

    assert command[0] == ADAPTERS[name].binary
    assert command[-1] == "do it"


def test_agent_image_override_used() -> None:
    plan = build_session_plan(make_inputs(agent_image="localhost/agent:1"))

    assert plan.container(Role.AGENT).image == "localhost/agent:1"
    assert plan.container(Role.WORKSPACE).image == IMAGE
    assert plan.images() == [IMAGE, "localhost/agent:1"]


def test_limits_reach_agent_options() -> None:
    plan = build_session_plan(
        make_inputs(limits=AgentLimits(memory="512m", pids=64, tmp_size="64m"))
    )
    options = agent_options(plan)

    assert "--memory=512m" in options
    assert "--pids-limit=64" in options
    assert "--tmpfs=/tmp:rw,nosuid,nodev,size=64m,mode=1777" in options


def test_plan_dict_has_full_argv() -> None:
    plan = build_session_plan(make_inputs())
    data = plan.to_dict()

    assert data["session"] == "devaipod-demo"
    assert [c["role"] for c in data["containers"]] == ["workspace", "agent"]
    agent_argv = data["containers"][1]["argv"]
    assert agent_argv[:2] == ["create", "--name=devaipod-demo-agent"]
    assert IMAGE in agent_argv
    assert [v["purpose"] for v in data["volumes"]] == ["code", "agent-home"]
    assert data["volumes"][0]["argv"][:2] == ["volume", "create"]


def test_root_agent_user_rejected() -> None:
    with pytest.raises(ValueError, match="root"):
        build_session_plan(make_inputs(agent_user=AgentUser("root", 0, 0, "/root")))


def test_workspace_secrets_mount_as_files() -> None:
    secrets = (WorkspaceSecret("DB_PASSWORD", from_store=True), WorkspaceSecret("API", False))

    plan = build_session_plan(make_inputs(workspace_secrets=secrets))
    workspace = plan.container(Role.WORKSPACE).options
    agent = plan.container(Role.AGENT).options

    assert (
        "--secret=DB_PASSWORD,type=mount,mode=0444,target=DEVAIPOD_ENV_DB_PASSWORD" in workspace
    )
    assert (
        "--secret=devaipod-demo-secret-API,type=mount,mode=0444,target=DEVAIPOD_ENV_API"
        in workspace
    )
    assert f"--label={LABEL_WORKSPACE_SECRETS}=1" in workspace
    assert not any("secret" in option for option in agent)
    # Only the host-value copy is the session's to create and delete.
    assert [secret.name for secret in plan.secrets] == ["devaipod-demo-secret-API"]


def test_no_workspace_secrets_no_label() -> None:
    plan = build_session_plan(make_inputs())

    assert not any(
        LABEL_WORKSPACE_SECRETS in option for option in plan.container(Role.WORKSPACE).options
    )


def test_with_secrets_exports_then_runs() -> None:
    argv = with_secrets(["make", "test"])

    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[-2:] == ["make", "test"]
    assert "/run/secrets/DEVAIPOD_ENV_" in argv[2]


def test_missing_model_key_noted() -> None:
    plan = build_session_plan(make_inputs(agent=resolve_agent("codex")))

    [note] = [note for note in plan.notes if note.startswith("agent codex")]
    assert "gets none of OPENAI_API_KEY" in note
    assert "DEVAIPOD_AGENT_<NAME>" in note


def test_passed_model_key_not_noted() -> None:
    with_key = build_session_plan(
        make_inputs(agent=resolve_agent("codex"), agent_env_names=("OPENAI_API_KEY",))
    )
    custom = build_session_plan(make_inputs())

    assert not [note for note in with_key.notes if note.startswith("agent ")]
    assert not [note for note in custom.notes if note.startswith("agent ")]
