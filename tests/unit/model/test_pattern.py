"""STIX 2.1 pattern checks (exchange.model.pattern) against the reference validator."""

from __future__ import annotations

import re
import time
from pathlib import Path
from unittest import mock

import pytest
import stix2patterns
from hypothesis import given, settings
from stix2patterns.validator import run_validator

from exchange.errors import InvalidObject, LimitExceeded
from exchange.model.limits import Limits
from exchange.model.pattern import MAX_PAREN_DEPTH, check_pattern
from tests.unit.model.strategies import mutated_patterns, patterns

LIMITS = Limits()
GENEROUS = Limits(max_pattern_bytes=10**6, max_pattern_observations=10**6)
SPEC_EXAMPLES = Path(stix2patterns.__file__).parent / "test" / "v21" / "spec_examples.txt"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def reference_accepts(pattern: str) -> bool:
    """run_validator's verdict; it raises on a few invalid patterns (negative index...)."""
    try:
        return not run_validator(pattern, stix_version="2.1")
    except Exception:  # noqa: BLE001 - an exception is the reference refusing the pattern
        return False


def fast_accepts(pattern: str, limits: Limits = GENEROUS) -> bool:
    """check_pattern's verdict, failing the test if it fell back to the reference."""
    with mock.patch(
        "exchange.model.pattern._reference_errors", side_effect=AssertionError("fell back")
    ):
        try:
            check_pattern(pattern, limits)
        except InvalidObject:
            return False
    return True


def _spec_examples() -> list[str]:
    lines = SPEC_EXAMPLES.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


@pytest.mark.parametrize("pattern", _spec_examples())
def test_stix_2_1_specification_examples_are_valid(pattern: str) -> None:
    assert reference_accepts(pattern)
    check_pattern(pattern, LIMITS)


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("[ipv4-addr:value = '198.51.100.1/32']", id="ipv4"),
        pytest.param(f"[file:hashes.'SHA-256' = '{SHA256}']", id="sha256-quoted-name"),
        pytest.param(
            f"[file:hashes.SHA256 = '{SHA256.upper()}']", id="sha256-bare-name-uppercase-value"
        ),
        pytest.param(
            "[url:value = 'http://x.example/a\\'b\\\\c']", id="escaped-quote-and-backslash"
        ),
        pytest.param("[x-custom_obj:a.'b c'[*].d[0] != -5]", id="custom-type-quoted-key-indexes"),
        pytest.param(
            "[a:b IN ('x', 1, -2.5, true, b'aGVsbG8=', h'00ff', t'2016-01-01T00:00:00Z')]",
            id="set-of-every-literal",
        ),
        pytest.param("[a:b IN ()]", id="empty-set"),
        pytest.param("[a:b NOT LIKE 'x%'] AND [c:d MATCHES '^(a+)+$']", id="not-like-and-matches"),
        pytest.param(
            "([a:b = 1] OR [a:c = 2]) FOLLOWEDBY [d:e = 3] WITHIN 5 SECONDS", id="followedby-within"
        ),
        pytest.param(
            "[a:b = 1] REPEATS 2 TIMES WITHIN 1.5 SECONDS"
            " START t'2016-01-01T00:00:00Z' STOP t'2017-01-01T00:00:00.123Z'",
            id="three-qualifiers",
        ),
        pytest.param(
            "([a:b = 1]) WITHIN 1 SECONDS WITHIN 2 SECONDS", id="repeated-qualifier-on-group"
        ),
        pytest.param(
            "[EXISTS a:b.c] AND [(a:b = 1 OR a:c = 2) AND a:d ISSUBSET '10.0.0.0/8']",
            id="exists-and-nested",
        ),
        pytest.param("[a:b = 1] /* comment */ AND [c:d = 2] // end", id="comments"),
        pytest.param("[a\u00a0:\u3000b\n=\t1]", id="unicode-whitespace"),
        pytest.param(
            "[file:hashes.TLSH = 'anything goes for TLSH']", id="hash-without-reference-check"
        ),
        pytest.param("[file:hashes[*] = 'x']", id="hashes-star-index"),
        pytest.param("[a:b = 1] AND [c:d = 2]", id="and-of-observations"),
    ],
)
def test_valid_patterns(pattern: str) -> None:
    assert reference_accepts(pattern)
    assert fast_accepts(pattern, LIMITS)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param("", "must start with '['", id="empty"),
        pytest.param("ipv4-addr:value = '1.2.3.4'", "must start with '['", id="no-brackets"),
        pytest.param("/* c */ [a:b = 1]", "must start with '['", id="leading-comment"),
        pytest.param(
            "[ipv4-addr:value = '1.2.3.4'", "expected ']', got the end", id="unclosed-bracket"
        ),
        pytest.param(
            "[ipv4-addr:value = '1.2.3.4]", "expected a literal value", id="unclosed-string"
        ),
        pytest.param("[ipv4-addr:value == 1.2.3.4]", "expected ']'", id="unquoted-address"),
        pytest.param("[a:b = 1] and [c:d = 2]", "expected FOLLOWEDBY, OR, AND", id="lowercase-and"),
        pytest.param("[a:b-c = 1]", "expected a property name", id="hyphen-in-property"),
        pytest.param("[a:b = 012]", "expected ']'", id="leading-zero-integer"),
        pytest.param(
            "[a:b = 'x'] WITHIN -5 SECONDS", "positive number of seconds", id="negative-within"
        ),
        pytest.param(
            "[a:b = 'x'] REPEATS 1.5 TIMES", "expected a positive integer", id="fractional-repeats"
        ),
        pytest.param(
            "[a:b = 'x'] START '2016-01-01T00:00:00Z' STOP t'2017-01-01T00:00:00Z'",
            "timestamp literal",
            id="start-without-t",
        ),
        pytest.param("[a:b = t'2016-13-01T00:00:00Z']", "expected a literal value", id="month-13"),
        pytest.param("[a:b = b'aGVsbG8']", "expected a literal value", id="bad-base64"),
        pytest.param("[a:b = h'abc']", "expected a literal value", id="odd-hex"),
        pytest.param("[a:b LIKE 5]", "expected a string literal", id="like-number"),
        pytest.param("[a:b > true]", "expected a literal value", id="order-boolean"),
        pytest.param(
            "[a:b = 'x'] WITHIN 1 SECONDS WITHIN 2 SECONDS",
            "two WITHIN qualifiers",
            id="duplicate-within",
        ),
        pytest.param("[a:c[-1] = 1]", "must not be negative", id="negative-index"),
        pytest.param("[file:hashes.MD5 = 'not-a-hash']", "not a valid MD5 hash", id="bad-md5"),
        pytest.param(
            f"[file:hashes.'SHA-256' = '{SHA256[:-1]}']",
            "not a valid SHA-256 hash",
            id="short-sha256",
        ),
        pytest.param(
            f"[file:hashes.'SHA-256' IN ('{SHA256}')]",
            "not a valid SHA-256 hash",
            id="hash-in-set-reference-quirk",
        ),
        pytest.param("[file:hashes[0] = 'a']", "not by index", id="hash-by-index"),
        pytest.param("[a:LAST = 1]", "expected a property name", id="reserved-keyword"),
        pytest.param("[a:b = 1] [c:d = 2]", "expected FOLLOWEDBY, OR, AND", id="missing-operator"),
        pytest.param("[a:b ! 1]", "expected a comparison operator", id="bang"),
    ],
)
def test_invalid_patterns(pattern: str, reason: str) -> None:
    assert not reference_accepts(pattern)
    with pytest.raises(InvalidObject) as caught:
        check_pattern(pattern, LIMITS)
    assert caught.value.reason.startswith("pattern: ")
    assert reason in caught.value.reason


def test_pattern_over_8_kib_is_refused_before_parsing() -> None:
    at_limit = "[url:value = '" + "a" * (8192 - 16) + "']"
    check_pattern(at_limit, LIMITS)
    with (
        pytest.raises(LimitExceeded) as caught,
        mock.patch("exchange.model.pattern._Parser", side_effect=AssertionError("parser ran")),
    ):
        check_pattern(at_limit[:-2] + "a']", LIMITS)
    assert caught.value.http_status == 422
    assert caught.value.reason == "pattern: 8193 bytes, limit is 8192"


def test_pattern_size_counts_utf8_bytes() -> None:
    pattern = "[url:value = '" + "\u4e2d" * 2800 + "']"  # 2 816 characters, 8 416 bytes
    with pytest.raises(LimitExceeded, match="8416 bytes"):
        check_pattern(pattern, LIMITS)


def test_too_many_observation_expressions_are_refused_before_parsing() -> None:
    at_limit = " OR ".join(["[a:b = 1]"] * 256)
    check_pattern(at_limit, LIMITS)
    with pytest.raises(LimitExceeded) as caught:
        check_pattern(at_limit + " OR [a:b = 1]", LIMITS)
    assert caught.value.http_status == 422
    assert "257 '[' openings" in caught.value.reason


def test_brackets_inside_string_literals_are_not_observations() -> None:
    pattern = "[a:b = '" + "[" * 300 + "'] AND [a:c MATCHES '\\\\[\\'[']"
    check_pattern(pattern, LIMITS)


def test_deep_parentheses_are_refused_without_recursion_error() -> None:
    at_limit = "(" * MAX_PAREN_DEPTH + "[a:b = 1]" + ")" * MAX_PAREN_DEPTH
    check_pattern(at_limit, LIMITS)
    for depth in (MAX_PAREN_DEPTH + 1, 1000, 3000):
        pattern = "(" * depth + "[a:b = 1]" + ")" * depth
        with pytest.raises(InvalidObject, match="nest more than 64 deep"):
            check_pattern(pattern, LIMITS)
    inner = "[" + "(" * 2000 + "a:b = 1" + ")" * 2000 + "]"
    with pytest.raises(InvalidObject, match="nest more than 64 deep"):
        check_pattern(inner, LIMITS)


def test_long_or_chains_that_break_the_reference_parse_without_recursion() -> None:
    """The reference raises RecursionError here (research/security.md 6.2); we do not."""
    observations = " OR ".join(["[a:b = 1]"] * 1000)
    comparisons = "[" + " OR ".join(["a:b = 1"] * 1000) + "]"
    check_pattern(observations, GENEROUS)
    check_pattern(comparisons, GENEROUS)


def test_the_reference_decides_when_the_fast_parser_breaks() -> None:
    with mock.patch("exchange.model.pattern._Parser.parse", side_effect=RuntimeError("bug")):
        check_pattern("[a:b = 1]", LIMITS)
        with pytest.raises(
            InvalidObject, match=r"pattern: Error found at line 1:8\. mismatched input"
        ):
            check_pattern("[a:b == ]", LIMITS)


NEIGHBOURHOOD_BASES = [
    f"[file:hashes.'SHA-256' = '{SHA256}' OR file:name IN ('a.exe', 'b')] WITHIN 5 SECONDS",
    "[x-a:b[0].c[*] > 5 AND x-a:d <= -1.5] REPEATS 2 TIMES",
    "([a:b = true] AND [a:c != b'aGVsbG8=']) FOLLOWEDBY [EXISTS a:d]",
    "[a:b = h'00ff'] START t'2016-01-01T00:00:00Z' STOP t'2016-01-02T00:00:00.5Z'",
    "[a:'b c' NOT LIKE 'x\\'y' OR a:b MATCHES '^a$'] AND [a:c ISSUBSET '10.0.0.0/8']",
]
_TOKEN_SPANS = re.compile(r"[a-z]'(?:[^'\\]|\\.)*'|'(?:[^'\\]|\\.)*'|[\w.+-]+|\S")
_REPLACEMENTS = [
    "LAST", "true", "True", "012", "-1", "+1", "1.5", ".5", "-.5", "1.", "'x'", "b'aGVsbA=='",
    "b'aGV='", "b''", "h'0f'", "h'f'", "t'2016-01-01T00:00:00Z'", "t'2016-02-30T00:00:00Z'",
    "t'2016-01-01T00:00:60Z'", "'2016-01-01T00:00:00Z'", "=", "==", "<", "<=", "<>", "!=", "!",
    "IN", "LIKE", "NOT", "EXISTS", "AND", "OR", "and", "FOLLOWEDBY", "WITHIN", "SECONDS",
    "REPEATS", "TIMES", "START", "STOP", "[", "]", "(", ")", "()", ",", ":", ".", "*", "[*]",
    "[0]", "[-1]", "hashes", "MD5", "'SHA-256'", "x-y", "a_b", "/* c */", "//", "", "''",
]  # fmt: skip


def _neighbours(base: str) -> list[str]:
    """Every one-token replacement and every one-character deletion or insertion."""
    found = [base]
    for m in _TOKEN_SPANS.finditer(base):
        found.extend(base[: m.start()] + alt + base[m.end() :] for alt in _REPLACEMENTS)
    for i in range(len(base) + 1):
        found.append(base[:i] + base[i + 1 :])
        found.extend(base[:i] + c + base[i:] for c in "[]()'-.:, 0aT")
    return found


@pytest.mark.parametrize("base", NEIGHBOURHOOD_BASES)
def test_same_verdict_as_reference_on_every_single_edit(base: str) -> None:
    assert reference_accepts(base)
    differ = [p for p in _neighbours(base) if fast_accepts(p) != reference_accepts(p)]
    assert not differ


@settings(max_examples=300, deadline=None)
@given(patterns())
def test_same_verdict_as_reference_on_grammar_patterns(pattern: str) -> None:
    assert fast_accepts(pattern) == reference_accepts(pattern), pattern


@settings(max_examples=250, deadline=None)
@given(patterns(noisy=True))
def test_same_verdict_as_reference_on_near_misses(pattern: str) -> None:
    assert fast_accepts(pattern) == reference_accepts(pattern), pattern


@settings(max_examples=250, deadline=None)
@given(mutated_patterns())
def test_same_verdict_as_reference_on_damaged_patterns(pattern: str) -> None:
    assert fast_accepts(pattern) == reference_accepts(pattern), pattern


def test_fast_check_is_much_faster_than_the_reference() -> None:
    examples = _spec_examples()
    started = time.perf_counter()
    for _ in range(5):
        for pattern in examples:
            check_pattern(pattern, LIMITS)
    fast = (time.perf_counter() - started) / (5 * len(examples))
    started = time.perf_counter()
    for pattern in examples:
        run_validator(pattern, stix_version="2.1")
    reference = (time.perf_counter() - started) / len(examples)
    print(f"per pattern: check_pattern {fast * 1e6:.1f} us, run_validator {reference * 1e6:.1f} us")
    assert fast * 3 < reference
