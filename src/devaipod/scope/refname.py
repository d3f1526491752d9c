"""Git ref name rules (those of `git check-ref-format`) for scope checks and push policy."""

from __future__ import annotations

_FORBIDDEN_CHARACTERS = frozenset(" ~^:?*[\\")


def ref_name_problem(name: str) -> str | None:
    """Return why `name` is not a valid git ref name, or None when it is valid.

    Applies the rules of `git check-ref-format` (git 2.39) without
    `--allow-onelevel`, `--refspec-pattern` or `--normalize`: a name needs at
    least two components, so pass full names such as `refs/heads/main`.
    """
    if not name:
        return "is empty"
    if name == "@":
        return "is '@'"
    if name.startswith("/") or name.endswith("/"):
        return "starts or ends with '/'"
    if name.endswith("."):
        return "ends with '.'"
    if "//" in name:
        return "contains '//'"
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"

    for character in name:
        if ord(character) < 0x20 or ord(character) == 0x7F:
            return "contains a control character"
        if character in _FORBIDDEN_CHARACTERS:
            return f"contains {character!r}"
        if 0xD800 <= ord(character) <= 0xDFFF:
            return "contains bytes that are not valid UTF-8"

    components = name.split("/")
    if len(components) < 2:
        return "has only one component"
    for component in components:
        if component.startswith("."):
            return f"has a component starting with '.' ({component!r})"
        if component.endswith(".lock"):
            return f"has a component ending with '.lock' ({component!r})"
    return None


def branch_name_problem(branch: str) -> str | None:
    """Return why `branch` is invalid as `refs/heads/<branch>`, or None when it is valid."""
    if branch.startswith("refs/"):
        return "must be a branch name without the 'refs/heads/' prefix"
    if branch.startswith("-"):
        return "must not start with '-'"
    if branch == "HEAD":
        return "must not be 'HEAD'"
    return ref_name_problem(f"refs/heads/{branch}")
