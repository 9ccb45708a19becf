"""Contract: sequencers of several processes take turns on the ledger (SQLite and PostgreSQL).

Every gunicorn worker drains the spool at exit, and ``exchange audit`` commands sequence
on demand, so several sequencers may read the spool offsets and the log's tail at once.
On SQLite ``BEGIN IMMEDIATE`` queues them; on PostgreSQL an advisory lock does (the
fault suite's SIGTERM case found two of them inserting the same offsets row).
"""

from __future__ import annotations

import threading
from pathlib import Path

from exchange.audit import ledger, spool
from exchange.audit.records import parse_record, prepare
from exchange.storage.sql import SqlStore
from tests.unit.audit.helpers import disclosure

ROUNDS = 4
SEQUENCERS = 4


def _sequence_together(stores: list[SqlStore], directory: Path) -> list[BaseException]:
    """Every store sequences ``directory`` at the same moment; the errors raised."""
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(store: SqlStore) -> None:
        start.wait(timeout=30)
        try:
            with store.audit_transaction(write=True) as conn:
                spool.sequence(conn, directory)
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_concurrent_sequencers_log_each_record_once(store: SqlStore, store_url: str,
                                                    tmp_path: Path) -> None:
    # one store (engine, connection pool) per sequencer, as separate processes have
    others = [SqlStore(store_url) for _ in range(SEQUENCERS - 1)]
    for other in others:
        other.open()
    try:
        expected: list[int] = []
        for round_ in range(ROUNDS):
            directory = tmp_path / f"spool-{round_}"
            writer = spool.SpoolWriter(directory, sync=False)
            records = [disclosure(round_ * 100 + i) for i in range(3)]
            writer.append([prepare(record) for record in records])
            writer.close()  # a finished file, as a stopped worker leaves it
            expected += [record.time for record in records]  # one time per record
            assert _sequence_together([store, *others], directory) == []
        with store.audit_transaction() as conn:
            logged = [parse_record(body).record.time
                      for _, body, _ in ledger.iter_records(conn)]
        assert sorted(logged) == sorted(expected)  # every record once, none twice
    finally:
        for other in others:
            other.close()
