"""PostgreSQL under faults: a private cluster (tests/faults/postgres.py, never the
machine's shared one) restarted under load, ``-m fast`` and ``-m immediate``, and
SIGTERM to the server's process group under load.

While the database is away a request answers 503 as a TAXII error with Retry-After,
never 500; the same server serves again once it is back (no restart); every
acknowledged object is stored once and whole, an envelope in flight entirely or not at
all; every response received has its records; ``exchange audit verify`` passes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.audit import spool
from exchange.node.keyring import register_key
from exchange.signing.keys import SigningKey, generate
from tests.faults.conftest import Served, make_home, recorded_request_ids, start
from tests.faults.load import ACKED, Load, assert_stored_once_and_whole
from tests.faults.postgres import PrivateCluster


@pytest.fixture(scope="module")
def pg_node(tmp_path_factory: pytest.TempPathFactory, private_postgres: PrivateCluster
            ) -> Iterator[tuple[Served, SigningKey]]:
    where = tmp_path_factory.mktemp("pg-fault-home")
    ex, keys, collection = make_home(where, f'database_url = "{private_postgres.url}"\n')
    key = generate("ECDSA-P256")
    register_key(ex.store, "UZ-CERT", key.public_pem())
    served = start(where, ex, keys, collection)
    try:
        served.publish(20, seed=5)
        yield served, key
    finally:
        served.stop(signal.SIGKILL)
        ex.store.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_under_load(pg_node: tuple[Served, SigningKey],
                                       private_postgres: PrivateCluster, mode: str) -> None:
    served, key = pg_node
    load = Load(served, key, tag={"fast": 3, "immediate": 4}[mode])
    load.begin(writers=2, readers=2, envelopes=40, pages=400, seconds=90)
    try:
        load.wait_for(acked=3, received=10, seconds=60)
        private_postgres.restart(mode)
        acked, received = load.seen.count(ACKED), len(load.seen.received)
        # the same server, not restarted, takes writes and serves reads again
        load.wait_for(acked=acked + 3, received=received + 10, seconds=60)
        after = load.seen.count(ACKED), len(load.seen.received)
    finally:
        load.stop()
    assert served.proc.poll() is None, (served.home / "server.log").read_text()[-4000:]
    assert load.seen.bad == []  # only 2xx and TAXII 503s with Retry-After
    assert after[0] >= acked + 3
    assert after[1] >= received + 10
    assert_stored_once_and_whole(served, load.seen)
    assert set(load.seen.received) <= recorded_request_ids(served.home)


def _workers(served: Served) -> list[int]:
    """The gunicorn workers of a served node: the master's children that are not the
    audit sequencer it also starts."""
    children = Path(f"/proc/{served.proc.pid}/task/{served.proc.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()]
    return [pid for pid in pids
            if b"sequence" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_worker_that_boots_while_the_database_is_down_waits_for_it(
        pg_node: tuple[Served, SigningKey], private_postgres: PrivateCluster) -> None:
    """gunicorn stops the whole server when a worker fails to boot: a replacement worker
    that meets the database away must wait for it (found in CI: a worker replaced during
    a PostgreSQL restart took the server down)."""
    served, _ = pg_node
    (victim, *_) = _workers(served)
    private_postgres.stop()
    try:
        os.kill(victim, signal.SIGKILL)  # a worker of the server this module started
        deadline = time.monotonic() + 20
        while victim in _workers(served) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # the replacement is booting and meets no database
        assert served.proc.poll() is None, (served.home / "server.log").read_text()[-4000:]
    finally:
        private_postgres.start()
    deadline = time.monotonic() + 30
    while served.read().status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served.proc.poll() is None, (served.home / "server.log").read_text()[-4000:]
    assert served.read().status_code == 200


def test_sigterm_under_load_on_postgres_drains_the_spool(
        pg_node: tuple[Served, SigningKey]) -> None:
    """SIGTERM to every process of the server at once (systemd's KillMode=control-group)
    under reads and writes: every response received has its records in the log when the
    server has exited, and every acknowledged object is stored once and whole."""
    served, key = pg_node
    served.stop()  # one server on the home: this test's
    node = start(served.home, served.exchange, served.keys, served.collection)
    load = Load(node, key, tag=5)
    load.begin(writers=2, readers=3, envelopes=40, pages=400, seconds=60)
    try:
        load.wait_for(acked=4, received=30, seconds=60)
        assert node.stop(signal.SIGTERM) == 0
    finally:
        load.stop()
        node.stop(signal.SIGKILL)
    assert load.seen.bad == []
    assert len(load.seen.received) >= 30
    left = spool.usage(served.home / "audit-spool")
    assert set(load.seen.received) <= recorded_request_ids(served.home)
    assert left == 0  # drained at shutdown, nothing left for the next start
    again = start(served.home, served.exchange, served.keys, served.collection)
    try:
        assert_stored_once_and_whole(again, load.seen)
    finally:
        again.stop()
