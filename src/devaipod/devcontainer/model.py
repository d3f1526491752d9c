"""Typed model of devcontainer.json properties, following the Dev Containers spec schema.

Types are strict (no coercion of "true" to a boolean or "5" to a number), and
unknown properties are kept in each model's `model_extra`, never rejected,
except in devaipod's own `customizations.devaipod` namespace.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devaipod.devcontainer.jsonc import json_type_name
from devaipod.errors import UserError


class _Open(BaseModel):
    """A devcontainer.json object: strict types, unknown keys kept."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


StringOrList = str | list[str]
LifecycleCommand = str | list[str] | dict[str, str | list[str]]
Port = Annotated[int, Field(ge=0, le=65535)]


class BuildOptions(_Open):
    """`build`: how to build the image from a Dockerfile."""

    dockerfile: str | None = None
    context: str | None = None
    args: dict[str, str] | None = None
    target: str | None = None
    cacheFrom: StringOrList | None = None
    options: list[str] | None = None


class MountObject(_Open):
    """One entry of `mounts` in object form."""

    type: str
    source: str | None = None
    target: str


class GpuRequirement(_Open):
    """`hostRequirements.gpu` in object form."""

    cores: Annotated[int, Field(ge=1)] | None = None
    memory: str | None = None


class HostRequirements(_Open):
    """`hostRequirements`: minimum host resources."""

    cpus: Annotated[int, Field(ge=1)] | None = None
    memory: Annotated[str, Field(pattern=r"^\d+([tgmk]b)?$")] | None = None
    storage: Annotated[str, Field(pattern=r"^\d+([tgmk]b)?$")] | None = None
    gpu: bool | Literal["optional"] | GpuRequirement | None = None


class PortAttributes(_Open):
    """Attributes of a forwarded port, in `portsAttributes` and `otherPortsAttributes`."""

    label: str | None = None
    protocol: Literal["http", "https"] | None = None
    onAutoForward: (
        Literal["notify", "openBrowser", "openBrowserOnce", "openPreview", "silent", "ignore"]
        | None
    ) = None
    requireLocalPort: bool | None = None
    elevateIfNeeded: bool | None = None


class SecretRecommendation(_Open):
    """One entry of `secrets`: a recommended secret, described but never given a value."""

    description: str | None = None
    documentationUrl: str | None = None


class DevaipodCustomizations(BaseModel):
    """`customizations.devaipod`: this tool's own settings.

    Unknown keys are errors here, because a misspelt security setting (such
    as `allowedDomains`) must not be silently ignored.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    envAllowlist: list[str] = []
    allowedDomains: list[str] = []
    agent: str | None = None
    agentImage: str | None = None


class DevcontainerConfig(_Open):
    """The properties of one devcontainer.json, after legacy keys are moved."""

    name: str | None = None

    image: str | None = None
    build: BuildOptions | None = None
    dockerFile: str | None = None
    context: str | None = None

    dockerComposeFile: StringOrList | None = None
    service: str | None = None
    runServices: list[str] | None = None

    features: dict[str, Any] | None = None
    overrideFeatureInstallOrder: list[str] | None = None

    containerEnv: dict[str, str] | None = None
    remoteEnv: dict[str, str | None] | None = None
    mounts: list[str | MountObject] | None = None
    runArgs: list[str] | None = None
    capAdd: list[str] | None = None
    securityOpt: list[str] | None = None
    privileged: bool | None = None
    init: bool | None = None

    workspaceFolder: str | None = None
    workspaceMount: str | None = None
    overrideCommand: bool | None = None
    containerUser: str | None = None
    remoteUser: str | None = None
    updateRemoteUserUID: bool | None = None
    userEnvProbe: (
        Literal["none", "interactiveShell", "loginShell", "loginInteractiveShell"] | None
    ) = None

    forwardPorts: list[Port | str] | None = None
    portsAttributes: dict[str, PortAttributes] | None = None
    otherPortsAttributes: PortAttributes | None = None
    appPort: Port | str | list[Port | str] | None = None
    hostRequirements: HostRequirements | None = None

    initializeCommand: LifecycleCommand | None = None
    onCreateCommand: LifecycleCommand | None = None
    updateContentCommand: LifecycleCommand | None = None
    postCreateCommand: LifecycleCommand | None = None
    postStartCommand: LifecycleCommand | None = None
    postAttachCommand: LifecycleCommand | None = None
    waitFor: (
        Literal[
            "initializeCommand",
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
            "postStartCommand",
        ]
        | None
    ) = None
    shutdownAction: Literal["none", "stopContainer", "stopCompose"] | None = None

    secrets: dict[str, SecretRecommendation] | None = None
    customizations: dict[str, Any] | None = None

    def devaipod(self) -> DevaipodCustomizations:
        """Return the `customizations.devaipod` settings (defaults when absent)."""
        raw = (self.customizations or {}).get("devaipod")
        if raw is None:
            return DevaipodCustomizations()
        return DevaipodCustomizations.model_validate(raw)


# Top-level properties that are not model fields but are valid: other tools
# read them or they are ignored on purpose, so they are not reported as unknown.
KNOWN_UNMODELLED_PROPERTIES = frozenset({"$schema"})

LIFECYCLE_COMMAND_NAMES = (
    "initializeCommand",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
)

_EXPECTED_BY_ERROR_TYPE = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}


def parse_config(data: dict[str, Any], source: str) -> DevcontainerConfig:
    """Validate a devcontainer.json object and return the typed config.

    Raises `UserError` naming `source`, the property path (such as `mounts[0]`
    or `build.args.FOO`) and the expected type.
    """
    try:
        config = DevcontainerConfig.model_validate(data)
        config.devaipod()
    except ValidationError as error:
        if error.title == DevaipodCustomizations.__name__:
            prefix: tuple[str | int, ...] = ("customizations", "devaipod")
        else:
            prefix = ()
        raise _validation_user_error(error, data, source, prefix) from None
    return config


def _validation_user_error(
    error: ValidationError,
    data: dict[str, Any],
    source: str,
    prefix: tuple[str | int, ...],
) -> UserError:
    # A union reports one error per member, each with the member's name inside
    # its location. Walking the location through the data keeps only the keys
    # and indexes that exist, so every member's error lands on the same path.
    located = [(_walk(data, prefix + tuple(detail["loc"])), detail) for detail in error.errors()]
    deepest = max(len(path) for (path, _value), _detail in located)
    chosen = [detail for (path, _value), detail in located if len(path) == deepest]
    path, value = next(walked for walked, _detail in located if len(walked[0]) == deepest)
    missing = [detail for detail in chosen if detail["type"] == "missing"]
    first = missing[0] if missing else chosen[0]

    if first["type"] == "extra_forbidden":
        property_path = _format_path(path)
        return UserError(
            f"{source}: unknown property {property_path}",
            fix=f"remove it or correct its name (devaipod's own keys are "
            f"{', '.join(DevaipodCustomizations.model_fields)})",
        )
    if first["type"] == "missing":
        property_path = _format_path(path + (str(first["loc"][-1]),))
        return UserError(
            f"{source}: required property {property_path} is missing",
            fix=f"add {property_path}",
        )

    expected = _describe_expected(chosen)
    actual = json.dumps(value, ensure_ascii=False)
    if len(actual) > 60:
        actual = actual[:57] + "..."
    return UserError(
        f"{source}: invalid {_format_path(path)}: expected {expected}, "
        f"got {json_type_name(value)} {actual}",
        fix=f"change {_format_path(path)} to {expected}",
    )


def _walk(data: object, location: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], object]:
    path: list[str | int] = []
    current = data
    for part in location:
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            current = current[part]
            path.append(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
            path.append(part)
    return tuple(path), current


def _describe_expected(details: list[Any]) -> str:
    names: list[str] = []
    for detail in details:
        error_type = detail["type"]
        if error_type == "literal_error":
            allowed = str(detail.get("ctx", {}).get("expected", ""))
            name = ("one of " if " or " in allowed else "the string ") + allowed
        elif error_type in {"greater_than_equal", "less_than_equal"}:
            name = detail["msg"].replace("Input should be ", "a number ")
        elif error_type == "string_pattern_mismatch":
            name = "a size such as 8gb (digits, then tb, gb, mb or kb)"
        else:
            name = _EXPECTED_BY_ERROR_TYPE.get(error_type, detail["msg"])
        if name not in names:
            names.append(name)
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _format_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text or "(top level)"


def unknown_properties(config: DevcontainerConfig) -> list[str]:
    """Return the paths of properties the model does not know, such as `build.dockerFile`.

    Free-form objects (`features`, `customizations`, environment maps) are not
    searched, because any key is valid there.
    """
    found: list[str] = []
    _collect_unknown(config, "", found)
    return [path for path in found if path not in KNOWN_UNMODELLED_PROPERTIES]


def _collect_unknown(model: BaseModel, prefix: str, found: list[str]) -> None:
    for key in model.model_extra or {}:
        found.append(prefix + key)
    for field_name in type(model).model_fields:
        value = getattr(model, field_name)
        if isinstance(value, BaseModel):
            _collect_unknown(value, f"{prefix}{field_name}.", found)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _collect_unknown(item, f"{prefix}{field_name}[{index}].", found)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    _collect_unknown(item, f"{prefix}{field_name}.{key}.", found)
