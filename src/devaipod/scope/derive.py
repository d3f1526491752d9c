"""Derive the scope of `devaipod run URL` from an issue, pull/merge request or repository URL.

Derivation needs no network access: `run` resolves the default branch and the
pull request's head branch when the session starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError

from devaipod.errors import UserError
from devaipod.forge.urls import ForgeUrl
from devaipod.scope.model import AttachedContext, RepoInput, RepoOutput, RepoScope, Scope

BRANCH_PREFIX = "devaipod"
# The branch for a session started from a repository URL, with no issue to name it after.
REPOSITORY_BRANCH = f"{BRANCH_PREFIX}/work"

ContextPermission = Literal["read", "comment", "edit-own", "minimize-own"]
CONTEXT_PERMISSIONS: list[ContextPermission] = ["read", "comment", "edit-own", "minimize-own"]


def target_branch_for(forge_url: ForgeUrl) -> str:
    """Return the default push branch: `devaipod/issue-N`, `devaipod/pr-N` or `devaipod/work`."""
    if forge_url.item == "issue":
        return f"{BRANCH_PREFIX}/issue-{forge_url.number}"
    if forge_url.item == "pull_request":
        return f"{BRANCH_PREFIX}/pr-{forge_url.number}"
    return REPOSITORY_BRANCH


def derive_scope(forge_url: ForgeUrl, *, target_branch: str | None = None) -> Scope:
    """Build the default scope for a session started from `forge_url`.

    The agent may read the repository, push one branch, and open one draft
    pull/merge request from it. `baseBranch` stays None, which means the
    repository's default branch, resolved by `run` through the forge API. For an
    issue or pull/merge request URL the agent may also read it, comment on it,
    and edit, delete or minimise its own comments.

    NOTE: for a pull request whose head branch is in the same repository, `run`
    may push to that head branch in place of `devaipod/pr-N`. Which repository
    the head is in needs the forge API, so derivation leaves that to `run`.
    """
    allow_http = forge_url.scheme == "http"
    branch = target_branch or target_branch_for(forge_url)
    try:
        output = RepoOutput(
            targetBranch=branch,
            baseBranch=None,
            createPullRequest=True,
            draft=True,
            maxPullRequests=1,
        )
    except ValidationError as error:
        problem = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise UserError(
            f"invalid target branch {branch!r}: {problem}", fix="pass a valid git branch name"
        ) from None
    repo = RepoScope(input=RepoInput(url=forge_url.clone_url, allowHttp=allow_http), output=output)

    contexts: list[AttachedContext] = []
    if forge_url.item_url is not None:
        context_type: Literal["git-issue", "git-pull-request"] = (
            "git-issue" if forge_url.item == "issue" else "git-pull-request"
        )
        contexts.append(
            AttachedContext(
                type=context_type,
                url=forge_url.item_url,
                permissions=list(CONTEXT_PERMISSIONS),
                allowHttp=allow_http,
            )
        )
    return Scope(repos=[repo], attachedContexts=contexts)
