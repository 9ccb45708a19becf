"""Member-held checkpoints: prove that the log only grew since a checkpoint a member kept.

A member CERT fetches the newest checkpoint now and then and keeps it
(``exchange audit checkpoint --save``). Later, :func:`verify_against` checks the log
(the hub's database, or an export) against the kept checkpoint: the log's newest signed
checkpoint must be at least as large and must extend the kept one, proven by an RFC 9162
consistency proof (database) or by recomputing both roots from the records (export). A
hub that rewrote, truncated or restored an older copy of its history cannot pass, and
cannot show two members different histories without one of them noticing when they
compare checkpoints (research/security.md 2.3, witnesses).

Errors: :class:`~exchange.errors.SignatureError` (or its subclass
:class:`~exchange.audit.verify.VerificationFailed` for an export) when the log does not
extend the kept checkpoint or a checkpoint does not verify;
:class:`~exchange.errors.StorageError` when the database fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import Connection

from exchange.audit import ledger
from exchange.audit.checkpoint import Checkpoint, NoteKey, verify_checkpoint
from exchange.audit.export import verify_export
from exchange.audit.tree import verify_consistency
from exchange.errors import SignatureError

__all__ = ["latest_note", "verify_against"]


def latest_note(conn: Connection, keys: Sequence[NoteKey], *, origin: str | None = None) -> str:
    """The newest checkpoint, verified, as the signed note a member saves.

    Args:
        conn: A connection.
        keys: The log's trusted checkpoint keys.
        origin: The origin it must carry, if known.

    Returns:
        The signed note.

    Raises:
        SignatureError: There is no checkpoint, or the newest does not verify.
        StorageError: The database failed.
    """
    stored = ledger.latest_checkpoint(conn)
    if stored is None:
        raise SignatureError("the audit ledger has no checkpoint yet")
    verify_checkpoint(stored.note, keys, origin=origin)
    return stored.note


def verify_against(
    source: Connection | Path, saved_note: str, keys: Sequence[NoteKey]
) -> Checkpoint:
    """Prove that the log extends a checkpoint the caller kept.

    Args:
        source: The hub's database (a connection) or an export directory.
        saved_note: The signed checkpoint kept earlier.
        keys: The log's trusted checkpoint keys (for the kept and the newest checkpoint).

    Returns:
        The log's newest checkpoint, which extends the kept one.

    Raises:
        SignatureError: The kept or the newest checkpoint does not verify, they are from
            different logs, the log is now smaller than the kept checkpoint, or its
            history differs from it.
        VerificationFailed: (export) the export does not verify or does not extend the
            kept checkpoint; its ``report`` says where.
        StorageError: The database failed.
    """
    saved = verify_checkpoint(saved_note, keys)
    if isinstance(source, Path):
        report = verify_export(source, keys, saved=saved)
        if report.latest is None or report.latest.size < saved.size:
            raise SignatureError(
                f"the export ends before the kept checkpoint (size {saved.size})"
            )
        return report.latest
    stored = ledger.latest_checkpoint(source)
    if stored is None:
        raise SignatureError("the audit ledger has no checkpoint: its history is gone")
    latest = verify_checkpoint(stored.note, keys, origin=saved.origin)
    if latest.size < saved.size:
        raise SignatureError(
            f"the log shrank: its newest checkpoint has {latest.size} records, the kept one"
            f" {saved.size}"
        )
    try:
        proof = ledger.consistency_proof(source, saved.size, latest.size)
    except ValueError:
        raise SignatureError(
            f"the tree holds fewer records than its newest checkpoint ({latest.size})"
        ) from None
    try:
        verify_consistency(saved.size, latest.size, proof, saved.root, latest.root)
    except SignatureError as e:
        raise SignatureError(
            f"the log's history was rewritten: checkpoint {latest.size} does not extend the"
            f" kept checkpoint {saved.size} ({e.reason})"
        ) from None
    return latest
