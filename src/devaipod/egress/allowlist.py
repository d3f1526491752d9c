"""The egress allowlist: entries (exact host, `*.suffix`, IP literal, optional `:port`),
host-name normalisation, and the checks the proxy runs before and after DNS resolution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

from devaipod.egress.addresses import (
    InvalidHostError,
    IPAddress,
    canonical_address,
    internal_address_reason,
    parse_ip_literal,
)
from devaipod.errors import UserError

DEFAULT_PORT = 443

# Model API hosts the agent adapters talk to. An entry without a port allows 443 only.
# Vertex AI serves most models on regional hosts named `<region>-aiplatform.googleapis.com`.
# A wildcard cannot express that prefix form, so the common regions are listed here, and
# other regions go into the config file's `[network] allow`.
DEFAULT_MODEL_API_HOSTS: tuple[str, ...] = (
    # Anthropic (Claude Code, opencode, aider, goose with Anthropic models)
    "api.anthropic.com",
    # OpenAI (Codex, opencode, aider)
    "api.openai.com",
    # Google Gemini API
    "generativelanguage.googleapis.com",
    # Google Vertex AI: the global endpoint, common regional endpoints, and the OAuth
    # token endpoint that service-account and application-default credentials call.
    "aiplatform.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "us-east1-aiplatform.googleapis.com",
    "us-east4-aiplatform.googleapis.com",
    "us-east5-aiplatform.googleapis.com",
    "us-west1-aiplatform.googleapis.com",
    "europe-west1-aiplatform.googleapis.com",
    "europe-west4-aiplatform.googleapis.com",
    "asia-southeast1-aiplatform.googleapis.com",
    "oauth2.googleapis.com",
    # OpenRouter
    "openrouter.ai",
    # Other providers that opencode, aider and goose offer
    "api.mistral.ai",
    "api.groq.com",
    "api.deepseek.com",
    "api.x.ai",
    "api.together.xyz",
    "api.fireworks.ai",
    # opencode: its hosted models ("Zen", under opencode.ai/zen) and the model catalogue
    # it downloads at start-up
    "opencode.ai",
    "models.dev",
)

_LDH_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_MAX_LABEL_LENGTH = 63
_MAX_NAME_LENGTH = 253


class AllowlistEntryError(ValueError):
    """An allowlist entry that cannot be parsed."""


def normalize_name(host: str) -> str:
    """Return the lower-case A-label form of a DNS name, without its trailing dot.

    Applies the UTS #46 mapping (case folding, full-width characters and dots), encodes
    Unicode labels as punycode and checks `xn--` labels decode. Raises InvalidHostError
    for empty labels, labels outside letters/digits/hyphen, and over-long names.
    """
    original = host
    if host.endswith("."):
        host = host[:-1]
    if host == "":
        raise InvalidHostError("empty host name")
    try:
        mapped = idna.uts46_remap(host, std3_rules=True, transitional=False)
    except idna.IDNAError as error:
        raise InvalidHostError(f"invalid host name {original!r}: {error}") from error

    labels: list[str] = []
    for label in mapped.split("."):
        labels.append(_normalize_label(label, original))

    name = ".".join(labels)
    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidHostError(f"host name longer than {_MAX_NAME_LENGTH} characters: {original!r}")
    return name


def _normalize_label(label: str, host: str) -> str:
    if label == "":
        raise InvalidHostError(f"empty label in host name {host!r}")

    if label.isascii():
        label = label.lower()
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)
            except (idna.IDNAError, UnicodeError) as error:
                raise InvalidHostError(f"invalid punycode label {label!r} in {host!r}") from error
        elif not _LDH_LABEL.match(label):
            raise InvalidHostError(f"invalid label {label!r} in host name {host!r}")
    else:
        try:
            label = idna.alabel(label).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise InvalidHostError(f"invalid label {label!r} in host name {host!r}") from error

    if len(label) > _MAX_LABEL_LENGTH:
        raise InvalidHostError(f"label longer than {_MAX_LABEL_LENGTH} characters in {host!r}")
    return label


def classify_host(host: str) -> IPAddress | str:
    """Return the address an IP literal spells, or the normalised name of a DNS host.

    The IP check runs on the raw text and again after the UTS #46 mapping, so full-width
    digits and dots (`１２７。０。０。１`) are still recognised as an address.
    """
    address = parse_ip_literal(host)
    if address is not None:
        return address

    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except idna.IDNAError as error:
        raise InvalidHostError(f"invalid host name {host!r}: {error}") from error
    if mapped != host:
        address = parse_ip_literal(mapped)
        if address is not None:
            return address

    return normalize_name(host)


@dataclass(frozen=True)
class AllowEntry:
    """One allowlist entry. `port` None means the default port (443) only."""

    name: str | None = None
    suffix: str | None = None
    address: IPAddress | None = None
    port: int | None = None

    def allows_port(self, port: int) -> bool:
        return port == (self.port if self.port is not None else DEFAULT_PORT)

    def __str__(self) -> str:
        if self.address is not None:
            host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        elif self.suffix is not None:
            host = f"*.{self.suffix}"
        else:
            host = str(self.name)
        return host if self.port is None else f"{host}:{self.port}"


def _parse_port(text: str, entry: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise AllowlistEntryError(f"invalid port {text!r} in {entry!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise AllowlistEntryError(f"port {port} out of range 1-65535 in {entry!r}")
    return port


def _split_host_port(text: str) -> tuple[str, str | None]:
    """Split `host[:port]`, `[v6][:port]` or a bare IPv6 literal into host and port text."""
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise AllowlistEntryError(f"missing ']' in {text!r}")
        host, rest = text[: close + 1], text[close + 1 :]
        if rest == "":
            return host, None
        if not rest.startswith(":"):
            raise AllowlistEntryError(f"unexpected text after ']' in {text!r}")
        return host, rest[1:]
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    # No colon, or several (an unbracketed IPv6 literal, which cannot carry a port).
    return text, None


def parse_entry(text: str) -> AllowEntry:
    """Parse one allowlist entry; raise AllowlistEntryError naming what is wrong."""
    entry = text.strip()
    if entry == "":
        raise AllowlistEntryError("empty entry")

    host, port_text = _split_host_port(entry)
    port = _parse_port(port_text, entry) if port_text is not None else None

    if host.startswith("*."):
        suffix_text = host[2:]
        if "*" in suffix_text:
            raise AllowlistEntryError(f"'*' is allowed only as the whole first label: {entry!r}")
        try:
            suffix = classify_host(suffix_text)
        except InvalidHostError as error:
            raise AllowlistEntryError(str(error)) from error
        if not isinstance(suffix, str):
            raise AllowlistEntryError(f"a wildcard cannot cover an IP address: {entry!r}")
        if "." not in suffix:
            raise AllowlistEntryError(
                f"wildcard over a top-level domain would allow too much: {entry!r}"
            )
        return AllowEntry(suffix=suffix, port=port)

    if "*" in host:
        raise AllowlistEntryError(f"'*' is allowed only as the whole first label: {entry!r}")
    try:
        classified = classify_host(host)
    except InvalidHostError as error:
        raise AllowlistEntryError(str(error)) from error
    if isinstance(classified, str):
        return AllowEntry(name=classified, port=port)
    return AllowEntry(address=classified, port=port)


@dataclass(frozen=True)
class HostDecision:
    """The allowlist's verdict on a requested host and port, before resolution."""

    allowed: bool
    reason: str
    # The normalised name to resolve, or None when the host is an IP literal or invalid.
    name: str | None = None
    address: IPAddress | None = None


class Allowlist:
    """A set of allowlist entries and the matching rules the egress proxy applies."""

    def __init__(
        self, entries: Iterable[AllowEntry], local_addresses: frozenset[IPAddress] = frozenset()
    ) -> None:
        self.entries = tuple(dict.fromkeys(entries))
        self.local_addresses = frozenset(canonical_address(a) for a in local_addresses)

    def check_host(self, host: str, port: int) -> HostDecision:
        """Match a requested host (name or IP literal in any spelling) and port."""
        try:
            classified = classify_host(host)
        except InvalidHostError as error:
            return HostDecision(False, str(error))

        if not isinstance(classified, str):
            if self._address_listed(classified, port):
                return HostDecision(
                    True, f"address {classified} port {port} is listed", address=classified
                )
            return HostDecision(
                False,
                f"IP address {classified} port {port} is not in the allowlist",
                address=classified,
            )

        name = classified
        matching = [entry for entry in self.entries if _entry_matches_name(entry, name)]
        if not matching:
            return HostDecision(False, f"host {name} is not in the allowlist", name=name)
        for entry in matching:
            if entry.allows_port(port):
                return HostDecision(True, f"host {name} matches {entry}", name=name)
        ports = sorted({entry.port or DEFAULT_PORT for entry in matching})
        allowed_ports = ", ".join(str(p) for p in ports)
        return HostDecision(
            False,
            f"port {port} is not allowed for host {name} (allowed: {allowed_ports})",
            name=name,
        )

    def check_resolved(self, name: str, address: IPAddress, port: int) -> str | None:
        """Return why a resolved address must not be used, or None when it may be."""
        address = canonical_address(address)
        internal = internal_address_reason(address, self.local_addresses)
        if internal is None or self._address_listed(address, port):
            return None
        return f"host {name} resolves to {address}, {internal} not in the allowlist"

    def _address_listed(self, address: IPAddress, port: int) -> bool:
        address = canonical_address(address)
        return any(entry.address == address and entry.allows_port(port) for entry in self.entries)


def _entry_matches_name(entry: AllowEntry, name: str) -> bool:
    if entry.name is not None:
        return entry.name == name
    if entry.suffix is not None:
        # Subdomains only: `*.example.com` covers `a.example.com`, not `example.com`.
        return name.endswith("." + entry.suffix)
    return False


def build_allowlist(
    *,
    config_allow: Iterable[str] = (),
    devcontainer_allow: Iterable[str] = (),
    scope_allow: Iterable[str] = (),
    extra_allow: Iterable[str] = (),
    include_defaults: bool = True,
    local_addresses: frozenset[IPAddress] = frozenset(),
) -> Allowlist:
    """Merge the default model API hosts with the entries from each configuration source.

    Raises UserError naming the source and entry when an entry is invalid.
    """
    sources: list[tuple[str, Iterable[str]]] = [
        ("the config file's [network] allow", config_allow),
        ("devcontainer.json customizations.devaipod.allowedDomains", devcontainer_allow),
        ("the scope's network.allow", scope_allow),
        ("the command line", extra_allow),
    ]
    entries: list[AllowEntry] = []
    if include_defaults:
        entries.extend(parse_entry(host) for host in DEFAULT_MODEL_API_HOSTS)

    for source, texts in sources:
        for text in texts:
            try:
                entries.append(parse_entry(text))
            except AllowlistEntryError as error:
                raise UserError(
                    f"invalid egress allowlist entry {text!r} in {source}: {error}",
                    fix="use HOST, *.DOMAIN or an IP address, optionally followed by :PORT",
                ) from error
    return Allowlist(entries, local_addresses)
