"""Rendering flat feeds (:mod:`exchange.node.feeds`): the text and CSV bodies.

CSV columns: :data:`CSV_COLUMNS`. Spreadsheet formula injection: a cell that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe (OWASP's
advice); no value a feed carries legitimately begins so except by accident, and a SIEM
reading the file as data sees the apostrophe, which is documented. One CSV row per
(value, indicator): the same value named by two indicators is two rows, each with its
own provenance; the text feed lists each value once.

Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, TypeAlias

from exchange.errors import InvalidInput
from exchange.node.feeddefs import FEED_FORMATS

__all__ = ["CSV_COLUMNS", "FORMULA_STARTS", "LINE_FIELDS", "FeedEntry",
           "FeedLine", "neutralise", "render", "render_lines"]

#: The CSV header.
CSV_COLUMNS: Final = ("value", "type", "tlp", "contributor", "author", "valid_from",
                      "valid_until", "indicator_id")
#: What a cell may not start with, lest a spreadsheet run it as a formula.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")

_ROW: Final = itemgetter(2)
_VALUE: Final = itemgetter(6)  # LINE_FIELDS.index("value")
_MORE: Final = itemgetter(8)  # LINE_FIELDS.index("more")
_SHOWN: Final = itemgetter(13)  # LINE_FIELDS.index("shown")
#: Kinds whose normal form may hold a comma, a quote or a formula's first character.
_FREE_TEXT: Final = frozenset({"url", "email"})
_NEEDS_QUOTES: Final = re.compile(r'[,"\r\n]')
#: Joins cells for one check (:func:`_csv_cells`); a cell holding it is checked alone.
_SEPARATOR: Final = "\x1f"
#: Deletes the characters of STIX ids and line breaks (str.translate).
_ID_CHARACTERS: Final = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz0123456789-\n")
#: Cells (joined by _SEPARATOR) none of which needs quoting or neutralising.
_PLAIN: Final = re.compile(r'(?:[^=+\-@\t,"\r\n\x1f][^,"\r\n\x1f]*)?'
                           r'(?:\x1f(?:[^=+\-@\t,"\r\n\x1f][^,"\r\n\x1f]*)?)*')


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One line of a feed: a value and the indicator that names it, as the reader
    receives it."""

    value: str
    kind: str
    tlp: str
    contributor: str
    author: str
    valid_from: str
    valid_until: str
    indicator_id: str


#: What a feed holds of one indicator, a plain tuple of :data:`LINE_FIELDS`: its version
#: (to disclose: the first six fields), its values of the feed's kinds (the first in
#: (value, kind) order inline, the others, in order, as (value, kind) pairs in ``more``),
#: and the CSV columns of its provenance as the reader receives them. A plain tuple of
#: strings and numbers, and for the usual single value no other tuple (``more`` is the
#: empty tuple), because the garbage collector stops tracking such tuples after one look:
#: a cached feed's 100,000 lines then cost later collections nothing, and that first
#: look a third of what a value pair per line would cost.
FeedLine: TypeAlias = tuple[
    int,  # date_added
    str,  # id
    int,  # version
    str | None,  # producer_org
    str | None,  # marked: the level of the version's own markings (None: unmarked)
    str,  # level: the level it is shared at
    str,  # value: the first value
    str,  # kind: its kind
    tuple[tuple[str, str], ...],  # more: the other (value, kind)s
    str,  # contributor
    str,  # author
    str,  # valid_from
    str,  # valid_until
    str,  # shown: the indicator's id as the reader knows it
]
#: The names of a :data:`FeedLine`'s fields, in order.
LINE_FIELDS: Final = ("date_added", "id", "version", "producer_org", "marked", "level",
                      "value", "kind", "more", "contributor", "author", "valid_from",
                      "valid_until", "shown")


def neutralise(cell: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (module docstring)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def render(entries: Sequence[FeedEntry], fmt: str) -> bytes:
    """A feed's body: sorted, de-duplicated lines of ``entries``.

    Args:
        entries: The values and their indicators.
        fmt: ``txt`` (each value once, one a line) or ``csv`` (:data:`CSV_COLUMNS`, one
            row per value and indicator, RFC 4180 quoting, formulas neutralised).

    Raises:
        InvalidInput: An unknown format.
    """
    if fmt == "txt":
        return _text_body({e.value for e in entries})
    if fmt != "csv":
        raise InvalidInput(f"unknown feed format {fmt!r}; use {', '.join(FEED_FORMATS)}")
    rows = sorted({(e.value, e.indicator_id, e.kind, e.tlp, e.contributor, e.author,
                    e.valid_from, e.valid_until) for e in entries})
    return "".join([",".join(CSV_COLUMNS), "\r\n", *(
        ",".join([_csv_cell(c) for c in (value, kind, tlp, contributor, author,
                                         valid_from, valid_until, indicator)]) + "\r\n"
        for value, indicator, kind, tlp, contributor, author, valid_from, valid_until
        in rows)]).encode("utf-8")


def render_lines(lines: Sequence[FeedLine], fmt: str) -> bytes:
    """:func:`render` of a built feed's lines (no entry objects made). Each line is one
    indicator (ids are unique), and its values are distinct: nothing to de-duplicate
    but the text feed's values."""
    if fmt == "txt":
        values = set(map(_VALUE, lines))
        for more in filter(None, map(_MORE, lines)):
            values.update(value for value, _ in more)
        return _text_body(values)
    # A row is the value's cell, its kind, the provenance cells and the indicator's id,
    # each neutralised and quoted (_csv_cell). A value is a normal form
    # (exchange.model.observables): only URLs and e-mail addresses can hold what needs
    # quoting or neutralising. The provenance cells repeat from indicator to indicator
    # (a feed has few contributors, levels and validity windows): each distinct run of
    # them is made once. The ids are checked all at once, since no STIX id needs it.
    ids_plain = _plain(list(map(_SHOWN, lines)))
    middles: dict[tuple[str, str, str, str, str], str] = {}
    rows: list[tuple[str, str, str]] = []
    for (_, _, _, _, _, level, value, kind, more, contributor, author, valid_from,
         valid_until, shown) in lines:
        facts = (level, contributor, author, valid_from, valid_until)
        middle = middles.get(facts)
        if middle is None:
            middle = middles[facts] = _csv_cells(facts)
        shown_cell = shown if ids_plain else _csv_cell(shown)
        cell = _csv_cell(value) if kind in _FREE_TEXT else value
        rows.append((value, shown, f"{cell},{kind},{middle},{shown_cell}"))
        if more:
            rows.extend((value, shown, f"{_csv_cell(value) if kind in _FREE_TEXT else value},"
                                       f"{kind},{middle},{shown_cell}")
                        for value, kind in more)
    # By value, then indicator id: each (value, id) is one row, so the rows' own order
    # is that order and no key is made per row.
    rows.sort()
    header = ",".join(CSV_COLUMNS)
    body = "\r\n".join(map(_ROW, rows))
    return f"{header}\r\n{body}\r\n".encode() if rows else f"{header}\r\n".encode()


def _plain(cells: list[str]) -> bool:
    """Whether no cell of ``cells`` needs neutralising or quoting (:func:`_csv_cell`),
    found over them all at once: first whether they hold only characters of STIX ids
    (lower-case letters, digits, hyphens) and none starts with a hyphen, else with a few
    searches."""
    joined = "\n" + "\n".join(cells)
    if joined.count("\n") != len(cells):  # a cell holds a line break
        return False
    if not joined.translate(_ID_CHARACTERS):
        return "\n-" not in joined
    return (not any(c in joined for c in (",", '"', "\r"))
            and not any("\n" + start in joined for start in FORMULA_STARTS))


def _csv_cells(cells: tuple[str, ...]) -> str:
    """``cells`` as part of a CSV row (:func:`_csv_cell` each): one search over them all
    first, since almost no cell needs quoting or neutralising."""
    joined = _SEPARATOR.join(cells)
    if joined.count(_SEPARATOR) == len(cells) - 1 and _PLAIN.fullmatch(joined):
        return joined.replace(_SEPARATOR, ",")
    return ",".join([_csv_cell(cell) for cell in cells])


def _csv_cell(cell: str) -> str:
    """One CSV cell: formulas neutralised, then quoted as RFC 4180 (and Python's
    ``csv`` module, minimal quoting) does: only when it holds a comma, a quote or a line
    break, quotes doubled."""
    if cell.startswith(FORMULA_STARTS):
        cell = "'" + cell
    if _NEEDS_QUOTES.search(cell) is None:
        return cell
    return '"' + cell.replace('"', '""') + '"'


def _text_body(values: set[str]) -> bytes:
    return ("\n".join(sorted(values)) + "\n").encode() if values else b""
