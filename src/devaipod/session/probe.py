"""Facts about an image that the plan needs: its users, and whether tmux and the agent exist in it.

One short container (no network, root filesystem read-only) reads `/etc/passwd` and
looks the programs up, so `up` learns everything with a single run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devaipod.errors import EngineError, UserError
from devaipod.logs import state_dir
from devaipod.runtime.engine import Engine
from devaipod.runtime.hardening import AgentUser

log = logging.getLogger(__name__)

FALLBACK_UID = 1000
FALLBACK_HOME = "/home/devaipod"

_SEPARATOR = "--devaipod--"


@dataclass(frozen=True)
class PasswdEntry:
    """One line of the image's /etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class ImageFacts:
    """What the probe found in an image."""

    image: str
    config_user: str
    users: tuple[PasswdEntry, ...]
    programs: dict[str, str | None]

    def user(self, name_or_uid: str) -> PasswdEntry | None:
        """Return the passwd entry for a user name or numeric uid (`uid[:gid]` accepted)."""
        key = name_or_uid.split(":", 1)[0]
        for entry in self.users:
            if entry.name == key or str(entry.uid) == key:
                return entry
        return None


def probe_image(engine: Engine, image: str, programs: list[str]) -> ImageFacts:
    """Return the users of `image` and which `programs` it has, probing it at most once.

    The facts are cached per image id in the state directory, because an image id names
    immutable content. Raises UserError when the image is not in local storage.
    """
    inspected = engine.run_engine(["image", "inspect", image], check=False)
    if inspected.returncode != 0:
        raise UserError(
            f"image {image} not found in local storage",
            fix=f"build or pull it first (podman pull {image}), or name another with --image",
        )
    data = json.loads(inspected.stdout)[0]
    config = data.get("Config") or {}
    config_user = str(config.get("User") or "")

    cache = _cache_path(str(data.get("Id", "")), programs)
    try:
        return _facts_from_json(json.loads(cache.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    facts = _run_probe(engine, image, config_user, programs)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(asdict(facts)), encoding="utf-8")
    except OSError as error:
        log.info("cannot cache image facts in %s: %s", cache, error)
    return facts


def _cache_path(image_id: str, programs: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([image_id, sorted(programs)]).encode()).hexdigest()[:32]
    return state_dir() / "image-facts" / f"{key}.json"


def _facts_from_json(data: dict[str, Any]) -> ImageFacts:
    return ImageFacts(
        image=data["image"],
        config_user=data["config_user"],
        users=tuple(PasswdEntry(**entry) for entry in data["users"]),
        programs=dict(data["programs"]),
    )


def _run_probe(engine: Engine, image: str, config_user: str, programs: list[str]) -> ImageFacts:
    """Run one short container of `image` that reports its users and which `programs` exist."""

    lookups = "; ".join(
        f"printf '%s=%s\\n' {shlex.quote(name)} \"$(command -v {shlex.quote(name)} || true)\""
        for name in programs
    )
    script = f"cat /etc/passwd; echo {_SEPARATOR}; {lookups}"
    result = engine.run_engine(
        [
            "run",
            "--rm",
            "--network=none",
            "--read-only",
            "--user=0",
            "--entrypoint=/bin/sh",
            image,
            "-lc",
            script,
        ],
        check=False,
    )
    if result.returncode != 0:
        raise EngineError(
            f"cannot inspect image {image}: {result.stderr.strip()[-500:]}",
            fix="the image needs /bin/sh; use an image based on a Linux distribution",
        )
    return parse_probe_output(image, config_user, result.stdout)


def parse_probe_output(image: str, config_user: str, text: str) -> ImageFacts:
    """Parse the probe's output: passwd lines, a separator, then `name=path` lines."""
    passwd_text, _, lookups = text.partition(_SEPARATOR)
    users: list[PasswdEntry] = []
    for line in passwd_text.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        users.append(PasswdEntry(fields[0], int(fields[2]), int(fields[3]), fields[5]))

    programs: dict[str, str | None] = {}
    for line in lookups.splitlines():
        name, sep, path = line.partition("=")
        if sep:
            programs[name] = path.strip() or None
    return ImageFacts(image=image, config_user=config_user, users=tuple(users), programs=programs)


def choose_agent_user(facts: ImageFacts, remote_user: str | None) -> AgentUser:
    """Pick the agent's non-root user: the remote user, the image's user, uid 1000, or a mapped uid.

    Raises UserError when the devcontainer names a user the image does not have.
    """
    candidates = [name for name in (remote_user, facts.config_user) if name]
    for name in candidates:
        entry = facts.user(name)
        if entry is None:
            if name.split(":", 1)[0].isdigit():
                uid = int(name.split(":", 1)[0])
                if uid != 0:
                    return AgentUser(user=f"{uid}:{uid}", uid=uid, gid=uid, home=FALLBACK_HOME)
                continue
            raise UserError(
                f"user {name!r} does not exist in image {facts.image}",
                fix="set remoteUser/containerUser to a user the image creates",
            )
        if entry.uid != 0:
            return AgentUser(user=entry.name, uid=entry.uid, gid=entry.gid, home=entry.home)

    # The configured user is root (or none is configured): take the image's uid 1000 user
    # if it has one, as most devcontainer images do, else a uid with no passwd entry.
    for entry in facts.users:
        if entry.uid == FALLBACK_UID:
            return AgentUser(user=entry.name, uid=entry.uid, gid=entry.gid, home=entry.home)
    return AgentUser(
        user=f"{FALLBACK_UID}:{FALLBACK_UID}",
        uid=FALLBACK_UID,
        gid=FALLBACK_UID,
        home=FALLBACK_HOME,
    )
