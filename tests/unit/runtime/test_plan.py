"""Engine arguments of plan steps: builds, volumes, networks, secrets and containers."""

from __future__ import annotations

from devaipod.runtime.plan import (
    BuildStep,
    ContainerSpec,
    NetworkSpec,
    Role,
    SecretSpec,
    VolumeSpec,
)


def test_build_step_argv_order() -> None:
    step = BuildStep(
        tag="localhost/devaipod-build:abc",
        context="/src/.devcontainer",
        dockerfile="/src/.devcontainer/Dockerfile",
        args={"B": "2", "A": "1"},
        target="dev",
        options=("--pull=never",),
    )

    assert step.engine_args() == [
        "build",
        "--tag=localhost/devaipod-build:abc",
        "--file=/src/.devcontainer/Dockerfile",
        "--build-arg=A=1",
        "--build-arg=B=2",
        "--target=dev",
        "--pull=never",
        "/src/.devcontainer",
    ]


def test_volume_network_secret_argv() -> None:
    labels = {"devaipod.session": "devaipod-x"}

    assert VolumeSpec("v", "code", labels, ("--opt=o=uid=1000",)).engine_args() == [
        "volume",
        "create",
        "--opt=o=uid=1000",
        "--label=devaipod.session=devaipod-x",
        "v",
    ]
    assert NetworkSpec("n", True, labels).engine_args() == [
        "network",
        "create",
        "--internal",
        "--label=devaipod.session=devaipod-x",
        "n",
    ]
    assert SecretSpec("s", "agent-env", "KEY", labels).engine_args()[-2:] == ["s", "-"]


def test_container_argv_and_option_values() -> None:
    spec = ContainerSpec(
        name="c",
        role=Role.AGENT,
        image="img",
        options=("--volume=a:/a", "--init", "--volume=b:/b"),
        command=("sh", "-c", "true"),
    )

    assert spec.engine_args() == [
        "create",
        "--name=c",
        "--volume=a:/a",
        "--init",
        "--volume=b:/b",
        "img",
        "sh",
        "-c",
        "true",
    ]
    assert spec.option_values("--volume") == ["a:/a", "b:/b"]
    assert spec.has_flag("--init")
