"""Unit tests of `run`: target resolution, the host clone, the wait and the printed result."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devaipod.config import UserConfig, parse_config
from devaipod.errors import UserError
from devaipod.forge.clients import ForgeContext, IssueDetails, RepositoryInfo
from devaipod.forge.tokens import ForgeToken
from devaipod.forge.urls import parse_forge_url
from devaipod.runtime.engine import ContainerInfo, ExecResult
from devaipod.runtime.plan import LABEL_ROLE, LABEL_SESSION, LABEL_TMUX
from devaipod.scope.derive import derive_scope
from devaipod.session import run
from devaipod.session.delivery import Delivery, Push
from support.git_server import GitHttpServer, create_bare_repo, isolated_git_env, run_git

TOKEN = "host-forge-token-0123456789abcdef"
SESSION = "devaipod-hello-issue-7-abc123"


def _config(host: str, kind: str = "forgejo") -> UserConfig:
    return parse_config(f'[forges."{host}"]\nkind = "{kind}"\n', "test")


def _issue(*, pull: bool = False, head: str | None = None, same_repo: bool | None = None
           ) -> IssueDetails:
    return IssueDetails(
        number=7, title="Greeting is missing", body="Add it.", labels=[], state="open",
        author="alice", url="", is_pull_request=pull, head_branch=head, base_branch="main",
        head_in_same_repository=same_repo,
    )  # fmt: skip


@pytest.fixture
def no_tokens(tmp_path: Path) -> dict[str, str]:
    """An environment with no forge token anywhere (tea's config directory is empty)."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


def _fake_context(
    monkeypatch: pytest.MonkeyPatch, item: IssueDetails | None, default_branch: str = "trunk"
) -> None:
    async def fetch(*args: Any, **kwargs: Any) -> ForgeContext:
        return ForgeContext(RepositoryInfo(id=101, default_branch=default_branch), item, "$X")

    monkeypatch.setattr(run, "fetch_forge_context", fetch)


def test_resolve_without_token_names_variables(no_tokens: dict[str, str]) -> None:
    request = run.RunRequest(url="http://forge.test:3000/octo/hello/issues/7")

    with pytest.raises(UserError) as raised:
        run.resolve_target(request, _config("forge.test:3000"), no_tokens, lambda _: None)

    assert "no forgejo token found for forge.test:3000" in raised.value.message
    assert "FORGEJO_TOKEN or GITEA_TOKEN" in (raised.value.fix or "")
    assert "token_secret" in (raised.value.fix or "")


def test_resolve_repository_url_needs_task(no_tokens: dict[str, str]) -> None:
    request = run.RunRequest(url="http://forge.test:3000/octo/hello")

    with pytest.raises(UserError, match="gives the agent no task"):
        run.resolve_target(request, _config("forge.test:3000"), no_tokens, lambda _: None)


def test_resolve_issue_fills_base_branch(
    monkeypatch: pytest.MonkeyPatch, no_tokens: dict[str, str]
) -> None:
    _fake_context(monkeypatch, _issue())
    env = {**no_tokens, "FORGEJO_TOKEN": TOKEN}
    request = run.RunRequest(url="http://forge.test:3000/octo/hello/issues/7")

    target = run.resolve_target(request, _config("forge.test:3000"), env, lambda _: None)

    assert target.branch == "devaipod/issue-7"
    assert target.base_branch == "trunk"
    output = target.scope.repos[0].output
    assert output is not None
    assert output.baseBranch == "trunk"
    assert output.createPullRequest is True
    assert target.token.value == TOKEN
    assert target.scope.attachedContexts[0].url == "http://forge.test:3000/octo/hello/issues/7"


def test_resolve_same_repo_pull_pushes_head(
    monkeypatch: pytest.MonkeyPatch, no_tokens: dict[str, str]
) -> None:
    _fake_context(monkeypatch, _issue(pull=True, head="feature", same_repo=True))
    env = {**no_tokens, "GITEA_TOKEN": TOKEN}
    request = run.RunRequest(url="http://forge.test:3000/octo/hello/pulls/7")

    target = run.resolve_target(request, _config("forge.test:3000"), env, lambda _: None)

    assert target.branch == "feature"
    output = target.scope.repos[0].output
    assert output is not None
    assert output.createPullRequest is False


@pytest.mark.parametrize("url", ["git@forge.test:octo/hello.git",
                                 "ssh://git@forge.test:2222/octo/hello.git"])
def test_resolve_ssh_remote_uses_https(
    monkeypatch: pytest.MonkeyPatch, no_tokens: dict[str, str], url: str
) -> None:
    _fake_context(monkeypatch, None)
    env = {**no_tokens, "FORGEJO_TOKEN": TOKEN}
    request = run.RunRequest(url=url, task="update the README")

    target = run.resolve_target(request, _config("forge.test"), env, lambda _: None)

    assert target.forge_url.clone_url == "https://forge.test/octo/hello.git"
    assert target.scope.repos[0].input.url == "https://forge.test/octo/hello.git"
    assert target.branch == "devaipod/work"
    assert target.scope.attachedContexts == []


def test_resolve_scope_file_other_repo_rejected(
    monkeypatch: pytest.MonkeyPatch, no_tokens: dict[str, str], tmp_path: Path
) -> None:
    _fake_context(monkeypatch, _issue())
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(
        "repos:\n- input: {url: 'https://forge.test:3000/octo/other.git'}\n"
        "  output: {targetBranch: mine}\n"
    )
    env = {**no_tokens, "FORGEJO_TOKEN": TOKEN}
    request = run.RunRequest(url="https://forge.test:3000/octo/hello/issues/7",
                             scope_file=scope_file)

    with pytest.raises(UserError, match="does not declare the repository"):
        run.resolve_target(request, _config("forge.test:3000"), env, lambda _: None)


def test_resolve_scope_file_sets_branch(
    monkeypatch: pytest.MonkeyPatch, no_tokens: dict[str, str], tmp_path: Path
) -> None:
    _fake_context(monkeypatch, _issue())
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(
        "repos:\n- input: {url: 'https://forge.test:3000/octo/hello.git'}\n"
        "  output: {targetBranch: agent/work, baseBranch: release}\n"
    )
    env = {**no_tokens, "FORGEJO_TOKEN": TOKEN}
    request = run.RunRequest(url="https://forge.test:3000/octo/hello/issues/7",
                             scope_file=scope_file)

    target = run.resolve_target(request, _config("forge.test:3000"), env, lambda _: None)

    assert target.branch == "agent/work"
    assert target.base_branch == "release"
    assert target.scope.attachedContexts == []


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[GitHttpServer, Path]]:
    repos = tmp_path / "repos"
    repos.mkdir()
    bare = create_bare_repo(repos, "octo/hello.git", {"README.md": "hello\n"}, branch="main")
    with GitHttpServer(root=repos, token=TOKEN) as server:
        yield server, bare


def _target(server: GitHttpServer, item: IssueDetails | None, branch: str,
            url_tail: str = "issues/7") -> run.RunTarget:
    host = f"127.0.0.1:{server.port}"
    config = _config(host)
    forge_url = parse_forge_url(f"http://{host}/octo/hello/{url_tail}", config)
    settings = config.forge_settings(host)
    assert settings is not None
    return run.RunTarget(
        forge_url=forge_url,
        settings=settings,
        token=ForgeToken(TOKEN, "$FORGEJO_TOKEN"),
        context=ForgeContext(RepositoryInfo(101, "main"), item, "$FORGEJO_TOKEN"),
        scope=derive_scope(forge_url),
        branch=branch,
        base_branch="main",
    )


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=clone, env=isolated_git_env(), capture_output=True, text=True
    ).stdout.strip()


def test_clone_keeps_token_out_of_repo(
    upstream: tuple[GitHttpServer, Path], tmp_path: Path
) -> None:
    server, bare = upstream
    target = _target(server, _issue(), "devaipod/issue-7")

    cloned = run.clone_target(target, tmp_path / "work", lambda _: None)

    assert cloned.branch == "devaipod/issue-7"
    assert _git(cloned.path, "symbolic-ref", "--short", "HEAD") == "devaipod/issue-7"
    assert cloned.head == run_git("rev-parse", "main", cwd=bare).stdout.strip()
    assert cloned.head in cloned.base_tips
    git_dir = cloned.path / ".git"
    assert all(TOKEN not in path.read_text(errors="replace")
               for path in git_dir.rglob("*") if path.is_file())
    assert all(request.authorized for request in server.recorded())


def test_clone_continues_existing_remote_branch(
    upstream: tuple[GitHttpServer, Path], tmp_path: Path
) -> None:
    server, bare = upstream
    seed = tmp_path / "seed"
    run_git("clone", "--quiet", str(bare), str(seed))
    (seed / "NOTE").write_text("earlier work\n")
    run_git("add", "NOTE", cwd=seed)
    run_git("commit", "--quiet", "-m", "Earlier work", cwd=seed)
    run_git("push", "--quiet", "origin", "HEAD:refs/heads/devaipod/issue-7", cwd=seed)
    earlier = run_git("rev-parse", "HEAD", cwd=seed).stdout.strip()

    cloned = run.clone_target(_target(server, _issue(), "devaipod/issue-7"),
                              tmp_path / "work", lambda _: None)

    assert cloned.head == earlier


def test_clone_fork_pull_starts_at_head(
    upstream: tuple[GitHttpServer, Path], tmp_path: Path
) -> None:
    server, bare = upstream
    seed = tmp_path / "seed"
    run_git("clone", "--quiet", str(bare), str(seed))
    (seed / "FORK").write_text("from a fork\n")
    run_git("add", "FORK", cwd=seed)
    run_git("commit", "--quiet", "-m", "Fork work", cwd=seed)
    run_git("push", "--quiet", "origin", "HEAD:refs/pull/7/head", cwd=seed)
    fork_head = run_git("rev-parse", "HEAD", cwd=seed).stdout.strip()
    item = _issue(pull=True, head="fix", same_repo=False)

    cloned = run.clone_target(_target(server, item, "devaipod/pr-7", "pulls/7"),
                              tmp_path / "work", lambda _: None)

    assert cloned.head == fork_head
    assert _git(cloned.path, "symbolic-ref", "--short", "HEAD") == "devaipod/pr-7"


def test_clone_wrong_token_is_user_error(
    upstream: tuple[GitHttpServer, Path], tmp_path: Path
) -> None:
    server, _ = upstream
    target = _target(server, _issue(), "devaipod/issue-7")
    target = run.RunTarget(**{**target.__dict__, "token": ForgeToken("wrong", "$X")})

    with pytest.raises(UserError, match="cannot clone") as raised:
        run.clone_target(target, tmp_path / "work", lambda _: None)

    assert "wrong" not in raised.value.message


class _AgentEngine:
    """An engine whose agent finishes after `polls` polls (or never), for `wait_for_agent`."""

    def __init__(self, *, tmux: bool, polls: int | None, exit_code: int = 0) -> None:
        self.tmux = tmux
        self.polls = polls
        self.exit_code = exit_code
        self.calls = 0
        self.stopped: list[str] = []

    def list_containers(self, labels: dict[str, str | None]) -> list[ContainerInfo]:
        assert labels == {LABEL_SESSION: SESSION, LABEL_ROLE: "agent"}
        self.calls += 1
        done = self.polls is not None and self.calls > self.polls
        running = self.tmux or not done
        return [ContainerInfo(
            id="1", name=f"{SESSION}-agent", image="img",
            state="running" if running else "exited",
            labels={LABEL_TMUX: "1" if self.tmux else "0"},
            exit_code=None if running else self.exit_code,
        )]  # fmt: skip

    def exec_in_container(self, name: str, command: list[str], **kwargs: Any) -> ExecResult:
        done = self.polls is not None and self.calls > self.polls
        if done:
            return ExecResult(command, 0, f"{self.exit_code}\n", "")
        return ExecResult(command, 1, "", "No such file")

    def stop_container(self, name: str, timeout_seconds: int) -> None:
        self.stopped.append(name)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("tmux", [True, False])
def test_wait_returns_agent_exit_code(tmux: bool) -> None:
    engine = _AgentEngine(tmux=tmux, polls=3, exit_code=4)
    clock = _Clock()

    result = run.wait_for_agent(engine, SESSION, 60, clock=clock,  # type: ignore[arg-type]
                                sleep=clock.sleep)

    assert result == (4, True)
    assert engine.stopped == []


def test_wait_timeout_stops_agent() -> None:
    engine = _AgentEngine(tmux=True, polls=None)
    clock = _Clock()
    messages: list[str] = []

    result = run.wait_for_agent(engine, SESSION, 10, progress=messages.append,  # type: ignore[arg-type]
                                clock=clock, sleep=clock.sleep)

    assert result == (None, False)
    assert engine.stopped == [f"{SESSION}-agent"]
    assert "did not finish within 10 s" in messages[-1]


def _result(tmp_path: Path, **changes: Any) -> run.RunResult:
    fields: dict[str, Any] = {
        "session": SESSION,
        "target": _plain_target(),
        "agent_exit_code": 0,
        "finished": True,
        "timed_out": False,
        "delivery": Delivery(pushes=[Push("refs/heads/devaipod/issue-7", "c" * 40)], denied=2),
        "audit_log": tmp_path / "audit.jsonl",
    }
    return run.RunResult(**{**fields, **changes})


def _plain_target() -> run.RunTarget:
    config = _config("forge.test:3000", "gitlab")
    forge_url = parse_forge_url("https://forge.test:3000/g/sub/hello/-/issues/7", config)
    settings = config.forge_settings("forge.test:3000")
    assert settings is not None
    return run.RunTarget(forge_url, settings, ForgeToken(TOKEN, "$GITLAB_TOKEN"),
                         ForgeContext(RepositoryInfo(5, "main"), _issue(), "$GITLAB_TOKEN"),
                         derive_scope(forge_url), "devaipod/issue-7", "main")


def test_result_json_has_agreed_keys(tmp_path: Path) -> None:
    data = _result(tmp_path).to_json()

    assert list(data) == [
        "session", "url", "forge", "repository", "branch", "base_branch", "agent_exit_code",
        "pushes", "pull_requests", "comments", "denied", "audit_log",
    ]
    assert data["url"] == "https://forge.test:3000/g/sub/hello/-/issues/7"
    assert data["forge"] == "gitlab"
    assert data["repository"] == "g/sub/hello"
    assert data["pushes"] == [{"ref": "refs/heads/devaipod/issue-7", "new_oid": "c" * 40}]
    assert data["denied"] == 2
    assert TOKEN not in str(data)


def test_describe_names_push_and_denials(tmp_path: Path) -> None:
    lines = run.describe(_result(tmp_path))

    assert "the agent exited with status 0" in lines
    assert f"pushed refs/heads/devaipod/issue-7 at {'c' * 12}" in lines
    assert any("2 request(s) denied" in line for line in lines)


def test_describe_timeout_says_stopped(tmp_path: Path) -> None:
    lines = run.describe(_result(tmp_path, finished=False, timed_out=True, agent_exit_code=None))

    assert "the agent timed out, so the session was stopped" in lines


@pytest.mark.parametrize(
    ("agent", "expected"),
    [("opencode", True), ("claude", True), ("aider", False), ("sh -c 'make test'", False)],
)
def test_agent_mcp_client_by_flag(tmp_path: Path, agent: str, expected: bool) -> None:
    request = run.RunRequest(url="https://codeberg.org/o/r/issues/1", agent=agent)

    assert run._agent_has_mcp_client(request, tmp_path, {}) is expected


def test_agent_mcp_client_from_devcontainer(tmp_path: Path) -> None:
    (tmp_path / ".devcontainer").mkdir()
    (tmp_path / ".devcontainer" / "devcontainer.json").write_text(
        '{"image": "localhost/x", "customizations": {"devaipod": {"agent": "aider"}}}'
    )
    request = run.RunRequest(url="https://codeberg.org/o/r/issues/1")

    assert run._agent_has_mcp_client(request, tmp_path, {}) is False


def test_base_tree_ignores_branch_devcontainer(
    upstream: tuple[GitHttpServer, Path], tmp_path: Path
) -> None:
    server, bare = upstream
    seed = tmp_path / "seed"
    run_git("clone", "--quiet", str(bare), str(seed))
    (seed / ".devcontainer").mkdir()
    (seed / ".devcontainer" / "devcontainer.json").write_text('{"image": "branch-image"}')
    run_git("add", ".devcontainer", cwd=seed)
    run_git("commit", "--quiet", "-m", "Branch config", cwd=seed)
    run_git("push", "--quiet", "origin", "HEAD:refs/heads/devaipod/issue-7", cwd=seed)
    cloned = run.clone_target(_target(server, _issue(), "devaipod/issue-7"),
                              tmp_path / "work", lambda _: None)

    trusted = run.export_base_tree(cloned.path, "main", tmp_path / "base-tree")

    assert (cloned.path / ".devcontainer" / "devcontainer.json").is_file()
    assert not (trusted / ".devcontainer").exists()
    assert (trusted / "README.md").read_text() == "hello\n"
    assert not (tmp_path / "base-tree.tar").exists()


def test_base_tree_missing_branch_is_error(
    upstream: tuple[GitHttpServer, Path], tmp_path: Path
) -> None:
    server, _ = upstream
    cloned = run.clone_target(_target(server, _issue(), "devaipod/issue-7"),
                              tmp_path / "work", lambda _: None)

    with pytest.raises(UserError, match="cannot read branch 'nope'"):
        run.export_base_tree(cloned.path, "nope", tmp_path / "base-tree")
