"""SQLite locked by another process: a ``sqlite3`` connection holds ``BEGIN EXCLUSIVE``
on the node's database for a few seconds while clients write and read.

The server waits within its busy timeout or answers a TAXII 503 with Retry-After, never
a 500; no acknowledged object is lost; once the lock is released it works again, and
``exchange audit verify`` passes.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from tests.faults.conftest import cli, make_home, recorded_request_ids, start
from tests.faults.load import ACKED, Load, assert_stored_once_and_whole


def test_an_exclusive_lock_held_elsewhere_delays_or_refuses_never_fails(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    ex, keys, collection = make_home(home, "")
    served = start(home, ex, keys, collection)
    try:
        served.publish(20, seed=7)
        load = Load(served, None, tag=6)
        load.begin(writers=2, readers=2, envelopes=40, pages=400, seconds=60)
        try:
            load.wait_for(acked=2, received=5, seconds=30)
            holder = sqlite3.connect(home / "exchange.db", isolation_level=None, timeout=30)
            try:
                holder.execute("BEGIN EXCLUSIVE")
                time.sleep(0.5)  # answers to writes committed before the lock arrive
                held = load.seen.count(ACKED)
                time.sleep(3)  # the fault: the lock held this long
                during = load.seen.count(ACKED)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            load.wait_for(acked=during + 3, seconds=60)
            after = load.seen.count(ACKED)
        finally:
            load.stop()
        assert during == held  # nothing committed while the lock was held elsewhere
        assert after >= during + 3  # and writes go on once it is released
        assert load.seen.bad == []  # waits or TAXII 503s, never a 500
        assert_stored_once_and_whole(served, load.seen)
        assert cli(home, "audit", "sequence").returncode == 0
        assert set(load.seen.received) <= recorded_request_ids(home)
    finally:
        served.stop(signal.SIGKILL)
        ex.store.close()
