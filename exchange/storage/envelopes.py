"""The decisions of one envelope: which versions are added, and what the status says.

Pure bookkeeping, no SQL: :class:`StoredVersions` holds what the database already has for
the envelope's ids (loaded by :mod:`exchange.storage.sql` inside the write transaction),
:class:`EnvelopePlan` decides each new version in order and produces the rows to insert
and the ``is_latest``/``is_first`` changes to apply, and :func:`final_status` folds the
outcomes into the TAXII status resource.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from exchange.model.observables import observables_of
from exchange.signing.canonical import EXTENSION_ID
from exchange.storage.base import (
    AddOutcome,
    AddResult,
    IdOwnership,
    NewVersion,
    Status,
    StatusDetail,
)
from exchange.storage.timestamps import from_micros

MSG_CONFLICT = "a different object with this id and version already exists"
MSG_NOT_CREATOR = "only the organisation that created this object may add versions of it"
MSG_EXISTS = "this version of the object is already stored"


@dataclass(slots=True)
class ExistingVersion:
    """One stored version of an id named in an envelope (without its body)."""

    collection_id: str
    version: int
    date_added: int
    producer_org: str | None
    is_latest: bool
    is_first: bool


def _without_signature(body: bytes) -> Any:
    obj = json.loads(body)
    extensions = obj.get("extensions")
    if isinstance(extensions, dict) and EXTENSION_ID in extensions:
        extensions = {k: v for k, v in extensions.items() if k != EXTENSION_ID}
        if extensions:
            obj["extensions"] = extensions
        else:
            del obj["extensions"]
    return obj


def same_object(stored: bytes, new: bytes) -> bool:
    """Whether ``new`` is the stored version again: the same bytes, or the same object
    under another cx-sig signature (a member re-publishing a version it already sent,
    e.g. an identity or event that two of its exports share, signs it afresh).

    The caller compares only versions ``new``'s contributor may add to (its own, for an
    id only its creator may extend); ``new`` was verified at ingest, and the stored
    signature is kept.
    """
    if stored == new:
        return True
    return bool(_without_signature(stored) == _without_signature(new))


class StoredVersions:
    """What the database already holds for the ids of one envelope, in its collection
    (versions in other collections, if a caller adds them, are ignored by the plan)."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[ExistingVersion]] = defaultdict(list)
        self.bodies: dict[tuple[str, int], bytes] = {}

    def add(self, object_id: str, existing: ExistingVersion) -> None:
        """Record one stored version of ``object_id``."""
        self.by_id[object_id].append(existing)

    def in_collection(self, object_id: str, collection_id: str) -> bool:
        """Whether any version of ``object_id`` is stored in the collection."""
        return any(e.collection_id == collection_id for e in self.by_id.get(object_id, ()))

    def version_in(self, object_id: str, version: int, collection_id: str) -> bool:
        """Whether this version of ``object_id`` is stored in the collection."""
        return any(e.collection_id == collection_id and e.version == version
                   for e in self.by_id.get(object_id, ()))


#: A contribution line: the versions one organisation contributed of one id, in this
#: collection. ``is_latest``/``is_first`` are kept per line.
Line = tuple[str, str | None]

#: Kinds of id whose versions are compared within the producer's own line only.
_OWN_LINE: Final = frozenset({IdOwnership.CONTRIBUTOR})


class EnvelopePlan:
    """Decides each version of an envelope and the rows and flag changes that follow.

    Pure bookkeeping over what :class:`StoredVersions` found; the caller does the SQL.
    """

    def __init__(self, collection_id: str, stored: StoredVersions) -> None:
        self.collection_id = collection_id
        self.stored = stored
        self.results: list[AddResult] = []
        self.rows: list[dict[str, Any]] = []
        self.red_rows: list[dict[str, Any]] = []
        #: Rows of the observable index (exchange.model.observables) for the new rows.
        self.observable_rows: list[dict[str, Any]] = []
        #: Rows of ``indicator_facts`` (revision 0013) for the new indicator rows.
        self.fact_rows: list[dict[str, Any]] = []
        self.next_date_added = 0
        # Per line, in this collection: version -> date_added, stored and newly added.
        self._lines: dict[Line, dict[int, int]] = {}
        self._bodies = dict(stored.bodies)
        # Contributors of each id in this collection only (docs/adr/0002): ownership of
        # an id is per collection, so a collection the poster cannot read never shows.
        self._producers: dict[str, set[str | None]] = {}
        for object_id, existing in stored.by_id.items():
            here = {e.producer_org for e in existing if e.collection_id == collection_id}
            if here:
                self._producers[object_id] = here

    def _line(self, object_id: str, producer: str | None) -> dict[int, int]:
        key = (object_id, producer)
        known = self._lines.get(key)
        if known is None:
            known = {e.version: e.date_added for e in self.stored.by_id.get(object_id, ())
                     if e.collection_id == self.collection_id and e.producer_org == producer}
            self._lines[key] = known
        return known

    def _comparable(self, new: NewVersion) -> dict[int, int]:
        """The versions a new version is compared with: its own line for SCOs, every
        line of the id in this collection otherwise."""
        producers = self._producers.get(new.id, set())
        if new.ownership in _OWN_LINE or producers <= {new.producer_org}:
            return self._line(new.id, new.producer_org)
        merged: dict[int, int] = {}
        for producer in producers:
            merged.update(self._line(new.id, producer))
        return merged

    def decide(self, versions: Sequence[NewVersion], first_date_added: int) -> None:
        """Decide every version in order, assigning ``date_added`` from the given value."""
        self.next_date_added = first_date_added
        for new in versions:
            self.results.append(self._decide_one(new))

    def _decide_one(self, new: NewVersion) -> AddResult:
        producers = self._producers.get(new.id)
        if (new.ownership is IdOwnership.CREATOR and producers
                and producers != {new.producer_org}):
            return AddResult(new.id, new.version, AddOutcome.NOT_CREATOR)
        known = self._comparable(new)
        if new.version is not None and new.version in known:
            outcome = (AddOutcome.EXISTS
                       if same_object(self._bodies[(new.id, new.version)], new.body)
                       else AddOutcome.CONFLICT)
            date_added = known[new.version] if outcome is AddOutcome.EXISTS else None
            return AddResult(new.id, new.version, outcome, date_added)
        if new.version is None:
            for version, date_added in known.items():
                if self._bodies.get((new.id, version)) == new.body:
                    return AddResult(new.id, version, AddOutcome.EXISTS, date_added)
        date_added = self.next_date_added
        self.next_date_added += 1
        version = new.version if new.version is not None else date_added
        self._line(new.id, new.producer_org)[version] = date_added
        self._bodies[(new.id, version)] = new.body
        self._producers.setdefault(new.id, set()).add(new.producer_org)
        self.rows.append({
            "date_added": date_added, "collection_id": self.collection_id, "id": new.id,
            "type": new.type, "spec_version": new.spec_version, "version": version,
            "producer_org": new.producer_org, "tlp": new.tlp,
            "effective_tlp": new.effective_tlp, "revoked": new.revoked,
            "is_latest": False, "is_first": False, "body": new.body,
            "body_sha256": hashlib.sha256(new.body).digest(), "signed_kid": new.signed_kid,
        })
        self.red_rows.extend({"date_added": date_added, "identity_id": identity}
                             for identity in dict.fromkeys(new.red_recipients))
        observables, facts = index_rows(new.body, date_added, new.data)
        self.observable_rows.extend(observables)
        if facts is not None:
            self.fact_rows.append(facts)
        return AddResult(new.id, version, AddOutcome.ADDED, date_added)

    def set_flags(self) -> list[dict[str, Any]]:
        """Set the flags of the new rows; return the flag changes stored rows need.

        ``is_latest`` and ``is_first`` are per line (id and producer): for an id only
        its creator may add to, that is per id, as before; for an SCO two members
        contributed, each member's newest contribution is its ``last``.
        """
        changed: list[dict[str, Any]] = []
        touched = {(row["id"], row["producer_org"]) for row in self.rows}
        newest = {line: max(self._lines[line]) for line in touched}
        oldest = {line: min(self._lines[line]) for line in touched}
        for row in self.rows:
            line = (row["id"], row["producer_org"])
            row["is_latest"] = row["version"] == newest[line]
            row["is_first"] = row["version"] == oldest[line]
        for object_id, producer in touched:
            line = (object_id, producer)
            for e in self.stored.by_id.get(object_id, ()):
                if e.collection_id != self.collection_id or e.producer_org != producer:
                    continue
                latest, first = e.version == newest[line], e.version == oldest[line]
                if (latest, first) != (e.is_latest, e.is_first):
                    changed.append({"b_date_added": e.date_added, "b_latest": latest,
                                    "b_first": first})
        return changed


def observable_rows(body: bytes, date_added: int) -> list[dict[str, Any]]:
    """The observable index rows of one stored version (none when the body names none)."""
    return index_rows(body, date_added)[0]


def index_rows(body: bytes, date_added: int, data: Mapping[str, Any] | None = None
               ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The observable index rows of one stored version, and its ``indicator_facts`` row
    when it is an indicator (:func:`indicator_facts`); one parse of the body, none when
    the caller gives its parsed value as ``data``."""
    if data is not None:
        obj: Any = data
    else:
        try:
            obj = json.loads(body)
        except ValueError:
            return [], None  # never for a validated body; an unreadable one has nothing
    if not isinstance(obj, dict):
        return [], None
    observables = [{"key": o.key, "kind": o.kind, "date_added": date_added}
                   for o in observables_of(obj)]
    facts = indicator_facts(obj, date_added) if obj.get("type") == "indicator" else None
    return observables, facts


def indicator_facts(obj: Mapping[str, Any], date_added: int) -> dict[str, Any]:
    """What a flat feed lists and filters by of an indicator version, besides its
    values (revision 0013): ``valid_from``, ``valid_until`` and ``created_by_ref`` as
    written, its string ``labels`` (JSON text) and its integer ``confidence``."""

    def text(name: str, longest: int) -> str | None:
        value = obj.get(name)
        return value if isinstance(value, str) and len(value) <= longest else None

    labels = obj.get("labels")
    kept = [v for v in labels if isinstance(v, str)] if isinstance(labels, list) else []
    confidence = obj.get("confidence")
    return {"date_added": date_added, "valid_from": text("valid_from", 40),
            "valid_until": text("valid_until", 40),
            "author": text("created_by_ref", 128),
            "labels": json.dumps(kept, ensure_ascii=False) if kept else None,
            "confidence": confidence if isinstance(confidence, int)
            and not isinstance(confidence, bool) else None}


def final_status(
    status: Status, versions: Sequence[NewVersion], results: Sequence[AddResult]
) -> Status:
    """The caller's status with the store's outcomes appended and counts recomputed."""
    successes = list(status.successes)
    failures = list(status.failures)
    for new, result in zip(versions, results, strict=True):
        version = from_micros(result.version) if result.version is not None else ""
        if result.outcome is AddOutcome.ADDED:
            successes.append(StatusDetail(new.id, version))
        elif result.outcome is AddOutcome.EXISTS:
            successes.append(StatusDetail(new.id, version, MSG_EXISTS))
        elif result.outcome is AddOutcome.CONFLICT:
            failures.append(StatusDetail(new.id, version, MSG_CONFLICT))
        else:
            failures.append(StatusDetail(new.id, version, MSG_NOT_CREATOR))
    return replace(
        status,
        status="complete",
        total_count=len(successes) + len(failures),
        success_count=len(successes),
        failure_count=len(failures),
        pending_count=0,
        successes=tuple(successes),
        failures=tuple(failures),
        pendings=(),
    )
