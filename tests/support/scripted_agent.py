"""A scripted agent for `run` e2e tests: delivers through the broker, then tries what it must not.

Runs inside the agent container with the standard library only, and reads its
parameters from `devaipod-agent.json` in the working directory. It writes the raw outcome
of every step (HTTP status, git exit code, MCP error flag) as JSON to the parameters'
`result_file`, and the test decides what each outcome means.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PARAMS_FILE = "devaipod-agent.json"
RESULT_MARKER = "DEVAIPOD-SCRIPTED-AGENT-RESULT "
MCP_PROTOCOL_VERSION = "2025-06-18"
# Variables that may contain a forge token. The agent must see none of them.
TOKEN_VARIABLES = (
    "DEVAIPOD_FORGE_TOKEN", "GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN", "GITLAB_TOKEN", "FORGEJO_TOKEN", "GITEA_TOKEN",
)  # fmt: skip
TIMEOUT_SECONDS = 20.0
# Attempts per step when the broker reports that it could not reach the forge. Podman's
# bridge used to change its MAC address as containers joined, and a container that had
# cached the old one lost the host for seconds (once more than a minute). The forge
# fixture now pins the address; the retries cover stalls that remain.
ATTEMPTS = 3
# What the broker sends back when its request to the forge failed (HTTP 502).
UPSTREAM_FAILURES = ("upstream request failed", "forge request failed", "HTTP 502")

Json = dict[str, Any]
# An opener without proxies: requests to the broker on 127.0.0.1 skip the egress proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Agent:
    """The steps of the script and their recorded outcomes."""

    def __init__(self, params: Json, env: dict[str, str]) -> None:
        self.params = params
        self.kind: str = params["kind"]
        self.api = env.get("DEVAIPOD_FORGE_API_URL", "")
        self.mcp_url = env.get("DEVAIPOD_MCP_URL", "")
        self.credential = env.get("DEVAIPOD_BROKER_TOKEN", "")
        self.env = env
        self.steps: list[Json] = []
        self.mcp_session: str | None = None
        self.mcp_version = MCP_PROTOCOL_VERSION
        self.mcp_ids = 0

    # --- recording ------------------------------------------------------------------

    def record(self, name: str, **outcome: Any) -> Json:
        """Append one step's outcome and echo it to stdout."""
        step = {"step": name, **outcome}
        self.steps.append(step)
        print(f"step {name}: {json.dumps(outcome)[:300]}", flush=True)
        return step

    # --- git ------------------------------------------------------------------------

    def git(self, name: str, *args: str) -> Json:
        """Run git and record its exit code, the end of its output and the attempts made."""
        attempts = 0
        while True:
            attempts += 1
            completed = subprocess.run(
                ["git", *args], capture_output=True, text=True, check=False,
                env={**self.env, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"},
            )  # fmt: skip
            output = (completed.stdout + completed.stderr)[-1500:]
            if attempts == ATTEMPTS or not is_upstream_failure(output):
                break
        return self.record(name, transport="git", exit_code=completed.returncode,
                           output=output, attempts=attempts)

    def commit(self) -> str:
        """Commit a change to the README and return the commit id."""
        for key, value in (("user.name", "scripted test agent"),
                           ("user.email", "agent@devaipod.invalid"), ("color.ui", "never")):
            subprocess.run(["git", "config", key, value], check=True)
        with open("README.md", "a", encoding="utf-8") as readme:
            readme.write("\nHello, reader.\n")
        subprocess.run(["git", "add", "README.md"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", "Greet the reader"], check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        self.record("commit", transport="git", exit_code=0, oid=head)
        return head

    # --- REST through the broker ----------------------------------------------------

    def rest(self, name: str, method: str, path: str, body: object = None,
             headers: dict[str, str] | None = None, *, url: str | None = None) -> Json:
        """Send one REST request through the broker's API gate and record the status."""
        all_headers = {"Authorization": f"Bearer {self.credential}",
                       "Accept": "application/json"}
        all_headers.update(headers or {})
        attempts = 0
        while True:
            attempts += 1
            status, payload = http(method, url or self.api + path, body, all_headers)
            if attempts == ATTEMPTS or status != 502:
                break
        data = parse_json(payload)
        outcome: Json = {"transport": "rest", "method": method, "path": path, "status": status,
                         "message": data.get("message") if isinstance(data, dict) else None,
                         "attempts": attempts}
        if isinstance(data, dict):
            for key in ("id", "number", "iid", "html_url", "web_url", "draft", "title"):
                if key in data:
                    outcome[key] = data[key]
        return self.record(name, **outcome)

    def repo_api(self) -> str:
        """The repository's REST path through the gate."""
        if self.kind == "gitlab":
            return "/projects/" + urllib.parse.quote(self.params["repo_path"], safe="")
        return f"/repos/{self.params['repo_path']}"

    def comments_api(self, number: int, section: str | None = None) -> str:
        """The REST path that lists and creates comments on issue (or merge request) `number`.

        `section` is GitLab's `issues` or `merge_requests`, by default the item's own.
        GitHub and Forgejo keep pull request comments under `issues` too.
        """
        if self.kind == "gitlab":
            section = section or self.params.get("item_section", "issues")
            return f"{self.repo_api()}/{section}/{number}/notes"
        return f"{self.repo_api()}/issues/{number}/comments"

    def comment_api(self, number: int, comment_id: int) -> str:
        """The REST path of one comment on the item `number`."""
        if self.kind == "gitlab":
            section = self.params.get("item_section", "issues")
            return f"{self.repo_api()}/{section}/{number}/notes/{comment_id}"
        return f"{self.repo_api()}/issues/comments/{comment_id}"

    def pull_request_api(self) -> str:
        """The REST path that creates a pull (merge) request."""
        return self.repo_api() + ("/merge_requests" if self.kind == "gitlab" else "/pulls")

    def pull_request_body(self, title: str, *, head: str | None = None,
                          draft: bool | None = True) -> Json:
        """Return a create-PR body for this forge: the session's branch into the default."""
        head = head or self.params["target_branch"]
        base = self.params["default_branch"]
        body: Json
        if self.kind == "gitlab":
            body = {"source_branch": head, "target_branch": base, "title": title,
                    "description": "Closes #1"}
        else:
            body = {"head": head, "base": base, "title": title, "body": "Fixes #1"}
        # Forgejo has no draft field: the gate marks the title instead, and denies the key.
        if draft is not None and (self.kind != "forgejo" or draft is False):
            body["draft"] = draft
        return body

    # --- MCP by hand ------------------------------------------------------------------

    def mcp_post(self, payload: Json) -> tuple[int | None, list[Json]]:
        """POST one JSON-RPC message to the MCP endpoint and return the status and messages."""
        headers = {
            "Authorization": f"Bearer {self.credential}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": self.mcp_version,
        }
        if self.mcp_session is not None:
            headers["Mcp-Session-Id"] = self.mcp_session
        request = urllib.request.Request(self.mcp_url, data=json.dumps(payload).encode(),
                                         headers=headers, method="POST")
        try:
            with _DIRECT.open(request, timeout=TIMEOUT_SECONDS) as response:
                status = int(response.status)
                session = response.headers.get("Mcp-Session-Id")
                content_type = response.headers.get("Content-Type", "")
                raw = response.read()
        except urllib.error.HTTPError as error:
            return error.code, [{"http_error": error.read()[:500].decode("utf-8", "replace")}]
        except OSError as error:
            return None, [{"http_error": str(error)}]
        if session:
            self.mcp_session = session
        return status, mcp_messages(raw, content_type)

    def mcp_request(self, method: str, params: Json) -> tuple[int | None, Json]:
        """Send a JSON-RPC request and return the status and the response with its id."""
        self.mcp_ids += 1
        status, messages = self.mcp_post({"jsonrpc": "2.0", "id": self.mcp_ids,
                                          "method": method, "params": params})
        for message in messages:
            if message.get("id") == self.mcp_ids or "http_error" in message:
                return status, message
        return status, {}

    def mcp_start(self) -> None:
        """Send initialize, then notifications/initialized and tools/list, and record them."""
        status, response = self.mcp_request("initialize", {
            "protocolVersion": MCP_PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "devaipod-scripted-agent", "version": "1.0"},
        })
        result = response.get("result") or {}
        self.mcp_version = str(result.get("protocolVersion") or MCP_PROTOCOL_VERSION)
        self.record("mcp-initialize", transport="mcp", status=status,
                    server=(result.get("serverInfo") or {}).get("name"),
                    session=self.mcp_session is not None, error=response.get("error"))
        notified, _ = self.mcp_post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        _, tools = self.mcp_request("tools/list", {})
        names = sorted(tool["name"] for tool in (tools.get("result") or {}).get("tools", []))
        self.record("mcp-tools", transport="mcp", status=notified, tools=names)

    def mcp_tool(self, name: str, tool: str, arguments: Json) -> Json:
        """Call one MCP tool and record whether it failed, what it returned and the attempts."""
        attempts = 0
        while True:
            attempts += 1
            status, response = self.mcp_request("tools/call",
                                                {"name": tool, "arguments": arguments})
            result = response.get("result") or {}
            text = "".join(block.get("text", "") for block in result.get("content", [])
                           if isinstance(block, dict))
            if attempts == ATTEMPTS or not is_upstream_failure(text):
                break
        data = parse_json(text.encode())
        outcome: Json = {"transport": "mcp", "tool": tool, "status": status,
                         "is_error": bool(result.get("isError")) or "error" in response,
                         "text": text[:500], "attempts": attempts}
        if isinstance(data, dict):
            for key in ("id", "number", "iid", "html_url", "web_url", "draft", "title"):
                if key in data:
                    outcome[key] = data[key]
        return self.record(name, **outcome)

    # --- the script -------------------------------------------------------------------

    def run(self) -> None:
        """Deliver, then try each forbidden operation, continuing after any failed step."""
        params = self.params
        issue, other = int(params["issue"]), int(params["other_issue"])
        self.record("environment", transport="env",
                    variables=sorted(name for name in self.env if name.startswith("DEVAIPOD_")),
                    has_task=bool(self.env.get("DEVAIPOD_TASK")))

        # Allowed: deliver the branch, comment over REST and MCP, edit the own comment,
        # open one draft pull request.
        self.commit()
        self.git("push", "push")
        rest_comment = self.rest("rest-comment", "POST", self.comments_api(issue),
                                 {"body": "Working on it (REST)."})
        self.mcp_start()
        mcp_comment = self.mcp_tool("mcp-comment", "comment",
                                    {"body": "Working on it (MCP)."})
        if isinstance(mcp_comment.get("id"), int):
            self.mcp_tool("mcp-edit-own-comment", "update_comment",
                          {"comment_id": mcp_comment["id"], "body": "Done (MCP)."})
        self.mcp_tool("mcp-read-issue", "get_issue", {})

        # Denied, and sent before the allowed pull request so that the limit of one does
        # not decide: a non-draft pull request and one from the default branch.
        self.rest("rest-non-draft-pr", "POST", self.pull_request_api(),
                  self.pull_request_body("Greet the reader", draft=False))
        self.rest("rest-pr-from-default-branch", "POST", self.pull_request_api(),
                  self.pull_request_body("Greet the reader", head=params["default_branch"]))
        if params["pr_transport"] == "mcp":
            self.mcp_tool("pr", "create_pull_request",
                          {"title": "Greet the reader", "body": "Fixes the issue.",
                           "draft": True})
            self.rest("second-pr", "POST", self.pull_request_api(),
                      self.pull_request_body("Another change"))
        else:
            self.rest("pr", "POST", self.pull_request_api(),
                      self.pull_request_body("Greet the reader"))
            self.mcp_tool("second-pr", "create_pull_request",
                          {"title": "Another change", "body": "", "draft": True})

        # Denied: pushes outside the target branch.
        self.git("push-other-branch", "push", "origin", "HEAD:refs/heads/other")
        self.git("push-default-branch", "push", "origin",
                 f"HEAD:refs/heads/{params['default_branch']}")
        # Denied: another issue, a comment by someone else, impersonation, GraphQL.
        self.rest("rest-comment-other-issue", "POST", self.comments_api(other, "issues"),
                  {"body": "Not my issue."})
        self.rest("rest-read-other-issue", "GET", f"{self.repo_api()}/issues/{other}")
        method = "PUT" if self.kind == "gitlab" else "PATCH"
        self.rest("rest-edit-foreign-comment", method,
                  self.comment_api(issue, int(params["foreign_comment"])), {"body": "Edited."})
        self.mcp_tool("mcp-edit-foreign-comment", "update_comment",
                      {"comment_id": int(params["foreign_comment"]), "body": "Edited."})
        self.rest("rest-sudo", "GET", self.repo_api(), headers={"Sudo": "root"})
        if self.kind == "github":
            mutation = ('mutation { addComment(input: {subjectId: "I_x", body: "x"}) '
                        "{ clientMutationId } }")
            self.rest("rest-graphql-mutation", "POST", "/graphql", {"query": mutation})
        self.rest("rest-wrong-credential", "GET", self.repo_api(),
                  headers={"Authorization": "Bearer not-the-session-credential"})
        if isinstance(rest_comment.get("id"), int):
            self.rest("rest-edit-own-comment", method,
                      self.comment_api(issue, rest_comment["id"]), {"body": "Done (REST)."})

        # Must fail for lack of a network: the forge and its git side, directly.
        for index, url in enumerate(params.get("direct_urls", [])):
            self.direct(f"direct-{index}", str(url))
        self.look_for_tokens()

    def direct(self, name: str, url: str) -> None:
        """Try to reach `url` without the broker: a TCP connection, then HTTP via any proxy."""
        parts = urllib.parse.urlsplit(url)
        try:
            socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5).close()
            tcp = "connected"
        except OSError as error:
            tcp = f"failed: {type(error).__name__}: {error}"
        proxied: int | str | None = None
        if any(self.env.get(name) for name in ("http_proxy", "HTTP_PROXY")):
            # The egress proxy, when there is one, must deny it too.
            opener = urllib.request.build_opener()
            try:
                with opener.open(url, timeout=TIMEOUT_SECONDS) as response:
                    proxied = int(response.status)
            except urllib.error.HTTPError as error:
                proxied = error.code
            except OSError as error:
                proxied = f"failed: {type(error).__name__}"
        self.record(name, transport="direct", url=url, tcp=tcp, via_proxy=proxied)

    def look_for_tokens(self) -> None:
        """Record the forge token variables and every place where a token value is readable."""
        pattern = self.params["token_prefix"] + "[0-9a-f]{32}"
        variables = sorted(name for name in TOKEN_VARIABLES if name in self.env)
        in_env = [name for name, value in self.env.items() if re.search(pattern, value)]
        environ_hits = []
        for path in Path("/proc").glob("[0-9]*/environ"):
            try:
                if re.search(pattern.encode(), path.read_bytes()):
                    environ_hits.append(str(path))
            except OSError:
                continue
        files: list[str] = []
        if self.params.get("scan_files", True):
            found = subprocess.run(
                ["grep", "-rlsE", pattern, "/", "--exclude-dir=proc", "--exclude-dir=sys",
                 "--exclude-dir=dev"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            files = found.stdout.splitlines()
        secrets_dir = Path("/run/secrets")
        secret_files = sorted(p.name for p in secrets_dir.iterdir()) if secrets_dir.is_dir() else []
        self.record("token-search", transport="env", variables=variables, env_values=in_env,
                    proc_environ=environ_hits, files=files, secret_files=secret_files)


def http(method: str, url: str, body: object, headers: dict[str, str]
         ) -> tuple[int | None, bytes]:
    """Send one request without a proxy and return the status (None on failure) and body."""
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _DIRECT.open(request, timeout=TIMEOUT_SECONDS) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return None, str(error).encode()


def is_upstream_failure(text: str) -> bool:
    """Return whether `text` is the broker's report that it could not reach the forge."""
    return any(failure in text for failure in UPSTREAM_FAILURES)


def parse_json(payload: bytes) -> object:
    """Return `payload` parsed as JSON, or None."""
    try:
        return json.loads(payload)
    except ValueError:
        return None


def mcp_messages(raw: bytes, content_type: str) -> list[Json]:
    """Return the JSON-RPC messages of a JSON or server-sent-events response body."""
    if content_type.startswith("text/event-stream"):
        messages = []
        for line in raw.decode("utf-8", "replace").splitlines():
            if line.startswith("data:"):
                parsed = parse_json(line[5:].strip().encode())
                if isinstance(parsed, dict):
                    messages.append(parsed)
        return messages
    parsed = parse_json(raw)
    if isinstance(parsed, list):
        return [item for item in parsed if isinstance(item, dict)]
    return [parsed] if isinstance(parsed, dict) else []


def main() -> int:
    """Run the script; write the outcomes to the result file and print them on one line."""
    params = json.loads(Path(PARAMS_FILE).read_text(encoding="utf-8"))
    agent = Agent(params, dict(os.environ))
    error = None
    try:
        agent.run()
    except Exception as caught:  # The result file is written whatever failed.
        error = f"{type(caught).__name__}: {caught}"
    result = {"steps": agent.steps, "error": error}
    Path(params["result_file"]).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(RESULT_MARKER + json.dumps({"error": error, "steps": len(agent.steps)}), flush=True)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
