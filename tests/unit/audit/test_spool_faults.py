"""The spool under faults: writes that fail part-way at every frame boundary, syncs that
fail, files that cannot be cut back, torn tails left by crashes, a full spool, and
reclaiming what the log already holds (sequencing on SQLite and PostgreSQL).

The writer's file operations go through a fake layer (:class:`FailingFiles`) that takes
only so many bytes and then answers ENOSPC or EIO, the way a full or failing disk does.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from exchange.audit import frames, spool
from exchange.audit.records import Prepared, prepare
from exchange.errors import StorageError
from tests.unit.audit.helpers import disclosure
from tests.unit.audit.test_spool import _columns, _logged, _sequence


def _batch(first: int, count: int) -> list[Prepared]:
    return [prepare(disclosure(i)) for i in range(first, first + count)]


class FailingFiles(spool.Files):
    """Real files, but the disk takes only ``room`` more bytes (None: no limit); a write
    past it is cut short there and the next one fails with ``error``. ``truncate_fails``
    and ``sync_fails`` make those calls fail with EIO."""

    def __init__(self) -> None:
        self.room: int | None = None
        self.error = errno.ENOSPC
        self.truncate_fails = False
        self.sync_fails = False

    def write(self, fd: int, data: memoryview) -> int:
        if self.room is None:
            return super().write(fd, data)
        if self.room == 0:
            raise OSError(self.error, os.strerror(self.error))
        taken = super().write(fd, data[:self.room])
        self.room -= taken
        return taken

    def truncate(self, fd: int, size: int) -> None:
        if self.truncate_fails:
            raise OSError(errno.EIO, "Input/output error")
        super().truncate(fd, size)

    def sync(self, fd: int) -> None:
        if self.sync_fails:
            raise OSError(errno.EIO, "Input/output error")
        super().sync(fd)


def _frame_ends(data: bytes) -> list[int]:
    ends, at = [], 0
    while at < len(data):
        (_, length, _) = frames.HEADER.unpack_from(data, at)
        at += frames.HEADER.size + length
        ends.append(at)
    return ends


def _cuts() -> list[int]:
    """Where the disk fills inside a batch of three frames: at the start, one byte into
    it, inside the first header, at and around every frame boundary, the last byte."""
    data = spool.encode(_batch(10, 3))
    cuts = {0, 1, 5, frames.HEADER.size, len(data) - 1}
    for end in _frame_ends(data)[:-1]:
        cuts |= {end - 1, end, end + 1}
    return sorted(cuts)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("cut", _cuts())
def test_a_write_that_fails_part_way_leaves_the_file_as_it_was(
        engine: Engine, tmp_path: Path, cut: int, error: int) -> None:
    directory = tmp_path / "spool"
    files = FailingFiles()
    writer = spool.SpoolWriter(directory, files=files)
    writer.append(_batch(0, 2))
    path = writer.current()
    assert path is not None
    before = path.read_bytes()
    files.room, files.error = cut, error
    with pytest.raises(StorageError, match="nothing was served"):
        writer.append(_batch(10, 3))
    assert path.read_bytes() == before  # not a byte of the refused batch
    files.room = None  # space is back
    writer.append(_batch(20, 1))
    assert writer.current() == path  # the same file goes on
    assert _sequence(engine, directory, active=path) == 3
    assert _logged(engine) == [0, 1, 20]


def test_a_large_batch_refused_by_a_full_disk_is_not_in_the_spool(engine: Engine,
                                                                  tmp_path: Path) -> None:
    """A page's disclosures (one frame of columns, synced beside the response) cut at
    several points: refused, and the spool holds only what was served."""
    directory = tmp_path / "spool"
    files = FailingFiles()
    writer = spool.SpoolWriter(directory, files=files)
    writer.append(_batch(0, 1))
    page = _columns(100, 1000)
    size = len(spool.encode(page))
    for cut in (3, frames.HEADER.size + 1, size // 2, size - 1):
        files.room = cut
        with pytest.raises(StorageError):
            writer.append(page, wait=False)()
    files.room = None
    writer.append(_batch(1, 1))
    assert _sequence(engine, directory, active=writer.current()) == 2
    assert _logged(engine) == [0, 1]


def test_a_file_that_cannot_be_cut_back_is_given_up_and_its_torn_tail_skipped(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "spool"
    files = FailingFiles()
    writer = spool.SpoolWriter(directory, files=files)
    writer.append(_batch(0, 2))
    first = writer.current()
    files.room, files.truncate_fails = 40, True
    with pytest.raises(StorageError):
        writer.append(_batch(10, 3))
    assert writer.current() is None  # given up: never appended to again
    files.room, files.truncate_fails = None, False
    writer.append(_batch(20, 1))
    second = writer.current()
    assert second is not None
    assert second != first
    assert _sequence(engine, directory, active=second) == 3
    assert _logged(engine) == [0, 1, 20]
    assert first is not None
    assert not first.exists()
    assert "skipped bytes" in caplog.text


def test_a_failed_sync_refuses_and_cuts_the_file_back_to_what_was_durable(
        engine: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    files = FailingFiles()
    writer = spool.SpoolWriter(directory, files=files)
    writer.append(_batch(0, 1))
    first = writer.current()
    assert first is not None
    durable = first.read_bytes()
    files.sync_fails = True
    with pytest.raises(StorageError, match="nothing was served"):
        writer.append(_batch(10, 2))
    assert first.read_bytes() == durable
    files.sync_fails = False
    writer.append(_batch(20, 1))
    assert writer.current() != first  # a new file after a failed sync
    assert _sequence(engine, directory, active=writer.current()) == 2
    assert _logged(engine) == [0, 20]


def test_a_torn_tail_left_by_a_killed_writer_is_skipped_and_its_file_reclaimed(
        engine: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    dead = directory / "999999999-1-1.spool"  # its process is gone (kill -9 mid-write)
    torn = spool.encode(_batch(2, 3))
    for cut in (3, len(torn) // 2, len(torn) - 1):
        dead.write_bytes(spool.encode(_batch(0, 2)) + torn[:cut])
        _sequence(engine, directory)
        assert not dead.exists()
    # Each round logged the whole batch once, never a record of the torn one.
    assert _logged(engine) == [0, 1] * 3


def test_frames_written_after_a_torn_one_are_not_poisoned(engine: Engine,
                                                          tmp_path: Path) -> None:
    """A file holding a torn write followed by whole batches (what a writer that did not
    cut back left after a full disk) is sequenced: the batches after it reach the log."""
    directory = tmp_path / "spool"
    directory.mkdir()
    poisoned = directory / "999999998-1-1.spool"
    torn = spool.encode(_batch(10, 3))
    for cut in (2, 9, frames.HEADER.size + 3, len(torn) - 1):
        poisoned.write_bytes(spool.encode(_batch(0, 1)) + torn[:cut]
                             + spool.encode(_batch(1, 2)) + spool.encode(_columns(3, 1)))
        assert _sequence(engine, directory) == 4
        assert not poisoned.exists()
    assert _logged(engine) == [0, 1, 2, 3] * 4


def test_a_live_writers_torn_frame_then_more_appends_is_sequenced(engine: Engine,
                                                                  tmp_path: Path) -> None:
    """A partial frame in a file a writer still appends to (a kill -9 simulated by
    writing half a frame) waits while it may be a write in progress, and is skipped
    once whole frames follow it."""
    directory, writer = tmp_path / "spool", spool.SpoolWriter(tmp_path / "spool")
    writer.append(_batch(0, 1))
    path = writer.current()
    assert path is not None
    torn = spool.encode(_batch(10, 2))
    with path.open("ab") as f:
        f.write(torn[:len(torn) // 2])
    writer._size = path.stat().st_size
    assert _sequence(engine, directory, active=path) == 1  # the torn part waits
    writer.append(_batch(1, 1))
    writer.append(_batch(2, 1))
    assert _sequence(engine, directory, active=path) == 2
    assert _logged(engine) == [0, 1, 2]


def test_a_changed_byte_before_a_whole_frame_is_still_corruption(engine: Engine,
                                                                 tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    data = bytearray(spool.encode(_batch(0, 1)) + spool.encode(_batch(1, 1)))
    data[frames.HEADER.size + 10] ^= 0x01
    (directory / "999999997-1-1.spool").write_bytes(bytes(data))
    with pytest.raises(StorageError, match="corrupt"):
        _sequence(engine, directory)
    assert _logged(engine) == []


def test_a_full_spool_refuses_until_the_sequencer_reclaims(engine: Engine,
                                                           tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    one = len(spool.encode(_batch(0, 1)))
    writer = spool.SpoolWriter(directory, max_bytes=5 * one, rotate_bytes=2 * one)
    writer.rescan_seconds = 0
    served = []
    refusal = ""
    for i in range(10):
        try:
            writer.append(_batch(i, 1))
        except StorageError as e:
            refusal = e.reason
            break
        served.append(i)
    assert "spool is full" in refusal
    assert 3 <= len(served) <= 6  # the limit, give or take one file
    assert spool.usage(directory) <= 5 * one + 2 * one
    with pytest.raises(StorageError, match="spool is full"):
        writer.append(_batch(50, 1))  # refused, not written
    _sequence(engine, directory, active=writer.current())
    assert spool.usage(directory) <= 2 * one  # all but the file being written is gone
    writer.append(_batch(60, 1))
    _sequence(engine, directory, active=writer.current())
    assert _logged(engine) == [*served, 60]


def test_sequenced_files_leave_the_disk_while_their_writer_lives(engine: Engine,
                                                                 tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    writer = spool.SpoolWriter(directory, rotate_seconds=0)  # a new file each batch
    for i in range(5):
        writer.append(_batch(i, 1))
        _sequence(engine, directory, active=writer.current())
    assert [p.name for p in directory.iterdir()] == [writer.current().name]  # type: ignore[union-attr]
    writer.close()
    _sequence(engine, directory)
    assert list(directory.iterdir()) == []
    assert _logged(engine) == [0, 1, 2, 3, 4]


def test_a_file_whose_pid_was_reused_counts_as_finished(tmp_path: Path) -> None:
    parent = os.getppid()  # alive, and started before now
    assert not spool._finished(f"{parent}-{10**30}-1.spool", None, [])
    assert spool._finished(f"{parent}-1-1.spool", None, [])  # written in 1970: not it
