"""Reading the session credential a client presents in an HTTP `Authorization` header."""

from __future__ import annotations

import base64
import binascii


def authorization_credential(
    authorization: str | None, *, accept_token_scheme: bool = False
) -> str | None:
    """Return the secret in an `Authorization` header, or None when there is none.

    Accepted: HTTP Basic with the secret as the password (any user name) and
    `Bearer <secret>`; with `accept_token_scheme`, also `token <secret>`, the form
    GitHub and Forgejo clients send.
    """
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()

    if scheme == "bearer" or (accept_token_scheme and scheme == "token"):
        return value or None

    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        _, separator, password = decoded.partition(":")
        return password if separator else None

    return None
