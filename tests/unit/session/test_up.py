"""Tests of `up`'s choices that need no engine."""

from __future__ import annotations

from pathlib import Path

from devaipod.session.up import UpRequest, use_gateway


def test_gateway_default_for_local_source() -> None:
    assert use_gateway(UpRequest(), Path("/src/project")) is True


def test_gateway_default_off_for_url() -> None:
    assert use_gateway(UpRequest(source="https://example.test/x.git"), None) is False


def test_gateway_flags_override_default() -> None:
    assert use_gateway(UpRequest(gateway=False), Path("/src/project")) is False
    assert use_gateway(UpRequest(gateway=True), None) is True
