"""The session scope: which repositories an agent may read and push, which issues it may
touch, and which hosts it may reach. Loaded from YAML and validated with field paths."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devaipod.errors import UserError
from devaipod.scope.refname import branch_name_problem

log = logging.getLogger(__name__)

# At most this many validation problems are shown in the one-line error.
_MAX_REPORTED_PROBLEMS = 3


class _ScopeModel(BaseModel):
    # strict: YAML already has booleans and integers, so "yes" or "1" for a flag is a typo.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _url_problem(url: str, *, allow_http: bool) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == "http" and not allow_http:
        return "uses http://; use https://, or set allowHttp: true for a local upstream"
    if parts.scheme not in ("https", "http"):
        return "must be an https:// URL"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password (the broker adds credentials)"
    if parts.query or parts.fragment:
        return "must not contain a query or fragment"
    return None


class RepoInput(_ScopeModel):
    """The repository the agent reads (clones and fetches) through the broker."""

    url: str
    branch: str | None = None
    allowHttp: bool = False

    @model_validator(mode="after")
    def _check(self) -> RepoInput:
        problem = _url_problem(self.url, allow_http=self.allowHttp)
        if problem:
            raise ValueError(f"url {self.url!r} {problem}")
        if self.branch is not None:
            problem = branch_name_problem(self.branch)
            if problem:
                raise ValueError(f"branch {self.branch!r} {problem}")
        return self


class RepoOutput(_ScopeModel):
    """The agent's delivery: the one branch it may push, and the pull request to open."""

    targetBranch: str
    baseBranch: str | None = None
    createPullRequest: bool = False
    draft: bool = True
    allowForcePush: bool = False
    # Pushed commits may add or change CI configuration (.github/workflows/, .gitlab-ci.yml,
    # ...), which forges can run on push with the repository's secrets.
    allowCiChanges: bool = False
    maxPullRequests: int = Field(default=1, ge=0)

    @field_validator("targetBranch", "baseBranch")
    @classmethod
    def _check_branch(cls, branch: str | None) -> str | None:
        if branch is not None:
            problem = branch_name_problem(branch)
            if problem:
                raise ValueError(f"{branch!r} {problem}")
        return branch

    @property
    def target_ref(self) -> str:
        """The full ref name the agent may push, `refs/heads/<targetBranch>`."""
        return f"refs/heads/{self.targetBranch}"


class RepoScope(_ScopeModel):
    """One repository: read access always, push access only when `output` is set."""

    input: RepoInput
    output: RepoOutput | None = None


class AttachedContext(_ScopeModel):
    """An issue or pull request the agent may read and act on, with the allowed actions."""

    type: Literal["git-issue", "git-pull-request"]
    url: str
    permissions: list[Literal["read", "comment", "edit-own", "minimize-own"]]
    # Lets a context point at a plain-HTTP forge on loopback, such as a test's fake forge.
    allowHttp: bool = False

    @model_validator(mode="after")
    def _check(self) -> AttachedContext:
        problem = _url_problem(self.url, allow_http=self.allowHttp)
        if problem:
            raise ValueError(f"url {self.url!r} {problem}")
        return self


class NetworkScope(_ScopeModel):
    """Hosts the agent's egress proxy lets through (host names, optionally with `:port`)."""

    allow: list[str] = Field(default_factory=list)

    @field_validator("allow")
    @classmethod
    def _check_hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not host or "://" in host or "/" in host or any(c.isspace() for c in host):
                raise ValueError(
                    f"{host!r} is not a host name; write it as 'api.example.com' or 'host:port'"
                )
        return hosts


class Scope(_ScopeModel):
    """Everything a session may do outside its sandbox."""

    repos: list[RepoScope] = Field(min_length=1)
    attachedContexts: list[AttachedContext] = Field(default_factory=list)
    network: NetworkScope = Field(default_factory=NetworkScope)

    @property
    def uses_forge_api(self) -> bool:
        """Whether the broker serves the forge API gate: an issue or pull request is
        attached, or a repository's output opens a pull request."""
        return bool(self.attachedContexts) or any(
            repo.output is not None and repo.output.createPullRequest for repo in self.repos
        )


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe_problem(error: dict[str, object]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "missing"
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        return message.removeprefix("Value error, ")
    return f"{message} (got {error.get('input')!r})"


def _validation_message(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = tuple(item["loc"])
        problem = _describe_problem(dict(item))
        problems.append(f"{_field_path(location)}: {problem}" if location else problem)

    shown = "; ".join(problems[:_MAX_REPORTED_PROBLEMS])
    hidden = len(problems) - _MAX_REPORTED_PROBLEMS
    if hidden > 0:
        shown += f" (and {hidden} more)"
    return shown


def parse_scope(data: object, source: str) -> Scope:
    """Validate already-parsed YAML or JSON data as a scope; `source` names it in errors."""
    if not isinstance(data, dict):
        raise UserError(
            f"invalid scope {source}: the top level must be a mapping with a 'repos' list",
            fix="see the scope example in the README",
        )
    try:
        return Scope.model_validate(data)
    except ValidationError as error:
        raise UserError(
            f"invalid scope {source}: {_validation_message(error)}",
            fix=f"correct {source} and run the command again",
        ) from None


def load_scope(path: Path) -> Scope:
    """Read and validate a scope YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"scope file {path} not found", fix="pass the path of an existing scope YAML file"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(
            f"cannot read scope file {path}: {error}", fix="check the path and its permissions"
        ) from None

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = ""
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise UserError(
            f"invalid scope {path}: YAML syntax error{where}: {problem}",
            fix=f"correct the YAML in {path}",
        ) from None

    scope = parse_scope(data, str(path))
    log.debug("loaded scope %s with %d repositories", path, len(scope.repos))
    return scope


def dump_scope(scope: Scope) -> str:
    """Return the scope as YAML text that `load_scope` reads back unchanged."""
    data = scope.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
