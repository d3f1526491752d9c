"""Egress from the agent: the allowlist and the HTTP proxy that enforces it."""
