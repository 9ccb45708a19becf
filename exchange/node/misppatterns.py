"""STIX 2.1 indicator patterns of the simple kinds, as MISP attribute types and values.

A pattern is *simple* when it is one or more observation expressions joined by ``OR``,
each holding one or more comparisons joined by ``OR``, each comparison an equality
(``=``) between an object path MISP has an attribute type for and a string constant
(STIX 2.1 section 9). For example ``[domain-name:value = 'a.example' OR ipv4-addr:value =
'192.0.2.1']`` gives a ``domain`` and an ``ip-dst`` attribute. Everything else (``AND``,
other operators, qualifiers such as ``WITHIN``, ``FOLLOWEDBY``, paths MISP has no type
for) is not simple: :func:`simple_attributes` returns None and the caller keeps the whole
pattern as one ``stix2-pattern`` attribute, so nothing is lost or half-translated.

Types and categories follow MISP's ``describeTypes`` (the ``sane_defaults`` category where
it fits): an address in an indicator is where traffic goes, hence ``ip-dst`` (misp-stix
makes the same choice, research/misp.md 5.3).

Pure code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MispValue", "simple_attributes"]


@dataclass(frozen=True, slots=True, order=True)
class MispValue:
    """One MISP attribute's type, category and value."""

    type: str
    category: str
    value: str


_NETWORK: Final = "Network activity"
_PAYLOAD: Final = "Payload delivery"

#: (STIX object type, property path) -> (MISP type, category).
_PATHS: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("ipv4-addr", "value"): ("ip-dst", _NETWORK),
    ("ipv6-addr", "value"): ("ip-dst", _NETWORK),
    ("domain-name", "value"): ("domain", _NETWORK),
    ("url", "value"): ("url", _NETWORK),
    ("email-addr", "value"): ("email", _NETWORK),
}
#: STIX hash algorithm names (hash-algorithm-ov), compared without case and dashes.
_HASHES: Final[dict[str, str]] = {
    "MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512",
    "SSDEEP": "ssdeep",
}

_WS = r"\s*"
_STRING = r"'(?P<value>(?:[^'\\]|\\['\\])*)'"
_STEP = r"(?:[A-Za-z0-9_-]+|'[^'\\]+')"
_COMPARISON = re.compile(
    rf"{_WS}(?P<type>[a-z0-9-]+):(?P<path>{_STEP}(?:\.{_STEP})*){_WS}={_WS}{_STRING}{_WS}"
)
_OR = re.compile(r"OR\b")
#: A host name MISP accepts as a ``domain`` (RFC 1123 labels; ``_`` as seen in the wild).
#: MISP silently drops a ``domain`` attribute whose value is not one, so such a value
#: (``'domain autuo.xicp.net'`` in a real bundle) keeps the pattern whole instead.
_DOMAIN = re.compile(r"(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                     r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?")


def _unescape(text: str) -> str:
    return re.sub(r"\\(['\\])", r"\1", text)


def _lookup(object_type: str, path: str) -> tuple[str, str] | None:
    steps = [s.strip("'") for s in path.split(".")]
    if object_type == "file" and len(steps) == 2 and steps[0] == "hashes":
        misp_type = _HASHES.get(steps[1].upper().replace("-", ""))
        return (misp_type, _PAYLOAD) if misp_type else None
    return _PATHS.get((object_type, ".".join(steps)))


def _comparisons(body: str) -> list[MispValue] | None:
    """The comparisons of one observation expression's body, or None if not simple."""
    out: list[MispValue] = []
    pos = 0
    while True:
        match = _COMPARISON.match(body, pos)
        if match is None:
            return None
        found = _lookup(match["type"], match["path"])
        if found is None:
            return None
        value = _unescape(match["value"])
        if found[0] == "domain" and not _DOMAIN.fullmatch(value):
            return None
        out.append(MispValue(found[0], found[1], value))
        pos = match.end()
        if pos == len(body):
            return out
        separator = _OR.match(body, pos)
        if separator is None:
            return None
        pos = separator.end()


#: The body of an observation expression up to its closing ``]``: any character but a
#: quote, a bracket or ``(``, or a quoted string (a backslash escapes the next
#: character). Stopping at ``[`` or ``(`` (nesting: not simple) or at an unclosed quote
#: leaves the match before something other than ``]``.
_OBSERVATION_BODY = re.compile(r"(?:[^'\[\](]+|'(?:[^'\\]|\\[\s\S])*')*")


def _observation_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the observation expression opened at ``start``, or -1."""
    match = _OBSERVATION_BODY.match(pattern, start + 1)
    end = match.end() if match is not None else start + 1
    return end if end < len(pattern) and pattern[end] == "]" else -1


def simple_attributes(pattern: str) -> tuple[MispValue, ...] | None:
    """The MISP attributes a simple pattern stands for (see the module docstring).

    Args:
        pattern: A STIX 2.1 pattern (``pattern_type`` ``stix``).

    Returns:
        The attributes in pattern order without repeats, or None when the pattern is not
        simple (the caller keeps it as a ``stix2-pattern`` attribute).
    """
    out: list[MispValue] = []
    pos = 0
    text = pattern.strip()
    while True:
        if pos >= len(text) or text[pos] != "[":
            return None
        end = _observation_end(text, pos)
        if end < 0:
            return None
        found = _comparisons(text[pos + 1:end])
        if found is None:
            return None
        for value in found:
            if value not in out:
                out.append(value)
        pos = end + 1
        rest = text[pos:].lstrip()
        if not rest:
            return tuple(out)
        separator = _OR.match(rest)
        if separator is None:
            return None
        text = rest[separator.end():].lstrip()
        pos = 0
