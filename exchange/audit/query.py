"""Finding audit records: the auditor's filters, as SQL over the ledger's table.

A record is one leaf; a publish or disclosure record holds the object versions of one
request (:mod:`exchange.audit.records`). Recipient, kind and time are indexed columns of
``audit_records``. Producer, object and policy digest live inside the record bytes: a
record of one producer or one object also carries them as columns, and a batch that
mixes several is found by searching its canonical bytes for the value as a JSON string
(``"UZ-CERT"``), then confirmed on the parsed record. Because the bytes are canonical
(RFC 8785: one encoding per string), the search never misses a record, and a false hit
(the same text in another field) is dropped by the confirmation.

:func:`find` pages by ``seq`` (``after``), so an auditor walks any range with bounded
memory; :func:`matching_entries` narrows a batch to the entries the filter names.

Errors: :class:`~exchange.errors.InvalidInput` for a filter value out of range;
:class:`~exchange.errors.StorageError` when the database fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from exchange.audit.records import (
    Admin,
    Disclosed,
    Disclosure,
    Entry,
    Kind,
    Publish,
    Published,
    Record,
    parse_record,
)
from exchange.errors import InvalidInput, StorageError
from exchange.storage.schema import audit_records

__all__ = ["MAX_PAGE", "RecordFilter", "find", "iter_matching", "matching_entries"]

#: The most records one :func:`find` call returns.
MAX_PAGE: Final = 1000

_R = audit_records.c


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """What an auditor asks for; every field set must match (None: any).

    Attributes:
        kinds: Record kinds (empty: all).
        recipient_org: The recipient organisation's name (disclosures, denials).
        producer_org: The producer organisation's name (publishes, disclosures).
        object_id: A STIX id (publishes, disclosures).
        policy_digest: ``sha256:...`` of the policy in force.
        since: Records at or after this time (microseconds).
        until: Records before this time (microseconds, exclusive).
    """

    kinds: tuple[Kind, ...] = ()
    recipient_org: str | None = None
    producer_org: str | None = None
    object_id: str | None = None
    policy_digest: str | None = None
    since: int | None = None
    until: int | None = None

    def __post_init__(self) -> None:
        for name in ("recipient_org", "producer_org", "object_id", "policy_digest"):
            value = getattr(self, name)
            if value is not None and (not value or len(value) > 512 or '"' in value
                                      or "\\" in value):
                raise InvalidInput(f"audit filter {name} must be 1 to 512 characters"
                                   " without quotes or backslashes")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidInput("audit filter: 'until' must be after 'since'")

    @property
    def narrows_entries(self) -> bool:
        """Whether the filter selects entries within a batch (producer or object)."""
        return self.producer_org is not None or self.object_id is not None


def _string(value: str) -> bytes:
    """The canonical bytes of a JSON string value as it appears inside a record (as an
    object member's value or an entry array's element)."""
    return json.dumps(value, ensure_ascii=False).encode()


def _conditions(f: RecordFilter, dialect: str) -> list[sa.ColumnElement[bool]]:
    def contains(member: bytes) -> sa.ColumnElement[bool]:
        if dialect == "postgresql":
            return sa.func.position(sa.literal(member, sa.LargeBinary).op("IN")(_R.body)) > 0
        return sa.func.instr(_R.body, sa.literal(member, sa.LargeBinary)) > 0

    where: list[sa.ColumnElement[bool]] = []
    if f.kinds:
        where.append(_R.kind.in_([k.value for k in f.kinds]))
    if f.recipient_org is not None:
        where.append(_R.recipient_org == f.recipient_org)
    if f.since is not None:
        where.append(_R.time >= f.since)
    if f.until is not None:
        where.append(_R.time < f.until)
    if f.producer_org is not None:
        # A single-producer record has the column; a batch of several has it in its bytes
        # (a publish's producer is its "org").
        where.append(sa.or_(
            _R.producer_org == f.producer_org,
            sa.and_(_R.producer_org.is_(None), contains(_string(f.producer_org))),
        ))
    if f.object_id is not None:
        where.append(sa.or_(
            _R.object_id == f.object_id,
            sa.and_(_R.object_id.is_(None), contains(_string(f.object_id))),
        ))
    if f.policy_digest is not None:
        where.append(contains(_string(f.policy_digest)))
    return where


def _entry_matches(entry: Disclosed | Published, f: RecordFilter, producer: str | None
                   ) -> bool:
    if f.object_id is not None and entry.object_id != f.object_id:
        return False
    if f.producer_org is None:
        return True
    return (entry.producer_org if isinstance(entry, Disclosed) else producer) == f.producer_org


def matching_entries(record: Record, f: RecordFilter) -> tuple[Disclosed | Published, ...]:
    """The entries of a publish or disclosure record that the filter names (all, when it
    names neither a producer nor an object); () for other kinds."""
    if isinstance(record, Disclosure):
        return tuple(e for e in record.objects if _entry_matches(e, f, None))
    if isinstance(record, Publish):
        return tuple(e for e in record.objects if _entry_matches(e, f, record.org))
    return ()


def _confirmed(record: Record, f: RecordFilter) -> bool:
    """The parsed record really matches (the byte search may over-match)."""
    if f.policy_digest is not None:
        digest = getattr(record, "policy_digest", None) or getattr(record, "new_digest", None)
        if digest != f.policy_digest and getattr(record, "old_digest", None) != f.policy_digest:
            return False
    if isinstance(record, Admin):  # e.g. object.delete: its target is the object
        return f.producer_org is None and f.object_id in (None, record.target)
    if f.narrows_entries:
        return bool(matching_entries(record, f))
    return True


def find(conn: Connection, f: RecordFilter, *, after: int = -1, limit: int = 100
         ) -> tuple[list[Entry], int | None]:
    """One page of the records matching ``f``, in ``seq`` order, after ``after``.

    Args:
        conn: A connection.
        f: The filter.
        after: Return records with ``seq`` greater than this (the previous page's cursor).
        limit: At most this many (1 to :data:`MAX_PAGE`).

    Returns:
        The matching entries, and the cursor of the next page (None: no more).

    Raises:
        InvalidInput: ``limit`` is out of range.
        StorageError: The database failed, or a stored record does not parse (run
            ``exchange audit verify``).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE}")
    where = _conditions(f, conn.dialect.name)
    found: list[Entry] = []
    cursor = after
    scan = max(limit, 200)
    while len(found) < limit:
        query = (sa.select(_R.seq, _R.body).where(_R.seq > cursor, *where)
                 .order_by(_R.seq).limit(scan))
        try:
            rows = conn.execute(query).all()
        except exc.SQLAlchemyError as e:
            raise StorageError("the audit ledger could not be read") from e
        for row in rows:
            cursor = int(row.seq)
            try:
                entry = parse_record(bytes(row.body))
            except InvalidInput:
                raise StorageError(
                    f"audit record {cursor} does not parse; run 'exchange audit verify'"
                ) from None
            if _confirmed(entry.record, f):
                found.append(entry)
                if len(found) == limit:
                    return found, cursor
        if len(rows) < scan:
            return found, None
    return found, cursor


def iter_matching(conn: Connection, f: RecordFilter, *, page: int = MAX_PAGE
                  ) -> Iterator[Entry]:
    """Every record matching ``f``, in ``seq`` order, read a page at a time."""
    after = -1
    while True:
        entries, cursor = find(conn, f, after=after, limit=page)
        yield from entries
        if cursor is None:
            return
        after = cursor
