"""Rendering flat feeds: sorted and de-duplicated lines, RFC 4180 CSV, formulas defused."""

from __future__ import annotations

import csv
import io

import pytest

from exchange.errors import InvalidInput
from exchange.node.feeds import CSV_COLUMNS, FeedEntry, neutralise, render


def _entry(value: str, indicator: str = "indicator--1", contributor: str = "UZ-CERT"
           ) -> FeedEntry:
    return FeedEntry(value, "email", "green", contributor, "identity--a",
                     "2026-01-01T00:00:00Z", "", indicator)


@pytest.mark.parametrize(("cell", "shown"), [
    ("=1+2@example.com", "'=1+2@example.com"), ("+x", "'+x"), ("-x", "'-x"),
    ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("a=b@example.com", "a=b@example.com"), ("", ""), ("'quoted", "'quoted"),
])
def test_neutralise_defuses_only_formula_starts(cell: str, shown: str) -> None:
    assert neutralise(cell) == shown


def test_text_is_each_value_once_sorted() -> None:
    body = render([_entry("b@x.org"), _entry("a@x.org", "indicator--2"),
                   _entry("b@x.org", "indicator--3")], "txt")
    assert body == b"a@x.org\nb@x.org\n"
    assert render([], "txt") == b""


def test_csv_quotes_and_keeps_one_row_per_value_and_indicator() -> None:
    entries = [_entry('=hyperlink("http://e/",x),y@x.org'), _entry("b@x.org"),
               _entry("b@x.org", "indicator--2", contributor="=evil"),
               _entry("b@x.org")]
    rows = list(csv.reader(io.StringIO(render(entries, "csv").decode())))
    assert rows[0] == list(CSV_COLUMNS)
    assert rows[1:] == [
        ["'=hyperlink(\"http://e/\",x),y@x.org", "email", "green", "UZ-CERT", "identity--a",
         "2026-01-01T00:00:00Z", "", "indicator--1"],
        ["b@x.org", "email", "green", "UZ-CERT", "identity--a", "2026-01-01T00:00:00Z", "",
         "indicator--1"],
        ["b@x.org", "email", "green", "'=evil", "identity--a", "2026-01-01T00:00:00Z", "",
         "indicator--2"],
    ]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="txt, csv"):
        render([], "json")
