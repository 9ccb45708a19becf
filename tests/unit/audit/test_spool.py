"""The disclosure spool: frames, torn tails, corruption, exactly-once sequencing (the
sequencing tests run on SQLite and PostgreSQL: the ``engine`` fixture of conftest)."""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from exchange.audit import ledger, spool
from exchange.audit.records import DisclosureBatch, Prepared, parse_record, prepare
from exchange.audit.tree import Frontier, leaf_hash
from exchange.errors import StorageError
from exchange.storage.engines import WRITE_OPTION
from tests.unit.audit.helpers import DIGEST, T0, disclosure


def _batch(first: int, count: int) -> list[Prepared]:
    return [prepare(disclosure(i)) for i in range(first, first + count)]


def _sequence(engine: Engine, directory: Path, active: Path | None = None) -> int:
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            moved = spool.sequence(conn, directory)
    with engine.connect() as conn, conn.begin():
        spool.remove_finished(conn, directory, active=active)
    return moved


def _logged(engine: Engine) -> list[int]:
    """The request ids' numbers of the logged records, in seq order (i of disclosure(i))."""
    with engine.connect() as conn, conn.begin():
        return [int(parse_record(body).record.objects[0].object_id[11:19])  # type: ignore[union-attr]
                for _, body, _ in ledger.iter_records(conn)]


def _spooled(tmp_path: Path) -> tuple[Path, Path]:
    """A spool directory whose one file holds a batch of records 0 and 1."""
    directory = tmp_path / "spool"
    writer = spool.SpoolWriter(directory, sync=False)
    writer.append(_batch(0, 2))
    path = writer.current()
    assert path is not None
    return directory, path


def test_frames_round_trip() -> None:
    records = _batch(0, 3)
    data = spool.encode(records)
    decoded, consumed = spool.decode(data)
    assert decoded == records
    assert consumed == len(data)


def _columns(first: int, count: int) -> DisclosureBatch:
    """A response's disclosures as the read path spools them (ids numbered like _batch)."""
    return DisclosureBatch(
        time=T0, channel="taxii:get_objects", recipient_account="pk-soc",
        recipient_org="PK-CERT", collection="c-1", policy_digest=DIGEST, request_id="r-1",
        groups=[("UZ-CERT", "green", "baseline-tlp-green")],
        object_ids=[f"indicator--{i:08d}-0000-4000-8000-000000000000"
                    for i in range(first, first + count)],
        object_versions=[T0] * count, dates_added=[T0] * count,
        digests=[bytes(32)] * count, group_of=[0] * count)


def test_a_response_spooled_as_columns_is_rendered_when_read_back() -> None:
    columns = _columns(0, 600)  # three records
    data = spool.encode(_batch(0, 2)) + spool.encode(columns)
    decoded, consumed = spool.decode(data)
    assert decoded == _batch(0, 2) + columns.records()
    assert len(decoded) == 2 + 3
    assert consumed == len(data)
    # Cut anywhere inside the columns' frame: the first batch only, the rest waits.
    for cut in (1, 20, len(data) - len(spool.encode(_batch(0, 2))) - 1):
        assert spool.decode(data[:len(spool.encode(_batch(0, 2))) + cut]) == (
            _batch(0, 2), len(spool.encode(_batch(0, 2))))


def test_columns_that_check_out_but_do_not_render_are_corruption(engine: Engine,
                                                                 tmp_path: Path) -> None:
    """A frame with a valid checksum around a batch the records refuse (here a TLP level
    that does not exist) stops the sequencer, as any corrupt frame does."""
    frame = bytearray(spool.encode(_columns(0, 2)))
    at = frame.index(b"green")
    frame[at:at + 5] = b"white"
    body = bytes(frame[12:])
    frame[8:12] = zlib.crc32(body).to_bytes(4, "big")
    with pytest.raises(spool._Corrupt, match=r"disclosure batch.*tlp"):
        spool.decode(bytes(frame))
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "1-1-1.spool").write_bytes(bytes(frame))
    with pytest.raises(StorageError, match="corrupt"):
        _sequence(engine, directory)
    assert _logged(engine) == []


def test_columns_enter_the_log_as_one_contiguous_batch(engine: Engine,
                                                       tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    writer = spool.SpoolWriter(directory, sync=True)
    writer.append(_columns(0, 300))
    writer.append(_batch(1000, 1))
    assert _sequence(engine, directory) == 3
    with engine.connect() as conn, conn.begin():
        logged = [parse_record(body).record for _, body, _ in ledger.iter_records(conn)]
    assert [len(r.objects) for r in logged] == [256, 44, 1]  # type: ignore[union-attr]
    assert [o.object_id for r in logged[:2] for o in r.objects] == \
        [f"indicator--{i:08d}-0000-4000-8000-000000000000" for i in range(300)]  # type: ignore[union-attr]


@given(cut=st.integers(1, 10_000))
@settings(max_examples=60, deadline=None)
def test_a_batch_cut_short_is_left_for_later(cut: int) -> None:
    first, second = spool.encode(_batch(0, 2)), spool.encode(_batch(2, 3))
    data = first + second
    cut = min(cut, len(second) - 1)
    decoded, consumed = spool.decode(data[:len(first) + cut])
    assert decoded == _batch(0, 2)  # never part of the second batch
    assert consumed == len(first)


def test_a_changed_byte_in_a_complete_frame_is_corruption() -> None:
    data = bytearray(spool.encode(_batch(0, 2)))
    data[40] ^= 0x01
    with pytest.raises(spool._Corrupt, match="checksum"):
        spool.decode(bytes(data))


def test_sequencing_moves_each_record_once_and_keeps_batches_whole(engine: Engine,
                                                                  tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    one, two = spool.SpoolWriter(directory, sync=False), spool.SpoolWriter(directory,
                                                                          sync=False)
    two._started += 1
    one.append(_batch(0, 3))
    two.append(_batch(100, 2))
    one.append(_batch(3, 1))
    assert _sequence(engine, directory) == 6
    assert _sequence(engine, directory) == 0  # nothing twice
    logged = _logged(engine)
    assert sorted(logged) == [0, 1, 2, 3, 100, 101]
    # Each batch is contiguous in the log.
    assert logged.index(1) == logged.index(0) + 1
    assert logged.index(2) == logged.index(0) + 2
    assert logged.index(101) == logged.index(100) + 1


def test_a_torn_tail_waits_and_a_later_write_completes_it(engine: Engine,
                                                          tmp_path: Path) -> None:
    directory, path = _spooled(tmp_path)
    torn = spool.encode(_batch(2, 2))
    with path.open("ab") as f:
        f.write(torn[: len(torn) // 2])
    assert _sequence(engine, directory, active=path) == 2
    with path.open("ab") as f:
        f.write(torn[len(torn) // 2:])
    assert _sequence(engine, directory, active=path) == 2
    assert _logged(engine) == [0, 1, 2, 3]


def test_corruption_stops_sequencing_and_leaves_the_file(engine: Engine,
                                                         tmp_path: Path) -> None:
    directory, path = _spooled(tmp_path)
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="corrupt"):
        _sequence(engine, directory, active=path)
    assert path.exists()
    assert _logged(engine) == []


def test_finished_files_are_deleted_once_sequenced(engine: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    dead = directory / "999999999-1-1.spool"  # a writer that no longer exists
    directory.mkdir()
    dead.write_bytes(spool.encode(_batch(0, 2)))
    writer = spool.SpoolWriter(directory, sync=False)
    writer.append(_batch(10, 1))
    mine = writer.current()
    assert mine is not None
    assert _sequence(engine, directory, active=mine) == 3
    assert not dead.exists()
    assert mine.exists()  # still being written
    with engine.connect() as conn, conn.begin():
        names = conn.execute(sa.text("SELECT name FROM audit_spool_offsets")).scalars().all()
    assert names == [mine.name]


def test_a_spool_that_cannot_be_written_refuses(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = spool.SpoolWriter(blocker / "spool")
    with pytest.raises(StorageError, match="nothing was served"):
        writer.append(_batch(0, 1))


def test_concurrent_writers_and_a_sequencer_lose_nothing(engine: Engine,
                                                         tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    writer = spool.SpoolWriter(directory, sync=False)

    def write(base: int) -> None:
        for n in range(50):
            writer.append(_batch(base + 2 * n, 2))

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    moved = 0
    for _ in range(200):  # bounded; sequence while the writers write
        moved += _sequence(engine, directory, active=writer.current())
        if not any(t.is_alive() for t in threads):
            break
    for thread in threads:
        thread.join(timeout=30)
    moved += _sequence(engine, directory, active=writer.current())
    assert moved == 400
    logged = _logged(engine)
    assert sorted(logged) == sorted(k * 1000 + i for k in range(4) for i in range(100))
    for k in range(4):  # every pair stayed together
        for n in range(50):
            first = logged.index(k * 1000 + 2 * n)
            assert logged[first + 1] == k * 1000 + 2 * n + 1
    # And the tree over them is the RFC one.
    with engine.connect() as conn, conn.begin():
        frontier = Frontier()
        for _, body, _ in ledger.iter_records(conn):
            frontier.append(leaf_hash(body))
        assert ledger.current_root(conn).root == frontier.root()


def test_threads_share_syncs_and_interval_mode_syncs_on_flush(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    writer = spool.SpoolWriter(tmp_path / "spool")
    writer.append(_batch(0, 1))
    assert len(calls) == 1
    writer._sync_to((writer._generation, 1))
    assert len(calls) == 1
    lazy = spool.SpoolWriter(tmp_path / "lazy", sync=False)
    lazy.append(_batch(0, 1))
    assert len(calls) == 1
    lazy.flush()
    assert len(calls) == 2
    lazy.flush()  # nothing new
    assert len(calls) == 2


def test_a_batch_synced_while_the_caller_goes_on_is_durable_when_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = threading.Event()
    release = threading.Event()
    real = os.fdatasync

    def slow(fd: int) -> None:
        release.wait(10)
        real(fd)
        synced.set()

    monkeypatch.setattr(os, "fdatasync", slow)
    writer = spool.SpoolWriter(tmp_path / "spool")
    durable = writer.append(_columns(0, 1000), wait=False)  # a full page: over 64 KiB
    assert not synced.is_set()  # the caller goes on while the sync runs
    release.set()
    durable()
    assert synced.is_set()
    assert writer._synced == (writer._generation, writer._size)


def test_a_sync_that_fails_after_the_caller_went_on_refuses_when_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    writer = spool.SpoolWriter(tmp_path / "spool")
    durable = writer.append(_columns(0, 1000), wait=False)
    with pytest.raises(StorageError, match="nothing was served"):
        durable()
    # A small batch is synced before append returns, so its failure is raised there.
    with pytest.raises(StorageError, match="nothing was served"):
        writer.append(_columns(0, 10), wait=False)


def test_a_small_batch_is_durable_when_append_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[str] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        real(fd)
        syncs.append(threading.current_thread().name)

    monkeypatch.setattr(os, "fdatasync", counted)
    writer = spool.SpoolWriter(tmp_path / "spool")
    durable = writer.append(_columns(0, 10), wait=False)
    assert syncs == [threading.current_thread().name]  # on the caller's thread, done
    assert writer._synced == (writer._generation, writer._size)
    durable()
    assert len(syncs) == 1
