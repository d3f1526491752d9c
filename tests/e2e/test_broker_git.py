"""The standalone broker between the real git client and a real `git http-backend` upstream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devaipod.broker.audit import AuditLog, read_entries, verify_chain
from devaipod.broker.server import BrokerConfig, start_broker
from devaipod.scope.model import load_scope
from support.git_server import (
    GitHttpServer,
    create_bare_repo,
    isolated_git_env,
    list_refs,
    run_git,
)

pytestmark = pytest.mark.e2e

UPSTREAM_TOKEN = "upstream-token-7f3a9c1e5b"
TARGET_BRANCH = "devaipod/e2e"
TARGET_REF = f"refs/heads/{TARGET_BRANCH}"
REPO_NAME = "org/repo.git"


@dataclass
class Broker:
    process: subprocess.Popen[str]
    url: str
    credential: str
    audit_log: Path
    stderr_file: Path
    state_dir: Path

    def clone_url(self, upstream: GitHttpServer, repo_name: str = REPO_NAME) -> str:
        host = f"127.0.0.1:{upstream.port}"
        return f"{self.url}/git/{host}/{repo_name}"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[GitHttpServer]:
    root = tmp_path / "upstream"
    create_bare_repo(root, REPO_NAME, {"README.md": "hello\n", "src/app.py": "print(1)\n"})
    create_bare_repo(root, "org/other.git")
    server = GitHttpServer(root, UPSTREAM_TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


def _write_scope(path: Path, upstream: GitHttpServer, *, allow_force_push: bool = False) -> None:
    path.write_text(
        "repos:\n"
        f"  - input: {{url: '{upstream.url(REPO_NAME)}', branch: main, allowHttp: true}}\n"
        f"    output: {{targetBranch: {TARGET_BRANCH}, "
        f"allowForcePush: {str(allow_force_push).lower()}}}\n"
    )


@pytest.fixture
def broker(tmp_path: Path, upstream: GitHttpServer) -> Iterator[Broker]:
    scope_file = tmp_path / "scope.yaml"
    _write_scope(scope_file, upstream)
    state_dir = tmp_path / "broker-state"
    credential_file = tmp_path / "credential"
    audit_log = tmp_path / "audit.jsonl"
    stderr_file = tmp_path / "broker.stderr"

    env = dict(os.environ)
    env["DEVAIPOD_FORGE_TOKEN"] = UPSTREAM_TOKEN
    env["DEVAIPOD_STATE_DIR"] = str(state_dir)
    command = [
        sys.executable,
        "-m",
        "devaipod",
        "-vv",
        "broker",
        "--scope",
        str(scope_file),
        "--listen",
        "127.0.0.1:0",
        "--audit-log",
        str(audit_log),
        "--credential-file",
        str(credential_file),
        "--session",
        "e2e",
        "--json",
    ]
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True
        )
    try:
        assert process.stdout is not None
        ready_line = process.stdout.readline()
        assert ready_line, f"broker exited early:\n{stderr_file.read_text()}"
        ready = json.loads(ready_line)
        assert ready["event"] == "listening"
        yield Broker(
            process=process,
            url=ready["url"],
            credential=credential_file.read_text().strip(),
            audit_log=audit_log,
            stderr_file=stderr_file,
            state_dir=state_dir,
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def agent_env(tmp_path: Path, broker: Broker) -> dict[str, str]:
    """Return a git environment whose credential helper presents the session credential."""
    home = tmp_path / "agent-home"
    home.mkdir()
    credential_copy = home / "session-credential"
    credential_copy.write_text(broker.credential)
    env = isolated_git_env(home)
    helper = (
        f'!f() {{ test "$1" = get && echo username=agent '
        f"&& echo password=$(cat '{credential_copy}'); }}; f"
    )
    env["GIT_CONFIG_COUNT"] = "1"
    env["GIT_CONFIG_KEY_0"] = "credential.helper"
    env["GIT_CONFIG_VALUE_0"] = helper
    env["GIT_TRACE_PACKET"] = str(tmp_path / "agent-packet-trace.log")
    return env


def _git(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _clone(broker: Broker, upstream: GitHttpServer, env: dict[str, str], dest: Path) -> Path:
    run_git("clone", "--quiet", broker.clone_url(upstream), str(dest), env=env)
    return dest


def _commit(work: Path, env: dict[str, str], name: str, content: str) -> str:
    (work / name).write_text(content)
    run_git("add", name, cwd=work, env=env)
    run_git("commit", "--quiet", "-m", f"Add {name}", cwd=work, env=env)
    return run_git("rev-parse", "HEAD", cwd=work, env=env).stdout.strip()


def _upstream_repo(upstream: GitHttpServer) -> Path:
    return upstream.root / REPO_NAME


@pytest.mark.parametrize("protocol_version", ["0", "2"])
def test_clone_and_fetch_through_broker(
    tmp_path: Path,
    upstream: GitHttpServer,
    broker: Broker,
    agent_env: dict[str, str],
    protocol_version: str,
) -> None:
    main_before = list_refs(_upstream_repo(upstream))["refs/heads/main"]
    work = tmp_path / "work"

    run_git(
        "-c",
        f"protocol.version={protocol_version}",
        "clone",
        "--quiet",
        broker.clone_url(upstream),
        str(work),
        env=agent_env,
    )
    assert run_git("rev-parse", "HEAD", cwd=work, env=agent_env).stdout.strip() == main_before
    assert (work / "src" / "app.py").read_text() == "print(1)\n"

    seed = tmp_path / "seed"
    run_git("clone", "--quiet", str(_upstream_repo(upstream)), str(seed))
    main_after = _commit(seed, isolated_git_env(), "later.txt", "later\n")
    run_git("push", "--quiet", "origin", "HEAD:main", cwd=seed)

    run_git(
        "-c",
        f"protocol.version={protocol_version}",
        "fetch",
        "--quiet",
        "origin",
        cwd=work,
        env=agent_env,
    )
    fetched = run_git("rev-parse", "origin/main", cwd=work, env=agent_env).stdout.strip()
    assert fetched == main_after

    upload_requests = [r for r in upstream.recorded() if "git-upload-pack" in r.path + r.query]
    assert upload_requests
    protocol_headers = {r.headers.get("Git-Protocol") for r in upload_requests}
    if protocol_version == "2":
        assert protocol_headers == {"version=2"}
    else:
        assert protocol_headers == {None}


def test_clone_with_bearer_extra_header(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker
) -> None:
    env = isolated_git_env(tmp_path)
    env["GIT_CONFIG_COUNT"] = "1"
    env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
    env["GIT_CONFIG_VALUE_0"] = f"Authorization: Bearer {broker.credential}"

    work = tmp_path / "work"
    run_git("clone", "--quiet", broker.clone_url(upstream), str(work), env=env)

    assert (work / "README.md").read_text() == "hello\n"


def test_clone_without_credential_fails(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker
) -> None:
    env = isolated_git_env(tmp_path)

    completed = _git(env, "clone", broker.clone_url(upstream), str(tmp_path / "work"))

    assert completed.returncode != 0
    assert not any(r.method == "POST" for r in upstream.recorded())
    assert upstream.recorded() == []


def test_clone_with_wrong_credential_fails(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker
) -> None:
    env = isolated_git_env(tmp_path)
    env["GIT_CONFIG_COUNT"] = "1"
    env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
    env["GIT_CONFIG_VALUE_0"] = "Authorization: Bearer not-the-credential"

    completed = _git(env, "clone", broker.clone_url(upstream), str(tmp_path / "work"))

    assert completed.returncode != 0
    # After the 401 git prompts for a user name, which GIT_TERMINAL_PROMPT=0 turns into an error.
    assert "could not read Username" in completed.stderr
    assert upstream.recorded() == []
    denials = [
        e for e in read_entries(broker.audit_log) if e["reason"] == "invalid session credential"
    ]
    assert denials


def test_clone_of_undeclared_repo_fails(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    completed = _git(
        agent_env, "clone", broker.clone_url(upstream, "org/other.git"), str(tmp_path / "w")
    )

    assert completed.returncode != 0
    assert "not in this session's scope" in completed.stderr
    assert upstream.recorded() == []


def test_push_output_branch_lands_upstream(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    work = _clone(broker, upstream, agent_env, tmp_path / "work")
    first = _commit(work, agent_env, "feature.txt", "one\n")

    created = _git(agent_env, "push", "origin", f"HEAD:{TARGET_REF}", cwd=work)

    assert created.returncode == 0, created.stderr
    assert "[new branch]" in created.stderr
    assert list_refs(_upstream_repo(upstream))[TARGET_REF] == first

    second = _commit(work, agent_env, "feature.txt", "two\n")
    updated = _git(agent_env, "push", "origin", f"HEAD:{TARGET_REF}", cwd=work)

    assert updated.returncode == 0, updated.stderr
    assert list_refs(_upstream_repo(upstream))[TARGET_REF] == second
    assert len(upstream.receive_pack_posts()) == 2

    ref_entries = [e for e in read_entries(broker.audit_log) if e.get("ref") == TARGET_REF]
    # Decision lines come before forwarding; outcome lines carry the upstream's status.
    decisions = [e for e in ref_entries if "upstream_status" not in e]
    outcomes = [e for e in ref_entries if "upstream_status" in e]
    assert [e["decision"] for e in decisions] == ["allow", "allow"]
    assert decisions[-1]["new_oid"] == second
    assert decisions[-1]["old_oid"] == first
    assert [e["reason"] for e in outcomes] == ["upstream accepted the update"] * 2
    assert [e["upstream_status"] for e in outcomes] == [200, 200]


def _prepare_output_branch(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, env: dict[str, str]
) -> Path:
    """Clone, push one allowed commit to the output branch, and forget what the upstream saw."""
    work = _clone(broker, upstream, env, tmp_path / "work")
    _commit(work, env, "feature.txt", "one\n")
    run_git("push", "--quiet", "origin", f"HEAD:{TARGET_REF}", cwd=work, env=env)
    upstream.clear()
    return work


@dataclass(frozen=True)
class DeniedPush:
    name: str
    push_args: tuple[str, ...]
    message: str
    """Text expected in git's stderr."""
    prepare: str = ""
    remote_rejected: bool = True
    """Whether git reports `[remote rejected]`; False when git itself stops the push."""


DENIED_PUSHES = [
    DeniedPush(
        "main",
        ("origin", "HEAD:refs/heads/main"),
        f"-> main (devaipod: only {TARGET_REF} may be pushed)",
    ),
    DeniedPush(
        "tag",
        ("origin", "refs/tags/v1"),
        "v1 -> v1 (devaipod: tags may not be pushed)",
        prepare="tag",
    ),
    DeniedPush(
        "force",
        ("--force", "origin", f"HEAD:{TARGET_REF}"),
        "(devaipod: non-fast-forward (force push) not allowed)",
        prepare="rewrite",
    ),
    DeniedPush(
        "delete",
        ("origin", "--delete", TARGET_BRANCH),
        f"{TARGET_BRANCH} (devaipod: deleting refs is not allowed)",
    ),
    # The broker's advertisement leaves out `push-options`, so git stops before sending.
    # test_server covers a client that sends push options anyway.
    DeniedPush(
        "push option",
        ("-o", "ci.skip", "origin", f"HEAD:{TARGET_REF}"),
        "the receiving end does not support push options",
        remote_rejected=False,
    ),
    DeniedPush(
        "mixed",
        ("origin", f"HEAD:{TARGET_REF}", "HEAD:refs/heads/main"),
        f"-> main (devaipod: only {TARGET_REF} may be pushed)",
    ),
]


@pytest.mark.parametrize("case", DENIED_PUSHES, ids=[case.name for case in DENIED_PUSHES])
def test_denied_push_reaches_nothing_upstream(
    tmp_path: Path,
    upstream: GitHttpServer,
    broker: Broker,
    agent_env: dict[str, str],
    case: DeniedPush,
) -> None:
    work = _prepare_output_branch(tmp_path, upstream, broker, agent_env)
    refs_before = list_refs(_upstream_repo(upstream))
    _commit(work, agent_env, "more.txt", "more\n")
    if case.prepare == "tag":
        run_git("tag", "v1", cwd=work, env=agent_env)
    if case.prepare == "rewrite":
        run_git("reset", "--quiet", "--hard", "HEAD~2", cwd=work, env=agent_env)
        _commit(work, agent_env, "rewritten.txt", "rewritten\n")

    completed = _git(agent_env, "push", *case.push_args, cwd=work)

    assert completed.returncode != 0
    assert case.message in completed.stderr, completed.stderr
    assert upstream.receive_pack_posts() == []
    assert list_refs(_upstream_repo(upstream)) == refs_before
    if case.remote_rejected:
        assert "! [remote rejected]" in completed.stderr, completed.stderr
        denials = [e for e in read_entries(broker.audit_log) if e["decision"] == "deny"]
        assert denials
        assert all(e["kind"] == "git-push" for e in denials)
        assert all("ref" in e for e in denials)


def test_mixed_push_rejects_allowed_ref_too(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    work = _prepare_output_branch(tmp_path, upstream, broker, agent_env)
    _commit(work, agent_env, "more.txt", "more\n")

    completed = _git(
        agent_env, "push", "origin", f"HEAD:{TARGET_REF}", "HEAD:refs/heads/main", cwd=work
    )

    rejected_lines = [line for line in completed.stderr.splitlines() if "[remote rejected]" in line]
    assert any(TARGET_BRANCH in line for line in rejected_lines), completed.stderr
    assert any("-> main" in line for line in rejected_lines), completed.stderr
    assert upstream.receive_pack_posts() == []


def test_upstream_sees_only_broker_token(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    work = _clone(broker, upstream, agent_env, tmp_path / "work")
    _commit(work, agent_env, "feature.txt", "one\n")
    run_git("push", "--quiet", "origin", f"HEAD:{TARGET_REF}", cwd=work, env=agent_env)

    token_digest = hashlib.sha256(UPSTREAM_TOKEN.encode()).hexdigest()
    credential_digest = hashlib.sha256(broker.credential.encode()).hexdigest()
    recorded = upstream.recorded()

    assert broker.credential != UPSTREAM_TOKEN
    assert recorded
    assert all(r.authorized for r in recorded)
    assert {r.credential_sha256 for r in recorded} == {token_digest}
    assert credential_digest not in {r.credential_sha256 for r in recorded}


def _http_get(url: str, authorization: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_token_appears_nowhere_agent_side(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    work = _clone(broker, upstream, agent_env, tmp_path / "work")
    _commit(work, agent_env, "feature.txt", "one\n")
    pushed = _git(agent_env, "push", "origin", f"HEAD:{TARGET_REF}", cwd=work)
    denied = _git(agent_env, "push", "origin", "HEAD:refs/heads/main", cwd=work)

    bearer = f"Bearer {broker.credential}"
    base = broker.clone_url(upstream)
    bodies = [
        _http_get(f"{base}/info/refs?service=git-receive-pack", bearer)[1],
        _http_get(f"{base}/info/refs?service=git-upload-pack", bearer)[1],
        _http_get(f"{base}/HEAD", bearer)[1],
        _http_get(f"{base}/objects/info/packs", bearer)[1],
        _http_get(
            broker.clone_url(upstream, "org/other.git") + "/info/refs?service=git-upload-pack",
            bearer,
        )[1],
        _http_get(f"{base}/info/refs?service=git-upload-pack", "Bearer wrong")[1],
        _http_get(f"{base}/info/refs?service=git-upload-pack", None)[1],
    ]

    broker.process.send_signal(signal.SIGTERM)
    broker.process.wait(timeout=15)
    texts = {
        "push output": pushed.stderr + pushed.stdout,
        "denied push output": denied.stderr + denied.stdout,
        "audit log": broker.audit_log.read_text(),
        "broker stderr": broker.stderr_file.read_text(),
        "packet trace": Path(agent_env["GIT_TRACE_PACKET"]).read_text(errors="replace"),
    }
    for log_file in broker.state_dir.rglob("*.log"):
        texts[str(log_file)] = log_file.read_text(errors="replace")
    for index, body in enumerate(bodies):
        texts[f"response body {index}"] = body.decode(errors="replace")

    assert "listening on" in texts["broker stderr"]
    assert "stopped" in texts["broker stderr"]
    for name, text in texts.items():
        assert UPSTREAM_TOKEN not in text, f"token found in {name}"
    assert UPSTREAM_TOKEN not in agent_env.values()
    assert all(
        UPSTREAM_TOKEN not in p.read_text(errors="replace")
        for p in (tmp_path / "agent-home").rglob("*")
        if p.is_file()
    )


def test_audit_chain_verifies_after_session(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    work = _clone(broker, upstream, agent_env, tmp_path / "work")
    _commit(work, agent_env, "feature.txt", "one\n")
    run_git("push", "--quiet", "origin", f"HEAD:{TARGET_REF}", cwd=work, env=agent_env)
    _git(agent_env, "push", "origin", "HEAD:refs/heads/main", cwd=work)

    result = verify_chain(broker.audit_log)
    entries = read_entries(broker.audit_log)

    assert result.ok, result.reason
    assert result.lines == len(entries)
    kinds = {entry["kind"] for entry in entries}
    assert kinds == {"git-fetch", "git-push"}
    assert {entry["session"] for entry in entries} == {"e2e"}
    denied_main = [e for e in entries if e.get("ref") == "refs/heads/main"]
    assert [e["decision"] for e in denied_main] == ["deny"]


async def test_force_push_allowed_by_scope(tmp_path: Path, upstream: GitHttpServer) -> None:
    """The in-process broker (as the gateway starts it) lets a force push through when the
    scope sets allowForcePush."""
    scope_file = tmp_path / "scope.yaml"
    _write_scope(scope_file, upstream, allow_force_push=True)
    credential = "in-process-session-credential"
    audit_log = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_log, "in-process", secrets=[UPSTREAM_TOKEN, credential])
    config = BrokerConfig(
        scope=load_scope(scope_file),
        session="in-process",
        session_credential=credential,
        upstream_token=UPSTREAM_TOKEN,
        audit_log=audit,
        state_dir=tmp_path / "state",
    )
    running = await start_broker(config)
    try:
        env = isolated_git_env(tmp_path)
        env["GIT_CONFIG_COUNT"] = "1"
        env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
        env["GIT_CONFIG_VALUE_0"] = f"Authorization: Bearer {credential}"
        url = f"{running.url}/git/127.0.0.1:{upstream.port}/{REPO_NAME}"
        work = tmp_path / "work"

        def first_push() -> str:
            run_git("clone", "--quiet", url, str(work), env=env)
            oid = _commit(work, env, "feature.txt", "one\n")
            run_git("push", "--quiet", "origin", f"HEAD:{TARGET_REF}", cwd=work, env=env)
            return oid

        def force_push() -> tuple[str, subprocess.CompletedProcess[str]]:
            run_git("reset", "--quiet", "--hard", "HEAD~1", cwd=work, env=env)
            oid = _commit(work, env, "rewritten.txt", "rewritten\n")
            return oid, _git(env, "push", "--force", "origin", f"HEAD:{TARGET_REF}", cwd=work)

        first = await asyncio.to_thread(first_push)
        rewritten, completed = await asyncio.to_thread(force_push)
    finally:
        await running.stop()
        audit.close()

    assert completed.returncode == 0, completed.stderr
    assert "(forced update)" in completed.stderr
    assert list_refs(_upstream_repo(upstream))[TARGET_REF] == rewritten
    assert rewritten != first
    forced = [
        e
        for e in read_entries(audit_log)
        if e.get("new_oid") == rewritten and "upstream_status" not in e
    ]
    assert [e["decision"] for e in forced] == ["allow"]
    assert "force push allowed by the scope" in str(forced[0]["reason"])


def test_large_push_streams_in_chunks(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    """A push over http.postBuffer (1 MiB) goes out chunked after a probe request."""
    work = _clone(broker, upstream, agent_env, tmp_path / "work")
    (work / "large.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    run_git("add", "large.bin", cwd=work, env=agent_env)
    run_git("commit", "--quiet", "-m", "Add a large file", cwd=work, env=agent_env)
    new_oid = run_git("rev-parse", "HEAD", cwd=work, env=agent_env).stdout.strip()
    refs_before = list_refs(_upstream_repo(upstream))
    upstream.clear()

    denied = _git(agent_env, "push", "origin", "HEAD:refs/heads/main", cwd=work)

    assert denied.returncode != 0
    assert "! [remote rejected]" in denied.stderr, denied.stderr
    assert upstream.receive_pack_posts() == []
    assert list_refs(_upstream_repo(upstream)) == refs_before

    allowed = _git(agent_env, "push", "origin", f"HEAD:{TARGET_REF}", cwd=work)

    assert allowed.returncode == 0, allowed.stderr
    assert list_refs(_upstream_repo(upstream))[TARGET_REF] == new_oid
    [forwarded] = upstream.receive_pack_posts()
    assert forwarded.body_bytes > 3 * 1024 * 1024
    assert "receive-pack probe" in broker.stderr_file.read_text()


def test_upstream_hook_rejection_is_audited(
    tmp_path: Path, upstream: GitHttpServer, broker: Broker, agent_env: dict[str, str]
) -> None:
    hook = _upstream_repo(upstream) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    work = _clone(broker, upstream, agent_env, tmp_path / "work")
    _commit(work, agent_env, "feature.txt", "one\n")

    completed = _git(agent_env, "push", "origin", f"HEAD:{TARGET_REF}", cwd=work)

    assert completed.returncode != 0
    assert "remote: branch is frozen" in completed.stderr, completed.stderr
    assert "pre-receive hook declined" in completed.stderr, completed.stderr
    assert TARGET_REF not in list_refs(_upstream_repo(upstream))
    outcomes = [
        e
        for e in read_entries(broker.audit_log)
        if e.get("ref") == TARGET_REF and "upstream_status" in e
    ]
    assert [e["reason"] for e in outcomes] == [
        "upstream rejected the update: pre-receive hook declined"
    ]
