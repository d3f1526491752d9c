"""Session names with and without the devaipod- prefix."""

from __future__ import annotations

import pytest

from devaipod.errors import UserError
from devaipod.session.naming import generate_session_name, session_name, short_name


@pytest.mark.parametrize("given", ["demo", "devaipod-demo"])
def test_prefix_optional(given: str) -> None:
    assert session_name(given) == "devaipod-demo"


@pytest.mark.parametrize("given", ["", "Demo", "a/b", "-x", "devaipod-", "x" * 60])
def test_invalid_name_rejected(given: str) -> None:
    with pytest.raises(UserError):
        session_name(given)


def test_generated_name_valid() -> None:
    name = generate_session_name("My Project.git")

    assert session_name(name) == name
    assert short_name(name).startswith("my-project-git-")
