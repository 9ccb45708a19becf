"""A pure model of the key registry: who owns which key, and when each key was good.

cx-sig verification proves that a key signed; the registry answers the two questions the
signature cannot (research/security.md 1.3 verification steps 4-5, 1.5):

* **Owner binding.** The key's registered owner must be the organisation that
  contributed the object: at ingest, the publishing member, whatever ``created_by_ref``
  says (DESIGN.md decision 8). A consumer, who sees no contributor, learns it from the
  key: the owner of a valid key is the contributor, and is the author too when it is
  the object's ``created_by_ref`` (:mod:`exchange.member.verification`).
* **Time binding.** The key must have been valid at the time *the exchange recorded* the
  object (its log time, in microseconds since the epoch), never at the signer-claimed
  ``signed_at``. A ``retired`` key (rotated out; ``valid_until`` set) keeps verifying
  objects recorded before ``valid_until``. A ``revoked`` key with ``compromised_since``
  keeps verifying objects recorded before the compromise; anything recorded at or after
  it is refused.

:meth:`Registry.verify_object` does signature, owner and time in one call.

The registry document (:meth:`Registry.to_json`) is deterministic: keys sorted by key id,
members sorted, times as RFC 3339 UTC strings. Distributing it signed (DSSE, 2-of-3
governance keys, version and expiry; research/security.md 1.5) is left to the caller.

Pure code, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args

from exchange.errors import SignatureError
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.signing.cxsig import VerifiedSignature, verify_object
from exchange.signing.keys import ALGORITHMS, Algorithm, KeyId, PublicKey, load_public_pem

__all__ = ["KeyRecord", "KeyStatus", "Registry", "format_micros", "parse_micros"]

KeyStatus = Literal["active", "retired", "revoked"]
_STATUSES: Final[tuple[KeyStatus, ...]] = get_args(KeyStatus)
_IDENTITY = re.compile(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STAMP = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,6}))?Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DOCUMENT_TYPE: Final = "cx-key-registry"
_RECORD_MEMBERS: Final = frozenset(
    {"kid", "alg", "public_pem", "owner_identity", "valid_from", "valid_until", "status",
     "compromised_since"}
)  # fmt: skip


def format_micros(micros: int) -> str:
    """Microseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (UTC)."""
    stamp = _EPOCH + timedelta(microseconds=micros)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{stamp.microsecond:06d}Z" if stamp.microsecond else f"{text}Z"


def parse_micros(text: str) -> int:
    """The inverse of :func:`format_micros`.

    Raises:
        SignatureError: ``text`` is not ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` or not a real instant.
    """
    m = _STAMP.fullmatch(text)
    if m is None:
        raise SignatureError(f"{text[:40]!r} is not a UTC timestamp such as 2025-01-31T12:00:00Z")
    try:
        whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(f"{text[:40]!r} is not a real instant") from None
    fraction = int((m.group(2) or "").ljust(6, "0"))
    return (whole - _EPOCH) // timedelta(microseconds=1) + fraction


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One registered signing key.

    Attributes:
        kid: The key id; must be the id of ``public_pem``.
        alg: The key's algorithm; must be the algorithm of ``public_pem``.
        public_pem: The SPKI PEM of the public key.
        owner_identity: The STIX identity id of the organisation that owns the key.
        valid_from: First instant (µs since the epoch) the key may sign.
        valid_until: First instant it may no longer sign, or None (no end yet).
        status: ``active``; ``retired`` (rotated out, ``valid_until`` set); ``revoked``
            (compromised, ``compromised_since`` set).
        compromised_since: For revoked keys, the first instant no longer trusted.
    """

    kid: KeyId
    alg: Algorithm
    public_pem: str
    owner_identity: str
    valid_from: int
    valid_until: int | None = None
    status: KeyStatus = "active"
    compromised_since: int | None = None


def _check_record(record: KeyRecord) -> PublicKey:
    """Consistency of one record; returns its parsed key."""
    where = f"registry key {record.kid}"
    if record.alg not in ALGORITHMS:
        raise SignatureError(f"{where}: unknown algorithm {str(record.alg)[:20]!r}")
    key = load_public_pem(record.public_pem)
    if key.kid != record.kid:
        raise SignatureError(f"{where}: the public key's id is {key.kid}")
    if key.alg != record.alg:
        raise SignatureError(f"{where}: recorded as {record.alg}, the key is {key.alg}")
    if _IDENTITY.fullmatch(record.owner_identity) is None:
        raise SignatureError(f"{where}: owner_identity must be identity--<UUID>")
    if record.status not in _STATUSES:
        raise SignatureError(f"{where}: status must be one of {', '.join(_STATUSES)}")
    if record.valid_until is not None and record.valid_until <= record.valid_from:
        raise SignatureError(f"{where}: valid_until is not after valid_from")
    if record.status == "retired" and record.valid_until is None:
        raise SignatureError(f"{where}: a retired key needs valid_until")
    if (record.status == "revoked") != (record.compromised_since is not None):
        raise SignatureError(
            f"{where}: compromised_since is set exactly when the status is revoked"
        )
    return key


class Registry:
    """The keys a verifier trusts, with owners and validity windows.

    Constructing one checks every record (key id and algorithm match the PEM, statuses
    are consistent, no key id twice) and parses every key once.
    """

    __slots__ = ("_keys", "_records")

    def __init__(self, records: Iterable[KeyRecord]) -> None:
        """Build a registry.

        Args:
            records: The key records.

        Raises:
            SignatureError: A record is inconsistent or a key id appears twice.
        """
        self._records: dict[KeyId, KeyRecord] = {}
        self._keys: dict[KeyId, PublicKey] = {}
        for record in records:
            if record.kid in self._records:
                raise SignatureError(f"registry key {record.kid} is listed twice")
            self._keys[record.kid] = _check_record(record)
            self._records[record.kid] = record

    def __iter__(self) -> Iterator[KeyRecord]:
        return iter(sorted(self._records.values(), key=lambda record: record.kid))

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Registry({len(self._records)} keys)"

    def record(self, kid: KeyId) -> KeyRecord:
        """The record of ``kid``.

        Raises:
            SignatureError: The key is not registered.
        """
        try:
            return self._records[kid]
        except KeyError:
            raise SignatureError(f"key {kid[:60]} is not registered") from None

    def resolve(self, kid: KeyId) -> PublicKey:
        """The registered key with id ``kid``, whatever its status (a ``KeyResolver``).

        Raises:
            SignatureError: The key is not registered.
        """
        try:
            return self._keys[kid]
        except KeyError:
            raise SignatureError(f"key {kid[:60]} is not registered") from None

    def check(self, kid: KeyId, *, owner_identity: str, at: int) -> KeyRecord:
        """Check that ``kid`` belonged to ``owner_identity`` and was good at time ``at``.

        Args:
            kid: The key that signed.
            owner_identity: The identity the key must belong to (the contributor).
            at: When the exchange recorded the object, µs since the epoch.

        Returns:
            The key's record.

        Raises:
            SignatureError: The key is not registered, belongs to another identity, was
                not yet valid at ``at``, was revoked with a compromise at or before
                ``at``, or expired / was retired at or before ``at``.
        """
        record = self.record(kid)
        if record.owner_identity != owner_identity:
            raise SignatureError(
                f"key {kid} belongs to {record.owner_identity}, not created_by_ref"
                f" {owner_identity[:80]}"
            )
        if at < record.valid_from:
            raise SignatureError(
                f"key {kid} was not yet valid at {format_micros(at)} (valid from"
                f" {format_micros(record.valid_from)})"
            )
        if record.compromised_since is not None and at >= record.compromised_since:
            raise SignatureError(
                f"key {kid} was revoked: compromised since"
                f" {format_micros(record.compromised_since)}"
            )
        if record.valid_until is not None and at >= record.valid_until:
            if record.status == "retired":
                raise SignatureError(
                    f"key {kid} is retired since {format_micros(record.valid_until)}"
                )
            raise SignatureError(f"key {kid} expired at {format_micros(record.valid_until)}")
        return record

    def verify_object(self, obj: Mapping[str, Any], *, recorded_at: int,
                      contributor_identity: str | None = None) -> VerifiedSignature:
        """Verify an object's signature, its owner binding and its time binding.

        Args:
            obj: The signed object.
            recorded_at: When the exchange recorded it (log time), µs since the epoch.
            contributor_identity: The identity of the organisation that contributed it,
                which must own the key; by default the object's ``created_by_ref`` (an
                object its author published itself).

        Returns:
            What :func:`~exchange.signing.cxsig.verify_object` returns.

        Raises:
            SignatureError: As for :func:`~exchange.signing.cxsig.verify_object` and
                :meth:`check`, or neither a contributor nor a ``created_by_ref`` is
                known to bind the key to.
            InvalidObject: The object cannot be canonicalised.
        """
        verified = verify_object(obj, self.resolve)
        owner = contributor_identity
        if owner is None:
            creator = obj.get("created_by_ref")
            if not isinstance(creator, str):
                raise SignatureError(
                    f"{obj.get('id', 'object')!s:.80}: no contributor given and no"
                    f" created_by_ref, so key {verified.kid} cannot be bound to its owner"
                )
            owner = creator
        self.check(verified.kid, owner_identity=owner, at=recorded_at)
        return verified

    def to_json(self) -> str:
        """The registry document: deterministic JSON text (sorted, 2-space indent, newline)."""
        keys = []
        for record in self:
            item: dict[str, Any] = {
                "kid": record.kid,
                "alg": record.alg,
                "public_pem": record.public_pem,
                "owner_identity": record.owner_identity,
                "valid_from": format_micros(record.valid_from),
                "valid_until": None,
                "status": record.status,
                "compromised_since": None,
            }
            if record.valid_until is not None:
                item["valid_until"] = format_micros(record.valid_until)
            if record.compromised_since is not None:
                item["compromised_since"] = format_micros(record.compromised_since)
            keys.append(item)
        document = {"type": _DOCUMENT_TYPE, "v": 1, "keys": keys}
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes, *, limits: Limits | None = None) -> Registry:
        """Read a registry document written by :meth:`to_json`.

        Args:
            data: The document.
            limits: Parsing limits (default :class:`Limits`).

        Returns:
            The registry.

        Raises:
            SignatureError: The document is not a cx-key-registry v1, has unknown or
                missing members, wrong types, or inconsistent records.
            MalformedJSON: The text breaks the strict JSON profile.
            LimitExceeded: The text exceeds ``limits``.
        """
        raw = data.encode("utf-8") if isinstance(data, str) else data
        document = parse_json(raw, limits or Limits())
        if not isinstance(document, dict) or document.keys() != {"type", "v", "keys"}:
            raise SignatureError("a key registry has exactly the members type, v and keys")
        if (
            document["type"] != _DOCUMENT_TYPE
            or type(document["v"]) is not int
            or document["v"] != 1
        ):
            raise SignatureError(f"not a {_DOCUMENT_TYPE} version 1 document")
        if not isinstance(document["keys"], list):
            raise SignatureError("registry 'keys' must be a list")
        return cls(_record_from_json(item) for item in document["keys"])


def _record_from_json(item: Any) -> KeyRecord:
    if not isinstance(item, dict) or item.keys() != _RECORD_MEMBERS:
        members = ", ".join(sorted(_RECORD_MEMBERS))
        raise SignatureError(f"a registry key has exactly the members {members}")
    for name in ("kid", "alg", "public_pem", "owner_identity", "valid_from", "status"):
        if not isinstance(item[name], str):
            raise SignatureError(f"registry key member {name!r} must be a string")
    for name in ("valid_until", "compromised_since"):
        if item[name] is not None and not isinstance(item[name], str):
            raise SignatureError(f"registry key member {name!r} must be a string or null")
    if item["alg"] not in ALGORITHMS:
        raise SignatureError(f"registry key algorithm must be one of {', '.join(ALGORITHMS)}")
    if item["status"] not in _STATUSES:
        raise SignatureError(f"registry key status must be one of {', '.join(_STATUSES)}")
    until, compromised = item["valid_until"], item["compromised_since"]
    return KeyRecord(
        kid=KeyId(item["kid"]),
        alg=item["alg"],
        public_pem=item["public_pem"],
        owner_identity=item["owner_identity"],
        valid_from=parse_micros(item["valid_from"]),
        valid_until=None if until is None else parse_micros(until),
        status=item["status"],
        compromised_since=None if compromised is None else parse_micros(compromised),
    )
