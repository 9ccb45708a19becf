"""Flat feed downloads (revision 0012), on SQLite and PostgreSQL.

What an operator would notice in ``exchange sync status`` if it broke: a feed's
downloads per account are counted, the last one's time, ETag and values are those of
the newest download, and concurrent downloads are each counted.
"""

from __future__ import annotations

import threading

from exchange.storage.base import FeedDownloads
from exchange.storage.sql import SqlStore


def test_downloads_are_counted_per_feed_format_and_account(world: SqlStore) -> None:
    assert world.feed_downloads() == []
    world.record_feed_download("jwg/ipv4", "txt", "pk-soc", "PK-CERT", at=100,
                               etag='"aa"', values=3)
    world.record_feed_download("jwg/ipv4", "txt", "pk-soc", "PK-CERT", at=200,
                               etag='"bb"', values=4)
    world.record_feed_download("jwg/ipv4", "csv", "pk-soc", "PK-CERT", at=150,
                               etag='"cc"', values=5)
    world.record_feed_download("soc-block", "txt", "uz-fw", "UZ-SOC", at=300,
                               etag='"dd"', values=6)
    assert world.feed_downloads() == [
        FeedDownloads("jwg/ipv4", "csv", "pk-soc", "PK-CERT", 1, 150, 150, '"cc"', 5),
        FeedDownloads("jwg/ipv4", "txt", "pk-soc", "PK-CERT", 2, 100, 200, '"bb"', 4),
        FeedDownloads("soc-block", "txt", "uz-fw", "UZ-SOC", 1, 300, 300, '"dd"', 6),
    ]


def test_an_older_clock_never_moves_the_last_download_back(world: SqlStore) -> None:
    world.record_feed_download("f", "txt", "a", "A", at=500, etag='"new"', values=1)
    world.record_feed_download("f", "txt", "a", "A", at=400, etag='"late"', values=2)
    [row] = world.feed_downloads()
    assert (row.downloads, row.first_download, row.last_download) == (2, 500, 500)


def test_concurrent_downloads_are_each_counted(world: SqlStore) -> None:
    def fetch(n: int) -> None:
        for i in range(5):
            world.record_feed_download("f", "csv", "a", "A", at=n * 10 + i, etag='"x"',
                                       values=1)

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    [row] = world.feed_downloads()
    assert row.downloads == 20
    assert row.last_download == 34
