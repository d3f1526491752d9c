"""Local-mode sessions on real podman: the agent delivers through the broker, and only there."""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.git_server import list_refs
from support.sessions import (
    labelled_objects,
    make_fixture_repo,
    podman,
    remove_session_objects,
    run_devaipod,
    wait_for_agent_exit,
)

pytestmark = pytest.mark.e2e

TRANSCRIPT = "/tmp/agent-transcript"

# The scripted agent: clone and fetch through the broker, deliver one commit with a plain
# `git push`, then try the four pushes the broker must refuse. Each step's output goes to
# TRANSCRIPT after a marker line.
AGENT_SCRIPT = """\
exec > {transcript} 2>&1
export GIT_PAGER=cat GIT_TERMINAL_PROMPT=0
git config color.ui never
git config user.name "scripted test agent"
git config user.email agent@devaipod.invalid
echo "== step clone"
header="$(git config --get-regexp "^http\\..*\\.extraheader$" | cut -d" " -f2-)"
git -c http.extraHeader="$header" clone -q "$(git remote get-url origin)" /tmp/second-clone \\
  && echo clone-ok
echo "== step fetch"
git fetch origin && git rev-parse origin/main
echo "demo change" >> NOTE.md
git add NOTE.md && git commit -q -m "Add a note"
echo "== step deliver"
git push
echo "== step main"
git push origin HEAD:refs/heads/main
echo "== step tag"
git tag v9 && git push origin refs/tags/v9
echo "== step force"
git commit -q --amend -m "Rewritten" && git push --force origin HEAD:refs/heads/{branch}
echo "== step delete"
git push origin :refs/heads/{branch}
echo "== step proxy"
python3 -c "{proxy_probe}"
echo "== done"
"""

# Asks the egress proxy (from https_proxy) for a host that no allowlist contains, and
# connects to 127.0.0.1:3128 directly; prints one result line each.
PROXY_PROBE = (
    "import os, socket, urllib.request\n"
    "print('proxy-variable', 'set' if os.environ.get('https_proxy') else 'unset')\n"
    "try:\n"
    "    urllib.request.urlopen('https://denied.example.test/', timeout=10)\n"
    "    print('denied-host reached')\n"
    "except Exception as error:\n"
    "    print('denied-host failed', error)\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', 3128), timeout=3).close()\n"
    "    print('proxy-port open')\n"
    "except OSError as error:\n"
    "    print('proxy-port closed', type(error).__name__)\n"
)


@pytest.fixture
def env(podman_env: dict[str, str], test_image: str, tmp_path: Path) -> dict[str, str]:
    return {
        **podman_env,
        "DEVAIPOD_STATE_DIR": str(tmp_path / "state"),
        "DEVAIPOD_CONFIG": str(tmp_path / "no-config.toml"),
        "DEVAIPOD_GATEWAY_BASE_IMAGE": test_image,
        "DEVAIPOD_TEST_IMAGE": test_image,
    }


def remove_everything(session: str) -> None:
    remove_session_objects(session)
    podman("pod", "rm", "--force", "--ignore", f"{session}-pod", check=False)
    remove_session_objects(session)


@pytest.fixture
def session_name() -> Iterator[str]:
    name = f"devaipod-gw-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_everything(name)


def steps(transcript: str) -> dict[str, str]:
    """Split the transcript into {step name: its output}."""
    found: dict[str, str] = {}
    current = "start"
    for line in transcript.splitlines():
        if line.startswith("== step "):
            current = line.removeprefix("== step ").strip()
            found[current] = ""
        else:
            found[current] = found.get(current, "") + line + "\n"
    return found


def files_containing(container: str, needle: str) -> list[str]:
    """Return the files under / that the container's user can read and that contain `needle`."""
    # The needle travels on stdin, so it is in no command line. Exit 2 only means some
    # files were unreadable to the agent user.
    found = subprocess.run(
        ["podman", "exec", "-i", container, "grep", "-rlsF", "-f", "/dev/stdin", "/",
         "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev"],
        input=needle + "\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.returncode in (0, 1, 2), found.stderr
    return found.stdout.splitlines()


def agent_reads_token(agent: str, token: str) -> list[str]:
    """Return where inside the agent container, as the agent user, `token` can be read."""
    places: list[str] = []
    env = podman("exec", agent, "env").stdout
    if token in env:
        places.append("environment")
    environ = podman("exec", agent, "sh", "-c", "cat /proc/*/environ 2>/dev/null; true").stdout
    if token in environ:
        places.append("/proc/*/environ")
    places += [f"file {path}" for path in files_containing(agent, token)]
    return places


def test_local_session_delivers_only_its_branch(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    refs_before = list_refs(repo)
    branch = f"devaipod/{session_name.removeprefix('devaipod-')}"
    script = AGENT_SCRIPT.format(transcript=TRANSCRIPT, branch=branch, proxy_probe=PROXY_PROBE)

    # No --gateway: local mode is the default for a local SOURCE.
    run_devaipod(
        "up", str(repo), "--name", session_name, "--image", test_image,
        "--agent", f"sh -c {shlex.quote(script)} scripted-test-agent", "run the script",
        env=env, timeout=600,
    )  # fmt: skip
    agent = f"{session_name}-agent"
    status = wait_for_agent_exit(session_name, env, timeout=120)
    assert status["agentProgram"]["exitCode"] == 0
    transcript = podman("exec", agent, "cat", TRANSCRIPT).stdout
    out = steps(transcript)

    assert "clone-ok" in out["clone"], transcript
    assert refs_before["refs/heads/main"] in out["fetch"], transcript
    assert f"[new branch]      HEAD -> {branch}" in out["deliver"], transcript
    assert f"only refs/heads/{branch} may be pushed" in out["main"], transcript
    assert "[remote rejected]" in out["main"]
    assert "(devaipod: tags may not be pushed)" in out["tag"], transcript
    assert "non-fast-forward" in out["force"], transcript
    assert "[remote rejected]" in out["force"]
    assert "(devaipod: deleting refs is not allowed)" in out["delete"], transcript
    # The default --network proxy: the proxy is there, and refuses an unlisted host.
    assert "proxy-variable set" in out["proxy"], transcript
    assert "proxy-port open" in out["proxy"], transcript
    assert "denied-host failed" in out["proxy"], transcript
    assert "403" in out["proxy"], transcript

    refs_after = list_refs(repo)
    assert refs_after["refs/heads/main"] == refs_before["refs/heads/main"]
    assert not [ref for ref in refs_after if ref.startswith("refs/tags/")]
    delivered = refs_after[f"refs/heads/{branch}"]
    subject = subprocess.run(
        ["git", "log", "-1", "--format=%s", delivered], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert subject == "Add a note"  # the force push did not replace it
    assert set(refs_after) == set(refs_before) | {f"refs/heads/{branch}"}

    # The forge token: read from the gateway, where the secret is mounted as a file.
    gateway = f"{session_name}-gateway"
    token = podman("exec", gateway, "cat", f"/run/secrets/{session_name}-forge-token").stdout
    token = token.strip()
    assert len(token) >= 32
    assert agent_reads_token(agent, token) == []
    # The proxy URL contains the session credential, so it is not in the agent's inspect.
    credential = podman(
        "exec", gateway, "cat", f"/run/secrets/{session_name}-broker-credential"
    ).stdout.strip()
    assert len(credential) >= 32
    assert credential not in podman("container", "inspect", agent).stdout
    # The same search finds what the agent may read, such as its git identity.
    assert any(
        path.endswith("/.git/config") for path in files_containing(agent, "scripted test agent")
    )
    objects = labelled_objects(session_name)
    assert {f"{session_name}-{role}" for role in ("agent", "workspace", "gateway", "relay")} <= set(
        objects["containers"]
    )
    for container in objects["containers"]:
        inspected = podman("container", "inspect", container).stdout
        assert token not in inspected, f"token in podman inspect of {container}"
        logs = podman("logs", container)
        assert token not in logs.stdout + logs.stderr, f"token in podman logs of {container}"
    assert token not in podman("pod", "inspect", f"{session_name}-pod").stdout
    state_dir = Path(env["DEVAIPOD_STATE_DIR"])
    checked = 0
    for path in state_dir.rglob("*"):
        if path.is_file():
            checked += 1
            assert token.encode() not in path.read_bytes(), f"token in {path}"
    assert checked >= 3  # at least the audit log, the scope and devaipod.log

    # The audit log: allow lines for the fetch and the delivery, four deny lines.
    entries = [
        json.loads(line)
        for line in run_devaipod("audit", session_name, "--json", env=env).stdout.splitlines()
    ]
    denied = [entry for entry in entries if entry["decision"] == "deny"]
    denied_pushes = [entry for entry in denied if entry["kind"] == "git-push"]
    assert len(denied_pushes) == 4, denied
    denied_egress = [entry for entry in denied if entry["kind"] == "egress"]
    assert any("denied.example.test" in json.dumps(entry) for entry in denied_egress), denied
    assert any(entry["kind"] == "git-push" and entry["decision"] == "allow" for entry in entries)
    run_devaipod("audit", session_name, "--verify", env=env)
    audit_path = state_dir / "sessions" / session_name / "audit.jsonl"
    lines = audit_path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"allow"', '"deny"', 1)
    assert lines[1] != audit_path.read_text().splitlines(keepends=True)[1]
    audit_path.write_text("".join(lines))
    broken = run_devaipod("audit", session_name, "--verify", env=env, check=False)
    assert broken.returncode != 0
    assert "failed verification at line" in broken.stdout + broken.stderr

    run_devaipod("delete", "--force", session_name, env=env)
    assert labelled_objects(session_name) == {
        "containers": [], "volumes": [], "networks": [], "secrets": []
    }  # fmt: skip
    pods = podman("pod", "exists", f"{session_name}-pod", check=False)
    assert pods.returncode != 0


def test_demo_shows_four_refusals(env: dict[str, str], tmp_path: Path) -> None:
    before = {line for line in podman("pod", "ls", "--format={{.Name}}").stdout.split()}
    try:
        completed = run_devaipod("demo", env=env, timeout=600)
    finally:
        for name in set(podman("pod", "ls", "--format={{.Name}}").stdout.split()) - before:
            if name.startswith("devaipod-demo-"):
                remove_everything(name.removesuffix("-pod"))
    text = completed.stdout
    assert "devaipod-scripted-demo" in text
    assert "(no refusal seen)" not in text
    for reason in (
        "may be pushed",
        "tags may not be pushed",
        "non-fast-forward",
        "deleting refs is not allowed",
    ):
        assert text.count(reason) >= 2, (reason, text)  # git's line and the audit line
    assert "Add a note from the demo session" in text


def test_network_none_has_no_proxy(
    env: dict[str, str], test_image: str, tmp_path: Path, session_name: str
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    branch = f"devaipod/{session_name.removeprefix('devaipod-')}"
    script = (
        f"exec > {TRANSCRIPT} 2>&1\n"
        "git -c user.name=a -c user.email=a@b.invalid commit -q --allow-empty -m empty\n"
        "git push 2>&1\n"
        f'python3 -c "{PROXY_PROBE}"\n'
    )
    run_devaipod(
        "up", str(repo), "--name", session_name, "--image", test_image, "--gateway",
        "--network", "none", "--agent", f"sh -c {shlex.quote(script)} scripted-test-agent", "run",
        env=env, timeout=600,
    )  # fmt: skip
    wait_for_agent_exit(session_name, env, timeout=120)
    transcript = podman("exec", f"{session_name}-agent", "cat", TRANSCRIPT).stdout
    assert f"[new branch]      HEAD -> {branch}" in transcript
    assert "proxy-variable unset" in transcript
    assert "proxy-port closed ConnectionRefusedError" in transcript
    delivered = list_refs(repo)[f"refs/heads/{branch}"]

    # After stop and start, the relay and the broker's socket work again.
    run_devaipod("stop", session_name, env=env)
    run_devaipod("start", session_name, env=env)
    # The agent's script runs again on start; let it finish before pushing by hand.
    wait_for_agent_exit(session_name, env, timeout=120)
    pushed = podman(
        "exec", f"{session_name}-agent", "sh", "-c",
        "git -c user.name=a -c user.email=a@b.invalid commit -q --allow-empty -m again"
        " && git push 2>&1",
        check=False,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert f"-> {branch}" in pushed.stdout, pushed.stdout
    assert list_refs(repo)[f"refs/heads/{branch}"] != delivered


def test_network_open_warns_and_drops_none(
    env: dict[str, str], test_image: str, tmp_path: Path
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    planned = run_devaipod(
        "up", str(repo), "--image", test_image, "--network", "open", "--dry-run", "--json",
        "--agent", "sh", "task", env=env,
    )  # fmt: skip
    assert "--network open" in planned.stderr
    plan = json.loads(planned.stdout)
    agent = next(spec for spec in plan["containers"] if spec["role"] == "agent")
    assert "--network=none" not in json.dumps(agent)


def test_network_proxy_needs_gateway(env: dict[str, str], test_image: str, tmp_path: Path) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    opted_out = run_devaipod(
        "up", str(repo), "--image", test_image, "--network", "proxy", "--dry-run",
        "--no-gateway", "--agent", "sh", "task",
        env=env, check=False,
    )  # fmt: skip
    url_source = run_devaipod(
        "up", f"file://{repo}", "--image", test_image, "--network", "proxy", "--dry-run",
        "--agent", "sh", "task",
        env=env, check=False,
    )  # fmt: skip
    assert opted_out.returncode == 2
    assert "--network proxy needs the gateway" in opted_out.stderr
    assert url_source.returncode == 2
    assert "--network proxy needs the gateway" in url_source.stderr


def test_url_source_without_gateway_default(
    env: dict[str, str], test_image: str, tmp_path: Path
) -> None:
    repo = make_fixture_repo(tmp_path / "project")
    planned = run_devaipod(
        "up", f"file://{repo}", "--image", test_image, "--dry-run", "--json",
        "--agent", "sh", "task",
        env=env,
    )  # fmt: skip
    forced = run_devaipod(
        "up", f"file://{repo}", "--image", test_image, "--dry-run", "--gateway",
        "--agent", "sh", "task",
        env=env, check=False,
    )  # fmt: skip
    roles = [spec["role"] for spec in json.loads(planned.stdout)["containers"]]
    assert roles == ["workspace", "agent"]
    assert forced.returncode == 2
    assert "needs a local repository as SOURCE" in forced.stderr
