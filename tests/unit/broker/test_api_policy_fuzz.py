"""Property tests of the API gate policy: whatever the path, an allowed request is canonical."""

from __future__ import annotations

import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from devaipod.broker.api_normalise import Denied, normalise_path
from devaipod.broker.api_policy import ApiRequest, OwnComment, SessionState, decide
from devaipod.config import ForgeKind
from support.forge_api_cases import session_context

HOST = "forge.test:3000"
CONTEXTS = {kind: session_context(kind, HOST) for kind in ("github", "gitlab", "forgejo")}

# Segments drawn from the names the policy knows, tricks, and random text.
SEGMENTS = st.one_of(
    st.sampled_from([
        "repos", "projects", "octo", "OCTO", "hello", "other", "issues", "pulls",
        "merge_requests", "comments", "notes", "1", "2", "3", "01", "5001", "graphql",
        "..", ".", "%2e%2e", "%2E", "%2F", "%252e", "group%2Fsub%2Fhello", "101", "",
        "devaipod-minimize", "%5C", "%00", "%6Fcto",
    ]),
    st.text(alphabet="abc%2Ff./\\0123456789", max_size=6),
)


def _state() -> SessionState:
    state = SessionState()
    for repo in ("octo/hello", "group/sub/hello"):
        state.own_comments[(repo, 5001)] = OwnComment(1, False, "IC_x")
    return state


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["github", "gitlab", "forgejo"]),
    segments=st.lists(SEGMENTS, min_size=1, max_size=8),
    method=st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"]),
)
def test_allowed_requests_are_canonical(kind: ForgeKind, segments: list[str],
                                        method: str) -> None:
    raw_path = "/" + "/".join(segments)
    body = b'{"body": "x"}' if method in ("POST", "PATCH", "PUT") else b""
    headers = [("Content-Type", "application/json")] if body else []

    decision = decide(CONTEXTS[kind], _state(), ApiRequest(method, raw_path, "", headers, body))

    if not decision.allowed:
        assert decision.upstream is None
        return
    assert decision.upstream is not None
    upstream_path = decision.upstream.path
    if decision.upstream.endpoint == "graphql":
        return
    # The path sent upstream normalises to itself: no dot segments, no double slashes,
    # nothing that the forge could decode into another route.
    reparsed = normalise_path(kind, upstream_path)
    assert "/" + "/".join(urllib.parse.quote(s, safe="") for s in reparsed) == upstream_path
    assert ".." not in reparsed
    expected_prefix = "/projects/101" if kind == "gitlab" else "/repos/octo/hello"
    assert upstream_path == expected_prefix or upstream_path.startswith(expected_prefix + "/")


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=40))
def test_normalise_path_never_yields_dot_segments(raw: str) -> None:
    try:
        segments = normalise_path("github", "/" + raw)
    except Denied:
        return

    for segment in segments:
        assert segment not in ("", ".", "..")
        assert "/" not in segment
        assert "\\" not in segment
