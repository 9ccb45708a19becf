"""The audit ledger: a tamper-evident RFC 9162 Merkle log of who received what, under which policy.

DESIGN.md decision 6 and research/security.md section 2. Layers, pure first:

* :mod:`~exchange.audit.tree`: RFC 9162 Merkle tree math (hashes, roots, inclusion and
  consistency proofs, the right-edge frontier); no I/O.
* :mod:`~exchange.audit.records`: the typed records (publish, disclosure, denial, admin,
  policy-reload) and their canonical JSON bytes (the leaves); no I/O.
* :mod:`~exchange.audit.checkpoint`: C2SP signed notes and checkpoints (Ed25519); no I/O.
* :mod:`~exchange.audit.verify`: the streaming verifier and its report; no I/O.
* :mod:`~exchange.audit.frames`: the disclosure spool's file format, and how a reader
  tells whole batches from torn writes and corruption; no I/O.
* :mod:`~exchange.audit.ledger`: the log in the exchange's database (append in the
  caller's transaction, checkpoints, proofs, full verification).
* :mod:`~exchange.audit.spool`: the disclosure spool (durable before a response leaves,
  cut back when a write fails, bounded, reclaimed) and its sequencer into the log.
* :mod:`~exchange.audit.export`: the auditor's export directory and its offline check.
* :mod:`~exchange.audit.witness`: member-held checkpoints (the log only grew).

What it leaves to others: deciding what to record (the TAXII layer, ``exchange pull``,
the MISP jobs), when to checkpoint (the scheduler or the CLI), where keys live
(:mod:`exchange.signing`), and presenting reports (the CLI, the auditor API).

Core floor: imports only the core (``model``, ``signing``, ``storage``'s schema).
"""

from exchange.audit.checkpoint import Checkpoint, NoteKey
from exchange.audit.records import (
    Admin,
    Denial,
    Disclosure,
    Entry,
    Kind,
    PolicyReload,
    Publish,
    Record,
    object_digest,
    parse_record,
    record_bytes,
)
from exchange.audit.verify import Finding, Report, VerificationFailed

__all__ = [
    "Admin",
    "Checkpoint",
    "Denial",
    "Disclosure",
    "Entry",
    "Finding",
    "Kind",
    "NoteKey",
    "PolicyReload",
    "Publish",
    "Record",
    "Report",
    "VerificationFailed",
    "object_digest",
    "parse_record",
    "record_bytes",
]
