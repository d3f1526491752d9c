"""Conformance of `devaipod config show --json` with `devcontainer read-configuration` (0.88.0).

Both tools read the same workspaces: every config of the corpus named by
DEVAIPOD_CORPUS_DIR and the team's cases under `cases/`. Their `configuration`
and `workspace` must be equal, except for the named deliberate differences.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from devaipod.devcontainer import load_devcontainer
from support.conformance import (
    Outcome,
    Prepared,
    comparable,
    corpus_entries,
    dockerfile_path,
    prepare_corpus_entry,
    prepare_team_case,
    run_devaipod,
    run_reference,
    write_stub_engine,
)

pytestmark = pytest.mark.conformance

REFERENCE_CLI_VERSION = "0.88.0"
CASES_DIR = Path(__file__).parent / "cases"
CORPUS_DIR = os.environ.get("DEVAIPOD_CORPUS_DIR")
WORKERS = 4


@dataclass(frozen=True)
class Deliberate:
    """A known difference: devaipod rejects the input with `devaipod_error`, the CLI accepts it."""

    devaipod_error: str
    reason: str


_MISSING_DOCKERFILE = Deliberate(
    "not found",
    "devaipod checks that the Dockerfile exists when it reads the config; "
    "read-configuration never opens it",
)
_NO_KIND = Deliberate(
    "missing one of image, dockerFile or dockerComposeFile",
    "devaipod rejects a config it cannot start when reading it; the CLI does so only in `up`",
)
_SYNTAX = Deliberate(
    "invalid JSON",
    "jsonc-parser recovers from syntax errors silently and may drop properties; "
    "devaipod names the line and column instead",
)

DELIBERATE_DIFFERENCES: dict[str, Deliberate] = {
    "case/neg-missing-dockerfile": _MISSING_DOCKERFILE,
    "case/neg-no-kind": _NO_KIND,
    "case/neg-wrong-type": Deliberate(
        "invalid mounts: expected an array",
        "devaipod validates property types; the CLI passes wrong types on until they fail later",
    ),
    "case/neg-missing-comma": _SYNTAX,
    "case/neg-single-quotes": _SYNTAX,
    "corpus/14-microsoft-vscode-dev-containers-docker-existing-dockerfile": _MISSING_DOCKERFILE,
    "corpus/26-lostintangent-codespaces-langchain": _NO_KIND,
}

# Corpus configs whose Dockerfile is left missing on purpose.
NEGATIVE_DOCKERFILE_CASES = {
    case_id for case_id, entry in DELIBERATE_DIFFERENCES.items() if entry is _MISSING_DOCKERFILE
}


def _team_case_ids() -> list[str]:
    return sorted(f"case/{path.name}" for path in CASES_DIR.iterdir() if path.is_dir())


def _corpus_case_ids() -> list[str]:
    if not CORPUS_DIR:
        return ["corpus/unavailable"]
    return [f"corpus/{entry.config_file.stem}" for entry in corpus_entries(Path(CORPUS_DIR))]


@pytest.fixture(scope="module")
def reference_env(podman_env: dict[str, str]) -> dict[str, str]:
    """Return the environment for the reference CLI, checking its version once."""
    if shutil.which("devcontainer") is None:
        pytest.fail(
            f"the reference CLI is not installed: npm install -g @devcontainers/cli@"
            f"{REFERENCE_CLI_VERSION}"
        )
    version = subprocess.run(
        ["devcontainer", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == REFERENCE_CLI_VERSION
    return podman_env


@pytest.fixture(scope="module")
def outcomes(
    reference_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Prepared, Outcome, Outcome]]:
    """Run both tools on every case once: the reference CLI in a thread pool, devaipod here."""
    base = tmp_path_factory.mktemp("conformance")
    state_dir = base / "state"
    prepared: list[Prepared] = []

    for index, case_dir in enumerate(sorted(p for p in CASES_DIR.iterdir() if p.is_dir())):
        prepared.append(prepare_team_case(case_dir, base / f"case{index}"))
    if CORPUS_DIR:
        for index, entry in enumerate(corpus_entries(Path(CORPUS_DIR))):
            prepared.append(prepare_corpus_entry(entry, base / f"corpus{index}"))

    stub_engine = write_stub_engine(base)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        references = list(
            pool.map(lambda case: run_reference(case, reference_env, stub_engine), prepared)
        )

    results: dict[str, tuple[Prepared, Outcome, Outcome]] = {}
    for case, reference in zip(prepared, references, strict=True):
        if case.case_id.startswith("corpus/") and case.case_id not in NEGATIVE_DOCKERFILE_CASES:
            _create_dockerfile(case, reference)
        results[case.case_id] = (case, reference, run_devaipod(case, state_dir))
    return results


def _create_dockerfile(case: Prepared, reference: Outcome) -> None:
    # The corpus keeps no Dockerfiles; write one where the reference CLI's
    # resolved configuration places it, so devaipod's existence check passes.
    if not reference.ok or reference.document is None:
        return
    path = dockerfile_path(case, reference.document["configuration"])
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("FROM scratch\n", encoding="utf-8")


def _check(case_id: str, outcomes: dict[str, tuple[Prepared, Outcome, Outcome]]) -> None:
    case, reference, devaipod = outcomes[case_id]
    deliberate = DELIBERATE_DIFFERENCES.get(case_id)

    if deliberate is not None:
        assert reference.ok, f"reference CLI failed: {reference.error}"
        assert not devaipod.ok, "devaipod accepted an input listed as a deliberate difference"
        assert deliberate.devaipod_error in devaipod.error
        return

    if not reference.ok:
        assert not devaipod.ok, f"reference CLI failed ({reference.error}) but devaipod did not"
        return
    assert devaipod.ok, f"devaipod failed: {devaipod.error}"
    assert devaipod.document is not None and reference.document is not None
    assert devaipod.document["workspace"] == reference.document["workspace"]
    assert devaipod.document["configuration"] == reference.document["configuration"]


@pytest.mark.parametrize("case_id", _team_case_ids())
def test_team_case_matches_reference(
    case_id: str, outcomes: dict[str, tuple[Prepared, Outcome, Outcome]]
) -> None:
    _check(case_id, outcomes)


@pytest.mark.parametrize("case_id", _corpus_case_ids())
def test_corpus_config_matches_reference(case_id: str, request: pytest.FixtureRequest) -> None:
    if case_id == "corpus/unavailable":
        message = (
            "DEVAIPOD_CORPUS_DIR is not set: point it at shared/corpus/devcontainer "
            "(.ci/run does) to compare the real-world corpus"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    _check(case_id, request.getfixturevalue("outcomes"))


def test_team_cases_cover_enough_inputs() -> None:
    assert len(_team_case_ids()) >= 40


def test_deliberate_differences_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "devcontainer.md").read_text(encoding="utf-8")
    for case_id in DELIBERATE_DIFFERENCES:
        if case_id.startswith("case/"):
            assert case_id.removeprefix("case/") in docs, case_id


@pytest.fixture
def empty_image(podman_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Import an image with no files: enough for `podman create`, never started."""
    name = "localhost/devaipod-conformance-empty:1"
    archive = tmp_path / "empty.tar"
    with tarfile.open(archive, "w"):
        pass
    subprocess.run(
        ["podman", "import", str(archive), name], check=True, capture_output=True, env=podman_env
    )
    try:
        yield name
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True, env=podman_env)


def test_existing_container_phases_match(
    reference_env: dict[str, str], empty_image: str, tmp_path: Path
) -> None:
    # With a container carrying the id labels, read-configuration also applies
    # ${devcontainerId} and ${containerEnv:...}: a real oracle for phases 2 and 3.
    workspace = tmp_path / "project"
    config_file = workspace / ".devcontainer" / "devcontainer.json"
    config_file.parent.mkdir(parents=True)
    config_file.write_text(
        json.dumps(
            {
                "image": "debian",
                "mounts": ["source=cache-${devcontainerId},target=/cache,type=volume"],
                "remoteEnv": {
                    "P": "${containerEnv:DVP_PATH}:/x",
                    "E": "[${containerEnv:DVP_EMPTY:default}]",
                    "D": "${containerEnv:DVP_NEVER_SET:default}",
                },
                "postCreateCommand": "echo ${devcontainerId} ${localWorkspaceFolderBasename}",
            }
        ),
        encoding="utf-8",
    )
    resolved = load_devcontainer(workspace, env={})
    labels = [f"--label={key}={value}" for key, value in resolved.id_labels.items()]
    created = subprocess.run(
        [
            "podman",
            "create",
            *labels,
            "--env",
            "DVP_PATH=/usr/bin",
            "--env",
            "DVP_EMPTY=",
            empty_image,
            "true",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=reference_env,
    )
    container_id = created.stdout.strip()
    try:
        inspected = subprocess.run(
            ["podman", "inspect", container_id],
            capture_output=True,
            text=True,
            check=True,
            env=reference_env,
        )
        container_env = dict(
            item.split("=", 1) for item in json.loads(inspected.stdout)[0]["Config"]["Env"]
        )
        existing = Prepared("existing", workspace, None, {})
        reference = run_reference(existing, reference_env, write_stub_engine(tmp_path))
        assert reference.ok, reference.error
        assert reference.document is not None
        expected = reference.document["configuration"]
        assert (
            comparable({"configuration": resolved.with_container_env(container_env)})[
                "configuration"
            ]
            == expected
        )
        assert resolved.devcontainer_id in expected["mounts"][0]
    finally:
        subprocess.run(["podman", "rm", "-f", container_id], capture_output=True, env=reference_env)
