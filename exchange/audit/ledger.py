"""The audit ledger in the exchange's database: append, checkpoint, prove, verify.

Every function takes a SQLAlchemy :class:`~sqlalchemy.engine.Connection` inside the
caller's open transaction, so a disclosure is recorded in the same transaction as the
read it describes and commits or rolls back with it (DESIGN.md decision 6: if the ledger
cannot be written, nothing is served). Append in a write transaction (``BEGIN
IMMEDIATE`` on SQLite; on PostgreSQL :func:`append` locks the tree's one-row state with
``SELECT ... FOR UPDATE``), which makes the ledger's single writer: ``seq`` is gapless.

Tables (``exchange.storage.schema``, revision 0003):

* ``audit_records``: the leaves: ``seq``, the canonical record ``body`` exactly as hashed,
  its ``leaf_hash``, and query copies (kind, time, recipient and producer org, object id);
* ``audit_frontier``: one row, the tree's size and right edge (:class:`Frontier`), updated
  by every append, so an append costs O(batch + log n) and never reads old records;
* ``audit_nodes``: the hashes of the complete subtrees of 256, 65536, ... leaves (levels
  8, 16, 24...: the bottom rows of C2SP tlog-tiles), so a proof needs at most 128 stored
  hashes per subtree it uses instead of a scan of the log;
* ``audit_checkpoints``: the signed checkpoints, one per size.

The stored subtree hashes and leaf hashes are a cache for proofs: nothing trusts them
without recomputation. :func:`verify_all` recomputes every leaf from its record bytes,
the whole tree, the cache and the right edge, and checks every checkpoint.

Errors: :class:`~exchange.errors.StorageError` when the database fails or the ledger's
own state is unusable; :class:`~exchange.errors.SignatureError` when a checkpoint does
not verify or the log no longer extends one; :class:`~exchange.errors.NotFound` for a
record that is not there; :class:`VerificationFailed` from :func:`verify_all`;
``ValueError`` for arguments outside the tree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from exchange.audit.checkpoint import (
    Checkpoint,
    NoteKey,
    sign_checkpoint,
    verify_checkpoint,
)
from exchange.audit.records import Prepared, Record, prepare
from exchange.audit.tree import (
    HASH_SIZE,
    Frontier,
    fold_right,
    leaf_hash,
    node_hash,
    split_range,
    verify_consistency,
)
from exchange.audit.tree import consistency_proof as _consistency_proof
from exchange.audit.tree import inclusion_proof as _inclusion_proof
from exchange.audit.verify import CheckpointSource, Report, StreamVerifier, VerificationFailed
from exchange.errors import NotFound, SignatureError, StorageError
from exchange.signing.keys import SigningKey
from exchange.storage.schema import audit_checkpoints, audit_frontier, audit_nodes, audit_records

__all__ = [
    "NODE_STRIDE",
    "StoredCheckpoint",
    "TreeHead",
    "append",
    "checkpoint_at",
    "consistency_proof",
    "current_root",
    "inclusion_proof",
    "iter_checkpoints",
    "iter_records",
    "latest_checkpoint",
    "make_checkpoint",
    "record_at",
    "verify_all",
]

log = logging.getLogger(__name__)

#: Subtree hashes are stored for the levels that are multiples of this (256**k leaves).
NODE_STRIDE: Final = 8
_CHUNK: Final = 2048

_R = audit_records.c
_N = audit_nodes.c
_F = audit_frontier.c
_C = audit_checkpoints.c


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The tree as it stands: its size and root.

    Attributes:
        size: Records in the log.
        root: The RFC 9162 root hash of all of them.
    """

    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A row of ``audit_checkpoints``.

    Attributes:
        size: The tree size it signs.
        root: The root hash (a copy of the one in the note).
        note: The signed note.
        created_at: When it was made (microseconds since the epoch).
    """

    size: int
    root: bytes
    note: str
    created_at: int


@contextmanager
def _database(action: str) -> Iterator[None]:
    try:
        yield
    except exc.SQLAlchemyError as e:
        log.error("audit ledger: could not %s (%s)", action, type(e).__name__)
        raise StorageError(f"the audit ledger could not {action}") from e


def _read_state(conn: Connection, *, lock: bool = False) -> tuple[int, bytes]:
    query = sa.select(_F.size, _F.hashes).where(_F.id == 1)
    if lock:
        query = query.with_for_update()
    with _database("read the tree state"):
        row = conn.execute(query).one_or_none()
    if row is None:
        raise StorageError("the audit ledger has no tree state; is the schema at revision 0003?")
    return int(row.size), bytes(row.hashes)


def _read_frontier(conn: Connection, *, lock: bool = False) -> Frontier:
    size, packed = _read_state(conn, lock=lock)
    try:
        return Frontier.from_bytes(size, packed)
    except ValueError:
        raise StorageError(
            "the audit ledger's tree state is corrupt; run 'exchange audit verify'"
        ) from None


def append(conn: Connection, records: Sequence[Record | Prepared]) -> list[int]:
    """Append records as one batch, in the caller's transaction.

    Args:
        conn: A connection in a write transaction; the append commits with it.
        records: The records, in order (e.g. every disclosure of one response), typed
            or already rendered (:class:`~exchange.audit.records.Prepared`: the rendering
            happens before the write lock is taken; only the seq is added under it).

    Returns:
        The ``seq`` given to each record.

    Raises:
        StorageError: The database failed, or another writer appended concurrently
            (the caller's transaction must be rolled back; nothing was appended).
    """
    if not records:
        return []
    prepared = [r if isinstance(r, Prepared) else prepare(r) for r in records]
    frontier = _read_frontier(conn, lock=True)
    first = frontier.size
    nodes: list[dict[str, Any]] = []

    def keep(level: int, index: int, digest: bytes) -> None:
        if level % NODE_STRIDE == 0:
            nodes.append({"level": level, "idx": index, "hash": digest})

    rows = []
    for record in prepared:
        seq = frontier.size
        body = record.data(seq)
        leaf = leaf_hash(body)
        frontier.append(leaf, keep)
        rows.append((seq, record.kind.value, record.time, record.recipient_org,
                     record.producer_org, record.object_id, body, leaf))
    with _database("append records"):
        _insert_records(conn, rows)
        if nodes:
            conn.execute(sa.insert(audit_nodes), nodes)
        done = conn.execute(
            sa.update(audit_frontier)
            .where(_F.id == 1, _F.size == first)
            .values(size=frontier.size, hashes=frontier.to_bytes())
        )
    if done.rowcount != 1:
        raise StorageError("another writer appended to the audit ledger at the same time")
    return list(range(first, frontier.size))


#: The columns of an ``audit_records`` row, in the table's order, as :func:`append` builds it.
_RECORD_COLUMNS: Final = tuple(audit_records.c.keys())
_COPY_RECORDS: Final = (f"COPY audit_records ({', '.join(_RECORD_COLUMNS)})"
                        " FROM STDIN (FORMAT BINARY)")
#: Their PostgreSQL types, for binary COPY (revision 0003's columns).
_COPY_TYPES: Final = ("int8", "varchar", "int8", "varchar", "varchar", "varchar", "bytea",
                      "bytea")
_INSERT_RECORDS: Final = (f"INSERT INTO audit_records ({', '.join(_RECORD_COLUMNS)})"
                          f" VALUES ({', '.join('?' * len(_RECORD_COLUMNS))})")


def _insert_records(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``audit_records`` rows, by the cheapest path the database has.

    The sequencer inserts every record of every response, so its cost per row is part of
    what the ledger costs a busy node (tests/perf/README.md, sixth pass). On PostgreSQL,
    binary ``COPY``: for a poll's 700-byte record it took 3 us of client CPU and 13 us
    of the backend's, against 26 and 24 us for an ``INSERT``, and no more for a 34 KB
    one (text ``COPY`` doubles the bytes of a body in hex and costs more on large ones).
    On SQLite, the driver's own ``executemany`` skips SQLAlchemy's work per parameter.

    Raises:
        StorageError: The database refused or failed (the transaction must roll back).
    """
    name = conn.dialect.name
    if name == "sqlite":
        conn.exec_driver_sql(_INSERT_RECORDS, rows)
        return
    if name != "postgresql":
        conn.execute(sa.insert(audit_records), [dict(zip(_RECORD_COLUMNS, row, strict=True))
                                                for row in rows])
        return
    raw = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    try:
        with raw.cursor() as cursor, cursor.copy(_COPY_RECORDS) as copy:
            copy.set_types(list(_COPY_TYPES))
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as e:  # the driver's own, not wrapped by SQLAlchemy here
        log.error("audit ledger: could not append records (%s)", type(e).__name__)
        raise StorageError("the audit ledger could not append records") from e


def current_root(conn: Connection) -> TreeHead:
    """The tree's size and root now (from its stored right edge, O(log n)).

    Raises:
        StorageError: The database failed or the tree state is corrupt.
    """
    frontier = _read_frontier(conn)
    return TreeHead(frontier.size, frontier.root())


class _StoredTree:
    """Subtree hashes from the stored leaf hashes and level-8k subtree hashes."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn = conn
        self.size = size

    def perfect(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of ``2**level`` leaves, the ``index``-th."""
        base = level - level % NODE_STRIDE
        count = 1 << (level - base)
        first = index << (level - base)
        with _database("read tree hashes"):
            if base == 0:
                query = (
                    sa.select(_R.leaf_hash)
                    .where(_R.seq >= first, _R.seq < first + count)
                    .order_by(_R.seq)
                )
            else:
                query = (
                    sa.select(_N.hash)
                    .where(_N.level == base, _N.idx >= first, _N.idx < first + count)
                    .order_by(_N.idx)
                )
            hashes = [bytes(h) for h in self.conn.execute(query).scalars()]
        if len(hashes) != count or any(len(h) != HASH_SIZE for h in hashes):
            raise StorageError(
                f"the audit ledger's stored hashes of records {index << level} to"
                f" {((index + 1) << level) - 1} are incomplete; run 'exchange audit verify'"
            )
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def subtree(self, start: int, end: int) -> bytes:
        """The hash of the node covering leaves ``[start, end)``."""
        return fold_right([self.perfect(level, index) for level, index in split_range(start, end)])


def _tree_for(conn: Connection, size: int | None) -> tuple[_StoredTree, int]:
    tree_size = _read_frontier(conn).size
    if size is None:
        size = tree_size
    if not 0 <= size <= tree_size:
        raise ValueError(f"the audit log holds {tree_size} records, not {size}")
    return _StoredTree(conn, size), size


def inclusion_proof(conn: Connection, seq: int, size: int | None = None) -> list[bytes]:
    """The RFC 9162 inclusion proof of record ``seq`` in the tree of ``size`` records.

    Args:
        conn: A connection.
        seq: The record.
        size: The tree size (a checkpoint's); the current size if None.

    Returns:
        The audit path (verify with :func:`exchange.audit.tree.verify_inclusion`).

    Raises:
        ValueError: ``size`` is larger than the log or ``seq`` is not below it.
        StorageError: The database failed or its stored hashes are incomplete.
    """
    tree, size = _tree_for(conn, size)
    return _inclusion_proof(seq, size, tree.subtree)


def consistency_proof(conn: Connection, old_size: int, new_size: int | None = None) -> list[bytes]:
    """The RFC 9162 consistency proof from ``old_size`` to ``new_size``.

    Args:
        conn: A connection.
        old_size: The earlier size (e.g. a member's saved checkpoint).
        new_size: The later size; the current size if None.

    Returns:
        The proof (verify with :func:`exchange.audit.tree.verify_consistency`).

    Raises:
        ValueError: The sizes are out of order or beyond the log.
        StorageError: The database failed or its stored hashes are incomplete.
    """
    tree, new_size = _tree_for(conn, new_size)
    return _consistency_proof(old_size, new_size, tree.subtree)


def record_at(conn: Connection, seq: int) -> bytes:
    """The bytes of one record (its leaf data).

    Raises:
        NotFound: There is no record ``seq``.
        StorageError: The database failed.
    """
    with _database("read a record"):
        body = conn.execute(sa.select(_R.body).where(_R.seq == seq)).scalar_one_or_none()
    if body is None:
        raise NotFound(f"there is no audit record {seq}")
    return bytes(body)


def iter_records(
    conn: Connection, start: int = 0, end: int | None = None, *, chunk: int = _CHUNK
) -> Iterator[tuple[int, bytes, bytes]]:
    """The stored records with ``start <= seq < end``, in order, read in chunks.

    Yields:
        ``(seq, body, leaf_hash)`` as stored (nothing is checked).

    Raises:
        StorageError: The database failed.
    """
    cursor = start
    while True:
        query = sa.select(_R.seq, _R.body, _R.leaf_hash).where(_R.seq >= cursor)
        if end is not None:
            query = query.where(_R.seq < end)
        with _database("read records"):
            rows = conn.execute(query.order_by(_R.seq).limit(chunk)).all()
        if not rows:
            return
        for row in rows:
            yield int(row.seq), bytes(row.body), bytes(row.leaf_hash)
        cursor = int(rows[-1].seq) + 1


def _stored_checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(int(row.size), bytes(row.root), str(row.note), int(row.created_at))


def iter_checkpoints(
    conn: Connection, *, up_to: int | None = None, chunk: int = 500
) -> Iterator[StoredCheckpoint]:
    """The stored checkpoints in increasing size, up to ``up_to`` inclusive if given.

    Raises:
        StorageError: The database failed.
    """
    after = -1
    while True:
        query = sa.select(_C.size, _C.root, _C.note, _C.created_at).where(_C.size > after)
        if up_to is not None:
            query = query.where(_C.size <= up_to)
        with _database("read checkpoints"):
            rows = conn.execute(query.order_by(_C.size).limit(chunk)).all()
        if not rows:
            return
        for row in rows:
            yield _stored_checkpoint(row)
        after = int(rows[-1].size)


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    """The newest stored checkpoint (not verified), or None.

    Raises:
        StorageError: The database failed.
    """
    query = sa.select(_C.size, _C.root, _C.note, _C.created_at).order_by(_C.size.desc()).limit(1)
    with _database("read checkpoints"):
        row = conn.execute(query).one_or_none()
    return None if row is None else _stored_checkpoint(row)


def checkpoint_at(conn: Connection, size: int) -> StoredCheckpoint:
    """The stored checkpoint of one size (not verified).

    Raises:
        NotFound: There is none of that size.
        StorageError: The database failed.
    """
    query = sa.select(_C.size, _C.root, _C.note, _C.created_at).where(_C.size == size)
    with _database("read checkpoints"):
        row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"there is no audit checkpoint of size {size}")
    return _stored_checkpoint(row)


def make_checkpoint(
    conn: Connection,
    key: SigningKey,
    origin: str,
    *,
    key_name: str | None = None,
    trusted: Sequence[NoteKey] = (),
    now: int | None = None,
) -> StoredCheckpoint:
    """Sign the current tree head and store it, unless the newest checkpoint already has it.

    The log must never sign a checkpoint inconsistent with one it signed before
    (c2sp.org/tlog-checkpoint): the newest stored checkpoint is verified with ``key``
    (or a ``trusted`` key, e.g. the one before a rotation) and the tree is proven to
    extend it before anything is signed.

    Args:
        conn: A connection in a write transaction.
        key: The node's Ed25519 checkpoint key.
        origin: The log's origin line, e.g. ``audit.exchange.example/log1``.
        key_name: The key name in the signature line; the origin by default.
        trusted: Earlier keys whose checkpoints this log may extend.
        now: The time to record (microseconds); the clock if None.

    Returns:
        The new checkpoint, or the newest one when the tree has not grown.

    Raises:
        SignatureError: The key is not Ed25519; the newest checkpoint does not verify,
            is from another origin, is larger than the tree, or is not a prefix of it.
        StorageError: The database failed.
    """
    name = origin if key_name is None else key_name
    own = NoteKey.of(name, key)
    frontier = _read_frontier(conn, lock=True)
    head = TreeHead(frontier.size, frontier.root())
    previous = latest_checkpoint(conn)
    if previous is not None:
        signed = verify_checkpoint(previous.note, [own, *trusted], origin=origin)
        if signed.size > head.size:
            raise SignatureError(
                f"the newest checkpoint signs {signed.size} records but the tree holds only"
                f" {head.size}: records were removed; refusing to sign"
            )
        if signed.size == head.size:
            if signed.root != head.root:
                raise SignatureError(
                    f"the tree's root at size {head.size} differs from the signed one;"
                    " refusing to sign; run 'exchange audit verify'"
                )
            return previous
        proof = consistency_proof(conn, signed.size, head.size)
        try:
            verify_consistency(signed.size, head.size, proof, signed.root, head.root)
        except SignatureError as e:
            raise SignatureError(
                f"the tree no longer extends checkpoint {signed.size} ({e.reason}); refusing"
                " to sign; run 'exchange audit verify'"
            ) from None
    note = sign_checkpoint(Checkpoint(origin, head.size, head.root), key, name)
    created = time.time_ns() // 1000 if now is None else now
    with _database("store a checkpoint"):
        conn.execute(
            sa.insert(audit_checkpoints).values(
                size=head.size, root=head.root, note=note, created_at=created
            )
        )
    log.info("audit checkpoint signed at size %d", head.size)
    return StoredCheckpoint(head.size, head.root, note, created)


def _check_stored_nodes(
    conn: Connection, produced: list[tuple[int, int, bytes]], verifier: StreamVerifier
) -> bool:
    """Compare recomputed level-8k subtree hashes with the stored ones; False on a mismatch."""
    by_level: dict[int, dict[int, bytes]] = {}
    for level, index, digest in produced:
        by_level.setdefault(level, {})[index] = digest
    for level, wanted in by_level.items():
        query = (
            sa.select(_N.idx, _N.hash)
            .where(_N.level == level, _N.idx >= min(wanted), _N.idx <= max(wanted))
        )
        with _database("read tree hashes"):
            stored = {int(i): bytes(h) for i, h in conn.execute(query).all()}
        for index, digest in sorted(wanted.items()):
            if stored.get(index) != digest:
                first = index << level
                verifier.note(
                    first,
                    f"the stored hash of records {first} to {((index + 1) << level) - 1}"
                    " (used for proofs) does not match them",
                )
                return False
    return True


def _check_tail(
    conn: Connection, verifier: StreamVerifier, size: int, start: Frontier | None
) -> None:
    """After the scan: the right edge, rows outside the tree, checkpoints beyond it."""
    if start is None:
        verifier.note(None, f"the stored tree state is malformed (size {size})")
    elif verifier.position == size and verifier.expected_seq == size:
        for (first, end), mine, stored in zip(
            verifier.frontier.ranges(), verifier.frontier.hashes, start.hashes, strict=True
        ):
            if mine != stored:
                verifier.note(
                    first,
                    f"the stored tree state disagrees with records {first} to {end - 1}",
                )
                break
    if verifier.expected_seq < size:
        verifier.note(
            verifier.expected_seq,
            f"records {verifier.expected_seq} to {size - 1} are missing: the tree"
            f" holds {size} records",
        )
    # Records appended while the scan ran are not part of this check.
    end_size = max(size, _read_state(conn)[0])
    with _database("read records"):
        outside = conn.execute(
            sa.select(_R.seq).where((_R.seq >= end_size) | (_R.seq < 0)).order_by(_R.seq).limit(1)
        ).scalar_one_or_none()
        beyond = conn.execute(sa.select(_C.size).where(_C.size > end_size).limit(1)).scalar()
        levels = conn.execute(
            sa.select(_N.level, sa.func.max(_N.idx)).group_by(_N.level)
        ).all()
    if outside is not None:
        verifier.note(int(outside), "stored but not part of the tree (inserted afterwards?)")
    if beyond is not None:
        verifier.note(
            end_size,
            f"checkpoint {beyond} signs more records than the tree holds ({end_size}):"
            " records were removed",
        )
    for level, top in levels:
        if level <= 0 or level % NODE_STRIDE or int(top) >= end_size >> level:
            verifier.note(None, f"the stored tree hashes of level {level} go beyond the tree")
            break


def verify_all(
    conn: Connection,
    keys: Sequence[NoteKey],
    *,
    origin: str | None = None,
    strict: bool = False,
    chunk: int = _CHUNK,
) -> Report:
    """Recompute the whole log from the stored records and check every checkpoint.

    Streams the records in ``seq`` order, ``chunk`` at a time (memory does not grow
    with the log), and checks what :class:`~exchange.audit.verify.StreamVerifier`
    checks, plus the stored leaf hashes, the stored subtree hashes, the stored right
    edge, rows outside the tree and checkpoints beyond it. Records appended while it
    runs are left for the next run; on PostgreSQL run it in a ``REPEATABLE READ``
    transaction to read one snapshot.

    Args:
        conn: A connection (a read transaction is enough).
        keys: The trusted checkpoint keys.
        origin: The log's origin, if known.
        strict: Also check every record's fields and canonical form (slower).
        chunk: Records per query.

    Returns:
        The report, when everything verified.

    Raises:
        VerificationFailed: Anything did not verify; its ``report`` lists what.
        StorageError: The database failed.
    """
    size, packed = _read_state(conn)
    try:
        start: Frontier | None = Frontier.from_bytes(size, packed)
    except ValueError:
        start = None
    produced: list[tuple[int, int, bytes]] = []

    def collect(level: int, index: int, digest: bytes) -> None:
        if level % NODE_STRIDE == 0:
            produced.append((level, index, digest))

    sources = (
        CheckpointSource(c.size, c.note, f"checkpoint {c.size}", c.root)
        for c in iter_checkpoints(conn, up_to=size)
    )
    verifier = StreamVerifier(keys, sources, origin=origin, on_node=collect, strict=strict)
    nodes_ok = True
    for seq, body, stored_leaf in iter_records(conn, 0, size, chunk=chunk):
        verifier.add(body, row_seq=seq, stored_leaf=stored_leaf)
        if len(produced) >= chunk // 256 + 1:
            nodes_ok = nodes_ok and _check_stored_nodes(conn, produced, verifier)
            produced.clear()
    if produced and nodes_ok:
        _check_stored_nodes(conn, produced, verifier)
    _check_tail(conn, verifier, size, start)
    report = verifier.finish()
    if not report.ok:
        raise VerificationFailed(report)
    return report
