"""The fast emitter: whatever the text, both YAML 1.1 and 1.2 readers read back exactly it."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from prgen import emit

_RUAMEL = YAML(typ="safe", pure=True)

# Text of every kind, weighted toward what trips YAML: words readers resolve, numbers,
# dates, indicators, line breaks YAML 1.1 folds, control characters.
TRICKY = [
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "N",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "",
    "0x1f",
    "0o17",
    "0b101",
    "0777",
    "1e5",
    "1E5",
    "1.5",
    ".5",
    "1_000",
    "+1",
    "-1",
    ".inf",
    "-.inf",
    ".nan",
    "2001-12-14",
    "1:20",
    "12:30:45",
    "<<",
    "=",
    "- a",
    "? x",
    "a: b",
    "a #b",
    "#x",
    "&a",
    "*a",
    "!tag",
    "|",
    ">",
    "'q'",
    '"q"',
    "%x",
    "@x",
    "`x",
    "a\nb",
    "a\x85b",
    "a\u2028b",
    "a\u2029b",
    "\ufeffbom",
    "\x00\x07\x1b\x7f",
    "${VAR}",
    "10m",
    "687bfeb9f077",
    "1e5f",
    "  lead",
    "trail  ",
    "\t",
    "é✓😀",
]
scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.text(),
    st.text(alphabet="0123456789abcdefxob.e-_:+ "),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
keys = st.one_of(st.sampled_from(TRICKY), st.text(), st.integers())
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(keys, data, min_size=1, max_size=6))
def test_both_yaml_versions_read_back_exactly_what_was_written(document: dict[Any, Any]) -> None:
    text = emit.document(document)
    assert _RUAMEL.load(text) == document  # YAML 1.2
    assert yaml.load(text, Loader=yaml.SafeLoader) == document  # YAML 1.1, as Go's readers
    assert yaml.load(text, Loader=yaml.CSafeLoader) == document  # libyaml


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_string_is_one_line_and_one_scalar(text: str) -> None:
    written = emit.document({"key": text, "next": "x"})
    assert written.count("\n") == 2
    assert written.endswith("\nnext: x\n")
    assert yaml.load(written, Loader=yaml.SafeLoader) == {"key": text, "next": "x"}


def test_line_breaks_yaml_1_1_folds_are_double_quoted_escapes() -> None:
    for char in "\x85\u2028\u2029":
        written = emit.document({"t": f"a{char}b"})
        assert char not in written
        assert written.startswith('t: "')


def test_names_and_durations_stay_plain_numbers_and_words_do_not() -> None:
    written = emit.document(
        {"name": "shop-pr-1", "interval": "10m", "sha": "0" * 40, "on": "yes", "n": 3}
    )
    assert written == (f'name: shop-pr-1\ninterval: 10m\nsha: "{"0" * 40}"\n"on": "yes"\n"n": 3\n')


def test_a_date_is_not_written_by_the_fast_emitter() -> None:
    import datetime

    try:
        emit.document({"when": datetime.date(2024, 1, 1)})
    except emit.Unsupported:
        return
    raise AssertionError("a date must raise Unsupported")
