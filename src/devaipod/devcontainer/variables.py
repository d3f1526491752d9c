"""Variable substitution in devcontainer.json values, in the reference CLI's three phases.

Phase 1 (when the file is read): `${localEnv:VAR[:default]}` (alias `env`),
`${localWorkspaceFolder}`, `${containerWorkspaceFolder}` and their `Basename`
forms. Phase 2 (once the id labels are known): `${devcontainerId}`. Phase 3
(once the container runs): `${containerEnv:VAR[:default]}`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devaipod.errors import UserError

# As in the reference CLI (0.88.0), a variable runs from `${` to the first `}`
# on the same line, without nesting. Its inside is split on every `:` into a
# name and arguments. A `${` with no `}` before the line ends is consumed with the
# rest of its line and left as written. This keeps a line of many unclosed `${`
# linear, where the lazy `\$\{(.*?)\}` rescanned the line from every `${`.
VARIABLE_PATTERN = re.compile(r"\$\{([^}\n]*)(\})?")

LOCAL_WORKSPACE_FOLDER_LABEL = "devcontainer.local_folder"
CONFIG_FILE_LABEL = "devcontainer.config_file"

# Resolves one `${...}` match: (whole match, name, arguments) -> replacement.
Resolver = Callable[[str, str, list[str]], str]


def substitute(value: Any, resolve: Resolver) -> Any:
    """Return `value` with every variable in its string values replaced by `resolve`.

    Walks lists and objects recursively. Object keys, numbers, booleans and
    null are never changed. A replacement is not scanned again.
    """
    if isinstance(value, str):
        return substitute_string(value, resolve)
    if isinstance(value, list):
        return [substitute(item, resolve) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, resolve) for key, item in value.items()}
    return value


def substitute_string(text: str, resolve: Resolver) -> str:
    """Replace each `${name[:arg...]}` in `text` with what `resolve` returns for it."""

    def replace(match: re.Match[str]) -> str:
        if match.group(2) is None:
            return match.group(0)
        inside = match.group(1)
        parts = inside.split(":")
        if len(parts) > 1:
            return resolve(match.group(0), parts[0], parts[1:])
        return resolve(match.group(0), inside, [])

    return VARIABLE_PATTERN.sub(replace, text)


def posix_basename(path: str) -> str:
    """Return the last segment of a POSIX path as Node's `path.posix.basename` does.

    Trailing slashes are ignored, so `/workspaces/app/` gives `app` and `/` gives ``.
    """
    return path.rstrip("/").rsplit("/", 1)[-1]


def _lookup_env(
    env: Mapping[str, str], arguments: list[str], match: str, config_file: Path | None
) -> str:
    if not arguments:
        where = f" in {config_file.name}" if config_file is not None else ""
        raise UserError(
            f"'{match}'{where} cannot be resolved because no environment variable name is given",
            fix=f"name the variable, for example ${{{match[2:-1]}:HOME}}",
        )
    value = env.get(arguments[0])
    if value is not None:
        return value
    # Only the second part is the default: `${localEnv:X:a:b}` gives `a`.
    return arguments[1] if len(arguments) > 1 else ""


@dataclass(frozen=True)
class LocalVariables:
    """The values phase 1 substitutes, known on the host before anything runs."""

    env: Mapping[str, str]
    local_workspace_folder: str | None
    container_workspace_folder: str | None
    config_file: Path | None = None


def substitute_local(value: Any, variables: LocalVariables) -> Any:
    """Apply phase 1: host environment and workspace folder variables.

    `${containerWorkspaceFolder}` is the given folder with its own phase-1
    variables resolved first. Variables of the later phases, and unknown ones,
    stay as written. Raises `UserError` for `${localEnv}` without a name.
    """
    container_folder = variables.container_workspace_folder
    if container_folder is not None:
        container_folder = substitute_string(
            container_folder, _local_resolver(variables, variables.container_workspace_folder)
        )
    return substitute(value, _local_resolver(variables, container_folder))


def _local_resolver(variables: LocalVariables, container_folder: str | None) -> Resolver:
    local_folder = variables.local_workspace_folder

    def resolve(match: str, name: str, arguments: list[str]) -> str:
        if name in ("localEnv", "env"):
            return _lookup_env(variables.env, arguments, match, variables.config_file)
        if name == "localWorkspaceFolder":
            return local_folder if local_folder is not None else match
        if name == "localWorkspaceFolderBasename":
            return posix_basename(local_folder) if local_folder is not None else match
        if name == "containerWorkspaceFolder":
            return container_folder if container_folder is not None else match
        if name == "containerWorkspaceFolderBasename":
            return posix_basename(container_folder) if container_folder is not None else match
        return match

    return resolve


def substitute_devcontainer_id(value: Any, devcontainer_id: str) -> Any:
    """Apply phase 2: replace `${devcontainerId}` (arguments after a `:` are ignored)."""

    def resolve(match: str, name: str, arguments: list[str]) -> str:
        return devcontainer_id if name == "devcontainerId" else match

    return substitute(value, resolve)


def substitute_container_env(
    value: Any, container_env: Mapping[str, str], config_file: Path | None = None
) -> Any:
    """Apply phase 3: `${containerEnv:VAR[:default]}` from the container's configured env."""

    def resolve(match: str, name: str, arguments: list[str]) -> str:
        if name != "containerEnv":
            return match
        return _lookup_env(container_env, arguments, match, config_file)

    return substitute(value, resolve)


def id_labels(local_workspace_folder: Path, config_file: Path) -> dict[str, str]:
    """Return the labels that identify a workspace's container, as the reference CLI sets them."""
    return {
        LOCAL_WORKSPACE_FOLDER_LABEL: str(local_workspace_folder),
        CONFIG_FILE_LABEL: str(config_file),
    }


def devcontainer_id(labels: Mapping[str, str]) -> str:
    """Return `${devcontainerId}`: the id labels hashed into 52 base-32 characters.

    The labels are serialised as compact JSON with sorted keys, byte for byte
    as JavaScript's `JSON.stringify` writes strings (non-ASCII kept, `/` not
    escaped). The SHA-256 of that text, as a 256-bit number, is written in
    base 32 with digits 0-9a-v and left-padded with zeros.
    """
    serialised = json.dumps(
        {key: labels[key] for key in sorted(labels)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    number = int.from_bytes(hashlib.sha256(serialised.encode("utf-8")).digest(), "big")
    digits = "0123456789abcdefghijklmnopqrstuv"
    encoded = ""
    while number:
        number, remainder = divmod(number, 32)
        encoded = digits[remainder] + encoded
    return encoded.rjust(52, "0")
