"""STIX 2.1 patterns: size caps, then a fast validator for the patterning grammar.

The reference is ``stix2patterns.validator.run_validator(pattern, stix_version="2.1")``,
which ``stix2`` runs on every indicator with ``pattern_type: stix``. Its ANTLR parser costs
about 0.5 ms per pattern and recurses per nesting level (1 000 nested parentheses or ORed
observations raise ``RecursionError``, research/security.md 6.2), so :func:`check_pattern`

1. refuses patterns over ``max_pattern_bytes`` or with more than
   ``max_pattern_observations`` ``[`` openings outside string literals, before any parser;
2. refuses parentheses nested deeper than :data:`MAX_PAREN_DEPTH` (the reference accepts a
   few hundred; nobody writes them, and it bounds our own recursion);
3. runs a hand-written tokenizer and recursive-descent parser for the same grammar
   (``STIXPattern.g4`` of the OASIS STIX 2.1 pattern grammar) that reproduces the
   reference's verdict, including its extra checks: the pattern must start with ``[``
   after any ``(``; a qualifier type may not repeat directly on one ``[...]``; negative
   list indexes are refused; hash values are checked against the reference's own table
   (``stix2patterns.v21.object_validator.HASHES_REGEX``), including its quirks (a hash
   compared with ``IN`` never passes, a hash selected by index is refused).

The tokenizer follows ANTLR's longest-match rule with the grammar's rule order; keywords
are case-sensitive; comments (``/* */``, ``//``) are skipped. Equivalence with the reference
is proved by Hypothesis properties in ``tests/unit/model/test_pattern.py``. Should the fast
parser ever fail internally, the reference decides (correctness first).

Pure code, no I/O.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Final

from stix2patterns.v21.object_validator import HASHES_REGEX

from exchange.errors import InvalidObject, LimitExceeded
from exchange.model.limits import Limits

log = logging.getLogger(__name__)

#: Deepest parenthesis nesting accepted (observation and comparison levels together).
MAX_PAREN_DEPTH: Final = 64

_TOKEN = re.compile(
    r"""
    (?P<WS>[ \t\r\n\x0b\x0c\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)
  | (?P<COMMENT>/\*[\s\S]*?\*/|//[^\r\n]*)
  | (?P<TS>t'[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])
         T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?Z')
  | (?P<HEX>h'(?:[A-Fa-f0-9]{2})*')
  | (?P<BIN>b'(?:[A-Za-z0-9+/]{4})*
         (?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)')
  | (?P<WORD>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<FLOAT>[+-]?[0-9]*\.[0-9]+)
  | (?P<INT>[+-]?(?:0|[1-9][0-9]*))
  | (?P<STR>'[^'\\]*(?:\\['\\][^'\\]*)*')
  | (?P<OP>==|=|!=|<>|<=|>=|<|>)
  | (?P<PUNCT>[:.,()\[\]*])
  | (?P<BAD>[\s\S])
    """,
    re.VERBOSE,
)
_STRING_LITERAL = re.compile(r"'[^'\\]*(?:\\['\\][^'\\]*)*'")

_KEYWORDS: Final = frozenset(
    {
        "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET",
        "EXISTS", "IN", "START", "STOP", "SECONDS", "WITHIN", "REPEATS", "TIMES",
    }
)  # fmt: skip
_OPS: Final = {
    "=": "EQ", "==": "EQ", "!=": "NEQ", "<>": "NEQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE",
}  # fmt: skip
_PUNCT: Final = {
    ":": "COLON", ".": "DOT", ",": "COMMA", "(": "LPAREN", ")": "RPAREN",
    "[": "LBRACK", "]": "RBRACK", "*": "ASTERISK",
}  # fmt: skip
_ORDERABLE: Final = frozenset(
    {"INTPOS", "INTNEG", "FLOATPOS", "FLOATNEG", "STR", "BIN", "HEX", "TS"}
)
_PRIMITIVE: Final = _ORDERABLE | {"BOOL"}
_STRING_OPS: Final = frozenset({"LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"})
_HASH_CHECKS: Final = {name: re.compile(rx) for name, (rx, _) in HASHES_REGEX.items()}
_QUALIFIER_NAMES: Final = {"WITHIN": "WITHIN", "REPEATS": "REPEATS", "START": "START/STOP"}


class _Star:
    """The ``[*]`` index step."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One comparison expression of a pattern, as :func:`comparisons` reports it.

    Attributes:
        object_type: The object type of the path (``ipv4-addr``, ``file``...).
        path: The property path after the type: names, list indexes, and None for
            ``[*]`` (``file:hashes.'SHA-256'`` is ``("hashes", "SHA-256")``).
        operator: ``EQ``, ``NEQ``, ``LT``, ``LE``, ``GT``, ``GE``, ``IN``, ``LIKE``,
            ``MATCHES``, ``ISSUBSET`` or ``ISSUPERSET``.
        negated: Whether ``NOT`` precedes the operator.
        values: The string literals compared with, unquoted (one, or a set's items);
            numbers, booleans, binary, hex and timestamp literals are left out.
    """

    object_type: str
    path: tuple[str | int | None, ...]
    operator: str
    negated: bool
    values: tuple[str, ...]


_STAR: Final = _Star()
_PathStep = str | int | _Star


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("\\'", "'").replace("\\\\", "\\")


def _tokenize(pattern: str) -> tuple[list[str], list[str], list[int]]:
    kinds: list[str] = []
    texts: list[str] = []
    starts: list[int] = []
    for m in _TOKEN.finditer(pattern):
        group = m.lastgroup
        if group in ("WS", "COMMENT"):
            continue
        text = m.group()
        if group == "WORD":
            if "-" in text:
                kind = "IDH"
            elif text in _KEYWORDS:
                kind = text
            elif text in ("true", "false"):
                kind = "BOOL"
            elif text == "LAST":
                kind = "BAD"  # a keyword of the grammar that no parser rule uses
            else:
                kind = "ID"
        elif group == "INT":
            kind = "INTNEG" if text[0] == "-" else "INTPOS"
        elif group == "FLOAT":
            kind = "FLOATNEG" if text[0] == "-" else "FLOATPOS"
        elif group == "OP":
            kind = _OPS[text]
        elif group == "PUNCT":
            kind = _PUNCT[text]
        else:
            kind = group or "BAD"
        kinds.append(kind)
        texts.append(text)
        starts.append(m.start())
    kinds.append("EOF")
    texts.append("")
    starts.append(len(pattern))
    return kinds, texts, starts


class _Parser:
    """Recursive descent over the STIX 2.1 pattern grammar; raises InvalidObject."""

    def __init__(self, pattern: str) -> None:
        self.kinds, self.texts, self.starts = _tokenize(pattern)
        self.i = 0
        self.depth = 0
        self.negative_index = False
        self.comparisons: list[tuple[list[_PathStep], str]] = []
        #: Every comparison in full, for :func:`comparisons`.
        self.tests: list[Comparison] = []
        self._set_items: list[str] = []

    # helpers ------------------------------------------------------------------------

    def fail(self, expected: str) -> InvalidObject:
        i = self.i
        if self.kinds[i] == "EOF":
            got = "the end of the pattern"
        else:
            text = self.texts[i]
            got = repr(text if len(text) <= 30 else text[:27] + "...")
            got = f"{got} at character {self.starts[i]}"
        return InvalidObject(f"pattern: expected {expected}, got {got}")

    def expect(self, kind: str, expected: str) -> str:
        if self.kinds[self.i] != kind:
            raise self.fail(expected)
        self.i += 1
        return self.texts[self.i - 1]

    def open_paren(self) -> None:
        self.depth += 1
        if self.depth > MAX_PAREN_DEPTH:
            raise InvalidObject(f"pattern: parentheses nest more than {MAX_PAREN_DEPTH} deep")
        self.i += 1

    # grammar ------------------------------------------------------------------------

    def parse(self) -> None:
        self.observation_expressions()
        if self.kinds[self.i] != "EOF":
            raise self.fail("FOLLOWEDBY, OR, AND, a qualifier or the end of the pattern")
        if self.negative_index:
            raise InvalidObject("pattern: a list index must not be negative")
        self.check_hashes()

    def observation_expressions(self) -> None:
        self.observation_or()
        while self.kinds[self.i] == "FOLLOWEDBY":
            self.i += 1
            self.observation_or()

    def observation_or(self) -> None:
        self.observation_and()
        while self.kinds[self.i] == "OR":
            self.i += 1
            self.observation_and()

    def observation_and(self) -> None:
        self.observation()
        while self.kinds[self.i] == "AND":
            self.i += 1
            self.observation()

    def observation(self) -> None:
        kind = self.kinds[self.i]
        if kind == "LBRACK":
            self.i += 1
            self.comparison()
            self.expect("RBRACK", "']'")
            seen: set[str] | None = set()
        elif kind == "LPAREN":
            self.open_paren()
            self.observation_expressions()
            self.expect("RPAREN", "')'")
            self.depth -= 1
            seen = None  # qualifiers on a parenthesised group may repeat (reference rule)
        else:
            raise self.fail("'[' or '('")
        while True:
            kind = self.kinds[self.i]
            if kind == "WITHIN":
                self.i += 1
                if self.kinds[self.i] not in ("INTPOS", "FLOATPOS"):
                    raise self.fail("a positive number of seconds")
                self.i += 1
                self.expect("SECONDS", "SECONDS")
            elif kind == "REPEATS":
                self.i += 1
                self.expect("INTPOS", "a positive integer")
                self.expect("TIMES", "TIMES")
            elif kind == "START":
                self.i += 1
                self.expect("TS", "a timestamp literal t'...'")
                self.expect("STOP", "STOP")
                self.expect("TS", "a timestamp literal t'...'")
            else:
                return
            if seen is not None:
                if kind in seen:
                    raise InvalidObject(
                        f"pattern: two {_QUALIFIER_NAMES[kind]} qualifiers apply to one"
                        " observation expression"
                    )
                seen.add(kind)

    def comparison(self) -> None:
        self.comparison_and()
        while self.kinds[self.i] == "OR":
            self.i += 1
            self.comparison_and()

    def comparison_and(self) -> None:
        self.property_test()
        while self.kinds[self.i] == "AND":
            self.i += 1
            self.property_test()

    def property_test(self) -> None:
        kind = self.kinds[self.i]
        if kind == "LPAREN":
            self.open_paren()
            self.comparison()
            self.expect("RPAREN", "')'")
            self.depth -= 1
            return
        if kind == "EXISTS":
            self.i += 1
            self.object_path()
            return
        if kind not in ("ID", "IDH"):
            raise self.fail("an object path such as file:name, '(' or EXISTS")
        object_type = self.texts[self.i]
        path = self.object_path()
        negated = self.kinds[self.i] == "NOT"
        if negated:
            self.i += 1
        op = self.kinds[self.i]
        if op in ("EQ", "NEQ"):
            self.i += 1
            value = self.literal(_PRIMITIVE)
            items = [value]
        elif op in ("GT", "LT", "GE", "LE"):
            self.i += 1
            value = self.literal(_ORDERABLE)
            items = [value]
        elif op == "IN":
            self.i += 1
            value = self.set_literal()
            items = self._set_items
        elif op in _STRING_OPS:
            self.i += 1
            value = self.expect("STR", "a string literal")
            items = [value]
        else:
            raise self.fail("a comparison operator")
        self.comparisons.append((path, value))
        self.tests.append(Comparison(
            object_type=object_type,
            path=tuple(None if isinstance(step, _Star) else step for step in path),
            operator=op, negated=negated,
            values=tuple(_unquote(item) for item in items if item.startswith("'")),
        ))

    def object_path(self) -> list[_PathStep]:
        if self.kinds[self.i] not in ("ID", "IDH"):
            raise self.fail("an object type")
        self.i += 1
        self.expect("COLON", "':'")
        kind = self.kinds[self.i]
        if kind == "ID":
            path: list[_PathStep] = [self.texts[self.i]]
        elif kind == "STR":
            path = [_unquote(self.texts[self.i])]
        else:
            raise self.fail("a property name")
        self.i += 1
        while True:
            kind = self.kinds[self.i]
            if kind == "DOT":
                self.i += 1
                kind = self.kinds[self.i]
                if kind == "ID":
                    path.append(self.texts[self.i])
                elif kind == "STR":
                    path.append(_unquote(self.texts[self.i]))
                else:
                    raise self.fail("a property name")
                self.i += 1
            elif kind == "LBRACK":
                self.i += 1
                kind = self.kinds[self.i]
                if kind == "INTPOS":
                    path.append(int(self.texts[self.i]))
                elif kind == "ASTERISK":
                    path.append(_STAR)
                elif kind == "INTNEG":
                    self.negative_index = True
                    path.append(-1)
                else:
                    raise self.fail("a list index or '*'")
                self.i += 1
                self.expect("RBRACK", "']'")
            else:
                return path

    def literal(self, allowed: frozenset[str]) -> str:
        if self.kinds[self.i] not in allowed:
            raise self.fail("a literal value")
        self.i += 1
        return self.texts[self.i - 1]

    def set_literal(self) -> str:
        self.expect("LPAREN", "'(' opening a set")
        if self.kinds[self.i] == "RPAREN":
            self.i += 1
            self._set_items = []
            return "()"
        items = [self.literal(_PRIMITIVE)]
        while self.kinds[self.i] == "COMMA":
            self.i += 1
            items.append(self.literal(_PRIMITIVE))
        self.expect("RPAREN", "')' or ','")
        self._set_items = items
        return "(" + ",".join(items) + ")"

    def check_hashes(self) -> None:
        for path, value in self.comparisons:
            if "hashes" not in path:
                continue
            selector = path[-1]
            if isinstance(selector, _Star):
                continue
            if isinstance(selector, int):
                raise InvalidObject("pattern: select a hash by algorithm name, not by index")
            check = _HASH_CHECKS.get(selector.upper().replace("-", "").replace("'", ""))
            if check is not None and not check.match(value.replace("'", "")):
                shown = value if len(value) <= 40 else value[:37] + "..."
                raise InvalidObject(f"pattern: {shown} is not a valid {selector} hash")


def _starts_with_bracket(pattern: str) -> bool:
    for c in pattern:
        if c != "(" and not c.isspace():
            return c == "["
    return False


def _reference_errors(pattern: str) -> list[str]:
    """The reference validator's errors (empty when valid); never raises."""
    from stix2patterns.validator import run_validator  # noqa: PLC0415 - slow, rarely needed

    try:
        return [str(e) for e in run_validator(pattern, stix_version="2.1")]
    except RecursionError:
        return ["the pattern nests too deeply"]
    except Exception:  # noqa: BLE001 - the reference raises on some invalid patterns
        return ["the pattern is not valid"]


def check_pattern(pattern: str, limits: Limits) -> None:
    """Check a STIX 2.1 pattern: size caps first, then the patterning grammar.

    Args:
        pattern: The indicator's ``pattern`` (``pattern_type`` ``stix``).
        limits: The caps in force (``max_pattern_bytes``, ``max_pattern_observations``).

    Raises:
        LimitExceeded: The pattern is longer than ``max_pattern_bytes`` UTF-8 bytes or has
            more than ``max_pattern_observations`` ``[`` openings (HTTP 422); checked
            before any parser runs.
        InvalidObject: The pattern is not a valid STIX 2.1 pattern, or its parentheses
            nest deeper than :data:`MAX_PAREN_DEPTH`; the reason starts with ``pattern:``.
    """
    size = len(pattern) if pattern.isascii() else len(pattern.encode("utf-8", "surrogatepass"))
    if size > limits.max_pattern_bytes:
        raise LimitExceeded(
            f"pattern: {size} bytes, limit is {limits.max_pattern_bytes}", http_status=422
        )
    if "[" in pattern:
        observations = _STRING_LITERAL.sub("", pattern).count("[")
        if observations > limits.max_pattern_observations:
            raise LimitExceeded(
                f"pattern: {observations} '[' openings, limit is"
                f" {limits.max_pattern_observations} observation expressions",
                http_status=422,
            )
    if not _starts_with_bracket(pattern):
        raise InvalidObject("pattern: must start with '[' (after any '(')")
    try:
        _parsed(pattern)
    except InvalidObject:
        raise
    except Exception:  # a fast-parser defect must not decide; the reference does
        log.exception("fast pattern parser failed; using the reference validator")
        errors = _reference_errors(pattern)
        if errors:
            raise InvalidObject("pattern: " + errors[0].removeprefix("FAIL: ")) from None


def comparisons(pattern: str, limits: Limits) -> list[Comparison]:
    """The comparison expressions of a valid STIX 2.1 pattern, in the order written.

    Used to index the observable values an indicator names
    (:mod:`exchange.model.observables`); the grammar is checked as in
    :func:`check_pattern`, with the same caps.

    Raises:
        LimitExceeded: The pattern exceeds ``max_pattern_bytes`` or
            ``max_pattern_observations``.
        InvalidObject: The pattern is not a valid STIX 2.1 pattern.
    """
    check_pattern(pattern, limits)
    return list(_parsed(pattern))


@functools.lru_cache(maxsize=2048)
def _parsed(pattern: str) -> tuple[Comparison, ...]:
    """The comparisons of a pattern the grammar accepts (raises as the parser does).

    One ingested indicator's pattern is checked up to five times (the ingest check, the
    signer's normal form and re-check, the observable index); the grammar's verdict
    depends on the text alone, so the last 2,048 valid patterns are remembered: at most
    16 MiB of text at the 8 KiB cap, and enough for every parse of a page of that many
    objects after the first. Errors are not remembered (a refused pattern is parsed
    again). The size caps, which depend on the limits in force, are always applied by
    the callers first.
    """
    parser = _Parser(pattern)
    parser.parse()
    return tuple(parser.tests)


#: No size caps: the reference validator has none either; callers apply theirs.
_UNCAPPED: Final = Limits(max_pattern_bytes=1 << 62, max_pattern_observations=1 << 62)


@functools.cache
def stix2_indicator_class() -> type[Any]:
    """``stix2``'s ``Indicator`` (v2.1) with its grammar check done by :func:`check_pattern`.

    ``stix2`` runs the ANTLR validator on every indicator it builds (about 0.5 ms, more
    than the rest of the object). This subclass checks a STIX 2.1 pattern with
    :func:`check_pattern` instead, which gives the same verdict (module docstring), and
    is otherwise the library's class: same properties, same constraints, same output.
    Patterns of another ``pattern_version`` still go to the reference validator.
    """
    from stix2.exceptions import InvalidValueError  # noqa: PLC0415 - slow import
    from stix2.v21.sdo import Indicator  # noqa: PLC0415

    class FastIndicator(Indicator):  # type: ignore[misc]
        def _check_object_constraints(self) -> None:
            pattern = self.get("pattern")
            if (self.get("pattern_type") != "stix" or not isinstance(pattern, str)
                    or self.get("pattern_version", "2.1") != "2.1"):
                super()._check_object_constraints()
                return
            super(Indicator, self)._check_object_constraints()
            valid_from, valid_until = self.get("valid_from"), self.get("valid_until")
            if valid_from and valid_until and valid_until <= valid_from:
                raise ValueError(f"{self.id} 'valid_until' must be greater than 'valid_from'")
            try:
                check_pattern(pattern, _UNCAPPED)
            except InvalidObject as e:
                raise InvalidValueError(Indicator, "pattern", e.reason) from None

    return FastIndicator
