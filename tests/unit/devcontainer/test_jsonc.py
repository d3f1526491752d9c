"""Tests of JSONC parsing: comments, trailing commas, BOM, errors with positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devaipod.devcontainer.jsonc import (
    JsoncSyntaxError,
    load_jsonc_object,
    parse_jsonc,
    strip_jsonc,
)
from devaipod.errors import UserError


def test_parse_line_and_block_comments() -> None:
    text = '/* head */ {"a": 1, // one\n "b": /* inline */ [2, 3] /// triple\n}'
    assert parse_jsonc(text) == {"a": 1, "b": [2, 3]}


def test_parse_trailing_commas() -> None:
    assert parse_jsonc('{"a": [1, 2,], "b": {"c": 3,},}') == {"a": [1, 2], "b": {"c": 3}}


def test_parse_trailing_comma_before_comment() -> None:
    assert parse_jsonc('{"a": [1, // x\n /* y */ ], }') == {"a": [1]}


def test_parse_comment_markers_inside_strings() -> None:
    text = '{"url": "http://x/*y*/", "q": "a \\" // b", "c": "x,]"}'
    assert parse_jsonc(text) == {"url": "http://x/*y*/", "q": 'a " // b', "c": "x,]"}


def test_parse_byte_order_mark() -> None:
    assert parse_jsonc('\ufeff{"a": 1}') == {"a": 1}


def test_parse_duplicate_keys_last_wins() -> None:
    parsed = parse_jsonc('{"a": 1, "b": 2, "a": 3}')
    assert parsed == {"a": 3, "b": 2}
    assert list(parsed) == ["a", "b"]


def test_parse_keeps_key_order() -> None:
    assert list(parse_jsonc('{"z": 1, "a": 2, "m": 3}')) == ["z", "a", "m"]


def test_parse_error_has_line_and_column() -> None:
    with pytest.raises(JsoncSyntaxError) as caught:
        parse_jsonc('{\n  // comment\n  "a": 1\n  "b": 2\n}')
    assert (caught.value.line, caught.value.column) == (4, 3)


def test_parse_rejects_json5_extras() -> None:
    for text in ("{'a': 1}", "{a: 1}", '{"a": 0x10}', '{"a": Infinity}', '{"a": NaN}'):
        with pytest.raises(JsoncSyntaxError):
            parse_jsonc(text)


def test_unterminated_block_comment_position() -> None:
    with pytest.raises(JsoncSyntaxError) as caught:
        strip_jsonc('{"a": 1}\n  /* open')
    assert (caught.value.line, caught.value.column) == (2, 3)


def test_load_reports_file_line_column(tmp_path: Path) -> None:
    path = tmp_path / "devcontainer.json"
    path.write_text('{\n  "image": "x",,\n}')
    with pytest.raises(UserError) as caught:
        load_jsonc_object(path)
    assert f"{path}:2:" in caught.value.message
    assert caught.value.fix


def test_load_rejects_top_level_array(tmp_path: Path) -> None:
    path = tmp_path / "devcontainer.json"
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="must contain a JSON object, not array"):
        load_jsonc_object(path)


def test_load_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "devcontainer.json"
    path.write_text(" \n")
    with pytest.raises(UserError, match="is empty"):
        load_jsonc_object(path)


def test_load_rejects_comment_only_file(tmp_path: Path) -> None:
    path = tmp_path / "devcontainer.json"
    path.write_text("// nothing here\n/* at all */")
    with pytest.raises(UserError, match="only comments"):
        load_jsonc_object(path)


def test_load_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_jsonc_object(tmp_path / "devcontainer.json")


def test_load_rejects_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "devcontainer.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(UserError, match="invalid UTF-8 at byte 7"):
        load_jsonc_object(path)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
noise = st.sampled_from(["", " ", "\n", "\t", "// c\n", "/* c */", "/**/", "/* , ] } */", "//,\n"])


def _serialise_noisy(value: object, draw_noise: st.DrawFn) -> str:
    """Serialise `value` as JSON with comments, whitespace and trailing commas inserted."""
    if isinstance(value, list):
        items = [_serialise_noisy(item, draw_noise) for item in value]
        trailing = "," if items and draw_noise(st.booleans()) else ""
        return "[" + draw_noise(noise) + ",".join(items) + trailing + draw_noise(noise) + "]"
    if isinstance(value, dict):
        members = [
            draw_noise(noise)
            + json.dumps(key)
            + draw_noise(noise)
            + ":"
            + _serialise_noisy(item, draw_noise)
            for key, item in value.items()
        ]
        trailing = "," if members and draw_noise(st.booleans()) else ""
        return "{" + ",".join(members) + trailing + draw_noise(noise) + "}"
    return draw_noise(noise) + json.dumps(value) + draw_noise(noise)


@st.composite
def noisy_documents(draw: st.DrawFn) -> tuple[object, str]:
    value = draw(json_values)
    return value, _serialise_noisy(value, draw)


@settings(max_examples=300)
@given(noisy_documents())
def test_noisy_serialisation_loads_equal(document: tuple[object, str]) -> None:
    value, text = document
    assert parse_jsonc(text) == value


@given(json_values)
def test_plain_json_unchanged_by_strip(value: object) -> None:
    text = json.dumps(value, indent=1)
    assert strip_jsonc(text) == text


@given(st.text())
def test_strip_keeps_length_and_newlines(text: str) -> None:
    try:
        stripped = strip_jsonc(text)
    except JsoncSyntaxError:
        return
    assert len(stripped) == len(text)
    assert [i for i, c in enumerate(stripped) if c == "\n"] == [
        i for i, c in enumerate(text) if c == "\n"
    ]


@given(st.text(alphabet=st.sampled_from(list('{}[],:"/*\\ \n\tab1-.etrufnl\ufeff')), max_size=40))
def test_arbitrary_text_parses_or_raises_syntax(text: str) -> None:
    try:
        parse_jsonc(text)
    except JsoncSyntaxError as error:
        assert error.line >= 1
        assert error.column >= 1


def test_tab_inside_string_accepted() -> None:
    assert parse_jsonc('{"a": "x\ty"}') == {"a": "x\ty"}


def test_line_break_inside_string_rejected() -> None:
    with pytest.raises(JsoncSyntaxError) as caught:
        parse_jsonc('{\n  "a": "x\ny"}')
    assert (caught.value.line, caught.value.column) == (2, 8)
