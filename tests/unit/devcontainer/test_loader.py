"""Tests of load_devcontainer: legacy keys, kinds, Dockerfile and Compose paths, phases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devaipod.devcontainer import ConfigKind, load_devcontainer
from devaipod.devcontainer.loader import config_kind, move_legacy_properties
from devaipod.errors import UserError


def _workspace(tmp_path: Path, config: dict[str, object] | str, name: str = "app") -> Path:
    workspace = tmp_path / name
    path = workspace / ".devcontainer" / "devcontainer.json"
    path.parent.mkdir(parents=True)
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return workspace


def test_image_config_resolved(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"image": "img:${localEnv:TAG:1}", "foo": 1})
    resolved = load_devcontainer(workspace, env={})
    assert resolved.kind is ConfigKind.IMAGE
    assert resolved.configuration == {"image": "img:1", "foo": 1}
    assert resolved.config.image == "img:1"
    assert resolved.unknown_properties == ["foo"]
    assert resolved.workspace_folder == "/workspaces/app"
    assert resolved.id_labels == {
        "devcontainer.local_folder": str(workspace),
        "devcontainer.config_file": str(workspace / ".devcontainer" / "devcontainer.json"),
    }


def test_legacy_keys_moved_like_cli() -> None:
    raw = {
        "extensions": ["b"],
        "settings": {"x": 1, "y": 1},
        "devPort": 8000,
        "customizations": {"vscode": {"extensions": ["a"], "settings": {"y": 2}}},
    }
    moved = move_legacy_properties(raw)
    assert moved == {
        "customizations": {
            "vscode": {"extensions": ["a", "b"], "settings": {"x": 1, "y": 2}, "devPort": 8000}
        }
    }
    assert "extensions" in raw


def test_legacy_dev_port_kept_when_set() -> None:
    moved = move_legacy_properties({"devPort": 1, "customizations": {"vscode": {"devPort": 2}}})
    assert moved["devPort"] == 1
    assert moved["customizations"]["vscode"]["devPort"] == 2


def test_kind_precedence() -> None:
    assert config_kind({"image": "x", "build": {"dockerfile": "D"}}) is ConfigKind.DOCKERFILE
    assert config_kind({"image": "x", "dockerFile": "D"}) is ConfigKind.DOCKERFILE
    assert config_kind({"image": "", "dockerComposeFile": "c"}) is ConfigKind.IMAGE
    assert config_kind({"dockerComposeFile": []}) is ConfigKind.COMPOSE
    assert config_kind({"build": {"dockerFile": "D"}}) is None


def test_missing_kind_rejected(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"name": "x"})
    with pytest.raises(UserError, match="missing one of image, dockerFile or dockerComposeFile"):
        load_devcontainer(workspace, env={})


def test_dockerfile_and_default_context(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"build": {"dockerfile": "../Dockerfile", "args": {"A": "1"}}})
    (workspace / "Dockerfile").write_text("FROM scratch\n")
    resolved = load_devcontainer(workspace, env={})
    assert resolved.build is not None
    assert resolved.build.dockerfile == workspace / "Dockerfile"
    assert resolved.build.context == workspace
    assert resolved.build.args == {"A": "1"}


def test_legacy_dockerfile_with_build_options(tmp_path: Path) -> None:
    config = {
        "dockerFile": "Dockerfile",
        "context": "..",
        "build": {"args": {"A": "1"}, "options": ["--pull"], "cacheFrom": "c"},
    }
    workspace = _workspace(tmp_path, config)
    (workspace / ".devcontainer" / "Dockerfile").write_text("FROM scratch\n")
    resolved = load_devcontainer(workspace, env={})
    assert resolved.build is not None
    assert resolved.build.context == workspace
    assert resolved.build.options == ["--pull"]
    assert resolved.build.cache_from == ["c"]


def test_missing_dockerfile_names_path(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"build": {"dockerfile": "Dockerfile"}})
    with pytest.raises(UserError) as caught:
        load_devcontainer(workspace, env={})
    expected = workspace / ".devcontainer" / "Dockerfile"
    assert caught.value.message.startswith(f"Dockerfile {expected} not found")


def test_missing_dockerfile_allowed_on_request(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"build": {"dockerfile": "Dockerfile"}})
    resolved = load_devcontainer(workspace, env={}, require_dockerfile=False)
    assert resolved.build is not None


def test_compose_files_resolved(tmp_path: Path) -> None:
    config = {"dockerComposeFile": ["../a.yml", "b.yml"], "service": "app", "features": {"x": {}}}
    workspace = _workspace(tmp_path, config)
    resolved = load_devcontainer(workspace, env={})
    assert resolved.kind is ConfigKind.COMPOSE
    assert resolved.compose_files == [workspace / "a.yml", workspace / ".devcontainer" / "b.yml"]
    assert resolved.show_json()["workspace"] == {"workspaceFolder": "/"}
    assert resolved.unsupported_features() == ["x"]
    assert len(resolved.unsupported_reasons()) == 2


def test_compose_empty_array_falls_back(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"dockerComposeFile": [], "service": "app"})
    (workspace / ".env").write_text("COMPOSE_FILE=one.yml:two.yml\n")
    resolved = load_devcontainer(workspace, env={})
    assert resolved.compose_files == [workspace / "one.yml", workspace / "two.yml"]
    from_env = load_devcontainer(workspace, env={"COMPOSE_FILE": "env.yml"})
    assert from_env.compose_files == [workspace / "env.yml"]


def test_container_workspace_folder_in_mount(tmp_path: Path) -> None:
    config = {
        "image": "x",
        "workspaceFolder": "/src/${localWorkspaceFolderBasename}",
        "workspaceMount": (
            "source=${localWorkspaceFolder},target=${containerWorkspaceFolder},type=bind"
        ),
    }
    workspace = _workspace(tmp_path, config)
    resolved = load_devcontainer(workspace, env={})
    assert resolved.workspace_folder == "/src/app"
    assert resolved.workspace_mount == f"source={workspace},target=/src/app,type=bind"


def test_empty_workspace_folder_kept(tmp_path: Path) -> None:
    workspace = _workspace(
        tmp_path,
        {"image": "x", "workspaceFolder": "", "mounts": ["target=${containerWorkspaceFolder}/x"]},
    )
    resolved = load_devcontainer(workspace, env={})
    assert resolved.workspace_folder == ""
    assert resolved.configuration["mounts"] == ["target=/workspaces/app/x"]


def test_phases_kept_separate(tmp_path: Path) -> None:
    config = {
        "image": "x",
        "postCreateCommand": "echo ${devcontainerId} ${containerEnv:HOME}",
        "remoteEnv": {"P": "${containerEnv:PATH}:/x"},
    }
    workspace = _workspace(tmp_path, config)
    resolved = load_devcontainer(workspace, env={})
    assert resolved.configuration["postCreateCommand"] == config["postCreateCommand"]
    steps = resolved.lifecycle_commands()["postCreateCommand"].steps
    assert steps[0].shell == f"echo {resolved.devcontainer_id} ${{containerEnv:HOME}}"
    final = resolved.with_container_env({"PATH": "/bin", "HOME": "/root"})
    assert final["remoteEnv"] == {"P": "/bin:/x"}
    assert final["postCreateCommand"] == f"echo {resolved.devcontainer_id} /root"


def test_type_error_after_substitution(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"image": "x", "runArgs": "--init"})
    with pytest.raises(UserError, match="invalid runArgs: expected an array"):
        load_devcontainer(workspace, env={})


def test_workspace_folder_type_checked_first(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, {"image": "x", "workspaceFolder": 5})
    with pytest.raises(UserError, match="invalid workspaceFolder: expected a string"):
        load_devcontainer(workspace, env={})


def test_missing_workspace_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_devcontainer(tmp_path / "nope", env={})


def test_devaipod_namespace_read(tmp_path: Path) -> None:
    config = {"image": "x", "customizations": {"devaipod": {"agent": "opencode"}}}
    resolved = load_devcontainer(_workspace(tmp_path, config), env={})
    assert resolved.devaipod.agent == "opencode"
    assert resolved.devaipod.envAllowlist == []


def test_typed_config_after_phase_two(tmp_path: Path) -> None:
    config = {"image": "x", "containerEnv": {"ID": "${devcontainerId}"}}
    resolved = load_devcontainer(_workspace(tmp_path, config), env={})
    assert resolved.config.containerEnv == {"ID": "${devcontainerId}"}
    typed = resolved.config_with_devcontainer_id()
    assert typed.containerEnv == {"ID": resolved.devcontainer_id}


def test_null_workspace_mount_shown(tmp_path: Path) -> None:
    config = {"image": "x", "workspaceMount": None, "workspaceFolder": None}
    resolved = load_devcontainer(_workspace(tmp_path, config), env={})
    assert resolved.show_json()["workspace"] == {
        "workspaceFolder": "/workspaces/app",
        "workspaceMount": None,
    }


def test_null_image_rejected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="image is null"):
        load_devcontainer(_workspace(tmp_path, {"image": None}), env={})


def test_late_container_env_warned(tmp_path: Path) -> None:
    config = {
        "image": "x",
        "containerEnv": {"P": "${containerEnv:PATH}"},
        "remoteEnv": {"P": "${containerEnv:PATH}"},
        "build": {"args": {"ID": "${devcontainerId}"}, "dockerfile": "D"},
    }
    resolved = load_devcontainer(_workspace(tmp_path, config), env={}, require_dockerfile=False)
    messages = resolved.warnings
    assert any("in containerEnv is not replaced" in message for message in messages)
    assert not any("in remoteEnv" in message for message in messages)
    assert any("${devcontainerId} in build" in message for message in messages)
