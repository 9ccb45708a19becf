"""Hypothesis strategies shared by the model tests: STIX patterns and their mutations.

``patterns(noisy=False)`` draws from the valid part of the STIX 2.1 pattern grammar (a few
reference quirks aside, such as repeated qualifiers); ``noisy=True`` mixes in near misses
(bad literals, keywords as names, hyphenated property names, negative indexes, wrong hash
lengths); :func:`mutated_patterns` damages a pattern at the character level.
"""

from __future__ import annotations

from hypothesis import strategies as st

_HEX = "0123456789abcdefABCDEF"


def _rarely(noisy: bool) -> st.SearchStrategy[bool]:
    """True about one time in ten when ``noisy``: a near miss now and then, rarely two."""
    return st.integers(0, 9).map(lambda i: noisy and i == 0)


def _pick(good: list[str], bad: list[str], noisy: bool) -> st.SearchStrategy[str]:
    if not noisy or not bad:
        return st.sampled_from(good)
    return _rarely(noisy).flatmap(lambda fault: st.sampled_from(bad if fault else good))


def _ws(noisy: bool) -> st.SearchStrategy[str]:
    return _pick(["", " ", " ", "  ", "\t", "\n"], ["\u00a0", "\u3000", " /* c */ ", "\x1c"], noisy)


@st.composite
def _hash_value(draw: st.DrawFn, noisy: bool, length: int) -> str:
    if draw(_rarely(noisy)):
        length = draw(st.sampled_from([31, 0, 65]))
    body = draw(st.text(alphabet=_HEX, min_size=length, max_size=length))
    if body and draw(_rarely(noisy)):
        body = body[:-1] + draw(st.sampled_from(["g", "/", ":", "\\'"]))
    return "'" + body + "'"


_HASHES = {"MD5": 32, "'SHA-256'": 64, "SHA256": 64, "'SHA-1'": 40, "sha1": 40, "SHA512": 128,
           "'SHA3-256'": 64, "TLSH": 70, "'SHA-224'": 56, "WHIRLPOOL": 128, "RIPEMD160": 40,
           "md6": 32}  # fmt: skip


@st.composite
def _hash_test(draw: st.DrawFn, noisy: bool) -> str:
    head = draw(
        _pick(["file:hashes", "artifact:hashes", "x-a:'hashes'", "file:x.hashes"], [], noisy)
    )
    name = draw(st.sampled_from(sorted(_HASHES)))
    step = "." + name
    if draw(_rarely(noisy)):
        step = draw(st.sampled_from(["[0]", "[*]", "[-1]", ".'x'"]))
    op = draw(_pick(["=", "!=", "LIKE", "MATCHES", "NOT ="], ["IN", ">", "ISSUBSET"], noisy))
    value = draw(_hash_value(noisy, _HASHES[name]))
    if op == "IN":
        value = f"({value})"
    return f"{head}{step} {op} {value}"


_STRING_BODIES = st.text(
    alphabet=st.sampled_from(list("ab AZ09-_.:/[]()*=<>!+,\"\\'\u00e9\u4e2d\n")), max_size=12
)


@st.composite
def _string_literal(draw: st.DrawFn, noisy: bool) -> str:
    body = draw(_STRING_BODIES)
    if not draw(_rarely(noisy)):
        body = body.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + body + "'"


@st.composite
def _timestamp(draw: st.DrawFn, noisy: bool) -> str:
    if draw(_rarely(noisy)):
        near_misses = ["t''", "T'2016-01-01T00:00:00Z'", "'2016-01-01T00:00:00Z'",
                       "t'2016-1-01T00:00:00Z'", "t'2016-01-01T00:00:00.Z'"]  # fmt: skip
        return draw(st.sampled_from(near_misses))
    hi = 1 if draw(_rarely(noisy)) else 0
    fields = (
        draw(st.integers(0, 9999)), draw(st.integers(1 - hi, 12 + hi)),
        draw(st.integers(1 - hi, 31 + hi)), draw(st.integers(0, 23 + hi)),
        draw(st.integers(0, 59)), draw(st.integers(0, 60 + hi)),
    )  # fmt: skip
    frac = draw(st.sampled_from(["", ".1", ".123456789"]))
    return "t'{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}Z'".format(*fields, frac)


def _number(noisy: bool) -> st.SearchStrategy[str]:
    good = st.one_of(
        st.integers(-1000, 1000).map(str),
        st.sampled_from(["+5", "-0", "1.5", ".5", "-.25", "+0.0", "007.5"]),
    )
    bad = st.sampled_from(["012", "1.", "-", "+", "1e5", "- 1"])
    return _rarely(noisy).flatmap(lambda fault: bad if fault else good)


def _orderable(noisy: bool) -> st.SearchStrategy[str]:
    return st.one_of(
        _string_literal(noisy),
        _number(noisy),
        _timestamp(noisy),
        _pick(
            ["b'aGVsbG8='", "b'aGVsbA=='", "b'aGVs'", "b'++//'"],
            ["b''", "b'aGVsbG8'", "b'a==='"],
            noisy,
        ),
        _pick(["h'00ff'", "h''", "h'ABCDEF'"], ["h'0'", "h'zz'"], noisy),
    )


def _primitive(noisy: bool) -> st.SearchStrategy[str]:
    return st.one_of(_orderable(noisy), _pick(["true", "false"], ["True", "TRUE"], noisy))


_GOOD_TYPES = [
    "file",
    "ipv4-addr",
    "domain-name",
    "url",
    "x-custom-obj",
    "network-traffic",
    "a",
    "_x",
    "x_y",
]
_BAD_TYPES = ["IN", "true", "LAST", "a-", "1a", "-x"]
_GOOD_NAMES = ["name", "value", "size", "hashes", "extensions", "ext_x", "a1", "_", "and"]
_BAD_NAMES = ["x-y", "AND", "NOT", "START", "1"]


@st.composite
def object_paths(draw: st.DrawFn, noisy: bool = False) -> str:
    """An object path such as ``file:extensions.'ntfs-ext'.sid[0]``."""
    ws = draw(_ws(noisy))
    path = draw(_pick(_GOOD_TYPES, _BAD_TYPES, noisy)) + ws + ":" + ws
    path += draw(_pick([*_GOOD_NAMES, "'quoted name'", "'a\\'b'"], _BAD_NAMES, noisy))
    steps_good = [".'k ey'", "[0]", "[12]", "[*]", "[+3]", ". x", "[ * ]"]
    for _ in range(draw(st.integers(0, 3))):
        path += draw(
            st.one_of(
                _pick(_GOOD_NAMES, _BAD_NAMES, noisy).map(lambda n: "." + n),
                _pick(steps_good, ["[-2]", "[a]", "[1.5]", ".5"], noisy),
            )
        )
    return path


@st.composite
def _property_test(draw: st.DrawFn, noisy: bool) -> str:
    if draw(st.integers(0, 5)) == 0:
        return draw(_hash_test(noisy))
    ws = draw(_ws(noisy))
    path = draw(object_paths(noisy))
    negate = "NOT " if draw(st.integers(0, 4)) == 0 else ""
    kind = draw(st.sampled_from(["eq", "order", "set", "string", "exists"]))
    if kind == "exists":
        return "EXISTS " + path
    if kind == "eq":
        op = draw(st.sampled_from(["=", "==", "!=", "<>"]))
        value = draw(_primitive(noisy))
    elif kind == "order":
        op = draw(st.sampled_from(["<", "<=", ">", ">="]))
        value = draw(_primitive(noisy) if draw(_rarely(noisy)) else _orderable(noisy))
    elif kind == "set":
        op = "IN"
        value = "(" + ("," + ws).join(draw(st.lists(_primitive(noisy), max_size=3))) + ")"
    else:
        op = draw(st.sampled_from(["LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"]))
        value = draw(_primitive(noisy) if draw(_rarely(noisy)) else _string_literal(noisy))
    return f"{path}{ws or ' '}{negate}{op}{ws or ' '}{value}"


def _comparisons(noisy: bool) -> st.SearchStrategy[str]:
    joins = _pick([" AND ", " OR ", "\tAND\n"], [" and ", " OR OR "], noisy)
    return st.recursive(
        _property_test(noisy),
        lambda inner: st.one_of(
            st.tuples(inner, joins, inner).map("".join),
            inner.map(lambda c: "(" + c + ")"),
        ),
        max_leaves=4,
    )


@st.composite
def _qualifier(draw: st.DrawFn, noisy: bool) -> str:
    good = [" WITHIN 5 SECONDS", " WITHIN 2.5 SECONDS", " REPEATS 3 TIMES", " REPEATS +2 TIMES"]
    bad = [
        " WITHIN -1 SECONDS",
        " REPEATS 1.5 TIMES",
        " WITHIN 5",
        " REPEATS 3",
        " within 5 SECONDS",
    ]
    if draw(st.integers(0, 2)) == 0:
        return f" START {draw(_timestamp(noisy))} STOP {draw(_timestamp(noisy))}"
    return draw(_pick(good, bad, noisy))


@st.composite
def _observation(draw: st.DrawFn, noisy: bool, inner: st.SearchStrategy[str] | None) -> str:
    ws = draw(_ws(noisy))
    if inner is None:
        core = "[" + ws + draw(_comparisons(noisy)) + ws + "]"
    else:
        core = "(" + ws + draw(inner) + ws + ")"
    qualifiers = draw(st.lists(_qualifier(noisy), max_size=2))
    return core + "".join(qualifiers)


def patterns(noisy: bool = False) -> st.SearchStrategy[str]:
    """Random STIX 2.1 patterns built from the grammar (``noisy``: with near misses)."""
    joins = _pick([" AND ", " OR ", " FOLLOWEDBY ", "AND"], ["FOLLOWEDBY", " OR AND "], noisy)
    return st.recursive(
        _observation(noisy, None),
        lambda inner: st.one_of(
            st.tuples(inner, joins, inner).map("".join),
            _observation(noisy, inner),
        ),
        max_leaves=4,
    )


_INSERTS = st.sampled_from(
    [*"[](),'.:*=<>!-+/\\ abtTh0Z", "AND", "OR", "NOT", "'", " ", "//", "/*"]
)


@st.composite
def mutated_patterns(draw: st.DrawFn) -> str:
    """A generated pattern damaged by truncation, insertion, deletion or a word swap."""
    text = draw(patterns(noisy=draw(st.booleans())))
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["truncate", "insert", "delete", "swap", "duplicate"]))
        pos = draw(st.integers(0, len(text)))
        if how == "truncate":
            text = text[:pos]
        elif how == "insert":
            text = text[:pos] + draw(_INSERTS) + text[pos:]
        elif how == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif how == "duplicate":
            end = draw(st.integers(pos, len(text)))
            text = text[:end] + text[pos:end] + text[end:]
        else:
            words = text.split(" ")
            if len(words) > 1:
                a = draw(st.integers(0, len(words) - 1))
                b = draw(st.integers(0, len(words) - 1))
                words[a], words[b] = words[b], words[a]
                text = " ".join(words)
    return text
