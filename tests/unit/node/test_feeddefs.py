"""Named flat feed definitions (feeds/flat-feeds.yaml): strict parsing and the filters.

What an operator would notice: the shipped example parses as documented, a mistake in
the file is refused with its place and reason (never ignored, never half-applied), and a
server pointed at a broken file does not start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.errors import ConfigError
from exchange.model.objects import Tlp
from exchange.node.feeddefs import FeedFilters, load_flat_feeds, parse_flat_feeds
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.taxii.app import create_app

SHIPPED = Path(__file__).resolve().parents[3] / "feeds" / "flat-feeds.yaml"
DAY = 86_400_000_000


def test_the_shipped_example_parses_as_documented() -> None:
    feeds = {f.name: f for f in load_flat_feeds(SHIPPED)}
    assert set(feeds) == {"jwg-block-ip", "jwg-sinkhole", "uz-siem"}
    block = feeds["jwg-block-ip"]
    assert (block.collection, block.kinds, block.formats) == ("jwg", ("ipv4", "ipv6"),
                                                              ("txt",))
    assert block.filters == FeedFilters(Tlp.AMBER, (), ("benign", "test"), None, 180)
    assert feeds["jwg-sinkhole"].filters.min_confidence == 50
    assert feeds["uz-siem"].formats == ("csv",)
    assert feeds["uz-siem"].filters == FeedFilters()


def test_formats_default_to_both() -> None:
    [feed] = parse_flat_feeds("f.yaml", b"feeds:\n  a:\n    collection: jwg\n"
                                        b"    kinds: [url]\n")
    assert feed.formats == ("txt", "csv")
    assert feed.filters.tlp_ceiling is Tlp.RED


BROKEN = [
    ("empty", b"", "empty file"),
    ("unknown-top-key", b"feeds: {}\nfeed: {}\n", "feed"),
    ("no-feeds", b"version: 1\nfeeds: {}\n", "no feeds"),
    ("version", b"version: 2\nfeeds: {a: {collection: jwg, kinds: [ipv4]}}\n",
     "unsupported version"),
    ("unknown-feed-key", b"feeds: {a: {collection: jwg, kinds: [ipv4], kind: ipv4}}\n",
     "feeds.a"),
    ("missing-collection", b"feeds: {a: {kinds: [ipv4]}}\n", "collection"),
    ("bad-kind", b"feeds: {a: {collection: jwg, kinds: [ipv4, ip]}}\n",
     "feeds.a.kinds[1]: 'ip' is not one of ipv4"),
    ("twice", b"feeds: {a: {collection: jwg, kinds: [ipv4, ipv4]}}\n", "listed twice"),
    ("no-kinds", b"feeds: {a: {collection: jwg, kinds: []}}\n", "no kinds"),
    ("bad-format", b"feeds: {a: {collection: jwg, kinds: [ipv4], formats: [json]}}\n",
     "'json' is not one of txt, csv"),
    ("bad-name", b"feeds: {A B: {collection: jwg, kinds: [ipv4]}}\n", "feed name"),
    ("clashing-name", b"feeds: {x.txt: {collection: jwg, kinds: [ipv4]}}\n", "clash"),
    ("bad-collection", b"feeds: {a: {collection: JWG!, kinds: [ipv4]}}\n",
     "collection alias"),
    ("unknown-filter", b"feeds: {a: {collection: jwg, kinds: [ipv4],"
                       b" filters: {tlp: amber}}}\n", "filters"),
    ("bad-level", b"feeds: {a: {collection: jwg, kinds: [ipv4],"
                  b" filters: {tlp_ceiling: purple}}}\n", "tlp_ceiling"),
    ("label-both", b"feeds: {a: {collection: jwg, kinds: [ipv4],"
                   b" filters: {labels: {include: [c2], exclude: [c2]}}}}\n",
     "both included and excluded"),
    ("confidence", b"feeds: {a: {collection: jwg, kinds: [ipv4],"
                   b" filters: {min_confidence: 101}}}\n", "outside 0..100"),
    ("confidence-text", b"feeds: {a: {collection: jwg, kinds: [ipv4],"
                        b" filters: {min_confidence: high}}}\n", "whole number"),
    ("age", b"feeds: {a: {collection: jwg, kinds: [ipv4], filters: {max_age_days: 0}}}\n",
     "outside 1..3650 days"),
    ("duplicate-key", b"feeds:\n  a: {collection: jwg, kinds: [ipv4]}\n"
                      b"  a: {collection: uz, kinds: [ipv4]}\n", "duplicate"),
]


@pytest.mark.parametrize(("document", "message"), [(d, m) for _, d, m in BROKEN],
                         ids=[i for i, _, _ in BROKEN])
def test_broken_documents_are_refused_with_the_reason(document: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=r"flat-feeds\.yaml") as caught:
        parse_flat_feeds("flat-feeds.yaml", document)
    assert message in str(caught.value)


def test_filters_judge_labels_confidence_and_age() -> None:
    f = FeedFilters(labels_include=("c2",), labels_exclude=("test",), min_confidence=50,
                    max_age_days=2)
    assert f.admits_labels(["c2", "apt"], 50)
    assert not f.admits_labels(["apt"], 90)  # none included
    assert not f.admits_labels(["c2", "test"], 90)  # one excluded
    assert not f.admits_labels(["c2"], None)  # no confidence
    assert not f.admits_labels(["c2"], 49)
    assert f.oldest(10 * DAY) == 8 * DAY
    assert FeedFilters().oldest(DAY) is None
    assert FeedFilters().admits_labels(None, None)


def test_a_server_pointed_at_a_broken_file_does_not_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "flat-feeds.yaml").write_text("feeds: {a: {collection: jwg, kinds: [ip]}}\n")
    (home / "exchange.toml").write_text('flat_feeds = "flat-feeds.yaml"\n')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    try:
        with pytest.raises(ConfigError, match="'ip' is not one of"):
            create_app(settings, exchange=Exchange(settings, store))
        with pytest.raises(ConfigError, match="cannot read the flat feeds file"):
            load_flat_feeds(home / "missing.yaml")
    finally:
        store.close()
