"""Signing keys of members and of this node, over the store; and verification at ingest.

The member registry (issue 4, part 2) lives in the database, table ``member_keys``, and
is managed by admin commands (``exchange keys register|rotate|revoke``); it is exported
as the document of :mod:`exchange.member.verification` for consumers to verify offline. Public
keys only: private keys never reach the exchange, except the node's own, which stays in
its home, encrypted.

* :func:`register_key`, :func:`rotate_key`, :func:`revoke_key`, :func:`list_keys` and
  :func:`affected_versions` are the admin use-cases. The key id is always computed from
  the public key, never taken from input. Rotation registers the new key and retires the
  organisation's active keys at the same instant, so old signatures keep verifying for
  objects recorded before it. Revocation sets ``compromised_since``: objects recorded at
  or after it are refused, earlier ones stay valid, and :func:`affected_versions` lists
  every stored version the key signed, flagging those recorded at or after it.
* :func:`registry` builds the :class:`~exchange.signing.registry.Registry` that
  verification uses: member keys owned by their organisation's identity, node keys by
  the node identity. :class:`RegistryCache` rebuilds it at most every few seconds for
  the HTTP workers, so a registration, rotation or revocation takes effect within
  ``ttl_seconds`` on every worker.
* :func:`verify_for_ingest` is the check :meth:`exchange.node.service.Exchange.publish` runs on
  every object: it returns the verified key id, None for an accepted unsigned object, or
  raises :class:`~exchange.errors.SignatureError` with the reason.

The node's own keys are registered here too (purpose ``node``, no organisation) and are
owned by the node's identity (:func:`exchange.node.nodekey.node_identity`), which the store
does not know: the functions that build registries take it as an argument and leave
node keys out when it is not given.

What it leaves to others: HTTP and the command line, the node's private key
(:mod:`exchange.node.nodekey`), and when an object counts as recorded (the caller passes the
time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from exchange.errors import Conflict, InvalidInput, NotFound, SignatureError
from exchange.signing.cxsig import signature_of, verify_object
from exchange.signing.keys import Algorithm, KeyId, load_public_pem
from exchange.signing.published import PublishedKey, registry_document
from exchange.signing.registry import KeyRecord, KeyStatus, Registry, format_micros
from exchange.storage.base import MemberKey, Organisation, SignedVersion, Store

__all__ = [
    "AffectedVersion",
    "RegisteredKey",
    "RegistryCache",
    "affected_versions",
    "export_registry",
    "list_keys",
    "register_key",
    "registry",
    "revoke_key",
    "rotate_key",
    "verify_for_ingest",
]

log = logging.getLogger(__name__)

#: The name the published registry gives the node's keys' owner.
NODE_OWNER_NAME: Final = "exchange node"
UNSIGNED_IN_REQUIRED: Final = "this collection requires signed objects; the object is not signed"


def _now() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    """A key as the admin commands show it.

    Attributes:
        record: The key with its owner identity and validity.
        purpose: ``"object"`` (a member's) or ``"node"`` (this exchange's own).
        org_name: The owning organisation's name; None for node keys.
        created_at: When it was registered (µs since the epoch).
    """

    record: KeyRecord
    purpose: str
    org_name: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class AffectedVersion:
    """A stored object version signed by a key (``exchange keys affected``).

    Attributes:
        collection_id: Where it is stored.
        object_id: The object's id.
        version: Its version (µs since the epoch).
        date_added: When the exchange recorded it (µs since the epoch).
        after_compromise: Recorded at or after the key's ``compromised_since``.
    """

    collection_id: str
    object_id: str
    version: int
    date_added: int
    after_compromise: bool


# -- building registries from the store -----------------------------------------------
def _record(key: MemberKey, owner_identity: str) -> KeyRecord:
    """The registry record of a stored key (``Registry`` checks ``alg`` and ``status``)."""
    return KeyRecord(
        kid=KeyId(key.kid), alg=cast(Algorithm, key.alg), public_pem=key.public_pem,
        owner_identity=owner_identity, valid_from=key.valid_from,
        valid_until=key.valid_until, status=cast(KeyStatus, key.status),
        compromised_since=key.compromised_since,
    )


def _registered(store: Store, keys: list[MemberKey], node: str | None) -> list[RegisteredKey]:
    """Records with their owners; node keys only when ``node`` (the node identity) is
    given. A record the registry refuses is logged and left out."""
    orgs: dict[str, Organisation] = {org.id: org for org in store.list_orgs()}
    out: list[RegisteredKey] = []
    for key in keys:
        org = orgs.get(key.org_id) if key.org_id is not None else None
        owner = org.identity_id if org is not None else node
        if owner is None:
            if key.org_id is not None:
                log.warning("key %s has no organisation; left out of the registry", key.kid)
            continue
        record = _record(key, owner)
        try:
            Registry([record])
        except SignatureError as e:
            log.warning("stored key %s is inconsistent (%s); left out of the registry",
                        key.kid, e.reason)
            continue
        out.append(RegisteredKey(record, key.purpose, org.name if org else None,
                                 key.created_at))
    return out


def list_keys(store: Store, org_name: str | None = None, *,
              node_identity: str | None = None) -> list[RegisteredKey]:
    """Registered keys, oldest first: one organisation's, or all (node keys too when
    ``node_identity`` is given).

    Raises:
        NotFound: ``org_name`` names no organisation.
        StorageError: The database failed.
    """
    org_id = store.find_org(org_name).id if org_name is not None else None
    return _registered(store, store.list_member_keys(org_id), node_identity)


def registry(store: Store, *, node_identity: str | None = None) -> Registry:
    """The registry verification uses: every member key in the database, and the node's
    keys (owned by ``node_identity``) when it is given.

    Raises:
        StorageError: The database failed.
    """
    keys = _registered(store, store.list_member_keys(), node_identity)
    return Registry(key.record for key in keys)


def export_registry(store: Store, *, node_identity: str) -> str:
    """The published registry document (see :mod:`exchange.member.verification`).

    Args:
        store: The store.
        node_identity: The node's identity (:func:`node_identity`), owner of its keys.

    Raises:
        StorageError: The database failed.
    """
    keys = _registered(store, store.list_member_keys(), node_identity)
    published = [
        PublishedKey(key.record, key.purpose, key.org_name or NODE_OWNER_NAME) for key in keys
    ]
    return registry_document(published, node_identity=node_identity)


class RegistryCache:
    """The registry, rebuilt from the store at most every ``ttl_seconds``. Thread-safe.

    Constructing it does no I/O; the first :meth:`get` builds the registry.

    Args:
        store: The store to read keys from.
        ttl_seconds: How long a built registry is reused.
        node_identity: The node's identity; its keys are trusted only when it is given.
        clock: Monotonic seconds (replaceable in tests).
    """

    def __init__(self, store: Store, ttl_seconds: float = 5.0, *,
                 node_identity: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._node = node_identity
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._built_at = 0.0

    def __repr__(self) -> str:
        return f"RegistryCache(ttl_seconds={self._ttl})"

    def get(self) -> Registry:
        """The registry, rebuilt when older than ``ttl_seconds``.

        Raises:
            StorageError: The database failed while rebuilding.
        """
        with self._lock:
            now = self._clock()
            if self._registry is None or now - self._built_at >= self._ttl:
                self._registry = registry(self._store, node_identity=self._node)
                self._built_at = now
            return self._registry

    def invalidate(self) -> None:
        """Rebuild on the next :meth:`get` (after this process changed a key)."""
        with self._lock:
            self._registry = None


# -- admin use-cases -----------------------------------------------------------------
def register_key(
    store: Store,
    org_name: str,
    public_pem: str,
    *,
    valid_from: int | None = None,
    valid_until: int | None = None,
    now: int | None = None,
) -> KeyRecord:
    """Register a member organisation's public signing key.

    Args:
        store: The store.
        org_name: The organisation (name, id or identity id).
        public_pem: Its public key, SPKI PEM (Ed25519 or ECDSA P-256).
        valid_from: First instant the key may sign (µs); default now.
        valid_until: First instant it may no longer sign (µs); default none.
        now: The current time (µs); default the clock.

    Returns:
        The registered key; its key id is computed from the key.

    Raises:
        SignatureError: Not a PEM public key of an accepted algorithm.
        InvalidInput: ``valid_until`` is not after ``valid_from``.
        NotFound: No such organisation.
        Conflict: The key is already registered (to this or another organisation).
        StorageError: The database failed.
    """
    key = load_public_pem(public_pem)
    org = store.find_org(org_name)
    at = _now() if now is None else now
    start = at if valid_from is None else valid_from
    if valid_until is not None and valid_until <= start:
        raise InvalidInput(
            f"valid_until {format_micros(valid_until)} is not after valid_from"
            f" {format_micros(start)}"
        )
    member = MemberKey(
        kid=key.kid, org_id=org.id, purpose="object", alg=key.alg, public_pem=key.pem,
        valid_from=start, valid_until=valid_until, status="active", compromised_since=None,
        created_at=at,
    )
    store.add_member_key(member)
    log.info("key %s registered for %s", key.kid, org.name)
    return _record(member, org.identity_id)


def rotate_key(store: Store, org_name: str, public_pem: str, *, now: int | None = None
               ) -> tuple[KeyRecord, list[KeyRecord]]:
    """Register a new key for an organisation and retire its active keys at the same instant.

    Retired keys keep verifying objects the exchange recorded before the rotation. Keys
    whose validity has not begun yet are left as they are. Running it again with the same
    new key (after a failure half-way) finishes the rotation.

    Args:
        store: The store.
        org_name: The organisation.
        public_pem: The new public key.
        now: The rotation instant (µs); default the clock.

    Returns:
        The new key and the keys retired.

    Raises:
        SignatureError: Not a PEM public key of an accepted algorithm.
        NotFound: No such organisation.
        Conflict: The new key is already registered to another organisation, or is not
            an active key of this one.
        StorageError: The database failed.
    """
    at = _now() if now is None else now
    org = store.find_org(org_name)
    new_kid = load_public_pem(public_pem).kid
    try:
        existing = store.get_member_key(new_kid)
    except NotFound:
        new = register_key(store, org.id, public_pem, valid_from=at, now=at)
    else:
        if existing.org_id != org.id or existing.status != "active":
            raise Conflict(f"key {new_kid} is already registered")
        new = _record(existing, org.identity_id)
    retired: list[KeyRecord] = []
    for key in store.list_member_keys(org.id, purpose="object"):
        if key.kid == new_kid or key.status != "active" or key.valid_from >= at:
            continue
        until = at if key.valid_until is None else min(key.valid_until, at)
        updated = store.update_member_key(key.kid, status="retired", valid_until=until)
        retired.append(_record(updated, org.identity_id))
        log.info("key %s of %s retired", key.kid, org.name)
    return new, retired


def revoke_key(store: Store, kid: str, compromised_since: int, *, now: int | None = None
               ) -> MemberKey:
    """Revoke a key from the instant it is believed compromised.

    Objects recorded at or after ``compromised_since`` no longer verify; earlier ones
    do. Revoking a revoked key can only move ``compromised_since`` earlier.

    Args:
        store: The store.
        kid: The key.
        compromised_since: First instant the key is no longer trusted (µs).
        now: The current time (µs); default the clock.

    Returns:
        The key's record as stored after the revocation.

    Raises:
        InvalidInput: ``compromised_since`` is in the future (to end a key's validity
            later, rotate it).
        NotFound: No such key.
        StorageError: The database failed.
    """
    at = _now() if now is None else now
    if compromised_since > at:
        raise InvalidInput(
            f"compromised_since {format_micros(compromised_since)} is in the future; to"
            " end a key's validity later, rotate it"
        )
    key = store.get_member_key(kid)
    since = compromised_since
    if key.compromised_since is not None:
        since = min(since, key.compromised_since)
    updated = store.update_member_key(kid, status="revoked", compromised_since=since)
    log.warning("key %s revoked, compromised since %s", kid, format_micros(since))
    return updated


def affected_versions(store: Store, kid: str) -> list[AffectedVersion]:
    """Every stored object version signed by ``kid``, in ``date_added`` order.

    Args:
        store: The store.
        kid: The key.

    Returns:
        The versions; ``after_compromise`` is set for those recorded at or after the
        key's ``compromised_since`` (never for a key that is not revoked).

    Raises:
        NotFound: No such key.
        StorageError: The database failed.
    """
    key = store.get_member_key(kid)
    since = key.compromised_since
    found: list[SignedVersion] = store.versions_signed_by(kid)
    return [
        AffectedVersion(v.collection_id, v.id, v.version, v.date_added,
                        since is not None and v.date_added >= since)
        for v in found
    ]


# -- verification at ingest ----------------------------------------------------------
def verify_for_ingest(
    registry: Registry,
    obj: Mapping[str, Any],
    *,
    contributor_identity: str,
    recorded_at: int,
    required: bool,
) -> str | None:
    """Check one object's signature as the exchange records it.

    A signed object must carry a signature that verifies under a registered key of the
    same algorithm, made by a key whose owner is the *contributor* (the organisation
    publishing it), whatever ``created_by_ref`` names (DESIGN.md decision 8): a member
    relaying a vendor's report, or an SCO that has no author, signs it with its own key
    and so attests it. The key must also have been valid at ``recorded_at``: not before
    ``valid_from``, not at or after ``valid_until``, not at or after a revoked key's
    ``compromised_since``. The signed bytes are cx-sig v1's, unchanged: the binding of
    signer to contributor is made here and by the registry, never by the payload.

    Args:
        registry: The trusted keys (:meth:`RegistryCache.get`).
        obj: The object, as parsed.
        contributor_identity: The identity of the organisation publishing it.
        recorded_at: The exchange's recording time for the object (µs since the epoch).
        required: Whether the collection requires signed objects.

    Returns:
        The key id of the verified signature, or None for an unsigned object in a
        collection that accepts them.

    Raises:
        SignatureError: The object is unsigned and signatures are required, or the
            signature is malformed, made by an unknown key, claims another algorithm
            than its key's, does not verify, was made by a key that is not the
            contributor's, or by a key not valid at ``recorded_at``. The reason says
            which.
        InvalidObject: The object cannot be canonicalised.
    """
    try:
        entry = signature_of(obj)
        if entry is None:
            if required:
                raise SignatureError(UNSIGNED_IN_REQUIRED)
            return None
        verified = verify_object(obj, registry.resolve)
        owner = registry.record(verified.kid).owner_identity
        if owner != contributor_identity:
            raise SignatureError(
                f"key {verified.kid} belongs to {owner}, not to the publishing"
                f" organisation ({contributor_identity}); sign with your own key"
            )
        registry.check(verified.kid, owner_identity=contributor_identity, at=recorded_at)
    except SignatureError as e:
        if e.reason == UNSIGNED_IN_REQUIRED:
            raise
        label = obj.get("id")
        reason = e.reason
        if isinstance(label, str):
            reason = reason.removeprefix(f"{label}: ")
        raise SignatureError(f"signature refused: {reason}") from None
    return str(verified.kid)
