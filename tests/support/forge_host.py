"""A fake forge host for `run` e2e tests: REST API and git upstream on podman's bridge address.

`forge_host(kind, root, image)` starts a sleeper container, so that the host's address
on podman's default bridge exists. It binds a `FakeForge` (the API) and a
`GitHttpServer` (the git side) to that address only, seeds the forge, and writes a
config file that declares the host with its kind and `api_url`.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.fake_forge import FakeForge, ForgeKind, fake_forge_in_thread
from support.git_server import GitHttpServer, create_bare_repo, run_git

REPO_PATHS: dict[ForgeKind, str] = {
    "github": "octo/hello",
    "gitlab": "group/sub/hello",
    "forgejo": "octo/hello",
}
API_SUFFIX: dict[ForgeKind, str] = {"github": "", "gitlab": "/api/v4", "forgejo": "/api/v1"}
# The variable that `forge.tokens.discover_token` reads on the host for a forge of each
# kind on a host other than github.com.
TOKEN_VARIABLES: dict[ForgeKind, str] = {
    "github": "GH_ENTERPRISE_TOKEN",
    "gitlab": "GITLAB_TOKEN",
    "forgejo": "FORGEJO_TOKEN",
}
# Every variable that may contain a forge token. None of them may reach the agent.
FORGE_TOKEN_VARIABLES = (
    "DEVAIPOD_FORGE_TOKEN", "GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN", "GITLAB_TOKEN", "FORGEJO_TOKEN", "GITEA_TOKEN",
)  # fmt: skip
# The prefix of these tests' forge tokens. The scripted agent searches for it followed by
# 32 hex digits, so it finds a token without knowing its value.
TOKEN_PREFIX = "e2eforgetoken"
SLEEPER_PREFIX = "devaipod-e2e-bridge-"


def new_forge_token() -> str:
    """Return a fresh forge token: TOKEN_PREFIX and 32 hex digits."""
    return TOKEN_PREFIX + secrets.token_hex(16)


def bridge_address(env: dict[str, str] | None = None) -> str:
    """Return the host's address on podman's default bridge (its first subnet's gateway)."""
    completed = subprocess.run(
        ["podman", "network", "inspect", "podman"], capture_output=True, text=True, check=True,
        env=env if env is not None else dict(os.environ),
    )  # fmt: skip
    networks = json.loads(completed.stdout)
    return str(networks[0]["subnets"][0]["gateway"])


@contextmanager
def bridge_sleeper(image: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a sleeping container on the default bridge and yield the bridge's host address.

    The address exists on the host only while some container is attached to the bridge.
    """
    name = SLEEPER_PREFIX + secrets.token_hex(4)
    engine_env = env if env is not None else dict(os.environ)
    subprocess.run(
        ["podman", "run", "-d", "--rm", "--init", "--name", name, image, "sleep", "infinity"],
        capture_output=True, text=True, check=True, env=engine_env,
    )  # fmt: skip
    try:
        address = bridge_address(engine_env)
        _wait_for_address(address)
        _pin_bridge_mac(engine_env)
        yield address
    finally:
        subprocess.run(["podman", "rm", "--force", "--time=0", name], capture_output=True,
                       check=False, env=engine_env)


def _pin_bridge_mac(env: dict[str, str]) -> None:
    """Set the bridge's current MAC address as its own, so that it stops changing.

    Until its address is set by hand, a Linux bridge takes the lowest MAC address of its
    ports, so it changes as containers join. Containers that cached the old address then
    cannot reach the host for seconds, which made these tests fail now and then. The
    bridge goes away with its last container, and the setting with it.
    """
    completed = subprocess.run(
        ["podman", "network", "inspect", "--format", "{{.NetworkInterface}}", "podman"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    interface = completed.stdout.strip()
    mac_file = Path("/sys/class/net") / interface / "address"
    if completed.returncode != 0 or not interface or not mac_file.is_file():
        return
    # Without root this fails, and the scripted agent's retries are what is left.
    subprocess.run(
        ["ip", "link", "set", "dev", interface, "address", mac_file.read_text().strip()],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _wait_for_address(address: str) -> None:
    """Wait until `address` is assigned on the host (podman adds it as the container starts)."""
    deadline = time.monotonic() + 10
    while True:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((address, 0))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            probe.close()


@dataclass
class ForgeHost:
    """A fake forge of `kind` and its git upstream, seeded for a `run` session on `issue`."""

    kind: ForgeKind
    address: str
    forge: FakeForge
    git: GitHttpServer
    repo_path: str
    bare_repo: Path
    config_file: Path
    issue: int
    other_issue: int
    foreign_comment: int
    pull_request: int
    foreign_pull_comment: int

    @property
    def token(self) -> str:
        """The forge token (the API and the git upstream accept the same one)."""
        return self.forge.token

    @property
    def host_key(self) -> str:
        """The `HOST:PORT` of the forge's web URLs, as in the config file."""
        return f"{self.address}:{self.git.port}"

    @property
    def web_url(self) -> str:
        """The root of the forge's web URLs; the git upstream serves clones under it."""
        return self.git.base_url

    @property
    def api_url(self) -> str:
        """The forge's REST API base URL, as the config file declares it."""
        return self.forge.api_url

    @property
    def project_id(self) -> int:
        """The repository's numeric id (GitLab's project id)."""
        return self.forge.repos[self.repo_path.lower()].id

    def issue_url(self, number: int | None = None) -> str:
        """Return the web URL of issue `number` (the session's issue unless given)."""
        section = "-/issues" if self.kind == "gitlab" else "issues"
        return f"{self.web_url}/{self.repo_path}/{section}/{number or self.issue}"

    def pull_request_url(self, number: int | None = None) -> str:
        """Return the web URL of pull (merge) request `number` (the seeded one unless given)."""
        section = {"github": "pull", "gitlab": "-/merge_requests", "forgejo": "pulls"}[self.kind]
        return f"{self.web_url}/{self.repo_path}/{section}/{number or self.pull_request}"

    def host_env(self) -> dict[str, str]:
        """Return the variables that give `run` this forge's token and config file."""
        env = {TOKEN_VARIABLES[self.kind]: self.token, "DEVAIPOD_CONFIG": str(self.config_file)}
        if self.kind == "gitlab":
            # GITLAB_TOKEN is for gitlab.com unless GITLAB_HOST names another host.
            env["GITLAB_HOST"] = f"http://{self.host_key}"
        return env

    def run_env(self, podman_env: dict[str, str], test_image: str, state_dir: Path
                ) -> dict[str, str]:
        """Return the environment for `devaipod run`: this forge's token and config, no other
        token, state in `state_dir`, and `test_image` as the gateway's base image."""
        env = {name: value for name, value in podman_env.items()
               if name not in FORGE_TOKEN_VARIABLES}
        env.update(self.host_env())
        env.update({
            "DEVAIPOD_STATE_DIR": str(state_dir),
            "DEVAIPOD_GATEWAY_BASE_IMAGE": test_image,
            "DEVAIPOD_TEST_IMAGE": test_image,
        })
        return env


def forge_config_text(kind: ForgeKind, host_key: str, api_url: str) -> str:
    """Return a config file declaring `host_key` as a forge of `kind` whose API is at `api_url`."""
    return f'[forges."{host_key}"]\nkind = "{kind}"\napi_url = "{api_url}"\n'


@contextmanager
def forge_host(
    kind: ForgeKind,
    root: Path,
    image: str,
    *,
    files: dict[str, bytes | str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[ForgeHost]:
    """Serve a seeded fake forge of `kind` with its git upstream on podman's bridge address.

    `root` receives the bare repositories and the config file, and `files` are the
    repository's files on its default branch `main`. The forge gets the session's
    issue, another issue, a comment by another user on the session's issue, and a
    pull request by another user from branch `feature`, with a comment by that user.
    """
    token = new_forge_token()
    repo_path = REPO_PATHS[kind]
    repos = root / "repos"
    repos.mkdir(parents=True, exist_ok=True)
    bare = create_bare_repo(repos, f"{repo_path}.git", files, branch="main")
    create_feature_branch(bare)

    with bridge_sleeper(image, env) as address:
        git = GitHttpServer(root=repos, token=token, bind_host=address).start()
        try:
            with fake_forge_in_thread(kind, token=token, bind_host=address,
                                      web_root=git.base_url) as forge:
                forge.add_repo(repo_path, default_branch="main")
                issue = forge.add_issue(repo_path, "Greeting is missing",
                                        "The README should greet the reader.",
                                        labels=["bug"])
                other = forge.add_issue(repo_path, "Unrelated roadmap", "Not for the agent.")
                foreign = forge.add_comment(repo_path, issue.number, "Please fix this soon",
                                            author="alice")
                pull = forge.add_pull_request(repo_path, "Human feature", head="feature",
                                              base="main")
                foreign_pull = forge.add_comment(repo_path, pull.number, "Looks good",
                                                 author="alice",
                                                 on_merge_request=kind == "gitlab")
                config_file = root / "config.toml"
                config_file.write_text(forge_config_text(kind, f"{address}:{git.port}",
                                                         forge.api_url))
                yield ForgeHost(
                    kind=kind, address=address, forge=forge, git=git, repo_path=repo_path,
                    bare_repo=bare, config_file=config_file, issue=issue.number,
                    other_issue=other.number, foreign_comment=foreign.id,
                    pull_request=pull.number, foreign_pull_comment=foreign_pull.id,
                )
        finally:
            git.stop()


def create_feature_branch(bare: Path) -> None:
    """Add branch `feature` (the seeded pull request's head) pointing at `main`."""
    run_git("branch", "feature", "main", cwd=bare)


def commit_files(bare: Path, files: dict[str, bytes | str], message: str,
                 branch: str = "main") -> str:
    """Commit `files` on top of `branch` of the bare repository and return the new commit id."""
    with tempfile.TemporaryDirectory(prefix="devaipod-seed-") as work_dir:
        work = Path(work_dir)
        run_git("clone", "--quiet", "--branch", branch, str(bare), str(work))
        for relative, content in files.items():
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                path.write_bytes(content)
        run_git("add", "--all", cwd=work)
        run_git("commit", "--quiet", "-m", message, cwd=work)
        run_git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return run_git("rev-parse", "HEAD", cwd=work).stdout.strip()


AGENT_SCRIPT = Path(__file__).with_name("scripted_agent.py")
AGENT_PARAMS = "devaipod-agent.json"
AGENT_RESULT = ".git/devaipod-agent-result.json"


def scripted_agent_files(host: ForgeHost, *, target_branch: str, pr_transport: str,
                         scan_files: bool = True, on_pull_request: bool = False
                         ) -> dict[str, bytes | str]:
    """Return the files that put the scripted agent and its parameters into the repository.

    With `on_pull_request`, the agent works on the seeded pull request instead of the
    issue, and the issue is the one it must not touch.
    """
    item = host.pull_request if on_pull_request else host.issue
    params = {
        "kind": host.kind,
        "repo_path": host.repo_path,
        "issue": item,
        "item_section": "merge_requests" if on_pull_request and host.kind == "gitlab"
        else "issues",
        "other_issue": host.issue if on_pull_request else host.other_issue,
        "foreign_comment": host.foreign_pull_comment if on_pull_request
        else host.foreign_comment,
        "default_branch": "main",
        "target_branch": target_branch,
        "pr_transport": pr_transport,
        "direct_urls": [host.api_url + ("/" if host.kind == "github" else ""),
                        f"{host.web_url}/{host.repo_path}.git/info/refs"],
        "token_prefix": TOKEN_PREFIX,
        "scan_files": scan_files,
        "result_file": AGENT_RESULT,
    }
    return {"agent.py": AGENT_SCRIPT.read_text(), AGENT_PARAMS: json.dumps(params, indent=1)}
