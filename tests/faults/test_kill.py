"""kill -9 of the whole server (gunicorn master, workers, sequencer) under load, then a
restart on the same home - on SQLite, the embedded default.

Mid-ingest: every object the client was told was stored (202, a status with every
object a success) is stored once and whole after the restart, an envelope in flight is
stored entirely or not at all, the publish records name exactly the stored versions,
and ``exchange audit verify`` passes. Mid-read: every 200 a reader received whole has
its disclosure records once the spool left by the killed processes is sequenced.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.node.keyring import register_key
from exchange.signing.keys import SigningKey, generate
from tests.faults.conftest import Served, cli, make_home, recorded_request_ids, start
from tests.faults.load import ACKED, UNKNOWN, Load, assert_stored_once_and_whole


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, SigningKey]]:
    where = tmp_path_factory.mktemp("kill-home")
    ex, keys, collection = make_home(where, "")
    key = generate("Ed25519")
    register_key(ex.store, "UZ-CERT", key.public_pem())
    served = start(where, ex, keys, collection)
    try:
        served.publish(30, seed=9)
        yield served, key
    finally:
        served.stop(signal.SIGKILL)
        ex.store.close()


def test_kill_9_mid_ingest_loses_no_acknowledged_object(
        home: tuple[Served, SigningKey]) -> None:
    served, key = home
    load = Load(served, key, tag=1)
    load.begin(writers=4, readers=1, envelopes=30, seconds=60)
    try:
        load.wait_for(acked=8, seconds=60)
        served.stop(signal.SIGKILL)  # master, workers and sequencer: the whole group
    finally:
        load.stop()
    assert load.seen.bad == []
    assert load.seen.count(ACKED) >= 8
    assert load.seen.count(UNKNOWN) >= 1  # the kill struck requests in flight
    again = start(served.home, served.exchange, served.keys, served.collection)
    try:
        assert_stored_once_and_whole(again, load.seen)
    finally:
        again.stop()


def test_kill_9_mid_read_loses_no_disclosure_record(
        home: tuple[Served, SigningKey], tmp_path: Path) -> None:
    served, _ = home
    served.stop()  # one server on the home: this test's
    first = start(served.home, served.exchange, served.keys, served.collection)
    load = Load(first, None, tag=2)
    load.begin(writers=0, readers=4, pages=300, seconds=60)
    try:
        load.wait_for(received=40, seconds=60)
        first.stop(signal.SIGKILL)
    finally:
        load.stop()
    assert load.seen.bad == []
    assert len(load.seen.received) >= 40
    again = start(served.home, served.exchange, served.keys, served.collection)
    try:
        assert cli(served.home, "audit", "sequence").returncode == 0
        assert set(load.seen.received) <= recorded_request_ids(served.home)
        verified = cli(served.home, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert again.read(5).status_code == 200
    finally:
        again.stop()
