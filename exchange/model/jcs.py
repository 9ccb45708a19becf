"""RFC 8785 (JCS) bytes of *plain* JSON values, by the standard library's C encoder.

For a value made only of dicts with ASCII string keys, lists, strings, integers within
+-(2**53-1), booleans and None (no floats), ``json.dumps(sort_keys=True,
ensure_ascii=False, separators=(",", ":"))`` writes exactly the RFC 8785 bytes, several
times faster than the ``rfc8785`` package: members sorted by key (for ASCII keys UTF-16
code-unit order and code-point order agree), no whitespace, integers in decimal, strings
escaped as RFC 8785 section 3.2.2.2 does (``"``, ``\\``, ``\\b \\f \\n \\r \\t`` and the
other controls as lowercase ``\\u00xx``, nothing else; characters beyond ASCII as
themselves). Any other value (a float, a non-ASCII key, a big integer, another type) is
left to ``rfc8785``: :func:`plain_canonical` returns None for it. A Hypothesis property
(``tests/unit/signing/test_canonical.py``) holds the two equal on random values.

Pure code, no I/O.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["plain_canonical"]

_ENCODE: Final = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False,
    check_circular=False).encode
_SAFE_INTEGER: Final = 2**53 - 1
_MAX_DEPTH: Final = 100


def _plain(value: Any, depth: int) -> bool:
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return bool(-_SAFE_INTEGER <= value <= _SAFE_INTEGER)
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _plain(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)
    return False


def plain_canonical(value: Any) -> bytes | None:
    """The RFC 8785 bytes of a plain value (module docstring), else None.

    None too for a string holding a lone surrogate (not Unicode): ``rfc8785`` refuses it
    with its reason.
    """
    if not _plain(value, 0):
        return None
    try:
        return _ENCODE(value).encode("utf-8")
    except UnicodeEncodeError:
        return None
