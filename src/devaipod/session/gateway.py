"""A session's gateway side: the pod, the relay, the gateway and its scope, in two modes.

The agent and the relay share a pod whose network namespace has loopback only. The
gateway serves the broker on a unix socket. Its upstream is the user's repository, served
on the gateway's own loopback (local mode), or a forge (forge mode, `devaipod run`). The
agent's `origin` points at the broker.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from devaipod.broker.upstreams import RepoMap, broker_git_path
from devaipod.config import ForgeSettings
from devaipod.egress.addresses import global_host_addresses
from devaipod.egress.allowlist import AllowlistEntryError, parse_entry
from devaipod.errors import EngineError, UserError
from devaipod.forge.urls import ForgeUrl, api_base_url
from devaipod.runtime.engine import Engine
from devaipod.runtime.gateway_image import ensure_gateway_image
from devaipod.runtime.gateway_specs import (
    BROKER_DOOR,
    EGRESS_DOOR,
    gateway_container,
    relay_container,
    secret_file,
    socket_volume,
    token_secret,
)
from devaipod.runtime.plan import (
    LABEL_PURPOSE,
    LABEL_SESSION,
    Role,
    SecretSpec,
    SessionPlan,
)
from devaipod.runtime.planner import SECRET_FILE_PREFIX
from devaipod.scope.model import (
    NetworkScope,
    RepoInput,
    RepoOutput,
    RepoScope,
    Scope,
    dump_scope,
)
from devaipod.session.paths import session_audit_path, session_dir
from devaipod.session.probe import probe_image
from devaipod.session.safe_git import run_git

log = logging.getLogger(__name__)

UPSTREAM_ROOT = "/run/devaipod/upstream"
STATE_MOUNT = "/run/devaipod/state"
LOCAL_UPSTREAM_LISTEN = "127.0.0.1:9419"
CREDENTIAL_SECRET_PURPOSE = "broker-credential"
SCOPE_FILE = "scope.yaml"
READY_TIMEOUT_SECONDS = 60.0
LABEL_NETWORK = "devaipod.network"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
NO_PROXY = "127.0.0.1,localhost"
FORGE_CONFIG_FILE = "config.toml"
BROKER_URL = f"http://127.0.0.1:{BROKER_DOOR.port}"
# Variables in the agent's environment in forge mode.
BROKER_URL_ENV = "DEVAIPOD_BROKER_URL"
FORGE_API_URL_ENV = "DEVAIPOD_FORGE_API_URL"
MCP_URL_ENV = "DEVAIPOD_MCP_URL"
BROKER_TOKEN_ENV = "DEVAIPOD_BROKER_TOKEN"
# The broker's MCP path (`broker.forge_endpoints.MCP_PATH`, which imports aiohttp).
MCP_PATH = "/mcp"


class NetworkMode(StrEnum):
    """The agent's network besides the broker, chosen by `up --network`."""

    PROXY = "proxy"
    """The egress proxy in the gateway, which allows the model APIs and the allowlist."""
    NONE = "none"
    """Nothing: the broker's doors only."""
    OPEN = "open"
    """The engine's default network, unfiltered."""


def pod_name(session: str) -> str:
    """Return the name of the pod that contains the agent and the relay."""
    return f"{session}-pod"


def output_branch(session: str) -> str:
    """Return the branch the agent may push: `devaipod/<name>` without the session prefix."""
    return f"devaipod/{session.removeprefix('devaipod-')}"


def upstream_repo_name(source_dir: Path) -> str:
    """Return a URL-safe name for the user's repository, from its folder name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", source_dir.name).strip(".-")
    return name or "project"


def local_scope(session: str, repo_name: str, allow: Sequence[str] = ()) -> Scope:
    """Return the scope of a local-mode session: the user's repository, one output branch.

    `allow` becomes the scope's `network.allow`: the egress proxy in the gateway cannot
    read the host's config file or devcontainer.json, so their entries travel here.
    Raises UserError naming an entry the proxy could not parse.
    """
    check_allow_entries(allow)
    return Scope(
        repos=[
            RepoScope(
                input=RepoInput(url=f"http://{LOCAL_UPSTREAM_LISTEN}/{repo_name}", allowHttp=True),
                output=RepoOutput(targetBranch=output_branch(session)),
            )
        ],
        network=NetworkScope(allow=list(dict.fromkeys(allow))),
    )


def check_allow_entries(allow: Sequence[str]) -> None:
    """Raise UserError naming the first egress allowlist entry the proxy could not parse."""
    for entry in allow:
        try:
            parse_entry(entry)
        except AllowlistEntryError as error:
            raise UserError(
                f"egress allowlist entry {entry!r}: {error}",
                fix="fix [network] allow in the config file or "
                "customizations.devaipod.allowedDomains in devcontainer.json",
            ) from error


def with_network_allow(scope: Scope, allow: Sequence[str]) -> Scope:
    """Return `scope` with `allow` added to its `network.allow` (the gateway reads no config)."""
    check_allow_entries(allow)
    merged = list(dict.fromkeys([*scope.network.allow, *allow]))
    return scope.model_copy(update={"network": NetworkScope(allow=merged)})


def session_credential(plan: SessionPlan, secret_values: dict[str, bytes]) -> str:
    """Return the session credential that `add_gateway` or `add_forge_gateway` generated."""
    for spec in plan.secrets:
        if spec.purpose == CREDENTIAL_SECRET_PURPOSE:
            return secret_values[spec.name].decode()
    raise KeyError(CREDENTIAL_SECRET_PURPOSE)


def broker_origin_url(repo_name: str) -> str:
    """Return the agent's `origin` URL: the broker's relay port, never a credential in it."""
    return f"{BROKER_URL}/git/{LOCAL_UPSTREAM_LISTEN}/{repo_name}.git"


def forge_origin_url(scope: Scope, repo_url: str) -> str:
    """Return the agent's `origin` URL for the scoped repository whose input URL is `repo_url`.

    Raises UserError when the scope does not declare that repository.
    """
    expected = repo_url.rstrip("/").removesuffix(".git").casefold()
    for repo in RepoMap(scope).repos():
        if repo.upstream_url.removesuffix(".git").casefold() == expected:
            return f"{BROKER_URL}{broker_git_path(repo)}"
    raise UserError(
        f"the scope does not declare the repository {repo_url}",
        fix="add it to the scope's repos with an output branch, or pass another URL",
    )


def forge_api_url(host: str) -> str:
    """Return `DEVAIPOD_FORGE_API_URL`: the gate prefix that stands for the forge's API base.

    The gate sends `/api/<host>/<path>` to `<API base>/<path>`, so the forge's own paths
    are appended to this URL as they are appended to the API base (which includes
    `/api/v1` on Forgejo and `/api/v4` on GitLab).
    """
    return f"{BROKER_URL}/api/{host}"


def forge_agent_env(host: str) -> dict[str, str]:
    """Return the plain variables that tell the agent where the broker's doors are."""
    return {
        BROKER_URL_ENV: BROKER_URL,
        FORGE_API_URL_ENV: forge_api_url(host),
        MCP_URL_ENV: f"{BROKER_URL}{MCP_PATH}",
    }


def forge_config_toml(forge_url: ForgeUrl, settings: ForgeSettings) -> str:
    """Return a config file with the one `[forges]` table the broker in the gateway needs.

    The gateway cannot read the host's config file, so `kind`, the resolved `api_url` and
    `path_prefix` travel in this file, without `token_secret` (the token is a secret file).
    """
    lines = [
        f"[forges.{json.dumps(forge_url.host)}]",
        f"kind = {json.dumps(settings.kind)}",
        f"api_url = {json.dumps(api_base_url(forge_url, settings))}",
    ]
    if settings.path_prefix:
        lines.append(f"path_prefix = {json.dumps(settings.path_prefix)}")
    return "\n".join(lines) + "\n"


def configure_agent_clone(clone: Path, session: str, repo_name: str, credential: str) -> None:
    """Point the clone's `origin` at the broker and give git the session credential as a header.

    `remote.origin.push` makes a plain `git push` deliver HEAD to the output branch.
    """
    run_git(["remote", "add", "origin", broker_origin_url(repo_name)], cwd=clone)
    _configure_push(clone, output_branch(session), credential)


def configure_forge_clone(clone: Path, origin: str, branch: str, credential: str) -> None:
    """Point the clone's existing `origin` at the broker; a plain `git push` delivers `branch`."""
    run_git(["remote", "set-url", "origin", origin], cwd=clone)
    _configure_push(clone, branch, credential)


def _configure_push(clone: Path, branch: str, credential: str) -> None:
    run_git(["config", "remote.origin.push", f"HEAD:refs/heads/{branch}"], cwd=clone)
    run_git(
        [
            "config",
            f"http.{BROKER_URL}/.extraHeader",
            f"Authorization: Bearer {credential}",
        ],
        cwd=clone,
    )


@dataclass(frozen=True)
class ForgeGateway:
    """Forge-mode inputs besides the plan: the repository, its forge, the scope and the token."""

    forge_url: ForgeUrl
    """The repository on the forge (any issue or pull request part is ignored)."""
    settings: ForgeSettings
    scope: Scope
    token: str = field(repr=False)
    target_branch: str
    """The branch a plain `git push` from the agent's clone delivers."""


@dataclass(frozen=True)
class _Mode:
    """The differences between local mode and forge mode, for `_assemble`."""

    scope: Scope
    token: bytes = field(repr=False)
    pre_broker: str | None
    """A shell command the gateway runs in the background before the broker (local upstream)."""
    gateway_network: str | None
    gateway_options: tuple[str, ...]
    origin: str
    push_branch: str
    agent_env: dict[str, str]
    note: str
    local_repo_name: str | None = None
    """Local mode: `origin` is added; forge mode: the clone's `origin` is replaced."""


def add_gateway(
    plan: SessionPlan,
    secret_values: dict[str, bytes],
    *,
    source_dir: Path,
    clone: Path,
    base_image: str | None,
    network: NetworkMode = NetworkMode.PROXY,
    agent_uid: int = 1000,
    agent_gid: int = 1000,
    engine: Engine | None = None,
    allow: Sequence[str] = (),
) -> tuple[SessionPlan, dict[str, bytes]]:
    """Return `plan` with the local-mode gateway, relay, socket volume and secrets added.

    Builds the gateway image when needed, writes the scope into the session's state
    directory and configures the agent's clone. The agent joins the pod instead of
    `--network=none`; the pod itself is created by `create_pod`. With `network` PROXY the
    gateway also serves the egress proxy, and the agent's proxy variables point at it.
    """
    session = plan.session
    repo_name = upstream_repo_name(source_dir)
    top = Path(run_git(["rev-parse", "--show-toplevel"], cwd=source_dir).stdout.strip())
    token = token_secret(session, {LABEL_SESSION: session, LABEL_PURPOSE: "forge-token"})
    upstream = shlex.join(
        [
            "devaipod", "serve-local-upstream", "--root", UPSTREAM_ROOT,
            "--listen", LOCAL_UPSTREAM_LISTEN, "--token-file", secret_file(token),
        ]
    )  # fmt: skip
    mode = _Mode(
        scope=local_scope(session, repo_name, allow),
        token=secrets.token_urlsafe(32).encode(),
        pre_broker=upstream,
        # Only the egress proxy needs the gateway to reach other hosts.
        gateway_network=None if network == NetworkMode.PROXY else "--network=none",
        gateway_options=(f"--volume={top}:{UPSTREAM_ROOT}/{repo_name}",),
        origin=broker_origin_url(repo_name),
        push_branch=output_branch(session),
        agent_env={},
        note=f"local mode: the agent pushes {output_branch(session)} to {top} through the broker",
        local_repo_name=repo_name,
    )
    return _assemble(
        plan, secret_values, mode, clone=clone, base_image=base_image, network=network,
        agent_uid=agent_uid, agent_gid=agent_gid, engine=engine,
    )  # fmt: skip


def add_forge_gateway(
    plan: SessionPlan,
    secret_values: dict[str, bytes],
    forge: ForgeGateway,
    *,
    clone: Path,
    base_image: str | None,
    network: NetworkMode = NetworkMode.PROXY,
    agent_uid: int = 1000,
    agent_gid: int = 1000,
    engine: Engine | None = None,
) -> tuple[SessionPlan, dict[str, bytes]]:
    """Return `plan` with the forge-mode gateway: the broker in front of a real forge.

    The broker's upstream is the forge itself, with the user's token as the gateway's
    token secret; there is no local upstream. The gateway is on the engine's default
    network for every `network` value, because it must reach the forge. `network` only
    decides whether it also serves the egress proxy. The broker reads the forge's
    `[forges]` table from a config file written into the session's state directory.
    The agent gets the broker's URLs as variables and the session credential as the
    secret file exported as `DEVAIPOD_BROKER_TOKEN`.
    """
    repository = forge.forge_url.without_item()
    config_text = forge_config_toml(repository, forge.settings)
    state = session_dir(plan.session)
    state.mkdir(parents=True, exist_ok=True)
    (state / FORGE_CONFIG_FILE).write_text(config_text)
    mode = _Mode(
        scope=forge.scope,
        token=forge.token.encode(),
        pre_broker=None,
        gateway_network=None,
        gateway_options=(f"--env=DEVAIPOD_CONFIG={STATE_MOUNT}/{FORGE_CONFIG_FILE}",),
        origin=forge_origin_url(forge.scope, repository.clone_url),
        push_branch=forge.target_branch,
        agent_env=forge_agent_env(repository.host),
        note=f"forge mode: the agent pushes {forge.target_branch} to {repository.repo_url} "
        "through the broker",
    )
    return _assemble(
        plan, secret_values, mode, clone=clone, base_image=base_image, network=network,
        agent_uid=agent_uid, agent_gid=agent_gid, engine=engine,
    )  # fmt: skip


def _assemble(
    plan: SessionPlan,
    secret_values: dict[str, bytes],
    mode: _Mode,
    *,
    clone: Path,
    base_image: str | None,
    network: NetworkMode,
    agent_uid: int,
    agent_gid: int,
    engine: Engine | None,
) -> tuple[SessionPlan, dict[str, bytes]]:
    """Add the gateway, the relay, the socket volume and the secrets shared by both modes."""
    # NOTE: this runs for `up --dry-run` too, which therefore builds the gateway image and
    # leaves the scope file in the session's state directory.
    session = plan.session
    labels = {LABEL_SESSION: session}
    built = ensure_gateway_image(base_image)
    image = built.name
    if engine is not None and probe_image(engine, image, ["git"]).programs.get("git") is None:
        raise UserError(
            f"the gateway image {image} has no git, which the broker and the local upstream "
            f"run (base image {built.base_image})",
            fix="set --gateway-base-image, DEVAIPOD_GATEWAY_BASE_IMAGE or [gateway] base_image "
            "to an image with python3 >= 3.11 and git",
        )

    token = token_secret(session, {**labels, LABEL_PURPOSE: "forge-token"})
    credential_secret = SecretSpec(
        name=f"{session}-broker-credential",
        purpose=CREDENTIAL_SECRET_PURPOSE,
        labels={**labels, LABEL_PURPOSE: CREDENTIAL_SECRET_PURPOSE},
    )
    credential = secrets.token_urlsafe(32)
    values = {
        **secret_values,
        token.name: mode.token,
        credential_secret.name: credential.encode(),
    }
    volume = socket_volume(session, {**labels, LABEL_PURPOSE: "gateway-sockets"})

    state = session_dir(session)
    state.mkdir(parents=True, exist_ok=True)
    (state / SCOPE_FILE).write_text(dump_scope(mode.scope))
    audit_name = session_audit_path(session).name

    broker = shlex.join(
        [
            "devaipod", "broker",
            "--listen", f"unix:{BROKER_DOOR.socket_path}",
            "--scope", f"{STATE_MOUNT}/{SCOPE_FILE}",
            "--audit-log", f"{STATE_MOUNT}/{audit_name}",
            "--credential-file", secret_file(credential_secret),
            "--token-file", secret_file(token),
            "--session", session,
            "--state-dir", "/tmp/devaipod-broker",
            *(["--egress-listen", f"unix:{EGRESS_DOOR.socket_path}",
               *(f"--egress-host-address={address}" for address in global_host_addresses())]
              if network == NetworkMode.PROXY else []),
        ]
    )  # fmt: skip
    # The broker replaces the shell, so `podman stop` signals it. A local upstream runs
    # in the background and ends with the container.
    script = f"{mode.pre_broker} & exec {broker}" if mode.pre_broker else f"exec {broker}"
    gateway = gateway_container(
        f"{session}-gateway",
        image,
        volume=volume,
        secret=token,
        labels=labels,
        command=("-c", script),
        network=mode.gateway_network,
        entrypoint="/bin/sh",
    )
    gateway = replace(
        gateway,
        options=(
            *gateway.options,
            f"--secret={credential_secret.name}",
            *mode.gateway_options,
            f"--volume={state}:{STATE_MOUNT}",
            f"--env=DEVAIPOD_STATE_DIR={STATE_MOUNT}/gateway",
        ),
    )
    relay = relay_container(
        f"{session}-relay",
        image,
        network=f"--pod={pod_name(session)}",
        volume=volume,
        labels=labels,
        doors=(BROKER_DOOR, EGRESS_DOOR) if network == NetworkMode.PROXY else (BROKER_DOOR,),
    )

    agent = plan.container(Role.AGENT)
    agent_options = tuple(
        option for option in agent.options if option not in ("--network=none", "--net=none")
    )
    agent_options = (
        *agent_options,
        f"--pod={pod_name(session)}",
        f"--label={LABEL_NETWORK}={network.value}",
        *(f"--env={name}={value}" for name, value in mode.agent_env.items()),
    )
    # Values containing the session credential travel as secret files that the agent's
    # entrypoint exports, not as `--env` values shown by inspect.
    credential_env: dict[str, str] = {}
    if network == NetworkMode.PROXY:
        proxy_url = f"http://devaipod:{credential}@127.0.0.1:{EGRESS_DOOR.port}"
        credential_env.update(dict.fromkeys(PROXY_VARIABLES, proxy_url))
        _reject_proxy_variables(plan)
    if mode.local_repo_name is None:
        credential_env[BROKER_TOKEN_ENV] = credential
    env_secrets: list[SecretSpec] = []
    for name, value in credential_env.items():
        spec = SecretSpec(
            name=f"{session}-env-{name}",
            purpose="agent-env",
            target_env=name,
            labels={**labels, LABEL_PURPOSE: "agent-env"},
        )
        env_secrets.append(spec)
        values[spec.name] = value.encode()
    if env_secrets:
        agent_options = (
            *agent_options,
            *_secret_tmpfs(agent_options),
            *(
                f"--secret={spec.name},type=mount,uid={agent_uid},gid={agent_gid},mode=0400,"
                f"target={SECRET_FILE_PREFIX}{spec.target_env}"
                for spec in env_secrets
            ),
        )
    if network == NetworkMode.PROXY:
        agent_options = (
            *agent_options,
            f"--env=NO_PROXY={NO_PROXY}",
            f"--env=no_proxy={NO_PROXY}",
        )
    agent = replace(agent, options=agent_options)
    containers = tuple(agent if spec.role == Role.AGENT else spec for spec in plan.containers)

    if mode.local_repo_name is not None:
        configure_agent_clone(clone, session, mode.local_repo_name, credential)
    else:
        configure_forge_clone(clone, mode.origin, mode.push_branch, credential)
    new_plan = replace(
        plan,
        volumes=(*plan.volumes, volume),
        secrets=(*plan.secrets, token, credential_secret, *env_secrets),
        containers=(*containers, gateway, relay),
        notes=(*plan.notes, mode.note),
    )
    return new_plan, values


def _reject_proxy_variables(plan: SessionPlan) -> None:
    """Raise UserError when the user's agent variables name the egress proxy's variables."""
    proxy_names = {*PROXY_VARIABLES, "NO_PROXY", "no_proxy"}
    taken = sorted(proxy_names & {spec.target_env for spec in plan.secrets if spec.target_env})
    if taken:
        raise UserError(
            f"agent variables {', '.join(taken)} would replace the egress proxy's settings",
            fix="leave them out of the agent's variables, or use --network open",
        )


def has_gateway(plan: SessionPlan) -> bool:
    """Return whether `plan` contains a gateway (local mode)."""
    return any(spec.role == Role.GATEWAY for spec in plan.containers)


def create_pod(engine: Engine, plan: SessionPlan) -> None:
    """Create the session's pod: loopback only, or the engine's default network in OPEN mode.

    The pod carries no session label: podman copies pod labels to the infra container,
    which must not be listed (and removed one by one) as a session container.
    """
    network = [] if network_mode(plan) == NetworkMode.OPEN else ["--network=none"]
    engine.run_engine(["pod", "create", *network, f"--name={pod_name(plan.session)}"])


def network_mode(plan: SessionPlan) -> NetworkMode:
    """Return the agent's network mode recorded in its `devaipod.network` label."""
    prefix = f"{LABEL_NETWORK}="
    for value in plan.container(Role.AGENT).option_values("--label"):
        if value.startswith(prefix):
            return NetworkMode(value.removeprefix(prefix))
    return NetworkMode.NONE


def open_agent_network(plan: SessionPlan) -> SessionPlan:
    """Return `plan` with the agent on the engine's default network instead of none."""
    agent = plan.container(Role.AGENT)
    options = tuple(
        option for option in agent.options if option not in ("--network=none", "--net=none")
    )
    agent = replace(agent, options=(*options, f"--label={LABEL_NETWORK}=open"))
    containers = tuple(agent if spec.role == Role.AGENT else spec for spec in plan.containers)
    return replace(plan, containers=containers)


def _secret_tmpfs(options: tuple[str, ...]) -> tuple[str, ...]:
    if any(option.startswith("--tmpfs=/run/secrets") for option in options):
        return ()
    return ("--tmpfs=/run/secrets:rw,nosuid,nodev,noexec,size=1m,mode=0755",)


def remove_pod(engine: Engine, session: str) -> None:
    """Remove the session's pod and whatever container is still in it; missing is fine."""
    result = engine.run_engine(["pod", "rm", "--force", "--ignore", pod_name(session)], check=False)
    if result.returncode != 0:
        log.warning("removing pod %s failed: %s", pod_name(session), result.stderr.strip())


def start_gateway(engine: Engine, plan: SessionPlan) -> None:
    """Start the gateway and the relay, and wait until both serve."""
    gateway = plan.container(Role.GATEWAY)
    relay = plan.container(Role.RELAY)
    engine.start_container(gateway.name)
    wait_until_serving(engine, gateway.name, Role.GATEWAY)
    engine.start_container(relay.name)
    wait_until_serving(engine, relay.name, Role.RELAY)


# Connects to the broker's socket (in the gateway) or port (in the relay, through to the
# broker); exits 0 once the connection is accepted.
_PROBE = (
    "import socket, sys\n"
    "if sys.argv[1] == 'unix':\n"
    "    s = socket.socket(socket.AF_UNIX)\n"
    "    s.connect(sys.argv[2])\n"
    "else:\n"
    "    s = socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=2)\n"
    "s.close()\n"
)


def wait_until_serving(engine: Engine, container: str, role: Role) -> None:
    """Wait until the broker accepts connections through `container` (gateway or relay).

    Raises EngineError when the container exits or READY_TIMEOUT_SECONDS pass.
    """
    if role == Role.GATEWAY:
        target = ["unix", BROKER_DOOR.socket_path]
    else:
        target = ["tcp", str(BROKER_DOOR.port)]
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        probe = engine.run_engine(
            ["exec", container, "python3", "-c", _PROBE, *target], check=False
        )
        if probe.returncode == 0:
            return
        info = engine.inspect_container(container)
        state = info.get("State") if info else None
        if isinstance(state, dict) and state.get("Status") == "exited":
            logs = engine.run_engine(["logs", "--tail=20", container], check=False)
            raise EngineError(
                f"container {container} exited while starting: "
                f"{(logs.stdout + logs.stderr).strip()[-500:]}",
                fix=f"see `podman logs {container}`",
            )
        time.sleep(0.2)
    raise EngineError(
        f"container {container} did not serve the broker in {READY_TIMEOUT_SECONDS:.0f} s",
        fix=f"see `podman logs {container}`",
    )


def resolve_network_mode(value: str | None, *, with_gateway: bool) -> NetworkMode:
    """Return the `--network` mode: PROXY by default with the gateway, NONE without.

    Raises UserError for an unknown value, and for PROXY without the gateway, which serves
    the proxy.
    """
    if value is None:
        return NetworkMode.PROXY if with_gateway else NetworkMode.NONE
    try:
        mode = NetworkMode(value)
    except ValueError:
        raise UserError(
            f"invalid --network value {value!r}",
            fix="use proxy, none or open",
        ) from None
    if mode == NetworkMode.PROXY and not with_gateway:
        raise UserError(
            "--network proxy needs the gateway, which serves the egress proxy",
            fix="leave out --no-gateway (a git URL SOURCE has no gateway yet), "
            "or use --network none",
        )
    return mode


def require_local_source(source_dir: Path | None) -> Path:
    """Return the local source folder, or raise UserError: local mode needs one."""
    if source_dir is None:
        raise UserError(
            "the gateway's local mode needs a local repository as SOURCE",
            fix="run `devaipod up PATH` on a local repository, or leave out --gateway",
        )
    return source_dir
