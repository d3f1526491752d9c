"""Tests of the typed devcontainer.json model: accepted forms and type errors."""

from __future__ import annotations

from typing import Any

import pytest

from devaipod.devcontainer.model import parse_config, unknown_properties
from devaipod.errors import UserError


def _error(data: dict[str, Any]) -> UserError:
    with pytest.raises(UserError) as caught:
        parse_config(data, "devcontainer.json")
    return caught.value


def test_model_accepts_full_property_set() -> None:
    config = parse_config(
        {
            "name": "all",
            "image": "debian",
            "build": {
                "dockerfile": "Dockerfile",
                "context": "..",
                "args": {"A": "1"},
                "target": "dev",
                "cacheFrom": ["a", "b"],
                "options": ["--pull"],
            },
            "dockerComposeFile": ["a.yml"],
            "service": "app",
            "runServices": ["app"],
            "features": {"ghcr.io/x/y:1": {"version": "2", "port": 3}, "./local": True},
            "containerEnv": {"A": "b"},
            "remoteEnv": {"A": None, "B": "c"},
            "mounts": ["type=volume,target=/x", {"type": "bind", "source": "/a", "target": "/b"}],
            "runArgs": ["--init"],
            "capAdd": ["SYS_PTRACE"],
            "securityOpt": ["seccomp=unconfined"],
            "privileged": False,
            "init": True,
            "workspaceFolder": "/w",
            "workspaceMount": "",
            "overrideCommand": True,
            "containerUser": "root",
            "remoteUser": "dev",
            "updateRemoteUserUID": False,
            "userEnvProbe": "none",
            "forwardPorts": [3000, "db:5432"],
            "portsAttributes": {"3000": {"label": "web", "onAutoForward": "notify"}},
            "otherPortsAttributes": {"onAutoForward": "silent"},
            "appPort": [8080, "127.0.0.1:9000:9000"],
            "hostRequirements": {"cpus": 2, "memory": "8gb", "storage": "32gb", "gpu": "optional"},
            "initializeCommand": ["echo", "x"],
            "onCreateCommand": "make",
            "updateContentCommand": {"a": "x", "b": ["y"]},
            "postCreateCommand": "",
            "postStartCommand": [],
            "postAttachCommand": {},
            "waitFor": "postCreateCommand",
            "shutdownAction": "none",
            "secrets": {"TOKEN": {"description": "d", "documentationUrl": "https://x"}},
            "customizations": {
                "vscode": {"extensions": []},
                "devaipod": {"envAllowlist": ["TERM"], "allowedDomains": ["pypi.org"]},
            },
        },
        "devcontainer.json",
    )
    assert config.devaipod().allowedDomains == ["pypi.org"]
    assert config.hostRequirements is not None
    assert config.hostRequirements.gpu == "optional"
    assert unknown_properties(config) == []


def test_gpu_forms_accepted() -> None:
    for gpu in (True, False, "optional", {"cores": 2, "memory": "4gb"}):
        config = parse_config({"hostRequirements": {"gpu": gpu}}, "f")
        assert config.hostRequirements is not None


def test_mounts_number_names_path_and_type() -> None:
    error = _error({"mounts": 5})
    assert error.message == "devcontainer.json: invalid mounts: expected an array, got number 5"
    assert error.fix == "change mounts to an array"


def test_mount_entry_type_error() -> None:
    error = _error({"mounts": ["ok", 5]})
    assert "invalid mounts[1]: expected a string or an object" in error.message


def test_build_arg_type_error_path() -> None:
    error = _error({"build": {"args": {"FOO": 5}}})
    assert "invalid build.args.FOO: expected a string, got number 5" in error.message


def test_mount_object_missing_target() -> None:
    error = _error({"mounts": [{"type": "bind", "source": "/x"}]})
    assert error.message == "devcontainer.json: required property mounts[0].target is missing"


def test_boolean_strings_not_coerced() -> None:
    error = _error({"privileged": "false"})
    assert "invalid privileged: expected a boolean" in error.message


def test_gpu_wrong_string_lists_forms() -> None:
    error = _error({"hostRequirements": {"gpu": "yes"}})
    assert "expected a boolean, the string 'optional' or an object" in error.message


def test_lifecycle_number_rejected() -> None:
    error = _error({"postStartCommand": 1})
    assert "expected a string, an array or an object" in error.message


def test_wait_for_lists_allowed_values() -> None:
    error = _error({"waitFor": "later"})
    assert "one of 'initializeCommand'" in error.message


def test_devaipod_namespace_rejects_typo() -> None:
    error = _error({"customizations": {"devaipod": {"allowedDomain": ["x"]}}})
    assert "unknown property customizations.devaipod.allowedDomain" in error.message


def test_devaipod_namespace_type_error() -> None:
    error = _error({"customizations": {"devaipod": {"agentImage": 1}}})
    assert "invalid customizations.devaipod.agentImage: expected a string" in error.message


def test_unknown_properties_listed_with_paths() -> None:
    config = parse_config(
        {
            "$schema": "x",
            "foo": 1,
            "build": {"dockerFile": "x"},
            "mounts": [{"type": "bind", "target": "/x", "external": True}],
            "hostRequirements": {"gpu": {"cores": 1, "storage": "1gb"}},
        },
        "f",
    )
    assert unknown_properties(config) == [
        "foo",
        "build.dockerFile",
        "mounts[0].external",
        "hostRequirements.gpu.storage",
    ]


def test_memory_size_pattern_checked() -> None:
    error = _error({"hostRequirements": {"memory": "8 GB"}})
    assert "invalid hostRequirements.memory: expected a size" in error.message


def test_port_range_checked() -> None:
    error = _error({"forwardPorts": [70000]})
    assert "invalid forwardPorts[0]" in error.message
