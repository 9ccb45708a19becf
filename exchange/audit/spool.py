"""The disclosure spool: durable before the response leaves, sequenced into the log after.

Writing a disclosure into the Merkle log on the read path costs a database write
transaction per response; SQLite has one writer, so concurrent readers of a node would
queue for each other's commits (measured: +80 % incremental-poll p99 with 4 clients,
-20 % full-read throughput at 1M objects, against the 15 % budget of issue 5). Instead
each server process appends the disclosures of a response, as checked columns
(:class:`~exchange.audit.records.DisclosureBatch`, a third of the cost of rendering them
on the request's thread) or as rendered records
(:class:`~exchange.audit.records.Prepared`), to a spool file of its own, in one
``write`` followed by ``fdatasync`` (the durability ``synchronous=FULL`` gives a
commit), and only then lets the response go. No lock is shared between processes on
this path. A sequencer (:func:`sequence`, run every fraction of a second by each server
process, and by every ``exchange audit`` command before it reads) moves complete
batches from all spool files into the log in one write transaction, recording how far
it read each file in the same transaction, so every spooled record enters the log
exactly once, with the records of one response contiguous.

File format (``<dir>/<pid>-<start ns>-<n>.spool``), a sequence of frames::

    magic  b"CXS1"             4 bytes
    length                      4 bytes, big-endian: bytes after the checksum
    crc32                       4 bytes, big-endian: of those bytes
    remaining                   2 bytes: frames after this one in the same batch
    kind                        1 byte: index in exchange.audit.records.Kind, or 0xFF
    time                        8 bytes: microseconds
    then, for a record:
    head, tail                  4-byte length + bytes each
    recipient, producer, object 2-byte length + UTF-8 each (0xFFFF: none)
    or, for kind 0xFF (always a whole batch on its own):
    DisclosureBatch.encode()    the response's disclosures, rendered when sequenced

A frame cut short by a crash (its ``write`` never completed, so its response never
left) is ignored: the sequencer consumes only complete, checksummed batches. A frame
that is complete but does not check out is corruption, reported and left in place.

A writer starts a new file when its file passes :data:`ROTATE_BYTES`; a file whose
writer has moved on (or whose process is gone) is deleted once fully sequenced.
The spool directory must be local to the host whose server processes write it.

Errors: :class:`~exchange.errors.StorageError` when the spool cannot be written (the
response must not be served) or read.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exchange.audit import ledger
from exchange.audit.records import DisclosureBatch, Kind, Prepared
from exchange.errors import InvalidInput, StorageError
from exchange.storage.schema import audit_spool_offsets

__all__ = ["ROTATE_BYTES", "Durable", "SpoolWriter", "already_durable", "sequence"]

log = logging.getLogger(__name__)

MAGIC: Final = b"CXS1"
#: A writer starts a new file past this size.
ROTATE_BYTES: Final = 64 * 1024 * 1024
_HEADER = struct.Struct(">4sII")
_FIXED = struct.Struct(">HBq")
_NONE: Final = 0xFFFF
#: The kind byte of a frame holding a :class:`DisclosureBatch` (one frame per response).
_COLUMNS: Final = 0xFF
_KINDS: Final = list(Kind)
_NAME = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)\.spool")
#: Batches smaller than this are synced on the caller's thread even without ``wait``.
_INLINE_SYNC_BYTES: Final = 64 * 1024
#: The most bytes one sequencing transaction takes from the spool.
_MAX_ROUND_BYTES: Final = 32 * 1024 * 1024


def _text(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">H", _NONE)
    data = value.encode("utf-8")
    if len(data) >= _NONE:
        raise StorageError("an audit index value is too long for the spool")
    return struct.pack(">H", len(data)) + data


def encode(records: Sequence[Prepared] | DisclosureBatch) -> bytes:
    """The frames of one batch (the records of one response)."""
    if isinstance(records, DisclosureBatch):
        body = _FIXED.pack(0, _COLUMNS, records.time) + records.encode()
        return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body
    out = []
    for index, record in enumerate(records):
        body = b"".join((
            _FIXED.pack(len(records) - index - 1, _KINDS.index(record.kind), record.time),
            struct.pack(">I", len(record.head)), record.head,
            struct.pack(">I", len(record.tail)), record.tail,
            _text(record.recipient_org), _text(record.producer_org), _text(record.object_id),
        ))
        out.append(_HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body)
    return b"".join(out)


class _Corrupt(Exception):
    pass


def _read_text(body: bytes, at: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">H", body, at)
    at += 2
    if size == _NONE:
        return None, at
    return body[at:at + size].decode("utf-8"), at + size


def _decode_body(body: bytes) -> tuple[int, list[Prepared]]:
    remaining, kind, when = _FIXED.unpack_from(body, 0)
    at = _FIXED.size
    if kind == _COLUMNS:
        try:
            batch = DisclosureBatch.decode(body[at:])
            if batch.time != when:
                raise InvalidInput("its time differs from its frame's")
            return remaining, batch.records()  # checks every value, as the builder does
        except InvalidInput as e:
            raise _Corrupt(f"a disclosure batch that does not check out: {e}") from None
    parts = []
    for _ in range(2):
        (size,) = struct.unpack_from(">I", body, at)
        at += 4
        parts.append(body[at:at + size])
        at += size
    recipient, at = _read_text(body, at)
    producer, at = _read_text(body, at)
    object_id, at = _read_text(body, at)
    if at != len(body) or kind >= len(_KINDS):
        raise _Corrupt("malformed frame")
    return remaining, [Prepared(_KINDS[kind], when, parts[0], parts[1], recipient, producer,
                                object_id)]


def decode(data: bytes, limit: int | None = None) -> tuple[list[Prepared], int]:
    """The complete batches at the start of ``data`` and the bytes they span.

    A batch cut short at the end (a write still in progress, or never finished) is left
    for later; stops early once ``limit`` bytes are taken.

    Raises:
        _Corrupt: A complete frame does not check out.
    """
    records: list[Prepared] = []
    batch: list[Prepared] = []
    at = consumed = 0
    while at + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, at)
        if magic != MAGIC:
            raise _Corrupt(f"no frame at byte {at}")
        end = at + _HEADER.size + length
        if end > len(data):
            break
        body = data[at + _HEADER.size:end]
        if zlib.crc32(body) != crc:
            raise _Corrupt(f"checksum mismatch at byte {at}")
        try:
            remaining, decoded = _decode_body(body)
        except (struct.error, UnicodeDecodeError, IndexError) as e:
            raise _Corrupt(f"malformed frame at byte {at}") from e
        except _Corrupt as e:
            raise _Corrupt(f"{e} at byte {at}") from None
        batch += decoded
        at = end
        if remaining == 0:
            records += batch
            batch = []
            consumed = at
            if limit is not None and consumed >= limit:
                break
    return records, consumed


#: Waits until a batch written by :meth:`SpoolWriter.append` is durable (raises
#: :class:`~exchange.errors.StorageError` when it could not be made so).
Durable = Callable[[], None]


def already_durable() -> None:
    """The :data:`Durable` of a batch already durable, or of nothing written."""


class SpoolWriter:
    """One process's spool file: append a response's records durably.

    Threads of a process share one file and one ``fdatasync``: a thread whose bytes an
    earlier or concurrent sync already covered does not sync again (group commit).

    Args:
        directory: The spool directory (created if missing).
        sync: ``fdatasync`` before :meth:`append` returns (the default; durable across
            power loss). ``False``: the bytes are written to the operating system before
            the response leaves (they survive a crash of the process, like SQLite's
            ``synchronous=NORMAL``) and made durable by :meth:`flush`, which the
            sequencer calls every ``audit_sequence_ms``.
    """

    def __init__(self, directory: Path, *, sync: bool = True) -> None:
        self.directory = directory
        self.sync = sync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._path: Path | None = None
        self._size = 0
        self._count = 0
        self._started = time.time_ns()
        self._generation = 0  # one per file opened
        self._synced = (0, 0)  # (generation, bytes) known durable
        self._pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, sync thread)

    def _open(self) -> int:
        pid = os.getpid()
        if self._fd is not None and self._pid == pid and self._size < ROTATE_BYTES:
            return self._fd
        if self._fd is not None and self._pid == pid:
            # Rotated: make the old file durable, then close it; the sequencer deletes it
            # once it is consumed.
            os.fdatasync(self._fd)
            os.close(self._fd)
        if self._pid != pid:
            self._started = time.time_ns()
            self._count = 0
        self._count += 1
        self._generation += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        self._path = self.directory / f"{pid}-{self._started}-{self._count}.spool"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._pid = pid
        self._size = os.fstat(self._fd).st_size
        return self._fd

    def append(self, records: Sequence[Prepared] | DisclosureBatch, *, wait: bool = True
               ) -> Durable:
        """Write one batch (and, with ``sync``, make it durable).

        Args:
            records: The batch: rendered records, or a response's disclosures as
                columns (rendered by the sequencer, :meth:`DisclosureBatch.records`).
            wait: Return only once the batch is durable. With False the sync runs on this
                process's sync thread while the caller goes on (rendering the response,
                say); the caller must call the returned :data:`Durable` before anything
                the records describe leaves. (A batch under 64 KiB is synced before
                this returns all the same.)

        Returns:
            Call it to wait until the batch is durable (at once with ``wait``).

        Raises:
            StorageError: It could not be written or synced (serve nothing); without
                ``wait`` a failed sync is raised by the returned callable.
        """
        if not records:
            return already_durable
        data = encode(records)
        try:
            with self._lock:
                fd = self._open()
                written = os.write(fd, data)
                self._size += written
                mark = (self._generation, self._size)
            if written != len(data):
                raise OSError("short write")
            # A small batch is synced here: handing it to the sync thread costs more
            # than the work it would overlap.
            inline = wait or written < _INLINE_SYNC_BYTES
            if self.sync and inline:
                self._sync_to(mark)
        except OSError as e:
            raise self._failed(e) from None
        if not self.sync or inline:
            return already_durable
        pending = self._sync_thread().submit(self._sync_to, mark)

        def durable() -> None:
            try:
                pending.result()
            except OSError as e:
                raise self._failed(e) from None

        return durable

    def _failed(self, e: OSError) -> StorageError:
        log.error("audit spool: could not write %s (%s)", self.directory, e.strerror or e)
        return StorageError("the audit ledger could not be written; nothing was served")

    def _sync_thread(self) -> ThreadPoolExecutor:
        """This process's sync thread (started on first use after a fork)."""
        with self._lock:
            if self._pool is None or self._pool[0] != os.getpid():
                self._pool = (os.getpid(), ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="cx-spool-sync"))
            return self._pool[1]

    def _sync_to(self, mark: tuple[int, int]) -> None:
        with self._sync_lock:
            generation, size = self._synced
            if mark[0] < self._generation or (generation == mark[0] and size >= mark[1]):
                return  # covered: a sync since that write, or the file was rotated (synced)
            with self._lock:
                fd, target = self._fd, (self._generation, self._size)
            if fd is None:
                return
            try:
                os.fdatasync(fd)
            except OSError:
                with self._lock:
                    if mark[0] < self._generation:
                        return  # rotated meanwhile: the old file was synced before closing
                raise
            self._synced = target

    def flush(self) -> None:
        """Make everything written so far durable (for ``sync=False``).

        Raises:
            StorageError: The sync failed.
        """
        with self._lock:
            mark = (self._generation, self._size)
            open_here = self._fd is not None and self._pid == os.getpid()
        if not open_here:
            return
        try:
            self._sync_to(mark)
        except OSError as e:
            raise StorageError("the audit spool could not be synced") from e

    def current(self) -> Path | None:
        """The file being written now (None before the first append)."""
        return self._path if self._pid == os.getpid() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finished(name: str, active: Path | None, files: list[Path]) -> bool:
    """Whether nobody will append to this file again."""
    if active is not None and active.name == name:
        return False
    match = _NAME.fullmatch(name)
    if match is None:
        return False
    pid, started, count = (int(g) for g in match.groups())
    if not _alive(pid):
        return True
    # The same writer has moved on to a later file.
    for other in files:
        later = _NAME.fullmatch(other.name)
        if later and int(later.group(1)) == pid and int(later.group(2)) == started \
                and int(later.group(3)) > count:
            return True
    return False


def sequence(conn: Connection, directory: Path, *, max_bytes: int = _MAX_ROUND_BYTES) -> int:
    """Move complete spooled batches into the log, in the caller's write transaction.

    Files are read in name order, each from where the last run stopped (kept in
    ``audit_spool_offsets``, updated in the same transaction). Afterwards the caller
    should call :func:`remove_finished` once the transaction committed.

    Args:
        conn: A connection in a write transaction.
        directory: The spool directory.
        max_bytes: Stop after about this many bytes (the rest waits for the next run).

    Returns:
        The records moved into the log.

    Raises:
        StorageError: The database failed, or a spool file is corrupt.
    """
    if not directory.is_dir():
        return 0
    files = sorted(p for p in directory.iterdir() if _NAME.fullmatch(p.name))
    if not files:
        return 0
    offsets = dict(conn.execute(sa.select(audit_spool_offsets.c.name,
                                          audit_spool_offsets.c.consumed)).all())
    taken = 0
    budget = max_bytes
    for path in files:
        start = int(offsets.get(path.name, 0))
        try:
            with path.open("rb") as f:
                if os.fstat(f.fileno()).st_size <= start:
                    continue  # nothing new (and no sync to force on the writers)
                # Writers in 'interval' mode leave the sync to the sequencer: whatever
                # is in the file now becomes durable before it is read.
                os.fdatasync(f.fileno())
                f.seek(start)
                data = f.read(budget + ROTATE_BYTES // 16)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StorageError(f"the audit spool {path.name} cannot be read") from e
        if not data:
            continue
        try:
            records, consumed = decode(data, limit=budget)
        except _Corrupt as e:
            log.error("audit spool %s is corrupt after byte %d: %s", path, start, e)
            raise StorageError(f"the audit spool {path.name} is corrupt after byte {start};"
                               " it was left in place for inspection") from None
        if not consumed:
            continue
        ledger.append(conn, records)
        taken += len(records)
        budget -= consumed
        if path.name in offsets:
            conn.execute(sa.update(audit_spool_offsets)
                         .where(audit_spool_offsets.c.name == path.name)
                         .values(consumed=start + consumed))
        else:
            conn.execute(sa.insert(audit_spool_offsets)
                         .values(name=path.name, consumed=start + consumed))
        offsets[path.name] = start + consumed
        if budget <= 0:
            break
    return taken


def remove_finished(conn: Connection, directory: Path, *, active: Path | None = None) -> int:
    """Delete spool files that are fully sequenced and will not grow again.

    Call in a write transaction after :func:`sequence` committed; forgets their offsets
    in the same transaction (a file is deleted before its offset row, so a crash in
    between leaves an offset for a missing file, which is harmless).
    """
    if not directory.is_dir():
        return 0
    files = sorted(p for p in directory.iterdir() if _NAME.fullmatch(p.name))
    offsets = dict(conn.execute(sa.select(audit_spool_offsets.c.name,
                                          audit_spool_offsets.c.consumed)).all())
    deleted = 0
    for path in files:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if int(offsets.get(path.name, 0)) == size and _finished(path.name, active, files):
            path.unlink(missing_ok=True)
            conn.execute(sa.delete(audit_spool_offsets)
                         .where(audit_spool_offsets.c.name == path.name))
            deleted += 1
    present = {p.name for p in files}
    for name in offsets:
        if name not in present:
            conn.execute(sa.delete(audit_spool_offsets)
                         .where(audit_spool_offsets.c.name == name))
    return deleted
