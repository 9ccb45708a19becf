"""Rendering flat feeds: sorted and de-duplicated lines, RFC 4180 CSV, formulas defused;
and the policy engine's last word on every version a feed lists."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.errors import InvalidInput
from exchange.node.feedrender import FeedLine, render_lines
from exchange.node.feeds import CSV_COLUMNS, FeedEntry, neutralise, render
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.storage.base import FeedValue


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


@pytest.mark.parametrize("odd_id", ["indicator--1", "-indicator--2", "=cmd|x,y", 'a"b',
                                    "line\nbreak", "Indicator--3"])
def test_a_built_feeds_lines_render_as_their_entries(odd_id: str) -> None:
    """The renderer of a built feed (runs of provenance made once, the ids checked all
    at once) writes exactly what rendering each entry does: here with several values
    per indicator, e-mail addresses and URLs that need quoting or neutralising, the same
    value under two indicators, and an indicator id that needs it too."""
    def line(n: int, shown: str, values: tuple[tuple[str, str], ...], level: str = "amber",
             author: str = "identity--a", until: str = "") -> FeedLine:
        (value, kind), *more = values
        return (n, f"indicator--{n}", n, "org", None, level, value, kind, tuple(more),
                "UZ-CERT", author, "2026-01-01T00:00:00Z", until, shown)

    lines = [
        line(1, "indicator--9", (("192.0.2.1", "ipv4"), ("=1+2@example.com", "email"))),
        line(2, odd_id, (("192.0.2.1", "ipv4"),), level="green", author="=evil,x"),
        line(3, "indicator--3", (('http://x.example/a,"b"', "url"),), until="2027-01-01Z"),
        line(4, "indicator--4", (("-2+3@example.com", "email"), ("c2.example", "domain"))),
    ]
    entries = [FeedEntry(value, kind, level, contributor, author, since, until, shown)
               for (_, _, _, _, _, level, first, first_kind, more, contributor, author,
                    since, until, shown) in lines
               for value, kind in ((first, first_kind), *more)]
    for fmt in ("txt", "csv"):
        assert render_lines(lines, fmt) == render(entries, fmt)
    rows = list(csv.reader(io.StringIO(render_lines(lines, "csv").decode(), newline="")))
    assert len(rows) == 1 + 6
    assert neutralise(odd_id) in {row[-1] for row in rows}


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="txt, csv"):
        render([], "json")


# -- the policy engine judges what the SQL filter let through ----------------------------

REPO = Path(__file__).resolve().parents[3]


def test_a_row_the_engine_refuses_never_reaches_the_feed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If the store's query ever let through a version the policy engine refuses (here a
    TLP:RED indicator that does not name the reader, injected at the store seam), the
    feed leaves it out and says so in the log."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "exchange.toml").write_text(f'policy_dir = "{REPO / "policies"}"\n')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    assert settings.policy_path is not None
    store = open_store(settings)
    policy = PolicySource(settings.policy_path)
    policy.load()
    ex = Exchange(settings, store, policy=policy)
    try:
        uz = ex.add_org("UZ-CERT")
        ex.add_org("PK-CERT")
        ex.add_account("pk-soc", org="PK-CERT", role="consumer")
        key = ex.create_api_key("pk-soc")[1]
        ex.add_collection("jwg", alias="jwg", readers=["UZ-CERT", "PK-CERT"],
                          writers=["UZ-CERT"], default_tlp="amber")
        reader = ex.authenticate("pk-soc", key)

        def row(n: int, level: str, value: str) -> FeedValue:
            return FeedValue(n, f"indicator--00000000-0000-4000-8000-{n:012d}", n, uz.id,
                             level, level, "ipv4", value, "2024-01-01T00:00:00Z", None,
                             uz.identity_id)

        injected = [row(1, "green", "192.0.2.1"), row(2, "red", "192.0.2.2")]
        monkeypatch.setattr(store, "feed_values", lambda *a, **k: injected)
        with caplog.at_level(logging.WARNING, logger="exchange.node.feeds"):
            feed = ex.feed(reader, settings.api_root, "jwg", "ipv4", "txt")
        assert feed.body == b"192.0.2.1\n"
        assert list(feed.result.shown) == [injected[0].id]
        assert "the policy engine refuses it (deny-onward-channel:feed)" in caplog.text
    finally:
        store.close()
