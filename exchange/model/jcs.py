"""RFC 8785 (JCS) canonical JSON bytes, through the standard library's C encoder when that
is provably the same output.

:func:`dumps` returns exactly what ``rfc8785.dumps`` returns, and raises exactly what it
raises. The ``rfc8785`` package is pure Python (about 100 us for a small STIX object, and a
node signature needs it twice); for the values STIX objects are made of, the standard
library's ``json`` encoder in C writes the same bytes, because RFC 8785 section 3.2 and
``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))`` agree on:

* literals ``null``, ``true``, ``false``, and integers within +-(2**53-1) (both write the
  shortest decimal form, RFC 8785 section 3.2.2.3 for integral numbers);
* strings (section 3.2.2.2): both escape exactly ``"``, ``\\``, ``\\b \\f \\n \\r \\t``
  and the other characters below U+0020 as ``\\u00xx`` with lower-case hex digits, and
  write every other character as itself, UTF-8 encoded; a lone surrogate cannot be
  encoded as UTF-8, so it fails in both (here it falls back to ``rfc8785``, which raises
  its own error);
* member order (section 3.2.3): RFC 8785 sorts by UTF-16 code units, Python by code
  points; the two orders are the same for keys made of ASCII characters (they differ
  only between a supplementary character and one in U+E000-U+FFFF).

Anything else (a float, a non-ASCII key, an integer beyond the range, a tuple, a
subclass of dict, list, str or int, nesting deeper than :data:`_MAX_DEPTH`) goes to
``rfc8785.dumps`` itself. ``tests/unit/model/test_jcs.py`` proves the equality with
Hypothesis over arbitrary JSON values (every Unicode category, surrogates included).

Pure code, no I/O.
"""

from __future__ import annotations

import json
from typing import Any, Final

import rfc8785

__all__ = ["dumps", "dumps_part", "dumps_plain"]

_INT_MAX: Final = 2**53 - 1
#: Deeper values take ``rfc8785``'s own path (and its recursion limit).
_MAX_DEPTH: Final = 64
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                                   allow_nan=False, check_circular=False)


def _simple(value: Any, max_depth: int = _MAX_DEPTH) -> bool:
    """Whether the C encoder writes ``value`` exactly as RFC 8785 does (module docstring),
    with no container nested more than ``max_depth`` deep (the top one at depth 1).

    Scalars inside a container are judged where they are met; only containers wait on
    the stack (most of a STIX object's values are strings).
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return _simple_scalar(value)
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth >= max_depth:
            return False
        inner_depth = depth + 1
        values = item
        if type(item) is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            values = item.values()
        for inner in values:
            kind = type(inner)
            if kind is str or kind is bool or inner is None:
                continue
            if kind is dict or kind is list:
                push((inner, inner_depth))
            elif kind is not int or not -_INT_MAX <= inner <= _INT_MAX:
                return False
    return True


def _simple_scalar(value: Any) -> bool:
    """:func:`_simple` of a value that is not a dict or a list."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    return kind is int and -_INT_MAX <= value <= _INT_MAX


def dumps(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (same result and errors as
    ``rfc8785.dumps``).

    Raises:
        rfc8785.CanonicalizationError: As ``rfc8785.dumps`` (a float out of the JSON
            domain, an integer beyond +-(2**53-1), a lone surrogate, a non-string key).
        TypeError: As ``rfc8785.dumps``, for a value of a non-JSON type.
    """
    if _simple(value):
        try:
            return _ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 raises its own error for it
    return rfc8785.dumps(value)


def dumps_plain(value: Any, max_depth: int) -> tuple[bytes, bool]:
    """:func:`dumps`, and whether the bytes are certain to parse back as ``value`` itself.

    The second item is true when ``value`` took the C encoder's path (only dicts with
    ASCII keys, lists, strings, integers within +-(2**53-1), booleans and null), no
    container is nested more than ``max_depth`` deep, and the bytes hold no ``\\u0000``
    escape, i.e. no string or key holds a NUL (a backslash followed by ``u0000`` in a
    string is written ``\\\\u0000`` and also answers false: false only ever sends the
    caller to a real round trip). A float, which RFC 8785 may write as an integer literal
    beyond the JSON parser's range, always answers false.

    Raises:
        As :func:`dumps`.
    """
    if _simple(value, min(max_depth, _MAX_DEPTH)):
        try:
            out = _ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return out, b"\\u0000" not in out
    return rfc8785.dumps(value), False


def dumps_part(value: dict[str, Any] | list[Any]) -> bytes:
    """The RFC 8785 bytes of a container taken from a value :func:`dumps_plain` answered
    true for (one of its dicts, or a dict of some of its members): such a part takes the
    C encoder's path too, so it is encoded without walking it again.

    The caller vouches for the part's origin; anything else must go to :func:`dumps`.
    """
    return _ENCODER.encode(value).encode("utf-8")
