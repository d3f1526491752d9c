"""A session's gateway side in local mode: the pod, the relay, the gateway and its scope.

The agent and the relay share a pod whose network namespace has loopback only. The
gateway serves the broker on a unix socket, and the user's repository as the broker's
upstream on the gateway's own loopback. The agent's `origin` points at the broker.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path

from devaipod.egress.allowlist import AllowlistEntryError, parse_entry
from devaipod.errors import EngineError, UserError
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
    for entry in allow:
        try:
            parse_entry(entry)
        except AllowlistEntryError as error:
            raise UserError(
                f"egress allowlist entry {entry!r}: {error}",
                fix="fix [network] allow in the config file or "
                "customizations.devaipod.allowedDomains in devcontainer.json",
            ) from error
    return Scope(
        repos=[
            RepoScope(
                input=RepoInput(url=f"http://{LOCAL_UPSTREAM_LISTEN}/{repo_name}", allowHttp=True),
                output=RepoOutput(targetBranch=output_branch(session)),
            )
        ],
        network=NetworkScope(allow=list(dict.fromkeys(allow))),
    )


def broker_origin_url(repo_name: str) -> str:
    """Return the agent's `origin` URL: the broker's relay port, never a credential in it."""
    return f"http://127.0.0.1:{BROKER_DOOR.port}/git/{LOCAL_UPSTREAM_LISTEN}/{repo_name}.git"


def configure_agent_clone(clone: Path, session: str, repo_name: str, credential: str) -> None:
    """Point the clone's `origin` at the broker and give git the session credential as a header.

    `remote.origin.push` makes a plain `git push` deliver HEAD to the output branch.
    """
    origin = broker_origin_url(repo_name)
    run_git(["remote", "add", "origin", origin], cwd=clone)
    run_git(
        ["config", "remote.origin.push", f"HEAD:refs/heads/{output_branch(session)}"], cwd=clone
    )
    run_git(
        [
            "config",
            f"http.http://127.0.0.1:{BROKER_DOOR.port}/.extraHeader",
            f"Authorization: Bearer {credential}",
        ],
        cwd=clone,
    )


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
    repo_name = upstream_repo_name(source_dir)
    top = Path(run_git(["rev-parse", "--show-toplevel"], cwd=source_dir).stdout.strip())

    token = token_secret(session, {**labels, LABEL_PURPOSE: "forge-token"})
    credential_secret = SecretSpec(
        name=f"{session}-broker-credential",
        purpose=CREDENTIAL_SECRET_PURPOSE,
        labels={**labels, LABEL_PURPOSE: CREDENTIAL_SECRET_PURPOSE},
    )
    credential = secrets.token_urlsafe(32)
    values = {
        **secret_values,
        token.name: secrets.token_urlsafe(32).encode(),
        credential_secret.name: credential.encode(),
    }
    volume = socket_volume(session, {**labels, LABEL_PURPOSE: "gateway-sockets"})

    state = session_dir(session)
    state.mkdir(parents=True, exist_ok=True)
    (state / SCOPE_FILE).write_text(dump_scope(local_scope(session, repo_name, allow)))
    audit_name = session_audit_path(session).name

    upstream = shlex.join(
        [
            "devaipod", "serve-local-upstream", "--root", UPSTREAM_ROOT,
            "--listen", LOCAL_UPSTREAM_LISTEN, "--token-file", secret_file(token),
        ]
    )  # fmt: skip
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
            *(["--egress-listen", f"unix:{EGRESS_DOOR.socket_path}"]
              if network == NetworkMode.PROXY else []),
        ]
    )  # fmt: skip
    # The broker replaces the shell, so `podman stop` signals it. The local upstream runs
    # in the background and ends with the container.
    script = f"{upstream} & exec {broker}"
    gateway = gateway_container(
        f"{session}-gateway",
        image,
        volume=volume,
        secret=token,
        labels=labels,
        command=("-c", script),
        # Only the egress proxy needs the gateway to reach other hosts.
        network=None if network == NetworkMode.PROXY else "--network=none",
        entrypoint="/bin/sh",
    )
    gateway = replace(
        gateway,
        options=(
            *gateway.options,
            f"--secret={credential_secret.name}",
            f"--volume={top}:{UPSTREAM_ROOT}/{repo_name}",
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
    )
    proxy_secrets: list[SecretSpec] = []
    if network == NetworkMode.PROXY:
        proxy_url = f"http://devaipod:{credential}@127.0.0.1:{EGRESS_DOOR.port}"
        # The proxy URL contains the session credential, so it travels as secret files
        # that the agent's entrypoint exports, not as `--env` values shown by inspect.
        for name in PROXY_VARIABLES:
            spec = SecretSpec(
                name=f"{session}-env-{name}",
                purpose="agent-env",
                target_env=name,
                labels={**labels, LABEL_PURPOSE: "agent-env"},
            )
            proxy_secrets.append(spec)
            values[spec.name] = proxy_url.encode()
        agent_options = (
            *agent_options,
            *_secret_tmpfs(agent_options),
            *(
                f"--secret={spec.name},type=mount,uid={agent_uid},gid={agent_gid},mode=0400,"
                f"target={SECRET_FILE_PREFIX}{spec.target_env}"
                for spec in proxy_secrets
            ),
            f"--env=NO_PROXY={NO_PROXY}",
            f"--env=no_proxy={NO_PROXY}",
        )
    agent = replace(agent, options=agent_options)
    containers = tuple(agent if spec.role == Role.AGENT else spec for spec in plan.containers)

    configure_agent_clone(clone, session, repo_name, credential)
    new_plan = replace(
        plan,
        volumes=(*plan.volumes, volume),
        secrets=(*plan.secrets, token, credential_secret, *proxy_secrets),
        containers=(*containers, gateway, relay),
        notes=(
            *plan.notes,
            f"local mode: the agent pushes {output_branch(session)} to {top} through the broker",
        ),
    )
    return new_plan, values


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
