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
this path. A sequencer (:func:`sequence`, run by ``exchange audit sequence --watch``
beside the servers, and by every ``exchange audit`` command before it reads) moves
complete batches from all spool files into the log in one write transaction, recording
how far it read each file in the same transaction, so every spooled record enters the
log exactly once, with the records of one response contiguous. The frames are
described in :mod:`exchange.audit.frames`.

Files are ``<dir>/<pid>-<start ns>-<n>.spool``. A write that fails part-way (disk full,
an I/O error) is cut back to the last whole batch, or, if even that fails, the file is
given up and the next batch starts a new one; either way the response is refused. A
failed ``fdatasync`` gives the file up too, after cutting it back to what was durable:
the batches after that point belong to responses still waiting, which are refused. A
torn write left by a crash is skipped by the reader (:func:`exchange.audit.frames.scan`).

A writer starts a new file every :data:`ROTATE_BYTES` or :data:`ROTATE_SECONDS`, and a
file whose writer has moved on (or whose process is gone) is deleted once sequenced, so
what the log already holds leaves the disk within seconds. With ``max_bytes`` the
writer refuses a batch (the response is refused: 503) while the spool directory holds
that much; it checks the directory's size when it starts a file, and again at most
every half second while refusing, so the spool may pass the limit by up to one file
(:data:`ROTATE_BYTES` and a batch) per writing process. The spool directory must be
local to the host whose server processes write it.

Errors: :class:`~exchange.errors.StorageError` when the spool cannot be written or is
full (the response must not be served) or cannot be read.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exchange.audit import ledger
from exchange.audit.frames import MAGIC, Corrupt, decode, encode, scan
from exchange.audit.records import DisclosureBatch, Prepared
from exchange.errors import StorageError
from exchange.storage.schema import audit_spool_offsets

__all__ = [
    "MAGIC",
    "ROTATE_BYTES",
    "ROTATE_SECONDS",
    "Durable",
    "Files",
    "SpoolWriter",
    "already_durable",
    "decode",
    "encode",
    "remove_finished",
    "sequence",
    "usage",
]

log = logging.getLogger(__name__)

_Corrupt = Corrupt  # the name the tests and older callers use

#: A writer starts a new file past this size...
ROTATE_BYTES: Final = 1024 * 1024
#: ... or when its file has held data this long, so sequenced files are soon reclaimed.
ROTATE_SECONDS: Final = 10.0
_NAME = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)\.spool")
#: Batches smaller than this are synced on the caller's thread even without ``wait``.
_INLINE_SYNC_BYTES: Final = 64 * 1024
#: The most bytes one sequencing transaction takes from the spool.
_MAX_ROUND_BYTES: Final = 32 * 1024 * 1024
#: Read this much past the round's budget, so the batch that crosses it is whole.
_READ_SLACK: Final = 4 * 1024 * 1024
#: A writer that refuses for a full spool looks at the directory again this often.
_RESCAN_SECONDS: Final = 0.5
#: A process that started this long after a file's writer did is not that writer.
_PID_REUSE_SLACK_NS: Final = 10 * 10**9

# The spool files this process is writing now (by any writer in it): the sequencer of
# this process must not take them for finished.
_open_here: set[str] = set()
_open_here_lock = threading.Lock()


def usage(directory: Path) -> int:
    """The bytes the spool files in ``directory`` hold now (0 if it does not exist)."""
    total = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if _NAME.fullmatch(entry.name):
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                continue
    return total


class Files:
    """The file operations a :class:`SpoolWriter` makes: the seam where tests put a
    layer that fails (short writes, ENOSPC, EIO) at a byte of their choosing."""

    def open(self, path: Path) -> int:
        """Create ``path`` (0600) for appending; its descriptor."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def write(self, fd: int, data: memoryview) -> int:
        """Append what the kernel takes of ``data``; how many bytes."""
        return os.write(fd, data)

    def truncate(self, fd: int, size: int) -> None:
        """Cut the file back to ``size`` bytes."""
        os.ftruncate(fd, size)

    def size(self, fd: int) -> int:
        """The file's size."""
        return os.fstat(fd).st_size

    def sync(self, fd: int) -> None:
        """Make the file's data durable."""
        os.fdatasync(fd)

    def close(self, fd: int) -> None:
        """Close the descriptor."""
        os.close(fd)

    def sync_directory(self, directory: Path) -> None:
        """Make a new name in ``directory`` durable."""
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def usage(self, directory: Path) -> int:
        """The bytes the spool files in ``directory`` hold (:func:`usage`)."""
        return usage(directory)


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
        directory: The spool directory (created 0700 if missing).
        sync: ``fdatasync`` before :meth:`append` returns (the default; durable across
            power loss). ``False``: the bytes are written to the operating system before
            the response leaves (they survive a crash of the process, like SQLite's
            ``synchronous=NORMAL``) and made durable by :meth:`flush`, which the
            sequencer calls every ``audit_sequence_ms``.
        max_bytes: Refuse batches while the directory's spool files hold this many
            bytes (0: no limit but the disk's).
        rotate_bytes: Start a new file past this size.
        rotate_seconds: Start a new file when the current one has held data this long.
        files: The file operations (tests put in a failing layer).
    """

    def __init__(self, directory: Path, *, sync: bool = True, max_bytes: int = 0,
                 rotate_bytes: int = ROTATE_BYTES, rotate_seconds: float = ROTATE_SECONDS,
                 files: Files | None = None) -> None:
        self.directory = directory
        self.sync = sync
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._files = files or Files()
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0  # monotonic time of the current file's first batch
        self._count = 0
        self._started = time.time_ns()
        self._generation = 0  # one per file opened
        self._synced = (0, 0)  # (generation, bytes) known durable
        self._lost: set[int] = set()  # generations given up with batches not durable
        self._usage = 0  # the directory's spool bytes when last looked at ...
        self._usage_base = 0  # ... and this writer's file size then
        self._usage_at = 0.0
        self._full = False
        #: While refusing, look at the directory again at most this often.
        self.rescan_seconds = _RESCAN_SECONDS
        self._pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, sync thread)

    # -- files ---------------------------------------------------------------------------
    def _open(self) -> int:
        """The file to append to (a new one after a fork, past the rotation limits, or
        after the last one was given up). Called with ``_lock`` held."""
        pid = os.getpid()
        if self._fd is not None and self._pid == pid:
            if self._size < self.rotate_bytes and (
                    self._size == 0 or time.monotonic() - self._opened < self.rotate_seconds):
                return self._fd
            self._retire()
        if self._pid != pid:  # first use, or forked: the parent's file stays the parent's
            self._fd = None
            self._pid = pid
            self._started = time.time_ns()
            self._count = 0
        self._count += 1
        self._generation += 1
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{pid}-{self._started}-{self._count}.spool"
        with _open_here_lock:  # before it exists: this process's sequencer must wait
            _open_here.add(path.name)
        try:
            fd = self._files.open(path)
        except OSError:
            with _open_here_lock:
                _open_here.discard(path.name)
            raise
        try:
            if self.sync:
                self._files.sync_directory(self.directory)  # the name survives power loss
            size = self._files.size(fd)
        except OSError:
            self._files.close(fd)
            path.unlink(missing_ok=True)
            with _open_here_lock:
                _open_here.discard(path.name)
            raise
        self._fd, self._path, self._size = fd, path, size
        self._opened = time.monotonic()
        self._look_at_usage()
        return fd

    def _retire(self, *, durable: int | None = None) -> None:
        """Stop writing the current file: make it durable (or, if that fails, cut it back
        to ``durable`` bytes and fail its batches not yet durable), close it, and leave
        it to the sequencer. Called with ``_lock`` held."""
        fd, generation = self._fd, self._generation
        if fd is None:
            return
        self._fd = None
        try:
            if durable is None:
                self._files.sync(fd)
            else:
                raise OSError(errno.EIO, "a sync of the spool file failed")
        except OSError:
            self._lost.add(generation)
            if self.sync:
                # Every batch past the durable point belongs to a response still
                # waiting for its sync, which will be refused: take it out.
                known = self._synced[1] if self._synced[0] == generation else 0
                try:
                    self._files.truncate(fd, known if durable is None else durable)
                except OSError:
                    log.error("audit spool: could not cut %s back after a failed sync",
                              self._path)
        finally:
            with contextlib.suppress(OSError):
                self._files.close(fd)
            if self._path is not None:
                with _open_here_lock:
                    _open_here.discard(self._path.name)

    def _write_whole(self, fd: int, data: bytes) -> None:
        """Append ``data`` completely, or leave the file as it was. ``_lock`` held.

        Raises:
            OSError: It could not be written (the file is as before, or given up).
        """
        before = self._size
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                taken = self._files.write(fd, view[done:])
                if taken <= 0:
                    raise OSError(errno.EIO, "the spool file took no bytes")
                done += taken
        except OSError:
            self._cut_back(fd, before)
            raise
        self._size = before + done

    def _cut_back(self, fd: int, size: int) -> None:
        """Take a torn write out of the file; give the file up if that fails."""
        try:
            self._files.truncate(fd, size)
            if self._files.size(fd) == size:
                return
        except OSError:
            pass
        log.error("audit spool: could not cut %s back to %d bytes after a failed write;"
                  " the next batch starts a new file", self._path, size)
        self._size = size
        self._retire()

    # -- the limit -----------------------------------------------------------------------
    def _look_at_usage(self) -> None:
        if self.max_bytes:
            self._usage = self._files.usage(self.directory)
            self._usage_base = self._size
            self._usage_at = time.monotonic()

    def _make_room(self, size: int) -> None:
        """Refuse ``size`` more bytes if the spool holds ``max_bytes``. ``_lock`` held.

        Raises:
            StorageError: The spool is full.
        """
        if not self.max_bytes:
            return
        if self._usage + self._size - self._usage_base + size <= self.max_bytes:
            self._full = False
            return
        if time.monotonic() - self._usage_at >= self.rescan_seconds:
            self._look_at_usage()
            if self._usage + size <= self.max_bytes:
                if self._full:
                    log.info("audit spool: %s has room again", self.directory)
                self._full = False
                return
        if not self._full:
            log.error("audit spool: %s holds %d bytes, the limit is %d (audit_spool_max_mb);"
                      " reads are refused until the sequencer moves them into the log",
                      self.directory, self._usage, self.max_bytes)
        self._full = True
        raise StorageError("the audit spool is full (the audit log is not keeping up or its"
                           " database is unavailable); nothing was served, retry later")

    # -- appending -----------------------------------------------------------------------
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
            StorageError: It could not be written or synced, or the spool is full (serve
                nothing); without ``wait`` a failed sync is raised by the returned
                callable. A batch that failed is not in the spool.
        """
        if not records:
            return already_durable
        data = encode(records)
        try:
            with self._lock:
                fd = self._open()
                self._make_room(len(data))
                self._write_whole(fd, data)
                mark = (self._generation, self._size)
            # A small batch is synced here: handing it to the sync thread costs more
            # than the work it would overlap.
            inline = wait or len(data) < _INLINE_SYNC_BYTES
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

    def _settled(self, mark: tuple[int, int]) -> bool | None:
        """Whether the batch ending at ``mark`` is durable (True), lost (False), or not
        yet known (None)."""
        generation, size = self._synced
        if generation == mark[0] and size >= mark[1]:
            return True
        if mark[0] in self._lost:
            return False
        if mark[0] < self._generation or (mark[0] == self._generation and self._fd is None):
            return True  # its file was retired, which syncs it first
        return None

    def _sync_to(self, mark: tuple[int, int]) -> None:
        with self._sync_lock:
            with self._lock:
                settled = self._settled(mark)
                fd, target = self._fd, (self._generation, self._size)
            if settled is False:
                raise OSError(errno.EIO, "the spool file was given up after a failed sync")
            if settled or fd is None:
                return
            try:
                self._files.sync(fd)
            except OSError:
                with self._lock:
                    if self._generation == target[0] and self._fd == fd:
                        self._retire(durable=self._synced[1]
                                     if self._synced[0] == target[0] else 0)
                    settled = self._settled(mark)
                if settled:
                    return
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

    def close(self) -> None:
        """Make the current file durable and stop writing it; the sequencer then takes
        it as finished (a later batch starts a new file)."""
        with self._sync_lock, self._lock:
            if self._fd is not None and self._pid == os.getpid():
                self._retire()

    def current(self) -> Path | None:
        """The file being written now (None before the first append, or after close)."""
        return self._path if self._pid == os.getpid() and self._fd is not None else None


def _boot_ns() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) * 10**9
    except (OSError, ValueError):
        return None
    return None


def _process_started_ns(pid: int) -> int | None:
    """When process ``pid`` started (wall clock, Linux /proc), or None if unknown."""
    boot = _boot_ns()
    if boot is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return boot + ticks * 10**9 // os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started_ns: int) -> bool:
    """Whether the process that started writing at ``started_ns`` as ``pid`` still runs
    (a later process given the same pid is not it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    began = _process_started_ns(pid)
    return began is None or began <= started_ns + _PID_REUSE_SLACK_NS


def _finished(name: str, active: Path | None, files: list[Path]) -> bool:
    """Whether nobody will append to this file again."""
    if active is not None and active.name == name:
        return False
    with _open_here_lock:
        if name in _open_here:
            return False
    match = _NAME.fullmatch(name)
    if match is None:
        return False
    pid, started, count = (int(g) for g in match.groups())
    if pid == os.getpid() or not _alive(pid, started):
        return True  # ours and not open (closed or given up), or its process is gone
    # The same writer has moved on to a later file.
    for other in files:
        later = _NAME.fullmatch(other.name)
        if later and int(later.group(1)) == pid and int(later.group(2)) == started \
                and int(later.group(3)) > count:
            return True
    return False


def sequence(conn: Connection, directory: Path, *, max_bytes: int = _MAX_ROUND_BYTES,
             active: Path | None = None) -> int:
    """Move complete spooled batches into the log, in the caller's write transaction.

    Files are read in name order, each from where the last run stopped (kept in
    ``audit_spool_offsets``, updated in the same transaction). A torn write (a batch
    whose ``write`` never completed, so its response was refused or never sent) is
    skipped, with an error in the log, once whole frames follow it or its file is
    finished. Afterwards the caller should call :func:`remove_finished` once the
    transaction committed.

    Args:
        conn: A connection in a write transaction.
        directory: The spool directory.
        max_bytes: Stop after about this many bytes (the rest waits for the next run).
        active: The file this process's writer appends to (never taken as finished).

    Returns:
        The records moved into the log.

    Raises:
        StorageError: The database failed, or a spool file is corrupt (a complete frame
            that does not check out: left in place for inspection).
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
        # Decided before reading: once finished, a file does not grow again.
        final = _finished(path.name, active, files)
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= start:
                    continue  # nothing new (and no sync to force on the writers)
                # Writers in 'interval' mode leave the sync to the sequencer: whatever
                # is in the file now becomes durable before it is read.
                os.fdatasync(f.fileno())
                f.seek(start)
                data = f.read(budget + _READ_SLACK)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StorageError(f"the audit spool {path.name} cannot be read") from e
        if not data:
            continue
        try:
            found = scan(data, limit=budget, final=final and start + len(data) >= size)
        except Corrupt as e:
            log.error("audit spool %s is corrupt after byte %d: %s", path, start, e)
            raise StorageError(f"the audit spool {path.name} is corrupt after byte {start};"
                               " it was left in place for inspection") from None
        for begin, end in found.skipped:
            log.error("audit spool %s: skipped bytes %d to %d, a write that never completed"
                      " (its response was not served)", path, start + begin, start + end)
        if not found.consumed:
            continue
        if found.records:
            ledger.append(conn, found.records)
        taken += len(found.records)
        budget -= found.consumed
        if path.name in offsets:
            conn.execute(sa.update(audit_spool_offsets)
                         .where(audit_spool_offsets.c.name == path.name)
                         .values(consumed=start + found.consumed))
        else:
            conn.execute(sa.insert(audit_spool_offsets)
                         .values(name=path.name, consumed=start + found.consumed))
        offsets[path.name] = start + found.consumed
        if budget <= 0:
            break
    return taken


def remove_finished(conn: Connection, directory: Path, *, active: Path | None = None) -> int:
    """Delete spool files that are fully sequenced and will not grow again.

    Call in a write transaction after :func:`sequence` committed; forgets their offsets
    in the same transaction (a file is deleted before its offset row, so a crash in
    between leaves an offset for a missing file, which is harmless). A file cut back
    after the sequencer read it (a sync that failed) counts as sequenced.

    Returns:
        The files deleted.
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
        if int(offsets.get(path.name, 0)) >= size and _finished(path.name, active, files):
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
