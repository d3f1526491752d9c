"""Derive the scope of `devaipod run URL` from an issue, pull/merge request or repository URL.

Derivation needs no network access: `run` resolves the default branch and the
pull request's head branch when the session starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from devaipod.errors import UserError
from devaipod.forge.urls import ForgeUrl
from devaipod.scope.model import AttachedContext, RepoInput, RepoOutput, RepoScope, Scope

if TYPE_CHECKING:
    # Only for annotations, so `scope init` does not import the HTTP client stack.
    from devaipod.forge.clients import IssueDetails

log = logging.getLogger(__name__)

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


def push_to_pull_request_head(
    scope: Scope, forge_url: ForgeUrl, details: IssueDetails, *, default_branch: str | None = None
) -> Scope:
    """Point the derived scope at a pull request's own head branch, when it can be pushed.

    When the pull request at `forge_url` comes from a branch of the same
    repository, the agent pushes to that branch and opens no new pull request.
    For a pull request from a fork (or one whose head the forge did not report),
    and for a head that is the repository's `default_branch` or the pull request's
    base (a back-merge, say), the scope is returned unchanged, with `devaipod/pr-N`
    as its branch.
    """
    if forge_url.item != "pull_request" or not details.is_pull_request:
        return scope
    if not details.head_in_same_repository or not details.head_branch:
        return scope
    if details.head_branch in (default_branch, details.base_branch):
        log.warning("pull request head %r is the default or base branch; pushing to %s",
                    details.head_branch, target_branch_for(forge_url))
        return scope

    repos = []
    for repo in scope.repos:
        if repo.output is not None and repo.output.targetBranch == target_branch_for(forge_url):
            fields = repo.output.model_dump() | {
                "targetBranch": details.head_branch,
                "createPullRequest": False,
                "maxPullRequests": 0,
            }
            try:
                output = RepoOutput.model_validate(fields)
            except ValidationError:
                log.warning("pull request head %r is not a valid branch name; pushing to %s",
                            details.head_branch, repo.output.targetBranch)
                return scope
            repo = RepoScope(input=repo.input, output=output)
        repos.append(repo)
    return scope.model_copy(update={"repos": repos})
