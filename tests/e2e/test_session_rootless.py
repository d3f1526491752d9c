"""A session under rootless podman, as most users run it: hardening, isolation, stop and delete.

Runs devaipod as an ordinary user created with useradd. That user runs the system
python3 with a copy of the test venv's packages, because the venv's interpreter lives
under /root.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import devaipod
from support.sessions import tcp_server

pytestmark = pytest.mark.e2e

USER = "devaipod-rootless"
SRC_DIR = Path(devaipod.__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass
class RootlessUser:
    name: str
    home: Path
    env: dict[str, str]
    image: str

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell command line as the user, with the rootless test environment."""
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.env.items())
        completed = subprocess.run(
            ["su", "-", self.name, "-c", f"cd ~ && export {exports} && {command}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"{command!r} as {self.name} failed:\n{completed.stderr}")
        return completed

    def devaipod(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(f"{SYSTEM_PYTHON} -m devaipod {shlex.join(args)}", check=check)


@pytest.fixture(scope="module")
def rootless(test_image: str) -> Iterator[RootlessUser]:
    if os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists():
        pytest.fail("the rootless test needs root (to create the user) and /usr/bin/python3")
    tun_mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    _ensure_user()
    shared = Path(tempfile.mkdtemp(prefix="devaipod-rootless-"))
    try:
        os.chmod("/dev/net/tun", 0o666)
        shared.chmod(0o755)
        shutil.copytree(Path(sys.prefix) / "lib/python3.11/site-packages", shared / "site-packages")
        # The source is copied too, because the checkout may sit in a folder the user cannot
        # read (a clone made in a `mktemp -d` folder is mode 0700).
        shutil.copytree(SRC_DIR / "devaipod", shared / "src" / "devaipod",
                        ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
        (shared / "containers.conf").write_text('[engine]\nruntime = "runc"\n')
        (shared / "containers.conf").chmod(0o644)
        home = Path(pwd.getpwnam(USER).pw_dir)
        user = RootlessUser(
            name=USER,
            home=home,
            env={
                "CONTAINERS_CONF": str(shared / "containers.conf"),
                "PYTHONPATH": f"{shared / 'site-packages'}:{shared / 'src'}",
                "DEVAIPOD_CONFIG": str(home / "no-config.toml"),
            },
            image="",
        )
        user.image = _ensure_image(user, test_image)
        # `up` runs the gateway by default; its image builds offline on the test image.
        user.env["DEVAIPOD_GATEWAY_BASE_IMAGE"] = user.image
        yield user
    finally:
        # NOTE: the user and its image store stay, as a cache like the test image itself;
        # `userdel -r devaipod-rootless` removes both.
        os.chmod("/dev/net/tun", tun_mode)
        shutil.rmtree(shared, ignore_errors=True)


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)


def _ensure_image(user: RootlessUser, test_image: str) -> str:
    """Return a copy of the test image in the user's store, with a traversable root."""
    tag = test_image.rsplit(":", 1)[-1]
    image = f"localhost/devaipod-test-rootless:{tag}"
    if user.run(f"podman image exists {image}", check=False).returncode == 0:
        return image
    # `podman save` would keep the debootstrap root directory's mode 0700, which locks a
    # non-root container user out of / under rootless podman's vfs storage. An exported
    # file system has no entry for /, so the import gives it mode 0755.
    container = subprocess.run(
        ["podman", "create", test_image, "true"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        exported = subprocess.Popen(["podman", "export", container], stdout=subprocess.PIPE)
        path_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        subprocess.run(
            [
                "su",
                "-",
                USER,
                "-c",
                f"CONTAINERS_CONF={user.env['CONTAINERS_CONF']} "
                f"podman import -q --change 'ENV {path_env}' - {image}",
            ],
            stdin=exported.stdout,
            check=True,
            capture_output=True,
        )
        exported.wait()
    finally:
        subprocess.run(["podman", "rm", "--force", container], capture_output=True, check=False)
    return image


def _host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent for a UDP connect
        return str(probe.getsockname()[0])


def test_rootless_session_hardened_and_isolated(rootless: RootlessUser) -> None:
    user = rootless
    session = "devaipod-rootless-e2e"
    user.run(
        "rm -rf project && mkdir project && cd project && git init -q -b main && "
        "echo hello > README && git add README && "
        "git -c user.name=t -c user.email=t@example.invalid commit -qm init"
    )
    before = user.run("cd project && git rev-parse HEAD && git status --porcelain").stdout
    try:
        user.devaipod(
            "up",
            "project",
            "edit",
            "--image",
            user.image,
            "--name",
            session,
            "--agent",
            "sh -c 'echo edited >> README && git commit -qam agent-edit'",
        )
        status = _wait_exit(user, session)
        agent = json.loads(user.run(f"podman container inspect {session}-agent").stdout)[0]
        infra = json.loads(user.run(f"podman pod inspect {session}-pod").stdout)
        infra = infra[0] if isinstance(infra, list) else infra
        infra_network = user.run(
            f"podman container inspect --format '{{{{.HostConfig.NetworkMode}}}}' "
            f"{infra['InfraContainerID']}"
        ).stdout.strip()
        caps = user.run(f"podman exec {session}-agent grep CapEff /proc/self/status").stdout
        links = user.run(f"podman exec {session}-agent ip -o link").stdout.splitlines()
        with tcp_server("0.0.0.0") as server:
            targets = [f"{_host_address()}:{server.port}", f"10.0.2.2:{server.port}"]
            probe = (
                "import socket,sys\n"
                "for t in sys.argv[1:]:\n"
                "    h,p=t.rsplit(':',1)\n"
                "    try:\n"
                "        socket.create_connection((h,int(p)),timeout=3); print(t,'connected')\n"
                "    except OSError as e: print(t,'failed',type(e).__name__)\n"
            )
            agent_try = user.run(
                f"podman exec {session}-agent python3 -c {shlex.quote(probe)} {' '.join(targets)}"
            ).stdout
            workspace_try = user.run(
                f"podman exec {session}-workspace python3 -c {shlex.quote(probe)} {targets[0]}"
            ).stdout
        user.devaipod("stop", session)
        user.devaipod("start", session)
        log = user.run(
            f"podman exec --user=dev {session}-workspace git -C /workspaces/project log --format=%s"
        ).stdout
        refused = user.devaipod("delete", session, check=False)
        user.devaipod("delete", "--force", session)
        leftovers = user.run(
            f"podman ps -aq --filter label=devaipod.session={session}; "
            f"podman volume ls -q --filter label=devaipod.session={session}; "
            f"podman pod ls -q --filter name={session}-pod"
        ).stdout
        after = user.run("cd project && git rev-parse HEAD && git status --porcelain").stdout
    finally:
        user.run(
            f"podman pod rm -f -t0 --ignore {session}-pod; "
            f"podman rm -f -t0 {session}-workspace {session}-agent {session}-gateway; "
            f"podman volume rm -f {session}-code {session}-agent-home {session}-sockets; "
            f"podman secret ls -q --filter label=devaipod.session={session} "
            "| xargs -r podman secret rm",
            check=False,
        )

    assert status["agentProgram"] == {"running": False, "exitCode": 0}
    assert agent["Config"]["User"] == "dev"
    assert agent["HostConfig"]["NetworkMode"] == f"container:{infra['InfraContainerID']}"
    assert infra_network == "none"
    assert agent["HostConfig"]["ReadonlyRootfs"] is True
    assert "no-new-privileges" in agent["HostConfig"]["SecurityOpt"]
    assert caps.split()[-1] == "0000000000000000"
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    assert "connected" in workspace_try
    assert agent_try.count("failed") == 2, agent_try
    assert "agent-edit" in log.split()
    assert refused.returncode == 2
    assert "exist nowhere else" in refused.stderr
    assert leftovers.strip() == ""
    assert after == before


def _wait_exit(user: RootlessUser, session: str) -> dict[str, object]:
    for _attempt in range(60):
        status: dict[str, object] = json.loads(user.devaipod("status", session, "--json").stdout)
        program = status.get("agentProgram")
        if isinstance(program, dict) and not program["running"]:
            return status
    raise AssertionError(f"agent of {session} did not finish: {status}")
