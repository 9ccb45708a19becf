"""Recompute the audit log from its records and check every signed checkpoint against it.

The verifier of ``exchange audit verify``, shared by the database check
(:func:`exchange.audit.ledger.verify_all`) and the offline check of an export
(:func:`exchange.audit.export.verify_export`). It is fed the records in log order, one at
a time, and keeps only the tree's right edge (:class:`~exchange.audit.tree.Frontier`) and
a few counters, so memory stays flat however long the log is. For each record it checks:

* its place: the ``seq`` of the row or line follows the previous one, and the record's
  own ``seq`` member agrees (a removed, duplicated, moved or swapped record is named);
* its bytes: the leaf hash stored beside it, if any, is ``SHA-256(0x00 || bytes)``;
* its form: a version 1 record of a known kind (all of :func:`parse_record` with
  ``strict``);

and whenever the records so far reach the size of a checkpoint, that the checkpoint's
signature verifies with a trusted key, that it names the log's origin, and that its root
equals the root recomputed from the records. Checkpoints checked this way are consistent
with one another by construction (they are roots of prefixes of one sequence of
records), which is the property a consistency proof attests.

A changed record whose stored leaf hash was changed with it cannot be pinned down to the
record: the first checkpoint after it fails, and the finding names the range between the
last good checkpoint and that one. Records after the newest checkpoint are protected only
by the database's own state until the next checkpoint is signed; the report counts them.

Errors: :class:`VerificationFailed` (a :class:`~exchange.errors.SignatureError`) carries
the :class:`Report` when anything did not verify.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from exchange.audit.checkpoint import Checkpoint, NoteKey, verify_checkpoint
from exchange.audit.records import RECORD_VERSION, Kind, parse_record
from exchange.audit.tree import Frontier, NodeCallback, leaf_hash
from exchange.errors import InvalidInput, SignatureError

__all__ = [
    "CheckpointSource",
    "Finding",
    "Report",
    "StreamVerifier",
    "VerificationFailed",
]

_KINDS: Final = frozenset(kind.value for kind in Kind)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that did not verify.

    Attributes:
        seq: The record it concerns (the first of a range), or None for a checkpoint or
            file-level problem.
        problem: What is wrong, in one sentence.
    """

    seq: int | None
    problem: str

    def __str__(self) -> str:
        return self.problem if self.seq is None else f"record {self.seq}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a verification.

    Attributes:
        records: Records read.
        checkpoints: Checkpoints whose signature and root both verified.
        latest: The newest checkpoint that verified, or None.
        unsigned: Records after ``latest``, not yet covered by a signed checkpoint.
        findings: The first findings (at most ``max_findings``), in the order found.
        findings_total: How many findings there were in all.
        keys: The verifier keys trusted, as ``name+id+key`` strings.
    """

    records: int
    checkpoints: int
    latest: Checkpoint | None
    unsigned: int
    findings: tuple[Finding, ...]
    findings_total: int
    keys: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.findings_total == 0

    def summary(self) -> str:
        """One line for people."""
        head = (
            f"{self.records} records, {self.checkpoints} checkpoints verified"
            + (f" up to size {self.latest.size}" if self.latest else "")
            + (f", {self.unsigned} records after the newest checkpoint" if self.unsigned else "")
        )
        if self.ok:
            return f"audit ledger verified: {head}"
        return (
            f"audit ledger does NOT verify ({self.findings_total} problem"
            f"{'s' if self.findings_total != 1 else ''}; first: {self.findings[0]}): {head}"
        )


class VerificationFailed(SignatureError):
    """The log did not verify; :attr:`report` lists what failed."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True, slots=True)
class CheckpointSource:
    """A stored checkpoint as the verifier is given it.

    Attributes:
        size: The size it is filed under (a table key, a file name).
        note: The signed note.
        label: How to name it in a finding (``checkpoint 1000``, a file name).
        root: The root stored beside the note, if any (checked against the note).
    """

    size: int
    note: str
    label: str
    root: bytes | None = None


@dataclass(slots=True)
class _Expectation:
    root: bytes
    label: str
    seen: bool = field(default=False)


class StreamVerifier:
    """Feed records in order with :meth:`add`; :meth:`finish` gives the report.

    Args:
        keys: The trusted log keys.
        checkpoints: The checkpoints in increasing size (consumed lazily).
        origin: The log's origin; if None, the first checkpoint that verifies fixes it.
        on_node: Passed to :meth:`Frontier.append` (the ledger checks its stored
            subtree hashes with it).
        strict: Check each record with :func:`parse_record` (canonical form and every
            field), not only its envelope; about ten times slower.
        max_findings: How many findings to keep (all are counted).
    """

    def __init__(
        self,
        keys: Sequence[NoteKey],
        checkpoints: Iterator[CheckpointSource],
        *,
        origin: str | None = None,
        on_node: NodeCallback | None = None,
        strict: bool = False,
        max_findings: int = 100,
    ) -> None:
        self.frontier = Frontier()
        self.origin = origin
        self.verified_roots: dict[int, bytes] = {}
        self._keys = tuple(keys)
        self._checkpoints = checkpoints
        self._next: CheckpointSource | None = next(checkpoints, None)
        self._on_node = on_node
        self._strict = strict
        self._max = max_findings
        self._findings: list[Finding] = []
        self._total = 0
        self._expected = 0
        self._verified = 0
        self._latest: Checkpoint | None = None
        self._last_good = 0
        self._diverged = False
        self._diverged_later = 0
        self._expectations: dict[int, _Expectation] = {}
        self._advance()

    @property
    def position(self) -> int:
        """How many records have been added."""
        return self.frontier.size

    @property
    def expected_seq(self) -> int:
        """The ``seq`` the next record should carry."""
        return self._expected

    @property
    def has_findings(self) -> bool:
        """Whether anything failed so far."""
        return self._total > 0

    def note(self, seq: int | None, problem: str) -> None:
        """Record a finding."""
        self._total += 1
        if len(self._findings) < self._max:
            self._findings.append(Finding(seq, problem))

    def expect(self, size: int, root: bytes, label: str) -> None:
        """Also require the root at ``size`` to be ``root`` (a member's saved checkpoint).

        Call before adding records.
        """
        self._expectations[size] = _Expectation(root, label)
        if size == 0:
            self._check_expectation()

    def add(
        self, body: bytes, *, row_seq: int | None = None, stored_leaf: bytes | None = None
    ) -> None:
        """Add the next record.

        Args:
            body: The record's bytes (the leaf data).
            row_seq: The ``seq`` it is stored under, when the store has one besides the
                record's own member (the database does; an export line does not).
            stored_leaf: The leaf hash stored beside it, if any.
        """
        body_seq, problem = self._inspect(body)
        ident = row_seq if row_seq is not None else body_seq
        where = self._expected if ident is None else ident
        if ident is not None and ident != self._expected:
            if ident > self._expected:
                gap = (
                    f"record {self._expected} is missing"
                    if ident == self._expected + 1
                    else f"records {self._expected} to {ident - 1} are missing"
                )
                self.note(self._expected, f"{gap}: the next record found is {ident}")
            else:
                self.note(
                    ident,
                    f"found again after record {self._expected - 1} (duplicated,"
                    " inserted or moved)",
                )
        self._expected = max(self._expected, where + 1)
        if row_seq is not None and body_seq is not None and body_seq != row_seq:
            self.note(
                row_seq,
                f"the record stored under seq {row_seq} says it is record {body_seq}"
                " (moved, swapped or copied)",
            )
        if problem is not None:
            self.note(where, f"not a valid audit record: {problem}")
        leaf = leaf_hash(body)
        if stored_leaf is not None and stored_leaf != leaf:
            self.note(
                where,
                "its stored leaf hash does not match its bytes (the record was changed)",
            )
        self.frontier.append(leaf, self._on_node)
        if self._expectations:
            self._check_expectation()
        if self._next is not None and self._next.size <= self.frontier.size:
            self._advance()

    def _inspect(self, body: bytes) -> tuple[int | None, str | None]:
        if self._strict:
            try:
                entry = parse_record(body)
            except InvalidInput as e:
                return self._loose_seq(body), e.reason
            return entry.seq, None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None, "not JSON"
        if not isinstance(document, dict):
            return None, "not a JSON object"
        seq = document.get("seq")
        if type(seq) is not int or seq < 0:
            return None, "no valid 'seq' member"
        version = document.get("v")
        if type(version) is not int or version != RECORD_VERSION:
            return seq, f"not a version {RECORD_VERSION} record"
        if document.get("kind") not in _KINDS:
            return seq, f"unknown kind {document.get('kind')!r}"
        return seq, None

    @staticmethod
    def _loose_seq(body: bytes) -> int | None:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None
        seq = document.get("seq") if isinstance(document, dict) else None
        return seq if type(seq) is int and seq >= 0 else None

    def _check_expectation(self) -> None:
        expectation = self._expectations.get(self.frontier.size)
        if expectation is None or expectation.seen:
            return
        expectation.seen = True
        if self.frontier.root() != expectation.root:
            self.note(
                None,
                f"{expectation.label} (size {self.frontier.size}) is not a prefix of this"
                " log: its history was rewritten",
            )

    def _advance(self) -> None:
        while self._next is not None and self._next.size <= self.frontier.size:
            source = self._next
            self._next = next(self._checkpoints, None)
            if source.size < self.frontier.size:
                self.note(None, f"{source.label} is out of order")
                continue
            self._check_checkpoint(source)

    def _check_checkpoint(self, source: CheckpointSource) -> None:
        try:
            checkpoint = verify_checkpoint(source.note, self._keys, origin=self.origin)
        except SignatureError as e:
            self.note(None, f"{source.label}: {e.reason}")
            return
        if checkpoint.size != source.size:
            self.note(None, f"{source.label} is filed under size {source.size} but states"
                            f" size {checkpoint.size}")
            return
        if self.origin is None:
            self.origin = checkpoint.origin
        if source.root is not None and source.root != checkpoint.root:
            self.note(None, f"{source.label}: the stored root differs from the signed one")
        if self.frontier.root() != checkpoint.root:
            if self._diverged:
                self._diverged_later += 1
            else:
                self._diverged = True
                first, last = self._last_good, checkpoint.size - 1
                self.note(
                    first,
                    f"the signed root of {source.label} does not match the records: one of"
                    f" records {first} to {last} was changed, removed, reordered or inserted",
                )
            return
        self._verified += 1
        self._latest = checkpoint
        self.verified_roots[checkpoint.size] = checkpoint.root
        if not self._diverged:
            self._last_good = checkpoint.size

    def finish(self) -> Report:
        """Check what is left (checkpoints beyond the records) and give the report."""
        while self._next is not None:
            source = self._next
            self._next = next(self._checkpoints, None)
            self.note(
                self.frontier.size,
                f"{source.label} covers {source.size} records but only"
                f" {self.frontier.size} are stored: records were removed",
            )
        for size, expectation in self._expectations.items():
            if not expectation.seen:
                self.note(
                    None,
                    f"{expectation.label} has size {size} but the log holds only"
                    f" {self.frontier.size} records: the log shrank",
                )
        if self._diverged_later:
            self.note(
                None,
                f"{self._diverged_later} later checkpoint"
                f"{'s do' if self._diverged_later != 1 else ' does'} not match either",
            )
        latest_size = self._latest.size if self._latest else 0
        return Report(
            records=self.frontier.size,
            checkpoints=self._verified,
            latest=self._latest,
            unsigned=self.frontier.size - latest_size,
            findings=tuple(self._findings),
            findings_total=self._total,
            keys=tuple(key.verifier() for key in self._keys),
        )
