"""Parsing the image probe and choosing the agent's non-root user."""

from __future__ import annotations

import pytest

from devaipod.errors import UserError
from devaipod.session.probe import ImageFacts, choose_agent_user, parse_probe_output

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
dev:x:1000:1000::/home/dev:/bin/bash
vscode:x:1001:1001::/home/vscode:/bin/bash
--devaipod--
tmux=/usr/bin/tmux
git=/usr/bin/git
opencode=
"""


def facts(config_user: str = "", text: str = PASSWD) -> ImageFacts:
    return parse_probe_output("img", config_user, text)


def test_probe_output_parsed() -> None:
    parsed = facts()

    assert [entry.name for entry in parsed.users] == ["root", "daemon", "dev", "vscode"]
    assert parsed.programs == {"tmux": "/usr/bin/tmux", "git": "/usr/bin/git", "opencode": None}


def test_remote_user_chosen() -> None:
    user = choose_agent_user(facts(), "vscode")

    assert (user.user, user.uid, user.home) == ("vscode", 1001, "/home/vscode")


def test_root_remote_user_falls_back_to_uid_1000() -> None:
    user = choose_agent_user(facts(), "root")

    assert (user.user, user.uid) == ("dev", 1000)


def test_image_user_used_without_remote_user() -> None:
    assert choose_agent_user(facts(config_user="vscode"), None).user == "vscode"


def test_root_only_image_gets_mapped_uid() -> None:
    only_root = "root:x:0:0:root:/root:/bin/sh\n--devaipod--\n"
    user = choose_agent_user(facts(text=only_root), None)

    assert user.user == "1000:1000"
    assert user.uid == 1000
    assert user.home == "/home/devaipod"


def test_unknown_remote_user_rejected() -> None:
    with pytest.raises(UserError, match="nobody-here"):
        choose_agent_user(facts(), "nobody-here")


def test_numeric_remote_user_accepted() -> None:
    assert choose_agent_user(facts(), "2000:2000").uid == 2000
