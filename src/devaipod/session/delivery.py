"""The delivery summary of a `run` session, read from its audit log: accepted pushes,
created pull requests and comments, and the number of denied operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The reason the broker writes on a ref update the upstream accepted (broker/git_push.py).
PUSH_ACCEPTED_REASON = "upstream accepted the update"
FORGE_KINDS = ("api", "mcp")  # audit `kind` of the API gate's and the MCP tools' lines


@dataclass(frozen=True)
class Push:
    """A ref update that the upstream accepted; `new_oid` is the last one pushed."""

    ref: str
    new_oid: str


@dataclass(frozen=True)
class PullRequest:
    """A pull or merge request the agent opened; `number` is GitLab's iid on GitLab."""

    number: int
    url: str | None


@dataclass(frozen=True)
class CreatedComment:
    """A comment (GitLab: note) the agent created and did not delete again."""

    id: int
    url: str | None


@dataclass(frozen=True)
class Delivery:
    """A session's results for `run`: pushes, pull requests, comments and denials."""

    pushes: list[Push] = field(default_factory=list)
    pull_requests: list[PullRequest] = field(default_factory=list)
    comments: list[CreatedComment] = field(default_factory=list)
    denied: int = 0

    def to_json(self) -> dict[str, object]:
        """Return the `pushes`, `pull_requests`, `comments` and `denied` keys of `run --json`."""
        return {
            "pushes": [{"ref": push.ref, "new_oid": push.new_oid} for push in self.pushes],
            "pull_requests": [{"number": pull.number, "url": pull.url}
                              for pull in self.pull_requests],
            "comments": [{"id": comment.id, "url": comment.url} for comment in self.comments],
            "denied": self.denied,
        }


def summarise_delivery(entries: Iterable[Mapping[str, object]]) -> Delivery:
    """Summarise a session's audit log entries (as `broker.audit.read_entries` returns them).

    A push counts when the upstream accepted the ref update. Several pushes to one ref
    give one entry with the last `new_oid`, in the order the refs were first pushed.

    A pull request or comment counts when the forge responded to its create request
    with a 2xx status, and a comment that a later delete removed is left out. `denied` counts
    every `deny` line of any kind (push, API, MCP, git fetch, egress). Lines without
    the expected fields are skipped.
    """
    pushes: dict[str, str] = {}
    pull_requests: dict[int, PullRequest] = {}
    comments: dict[int, CreatedComment] = {}
    denied = 0

    for entry in entries:
        if entry.get("decision") == "deny":
            denied += 1
            continue
        if entry.get("decision") != "allow":
            continue

        if entry.get("kind") == "git-push":
            push = _accepted_push(entry)
            if push is not None:
                pushes[push.ref] = push.new_oid
        elif entry.get("kind") in FORGE_KINDS and _is_successful_write(entry):
            _apply_forge_write(entry, pull_requests, comments)

    return Delivery(
        pushes=[Push(ref=ref, new_oid=new_oid) for ref, new_oid in pushes.items()],
        pull_requests=list(pull_requests.values()),
        comments=list(comments.values()),
        denied=denied,
    )


def _accepted_push(entry: Mapping[str, object]) -> Push | None:
    ref = entry.get("ref")
    new_oid = entry.get("new_oid")
    reason = entry.get("reason")
    if entry.get("upstream_status") != 200 or not isinstance(reason, str):
        return None
    if not reason.startswith(PUSH_ACCEPTED_REASON):
        return None
    if not isinstance(ref, str) or not isinstance(new_oid, str):
        return None
    return Push(ref=ref, new_oid=new_oid)


def _is_successful_write(entry: Mapping[str, object]) -> bool:
    status = entry.get("upstream_status")
    return (entry.get("phase") == "response" and isinstance(status, int)
            and 200 <= status < 300)


def _apply_forge_write(entry: Mapping[str, object], pull_requests: dict[int, PullRequest],
                       comments: dict[int, CreatedComment]) -> None:
    operation = entry.get("operation")
    if operation == "create-pull-request":
        number = _integer(entry.get("pull_request_number"))
        if number is not None:
            pull_requests[number] = PullRequest(number, _text(entry.get("pull_request_url")))
        return

    comment_id = _integer(entry.get("comment_id"))
    if comment_id is None:
        return
    if operation == "create-comment":
        comments[comment_id] = CreatedComment(comment_id, _text(entry.get("comment_url")))
    elif operation == "delete-comment":
        comments.pop(comment_id, None)


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
