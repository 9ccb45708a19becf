"""The audit trail of one node: what the service records, and what auditors ask of it.

:class:`AuditTrail` joins the pure ledger (:mod:`exchange.audit`) to the node: its store,
its checkpoint key (the node's Ed25519 key, :mod:`exchange.node.nodekey`) and its log origin
(``settings.audit_origin``). The service calls :meth:`AuditTrail.record` before a
response leaves (disclosures and denials: durable in this process's spool, then moved
into the log by the sequencer, :mod:`exchange.audit.spool`), and wires
:func:`exchange.audit.ledger.append` in as the store's audit sink, so publish and admin
records commit with the change they describe. Auditors (the HTTP API, ``exchange audit
...``) use the rest: filtered records, checkpoints, proofs, the full verification,
exports and member-held checkpoints; each question sequences the spool first.

The checkpoint keys an auditor trusts are the node keys in the member registry (purpose
``node``), every one ever registered, so a checkpoint signed before a key rotation still
verifies; each signs under the log's origin as its key name.

Errors: :class:`~exchange.errors.StorageError` when the ledger cannot be written or read
(a read that cannot be recorded is not served); :class:`~exchange.errors.SignatureError`
for checkpoints that do not verify or a log that does not extend one; the ledger's and
the query's own errors pass through.
"""

from __future__ import annotations

import atexit
import base64
import getpass
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from exchange.audit import export as audit_export
from exchange.audit import ledger, query, spool
from exchange.audit.checkpoint import Checkpoint, NoteKey, verify_checkpoint
from exchange.audit.records import (
    MAX_ENTRIES,
    Admin,
    DisclosureBatch,
    Entry,
    Kind,
    PolicyReload,
    Prepared,
    Record,
    parse_record,
    prepare,
)
from exchange.audit.tree import leaf_hash
from exchange.audit.verify import Report
from exchange.audit.witness import verify_against
from exchange.config import Settings
from exchange.errors import NotFound
from exchange.node.nodekey import ensure_node_key
from exchange.signing.keys import SigningKey, load_public_pem
from exchange.storage.base import Store
from exchange.storage.schema import audit_records

__all__ = [
    "AuditTrail",
    "InclusionProof",
    "admin_record",
    "chunks",
    "default_origin",
    "os_actor",
]

log = logging.getLogger(__name__)


def default_origin(settings: Settings) -> str:
    """The log origin when ``audit_origin`` is not set: from the node's title."""
    if settings.audit_origin:
        return settings.audit_origin
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in settings.title.lower())
    return f"{slug.strip('-') or 'cert-exchange'}/audit-log"


def os_actor() -> str:
    """``cli:<user>``: the OS user running this process, the actor of its admin records."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "_", user)[:64] or "unknown"
    return f"cli:{cleaned}"


def admin_record(action: str, target: str, details: dict[str, str | int | bool | None], *,
                 actor: str | None = None, request_id: str | None = None) -> Admin:
    """The record of an administrative change (None-valued details are left out).

    Args:
        action: ``<thing>.<verb>``, e.g. ``key.revoke``.
        target: The id of the thing changed.
        details: Further facts; never a secret.
        actor: Who; the OS user (:func:`os_actor`) by default.
        request_id: The HTTP request, if any.
    """
    return Admin(time=time.time_ns() // 1000, actor=actor or os_actor(), action=action,
                 target=target, details={k: v for k, v in details.items() if v is not None},
                 request_id=request_id)


def chunks(items: Sequence[Any], size: int = MAX_ENTRIES) -> list[Sequence[Any]]:
    """``items`` in runs of at most ``size`` (the entries of one record)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """A record, its place in a checkpointed tree, and the path that proves it.

    Attributes:
        seq: The record's index.
        record: Its canonical bytes (the leaf data).
        leaf_hash: ``SHA-256(0x00 || record)``.
        size: The tree size of the checkpoint it is proven against.
        path: The RFC 9162 audit path.
        checkpoint: That checkpoint, a signed note.
    """

    seq: int
    record: bytes
    leaf_hash: bytes
    size: int
    path: list[bytes]
    checkpoint: str

    def as_dict(self) -> dict[str, Any]:
        """The proof as JSON (hashes in base64, as C2SP notes carry them)."""
        return {
            "seq": self.seq,
            "record": self.record.decode("utf-8"),
            "leaf_hash": base64.b64encode(self.leaf_hash).decode("ascii"),
            "tree_size": self.size,
            "audit_path": [base64.b64encode(h).decode("ascii") for h in self.path],
            "checkpoint": self.checkpoint,
        }


class AuditTrail:
    """The node's ledger: recording, checkpoints and the auditor's questions.

    Args:
        settings: The node settings (origin, checkpoint interval).
        store: The store; its ``audit_sink`` is set to the ledger's append.
        key_loader: Returns the node's checkpoint key when one must be signed
            (default: :func:`exchange.node.nodekey.ensure_node_key`); loaded once.
    """

    def __init__(self, settings: Settings, store: Store, *,
                 key_loader: Callable[[], SigningKey] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.origin = default_origin(settings)
        store.audit_sink = ledger.append
        self._key_loader = key_loader
        self._key: SigningKey | None = None
        self._lock = threading.Lock()
        self._next_checkpoint = 0.0
        #: Where this process's disclosures go before they are sequenced into the log.
        self.spool_dir = settings.home / (settings.audit_spool_dir or "audit-spool")
        self.writer = spool.SpoolWriter(self.spool_dir,
                                        sync=settings.audit_spool_sync == "always",
                                        max_bytes=settings.audit_spool_max_mb * 1024 * 1024)
        self._sequencer_pid = 0
        self._drain_pid = 0
        self._sequence_lock = threading.Lock()

    # -- recording ---------------------------------------------------------------------
    def record(self, records: Sequence[Record | Prepared] | DisclosureBatch, *,
               wait: bool = True) -> spool.Durable:
        """Record what a response is about to disclose (or refuse), durably, before it
        leaves: into this process's spool (:mod:`exchange.audit.spool`), which the
        sequencer moves into the log as one contiguous batch within
        ``audit_sequence_ms``.

        Args:
            records: The response's records (a :class:`DisclosureBatch` is rendered by
                the sequencer, off the request's thread).
            wait: Return once they are durable; with False, they are synced while the
                caller goes on, and the caller must call the result before the response
                leaves.

        Returns:
            Waits until the records are durable (returns at once with ``wait``).

        Raises:
            StorageError: The spool could not be written: the caller must not serve what
                the records describe (without ``wait``, a failed sync is raised by the
                returned callable).
        """
        if not records:
            return spool.already_durable
        durable = self.writer.append(
            records if isinstance(records, DisclosureBatch) else
            [r if isinstance(r, Prepared) else prepare(r) for r in records], wait=wait)
        if self._drain_pid != os.getpid():
            self._drain_pid = os.getpid()
            atexit.register(self._drain_at_exit, self._drain_pid)
        self._ensure_sequencer()
        return durable

    def drain(self) -> int:
        """Close this process's spool file and move the whole spool into the log now (a
        server process that stops: its last responses' records reach the log before it
        exits, not at the next start). The records moved.

        Raises:
            StorageError: The database failed (the records stay in the spool, which the
                next sequencer run moves).
        """
        self.writer.close()
        return self.sequence()

    def _drain_at_exit(self, pid: int) -> None:
        """At the exit of a process that spooled records (a gunicorn worker stopped by
        SIGTERM finishes its requests, then exits normally): drain the spool."""
        if pid != os.getpid():
            return  # registered in a parent before a fork
        try:
            moved = self.drain()
        except RuntimeError:
            return  # the store was closed by its owner: the next sequencer run moves it
        except Exception as e:  # noqa: BLE001 - at exit; the spool keeps the records
            log.warning("audit: the spool could not be drained at exit (%s); the next"
                        " sequencer run moves it", getattr(e, "reason", e))
            return
        if moved:
            log.info("audit: %d spooled records moved into the log at exit", moved)

    def _ensure_sequencer(self) -> None:
        """Start this process's background sequencer (once per process, after a fork)."""
        pid = os.getpid()
        if self._sequencer_pid == pid or self.settings.audit_sequence_ms <= 0:
            return
        with self._lock:
            if self._sequencer_pid == pid:
                return
            self._sequencer_pid = pid
        thread = threading.Thread(target=self._sequence_forever, name="cx-audit-sequencer",
                                  daemon=True)
        thread.start()

    def _sequence_forever(self) -> None:
        self.sequence_forever(threading.Event())

    def sequence_forever(self, stop: threading.Event,
                         keep_going: Callable[[], bool] = lambda: True) -> None:
        """Sequence the spool every ``audit_sequence_ms`` (and checkpoint when due) until
        ``stop`` is set or ``keep_going()`` is false; failures are logged and retried."""
        interval = max(self.settings.audit_sequence_ms, 50) / 1000
        failing = False
        while not stop.wait(interval) and keep_going():
            if self._store_closed():
                # Closed by its owner (a command that is done): whatever is still
                # spooled stays there for the next sequencer, as after a crash.
                return
            try:
                self.writer.flush()
                self.sequence()
                self.maybe_checkpoint()
                if failing:
                    log.info("audit sequencer: the spool is moving into the log again")
                failing = False
            except Exception as e:  # noqa: BLE001 - keep trying; the spool keeps the data
                if self._store_closed():
                    return  # closed while it ran (above)
                if not failing:
                    log.error("audit sequencer: %s (retrying; nothing is lost, the records"
                              " stay in the spool)", getattr(e, "reason", type(e).__name__))
                failing = True

    def _store_closed(self) -> bool:
        return not self.store.is_open

    def sequence(self) -> int:
        """Move every complete spooled batch into the log now; the records moved.

        Raises:
            StorageError: The database failed or a spool file is corrupt.
        """
        moved = 0
        with self._sequence_lock:
            for _ in range(64):  # bounded: under load the next run takes the rest
                with self.store.audit_transaction(write=True) as conn:
                    taken = spool.sequence(conn, self.spool_dir,
                                           active=self.writer.current())
                moved += taken
                if taken == 0:
                    break
            with self.store.audit_transaction(write=True) as conn:
                spool.remove_finished(conn, self.spool_dir, active=self.writer.current())
        return moved

    def record_policy(self, digest: str, *, actor: str) -> bool:
        """Record that the policy ``digest`` is in force, unless the ledger already says so.

        Every worker of a node notices a policy change on its own; the first to record
        it wins and the others find it recorded (the check and the append share one
        write transaction). The old digest is the one the ledger last recorded.

        Returns:
            True when a record was appended.

        Raises:
            StorageError: The ledger could not be read or written.
        """
        records = audit_records.c
        with self.store.audit_transaction(write=True) as conn:
            last = conn.execute(
                sa.select(records.body).where(records.kind == Kind.POLICY_RELOAD.value)
                .order_by(records.seq.desc()).limit(1)).scalar_one_or_none()
            old = None
            if last is not None:
                entry = parse_record(bytes(last)).record
                old = entry.new_digest if isinstance(entry, PolicyReload) else None
            if old == digest:
                return False
            ledger.append(conn, [PolicyReload(time=time.time_ns() // 1000, actor=actor,
                                              old_digest=old, new_digest=digest,
                                              request_id=None)])
        log.info("audit: policy %s recorded in force (was %s)", digest, old)
        return True

    # -- checkpoints -------------------------------------------------------------------
    def signing_key(self) -> SigningKey:
        """The node's checkpoint key (loaded on first use)."""
        with self._lock:
            if self._key is None:
                if self._key_loader is None:
                    self._key = ensure_node_key(self.settings, self.store)
                else:
                    self._key = self._key_loader()
            return self._key

    def keys(self) -> list[NoteKey]:
        """The checkpoint keys to trust: every node key in the registry."""
        out = []
        for member in self.store.list_member_keys():
            if member.purpose == "node" and member.org_id is None and member.alg == "Ed25519":
                out.append(NoteKey.of(self.origin, load_public_pem(member.public_pem)))
        return out

    def checkpoint(self) -> ledger.StoredCheckpoint:
        """Sign the current tree head now (the newest checkpoint if the tree did not grow).

        Raises:
            SignatureError: The log does not extend its newest checkpoint.
            StorageError: The database failed.
        """
        key = self.signing_key()
        self.sequence()
        with self.store.audit_transaction(write=True) as conn:
            stored = ledger.make_checkpoint(conn, key, self.origin, trusted=self.keys())
        self._next_checkpoint = time.monotonic() + self.settings.audit_checkpoint_seconds
        return stored

    def maybe_checkpoint(self) -> None:
        """Checkpoint when ``audit_checkpoint_seconds`` have passed since the last one
        this process made; failures are logged and retried at the next chance (a missing
        checkpoint delays evidence, it loses nothing)."""
        interval = self.settings.audit_checkpoint_seconds
        if interval <= 0 or time.monotonic() < self._next_checkpoint:
            return
        self._next_checkpoint = time.monotonic() + interval
        try:
            self.checkpoint()
        except Exception as e:  # noqa: BLE001 - logged; the next interval retries
            log.error("audit checkpoint failed: %s", getattr(e, "reason", type(e).__name__))

    def latest_checkpoint(self) -> ledger.StoredCheckpoint:
        """The newest checkpoint, verified.

        Raises:
            NotFound: There is none yet.
            SignatureError: It does not verify with the node keys.
        """
        with self.store.audit_transaction() as conn:
            stored = ledger.latest_checkpoint(conn)
        if stored is None:
            raise NotFound("the audit ledger has no checkpoint yet")
        verify_checkpoint(stored.note, self.keys(), origin=self.origin)
        return stored

    # -- questions -----------------------------------------------------------------------
    def find(self, f: query.RecordFilter, *, after: int = -1, limit: int = 100
             ) -> tuple[list[Entry], int | None]:
        """One page of matching records (see :func:`exchange.audit.query.find`); the spool
        is sequenced first, so every disclosure already served is there."""
        self.sequence()
        with self.store.audit_transaction() as conn:
            return query.find(conn, f, after=after, limit=limit)

    def each(self, f: query.RecordFilter) -> list[Entry]:
        """Every matching record (for reports over a bounded period), spool sequenced."""
        self.sequence()
        with self.store.audit_transaction() as conn:
            return list(query.iter_matching(conn, f))

    def size(self) -> int:
        """Records in the log (spool sequenced first)."""
        self.sequence()
        with self.store.audit_transaction() as conn:
            return ledger.current_root(conn).size

    def inclusion(self, seq: int, size: int | None = None) -> InclusionProof:
        """Prove record ``seq`` is in the newest checkpoint (or the one of ``size``).

        Raises:
            NotFound: No such record, no checkpoint yet, or the record is newer than the
                newest checkpoint (make one, or wait for the next).
        """
        with self.store.audit_transaction() as conn:
            stored = (ledger.latest_checkpoint(conn) if size is None
                      else ledger.checkpoint_at(conn, size))
            if stored is None:
                raise NotFound("the audit ledger has no checkpoint yet")
            body = ledger.record_at(conn, seq)
            if seq >= stored.size:
                raise NotFound(f"audit record {seq} is newer than checkpoint {stored.size};"
                               " make a checkpoint ('exchange audit checkpoint') and ask again")
            path = ledger.inclusion_proof(conn, seq, stored.size)
        verify_checkpoint(stored.note, self.keys(), origin=self.origin)
        return InclusionProof(seq, body, leaf_hash(body), stored.size, path, stored.note)

    def consistency(self, old_size: int, new_size: int | None = None
                    ) -> tuple[list[bytes], ledger.StoredCheckpoint, ledger.StoredCheckpoint]:
        """The consistency proof between two checkpoints (the newest if ``new_size`` is None).

        Raises:
            NotFound: Either checkpoint does not exist.
            ValueError: The sizes are out of order.
        """
        with self.store.audit_transaction() as conn:
            old = ledger.checkpoint_at(conn, old_size)
            new = (ledger.latest_checkpoint(conn) if new_size is None
                   else ledger.checkpoint_at(conn, new_size))
            if new is None:
                raise NotFound("the audit ledger has no checkpoint yet")
            if new.size < old.size:
                raise ValueError(f"checkpoint {new.size} is older than {old.size}")
            proof = ledger.consistency_proof(conn, old.size, new.size)
        return proof, old, new

    def verify(self, *, strict: bool = False) -> Report:
        """Recompute the whole log and check every checkpoint.

        Raises:
            VerificationFailed: Something did not verify; the report says what.
        """
        self.sequence()
        with self.store.audit_transaction() as conn:
            return ledger.verify_all(conn, self.keys(), origin=self.origin, strict=strict)

    def export(self, directory: Path) -> Checkpoint:
        """Write the evidence for an offline check (:func:`exchange.audit.export.export`)."""
        with self.store.audit_transaction() as conn:
            return audit_export.export(conn, directory, self.keys(), origin=self.origin)

    def verify_against(self, saved_note: str) -> Checkpoint:
        """Prove the log extends a checkpoint a member kept."""
        with self.store.audit_transaction() as conn:
            return verify_against(conn, saved_note, self.keys())

