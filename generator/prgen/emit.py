"""Plain data -> block YAML: fast, byte-stable, and no string can change the structure.

A sync renders three small documents per environment; at 10,000 environments a
general YAML emitter (ruamel's round-trip one, pure Python) was most of a run. The
manifests are plain data (mappings, lists, strings, numbers, booleans, null), so this
writes them directly, with one conservative rule per scalar:

- a string is written plain only when it is made of a few safe characters and no
  YAML 1.1 or 1.2 reader could take it for anything but that string (no booleans like
  `yes`/`on`, no null, no number, no date: anything starting with a digit is quoted
  unless it is a duration-like `10m`);
- every other string is double-quoted, with every character that is not plainly
  printable escaped: control characters, the line breaks YAML 1.1 readers fold
  (\\x85, \\u2028, \\u2029) and the byte-order mark.

So PR text only ever becomes one scalar on one line (invariant 4). Anything else (a
date a template wrote unquoted, a mapping used as a key, a lone surrogate) raises `Unsupported`, and
the caller falls back to a general emitter.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any


class Unsupported(TypeError):
    """The value holds something this emitter does not write (the caller falls back)."""


_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*\Z")
# Starts with a digit, but holds a letter that makes it no number (10m, 687bfeb9): a string
# to every reader, unless it is a 0x/0o/0b number or its letters are only exponents (1e5).
_DIGITS_AND_LETTERS = re.compile(r"[0-9][0-9a-z]*\Z")
_NUMBER_PREFIXES = ("0x", "0o", "0b")
# Plain words some YAML reader (1.1 or 1.2) resolves to a boolean or null.
_SPECIAL_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})

_ESCAPES = {
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    '"': '\\"',
    "\\": "\\\\",
}
_NEEDS_ESCAPE = re.compile('[\\\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    known = _ESCAPES.get(char)
    if known is not None:
        return known
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def quoted(text: str) -> str:
    if _SURROGATE.search(text):
        # No YAML reader takes an escaped lone surrogate, and UTF-8 has none.
        raise Unsupported("a lone surrogate")
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


@functools.lru_cache(maxsize=8192)  # keys and template values recur in every document
def string(text: str) -> str:
    if _PLAIN.match(text):
        return text if text.lower() not in _SPECIAL_WORDS else quoted(text)
    if (
        _DIGITS_AND_LETTERS.match(text)
        and not text.startswith(_NUMBER_PREFIXES)
        and any(char.isalpha() and char != "e" for char in text)
    ):
        return text
    return quoted(text)


def scalar(value: Any) -> str:
    if isinstance(value, str):
        return string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 wants a dot in a float: 1e-05 would read back as a string.
        if "." not in text:
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0" + (f"e{exponent}" if exponent else "")
        return text
    raise Unsupported(f"cannot write a {type(value).__name__}")


def _key(value: Any) -> str:
    if isinstance(value, dict | list):
        raise Unsupported("a collection as a mapping key")
    return scalar(value)


def _mapping(data: dict[Any, Any], indent: str, out: list[str]) -> None:
    for key, value in data.items():
        head = f"{indent}{_key(key)}:"
        if isinstance(value, dict) and value:
            out.append(head + "\n")
            _mapping(value, indent + "  ", out)
        elif isinstance(value, list) and value:
            out.append(head + "\n")
            _sequence(value, indent + "  ", out)
        else:
            out.append(f"{head} {_flow_or_scalar(value)}\n")


def _sequence(data: list[Any], indent: str, out: list[str]) -> None:
    for item in data:
        if isinstance(item, dict) and item:
            # The first key goes on the dash's line, the rest line up under it.
            nested: list[str] = []
            _mapping(item, indent + "  ", nested)
            nested[0] = f"{indent}- " + nested[0][len(indent) + 2 :]
            out.extend(nested)
        elif isinstance(item, list) and item:
            out.append(f"{indent}-\n")
            _sequence(item, indent + "  ", out)
        else:
            out.append(f"{indent}- {_flow_or_scalar(item)}\n")


def _flow_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"  # only ever empty here
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def document(data: dict[Any, Any]) -> str:
    """One block-style YAML document for `data` (a mapping). Raises Unsupported."""
    if not isinstance(data, dict):
        raise Unsupported("a document is a mapping")
    if not data:
        return "{}\n"
    out: list[str] = []
    _mapping(data, "", out)
    return "".join(out)
