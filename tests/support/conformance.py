"""Setting up workspaces for the conformance test and running both tools on them.

A case is a folder holding `case.json` (description, env, workspace, git,
config) and `tree/`, the files copied into a temporary project folder. Corpus
files are placed at the path their SOURCES.md row gives in their repository.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from devaipod.cli import cli
from devaipod.errors import DevaipodError

# Keys that `devcontainer read-configuration` adds for its own use.
REFERENCE_ONLY_KEYS = ("configFilePath",)

# Project folders sit this deep in the temporary folder, so that configs which
# reach outside the project with `../../..` still stay inside it.
NESTING = ("n1", "n2", "n3")


@dataclass
class Prepared:
    """A workspace ready for both tools: the folder, an optional --config and extra env."""

    case_id: str
    workspace: Path
    config: Path | None
    env: dict[str, str]
    description: str = ""
    # "podman", or "stub": a script that lists no containers, for paths podman's
    # `ps --filter` cannot take (it splits filter values at commas).
    engine: str = "podman"


@dataclass
class Outcome:
    """What one tool printed: the comparable document on success, else the error text."""

    ok: bool
    document: dict[str, Any] | None = None
    error: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _project_root(base: Path) -> Path:
    root = base.joinpath(*NESTING, "project")
    root.mkdir(parents=True)
    return root


def prepare_team_case(case_dir: Path, base: Path) -> Prepared:
    """Copy a team-written case into `base` and return its workspace."""
    spec = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    root = _project_root(base)
    shutil.copytree(case_dir / "tree", root, dirs_exist_ok=True)

    for repo in spec.get("git", []):
        subprocess.run(["git", "init", "-q", str(root / repo)], check=True)

    workspace = root / spec.get("workspace", ".")
    config = spec.get("config")
    return Prepared(
        case_id=f"case/{case_dir.name}",
        workspace=workspace,
        config=workspace / config if config else None,
        env=dict(spec.get("env", {})),
        description=spec.get("description", ""),
        engine=spec.get("engine", "podman"),
    )


@dataclass(frozen=True)
class CorpusEntry:
    """One corpus config, its original path in its repository, and its Compose siblings."""

    config_file: Path
    original_path: str | None
    siblings: tuple[tuple[Path, str | None], ...]


_SIBLING = re.compile(r"`([^`]+\.docker-compose\.yml)`\s*<-\s*`([^`]+)`")
_BACKTICKED = re.compile(r"`([^`]+)`")


def corpus_entries(corpus_dir: Path) -> list[CorpusEntry]:
    """List the corpus configs, with placement facts from SOURCES.md when it has a row."""
    rows: dict[str, tuple[str | None, dict[str, str]]] = {}
    sources = corpus_dir / "SOURCES.md"
    if sources.is_file():
        for line in sources.read_text(encoding="utf-8").splitlines():
            cells = line.split("|")
            if len(cells) < 6 or not cells[1].strip().isdigit():
                continue
            names = _BACKTICKED.findall(cells[2])
            paths = _BACKTICKED.findall(cells[4])
            if not names:
                continue
            siblings = dict(_SIBLING.findall(cells[2]))
            rows[names[0]] = (paths[0] if paths else None, siblings)

    entries = []
    for config_file in sorted(corpus_dir.glob("*.json")):
        original, sibling_paths = rows.get(config_file.name, (None, {}))
        number = config_file.name.split("-", 1)[0]
        siblings = tuple(
            (sibling, sibling_paths.get(sibling.name))
            for sibling in sorted(corpus_dir.glob(f"{number}-*.docker-compose.yml"))
        )
        entries.append(CorpusEntry(config_file, original, siblings))
    return entries


_FOLDER_CONFIG = re.compile(r"^(.*?)\.devcontainer/([^/]+)/devcontainer\.json$")


def _placement(original: str | None) -> tuple[str, str, bool]:
    """Return (repository prefix of the workspace, config path in it, needs --config)."""
    if original is None:
        return "", ".devcontainer/devcontainer.json", False
    if original.endswith(".devcontainer/devcontainer.json"):
        return (
            original[: -len(".devcontainer/devcontainer.json")],
            ".devcontainer/devcontainer.json",
            False,
        )
    folder = _FOLDER_CONFIG.match(original)
    if folder:
        return folder.group(1), f".devcontainer/{folder.group(2)}/devcontainer.json", True
    if original.endswith(".devcontainer.json"):
        return original[: -len(".devcontainer.json")], ".devcontainer.json", False
    return "", original, True


def prepare_corpus_entry(entry: CorpusEntry, base: Path) -> Prepared:
    """Place a corpus config (read in place, never copied into the repository) into `base`."""
    root = _project_root(base)
    prefix, config_path, explicit = _placement(entry.original_path)
    target = root / config_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(entry.config_file, target)

    for sibling, original in entry.siblings:
        if original and original.startswith(prefix):
            relative = original[len(prefix) :]
        else:
            relative = str(Path(config_path).parent / "docker-compose.yml")
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sibling, destination)

    return Prepared(
        case_id=f"corpus/{entry.config_file.stem}",
        workspace=root,
        config=target if explicit else None,
        env={},
    )


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """Return the configuration and workspace parts, without the reference CLI's own keys."""
    configuration = dict(document.get("configuration") or {})
    for key in REFERENCE_ONLY_KEYS:
        configuration.pop(key, None)
    return {"configuration": configuration, "workspace": document.get("workspace")}


def write_stub_engine(folder: Path) -> Path:
    """Write an engine stand-in whose `ps` lists no containers, and return its path."""
    path = folder / "stub-engine"
    path.write_text(
        "#!/bin/sh\n# Lists no containers: every command succeeds with no output.\nexit 0\n"
    )
    path.chmod(0o755)
    return path


def run_reference(prepared: Prepared, base_env: dict[str, str], stub_engine: Path) -> Outcome:
    """Run `devcontainer read-configuration` with podman (or the stub) as its engine."""
    engine = str(stub_engine) if prepared.engine == "stub" else "podman"
    args = [
        "devcontainer",
        "read-configuration",
        "--workspace-folder",
        str(prepared.workspace),
        "--docker-path",
        engine,
    ]
    if prepared.config is not None:
        args += ["--config", str(prepared.config)]
    completed = subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={**base_env, **prepared.env},
        cwd=prepared.workspace if prepared.workspace.is_dir() else None,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-3:]
        return Outcome(ok=False, error=" | ".join(tail))
    raw = json.loads(completed.stdout)
    return Outcome(ok=True, document=comparable(raw), raw=raw)


def run_devaipod(prepared: Prepared, state_dir: Path) -> Outcome:
    """Run `devaipod config show --json` in this process (click's runner) with the case's env."""
    args = ["config", "show", "--json", "--workspace-folder", str(prepared.workspace)]
    if prepared.config is not None:
        args += ["--config", str(prepared.config)]
    env = {**prepared.env, "DEVAIPOD_STATE_DIR": str(state_dir)}
    result = CliRunner().invoke(cli, args, env=env)
    if result.exit_code != 0:
        error = result.exception
        text = error.render() if isinstance(error, DevaipodError) else repr(error)
        return Outcome(ok=False, error=text)
    raw = json.loads(result.stdout)
    return Outcome(ok=True, document=comparable(raw), raw=raw)


def dockerfile_path(prepared: Prepared, configuration: dict[str, Any]) -> Path | None:
    """Return where the Dockerfile of a reference-CLI configuration lives, if it names one."""
    build = configuration.get("build")
    name = configuration.get("dockerFile")
    if name is None and isinstance(build, dict):
        name = build.get("dockerfile")
    if not isinstance(name, str):
        return None
    config_file = prepared.config or _default_config(prepared.workspace)
    return config_file.parent / name


def _default_config(workspace: Path) -> Path:
    folder_config = workspace / ".devcontainer" / "devcontainer.json"
    return folder_config if folder_config.is_file() else workspace / ".devcontainer.json"
