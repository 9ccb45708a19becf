"""Strict JSON for untrusted request bodies.

The stdlib :mod:`json` accepts things the exchange must not store: duplicate keys (last
one wins, so two readers can see two different objects), ``NaN``/``Infinity``, lone UTF-16
surrogates (not Unicode; PostgreSQL and RFC 8785 both refuse them later), numbers of a
magnitude beyond 2**53-1, integer or not (I-JSON, RFC 7493, cannot carry them exactly, and
RFC 8785 writes a large double as an integer literal no strict reader takes back) and nesting
deep enough to exhaust the parser's stack (research/security.md 6.2). :func:`parse_json`
refuses all of those, plus ``\\u0000`` (PostgreSQL text and jsonb cannot hold it), before
any STIX work starts.

Nesting depth is measured on the raw bytes, outside strings, before the parser runs, so a
body of 100 000 ``[`` costs a few milliseconds and never reaches a recursive call.

Pure code, no I/O. What the parsed value means (an envelope, a STIX object) is left to
:mod:`exchange.model.envelope` and :mod:`exchange.model.stix`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

from exchange.errors import LimitExceeded, MalformedJSON
from exchange.model.limits import Limits

#: Largest magnitude an integer may have (IEEE 754 doubles hold every integer up to it).
MAX_SAFE_INTEGER = 2**53 - 1

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 / -1 as signed bytes
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _show(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedJSON(f"duplicate key {_show(key)} in a JSON object")
            seen.add(key)
    return obj


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits <= 16:
        value = int(text)
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
    shown = text if len(text) <= 24 else f"{text[:20]}... ({digits} digits)"
    raise MalformedJSON(
        f"integer {shown} is outside +-(2**53-1); RFC 8785 cannot represent it exactly"
    )


def _parse_float(text: str) -> float:
    value = float(text)
    shown = text if len(text) <= 24 else f"{text[:20]}..."
    if not math.isfinite(value):
        raise MalformedJSON(f"number {shown} is too large for a 64-bit float")
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        # Every double this large is an integer, and RFC 8785 writes those below 1e21 as
        # integer literals (1e17 -> 100000000000000000) that no strict reader, this one
        # included, accepts back: the stored bytes could never be served or verified.
        raise MalformedJSON(
            f"number {shown} is outside +-(2**53-1); JSON numbers beyond it are not"
            " exchanged exactly (RFC 7493 section 2.2)")
    return value


def _parse_constant(name: str) -> Any:
    raise MalformedJSON(f"{name} is not allowed in JSON")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_pairs,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    strict=True,
)


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of JSON arrays and objects in ``data``, counted outside strings.

    Works on any bytes (valid JSON or not) in time linear in their length and without
    recursion; a top-level ``{}`` has depth 1.
    """
    # Without an escaped quote, every other piece between quotes is inside a string.
    escaped_quote = b'\\"' in data
    outside = _STRING.sub(b"", data) if escaped_quote else b"".join(data.split(b'"')[0::2])
    steps = outside.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(steps).cast("b"), initial=0))


def _refuse_lone_surrogates(value: Any) -> None:
    # json joins valid \uD8xx\uDCxx pairs into one code point; what is left is lone.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedJSON(
            "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff outside a valid"
            " pair), which is not Unicode"
        ) from e


def parse_json(data: bytes, limits: Limits) -> Any:
    """Parse an untrusted body under the strict profile.

    Args:
        data: The raw request body.
        limits: The caps in force (body size and nesting depth are used here).

    Returns:
        The parsed value (dicts, lists, str, int, float, bool, None).

    Raises:
        LimitExceeded: The body is larger than ``limits.max_body_bytes`` (HTTP 413) or
            nests deeper than ``limits.max_depth`` (HTTP 400).
        MalformedJSON: The body is not UTF-8 JSON, or it has a byte order mark,
            duplicate keys, ``NaN``/``Infinity``, a number (integer or not) beyond
            +-(2**53-1), a lone surrogate escape or a ``\\u0000`` escape.
    """
    if len(data) > limits.max_body_bytes:
        raise LimitExceeded(
            f"body is {len(data)} bytes, limit is {limits.max_body_bytes}", http_status=413
        )
    if data.count(b"[") + data.count(b"{") > limits.max_depth:
        depth = nesting_depth(data)
        if depth > limits.max_depth:
            raise LimitExceeded(
                f"JSON nests {depth} levels deep, limit is {limits.max_depth}", http_status=400
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedJSON(f"body is not valid UTF-8: {e.reason} at byte {e.start}") from e
    if text.startswith("\ufeff"):
        raise MalformedJSON("body starts with a byte order mark; send JSON without one")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise MalformedJSON(
            f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos})"
        ) from e
    except RecursionError as e:  # only reachable when max_depth is configured very high
        raise LimitExceeded("JSON nests too deeply to parse", http_status=400) from e
    if b"\\u" not in data:  # one scan for the common case: no \u escape at all
        return value
    if b"\\ud" in data or b"\\uD" in data:
        _refuse_lone_surrogates(value)
    if b"\\u0000" in data:
        nul = _NUL_ESCAPE.search(text)
        if nul is not None:
            raise MalformedJSON(
                f"a string holds \\u0000 (char {nul.end() - 6}); NUL characters are refused"
            )
    return value
