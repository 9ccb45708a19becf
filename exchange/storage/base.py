"""The storage contract: one :class:`Store` interface and the records it speaks in.

Two implementations exist (SQLite, the embedded default, and PostgreSQL), both on
SQLAlchemy 2 Core in :mod:`exchange.storage.sql`. The same contract test suite
(``tests/unit/storage/test_contract.py``) runs against both.

Rules every implementation keeps:

* Object versions are stored as the canonical bytes the exchange validated and are
  returned byte for byte.
* ``date_added`` is assigned by the store, in microseconds since the Unix epoch, strictly
  increasing across the whole node, and commits become visible in ``date_added`` order,
  so ``added_after`` paging never skips an object.
* :meth:`Store.add_objects` is atomic per envelope: the accepted versions and the status
  resource are committed together, or nothing is.
* Constructors do no I/O; :meth:`Store.open` connects, and schema changes happen only
  through :meth:`Store.upgrade` (Alembic).
* Audit records (issue 5) commit in the same transaction as the change they describe:
  :meth:`Store.audited` attaches records to the next write transaction of the calling
  context, and :meth:`Store.add_objects` takes the records of a publish from a callback
  that sees the outcome. The store hands them to its ``audit_sink`` (set by the service
  to :func:`exchange.audit.ledger.append`); if the sink fails, the change rolls back.
"""

from __future__ import annotations

import abc
import contextvars
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from exchange.model.objects import AccountId, CollectionId, OrgId, Role, StixId


@dataclass(frozen=True, slots=True)
class Organisation:
    """A member organisation (a CERT, or a constituent such as a national SOC)."""

    id: OrgId
    name: str
    identity_id: StixId
    identity_json: bytes  # canonical STIX identity object
    created_at: int  # microseconds since epoch
    parent_id: OrgId | None = None  # set for constituents of a member


@dataclass(frozen=True, slots=True)
class Account:
    """A login of one organisation, with one role."""

    id: AccountId
    name: str
    org_id: OrgId
    role: Role
    created_at: int
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's public record; the secret itself is never stored."""

    key_id: str
    account_id: AccountId
    created_at: int
    revoked_at: int | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Collection:
    """A TAXII collection inside an API root."""

    id: CollectionId
    api_root: str
    title: str
    description: str = ""
    alias: str | None = None
    default_tlp: str = "amber"
    require_signatures: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    """What one organisation's accounts may do in one collection."""

    collection_id: CollectionId
    org_id: OrgId
    can_read: bool
    can_write: bool


class IdOwnership(enum.StrEnum):
    """Who may add versions of an id (DESIGN.md decision 8; docs/adr/0001).

    Whatever the kind, ``is_latest``/``is_first`` are kept per contribution line, that is
    per (collection, id, producer organisation): a reader who may see only one
    contributor's versions still gets that contributor's ``last``.
    """

    #: Only the organisation that first contributed the id to the collection may add
    #: versions of it there: SDOs, SROs, marking definitions, custom objects. Ownership
    #: is per collection (docs/adr/0002-id-ownership-per-collection.md).
    CREATOR = "creator"
    #: Each contributing organisation keeps its own line of versions of the id: SCOs,
    #: whose ids are deterministic and which carry no version of their own, so two
    #: members reporting the same observable share the id.
    CONTRIBUTOR = "contributor"
    #: The standard's own objects (the predefined TLP marking definitions): anyone may
    #: re-post them; identical bytes are already stored, nothing else is accepted.
    OPEN = "open"
    #: The id is the registered identity of the producing organisation (an ``identity``
    #: object the organisation publishes about itself): contributions others made
    #: under that id, before the organisation was registered, do not block it (the
    #: service refuses them from registration on). Same id and version: as CREATOR.
    REGISTERED = "registered"


@dataclass(frozen=True, slots=True)
class NewVersion:
    """An object version the service has validated and wants stored."""

    id: StixId
    type: str
    spec_version: str
    version: int | None  # microseconds; None = no created/modified, use date_added
    created: int | None
    modified: int | None
    producer_org: OrgId | None
    tlp: str | None  # TLP level from the object's own markings, None when unmarked
    effective_tlp: str  # tlp, or the collection's default when unmarked
    revoked: bool
    body: bytes  # canonical JSON
    signed_kid: str | None = None  # key id of a verified cx-sig signature, None if unsigned
    red_recipients: tuple[str, ...] = ()  # identity ids named as RED recipients
    ownership: IdOwnership = IdOwnership.CREATOR  # who may add versions of the id
    # The parsed body when the caller holds it (the validated object's data), so the
    # store's index need not parse the body again; it must be the body's value.
    data: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """An object version as stored. ``body`` is empty when not requested, and
    ``body_sha256`` (its SHA-256, stored at ingest) is None then."""

    collection_id: CollectionId
    id: StixId
    type: str
    spec_version: str
    version: int
    date_added: int
    producer_org: OrgId | None
    tlp: str | None
    effective_tlp: str
    revoked: bool
    is_latest: bool
    body: bytes = b""
    signed_kid: str | None = None
    body_sha256: bytes | None = None


class AddOutcome(enum.StrEnum):
    """What happened to one object of an envelope."""

    ADDED = "added"
    EXISTS = "exists"  # identical version already stored: success, nothing new
    CONFLICT = "conflict"  # same id and version, different bytes: failure
    NOT_CREATOR = "not-creator"  # another organisation created this id: failure


@dataclass(frozen=True, slots=True)
class AddResult:
    """Outcome of one :class:`NewVersion` in :meth:`Store.add_objects`.

    ``version`` is the version stored or matched (for a version-less object, its
    ``date_added``); ``date_added`` is set for ADDED (the new row) and EXISTS (the row
    already stored), None for failures.
    """

    id: StixId
    version: int | None
    outcome: AddOutcome
    date_added: int | None = None


@dataclass(frozen=True, slots=True)
class StatusDetail:
    """One entry of a TAXII status resource (successes, failures or pendings)."""

    id: str
    version: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    """A TAXII 2.1 status resource (section 4.3.1)."""

    id: str
    api_root: str
    collection_id: CollectionId
    account_id: AccountId
    org_id: OrgId
    request_timestamp: int
    status: str  # "complete" or "pending"
    total_count: int
    success_count: int
    failure_count: int
    pending_count: int
    successes: tuple[StatusDetail, ...] = ()
    failures: tuple[StatusDetail, ...] = ()
    pendings: tuple[StatusDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionMatch:
    """``match[version]``: any of first, last, all, or explicit versions (microseconds)."""

    first: bool = False
    last: bool = False
    all: bool = False
    exact: tuple[int, ...] = ()

    @classmethod
    def latest(cls) -> VersionMatch:
        """The TAXII default for objects and manifests: the latest version only."""
        return cls(last=True)


@dataclass(frozen=True, slots=True)
class ObjectQuery:
    """Filters of a TAXII read (sections 3.4 and 3.6).

    Attributes:
        collection_id: The collection read.
        added_after: Only versions with ``date_added`` strictly after this (microseconds).
        ids: ``match[id]`` values; empty means any.
        types: ``match[type]`` values; empty means any.
        spec_versions: ``match[spec_version]``; empty means any (the exchange stores
            STIX 2.1 only, so the TAXII default "latest spec_version" is the same).
        versions: ``match[version]``.
        limit: The page size (already capped by the caller).
        cursor: The ``date_added`` of the last row of the previous page (from ``next``).
        include_body: Whether to fetch the object bytes (False for manifests).
        visible_tlps: When not None, only versions whose effective TLP is in this set
            are returned. The sharing-policy layer refines this; the store only filters.
        own_org: When set together with ``visible_tlps``, versions produced by this
            organisation are returned whatever their TLP (a producer always sees its own).
        red_identity: With ``visible_tlps``: RED versions that name this identity as a
            recipient (``object_red_recipients``) are visible too.
        revoked_needs_prior: With ``visible_tlps``: a revoked version of another
            producer is visible only when an earlier, unrevoked version of the same
            object is visible under the same filter (the recipient could have received
            it), so revocations reach exactly those who may hold the object.
        exclude_producer: With ``visible_tlps``: versions produced by this organisation
            are never returned (a peer node never receives back what came from it).
    """

    collection_id: CollectionId
    added_after: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    spec_versions: tuple[str, ...] = ()
    versions: VersionMatch = field(default_factory=VersionMatch.latest)
    limit: int = 100
    cursor: int | None = None
    include_body: bool = True
    visible_tlps: frozenset[str] | None = None
    own_org: OrgId | None = None
    red_identity: str | None = None
    revoked_needs_prior: bool = False
    exclude_producer: OrgId | None = None


@dataclass(frozen=True, slots=True)
class ObservableSearch:
    """A search of the observable index (revision 0008) across collections.

    Attributes:
        kinds: Index kinds to look in (:data:`exchange.model.observables.KINDS`).
        keys: Exact index keys; a version naming any of them matches.
        prefix: A key prefix (ending in ``.``): versions naming a key that starts with it
            match too (a domain's subdomains).
        scopes: One query per collection searched: its ``collection_id`` and visibility
            fields (``visible_tlps``, ``own_org``, ``red_identity``,
            ``revoked_needs_prior``) apply as in a read; its other fields are ignored.
        after: Only versions with ``date_added`` after this (the previous page's cursor).
        limit: The page size.
        include_body: Whether to fetch the object bytes.

    Only the latest version of each object is searched: a value an object no longer names
    does not find it.
    """

    kinds: tuple[str, ...]
    keys: tuple[str, ...]
    scopes: tuple[ObjectQuery, ...]
    prefix: str | None = None
    after: int | None = None
    limit: int = 100
    include_body: bool = True


class FeedValue(NamedTuple):
    """One value of the observable index (revision 0008) named by a latest, unrevoked,
    visible indicator version, with the facts a flat feed lists beside it
    (:meth:`Store.feed_values`).

    Attributes:
        date_added: The version's ``date_added``.
        id: The indicator's id.
        version: The version (microseconds).
        producer_org: The contributor's organisation id.
        tlp: The level of the version's own markings (None: unmarked).
        effective_tlp: The level it is shared at.
        kind: The index kind of the value.
        key: The index key (:func:`exchange.model.observables.value_of_key` gives the
            value back, except for a digest key of an over-long value).
        valid_from: The indicator's ``valid_from`` as written (None: absent).
        valid_until: Its ``valid_until`` as written (None: absent).
        author: Its ``created_by_ref`` (None: absent).
        labels: Its ``labels`` (strings only), when asked for (None: not asked, or
            absent).
        confidence: Its ``confidence``, when asked for and an integer (None otherwise).
    """

    date_added: int
    id: str
    version: int
    producer_org: str | None
    tlp: str | None
    effective_tlp: str
    kind: str
    key: str
    valid_from: str | None
    valid_until: str | None
    author: str | None
    labels: tuple[str, ...] | None = None
    confidence: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectListing:
    """An operator's listing of stored objects (``exchange objects list``), node-local.

    Attributes:
        collection_ids: Only these collections (empty: all).
        types: Only these STIX types (empty: all).
        producer_orgs: Only versions these organisations published (empty: all).
        tlps: Only these effective TLP levels (empty: all).
        since: Only versions stored at or after this (µs since the epoch).
        until: Only versions stored before this.
        latest_only: Only each object's latest version in its collection.
        limit: At most this many, newest first.
    """

    collection_ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    producer_orgs: tuple[str, ...] = ()
    tlps: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    latest_only: bool = True
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a read, in ``date_added`` order; ``more`` says whether rows remain."""

    rows: list[StoredVersion]
    more: bool


#: Audit records waiting for the next write transaction of this context (Store.audited).
_pending_audit: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "cx_pending_audit", default=None)

#: Writes audit records in a transaction: ``sink(connection, records)``.
AuditSink = Callable[[Any, Sequence[Any]], Any]

#: Builds the audit records of a publish from its outcome (results, final status).
PublishAudit = Callable[[Sequence["AddResult"], "Status"], Sequence[Any]]


class Store(abc.ABC):
    """Persistence for one exchange node. All methods raise StorageError on DB failure."""

    #: Where audit records go (:func:`exchange.audit.ledger.append`); None: not recorded.
    audit_sink: AuditSink | None = None

    # -- audit ---------------------------------------------------------------------
    @staticmethod
    @contextmanager
    def audited(records: Sequence[Any]) -> Iterator[None]:
        """Commit ``records`` with the next write transaction made inside the block.

        Used around one store call that changes something (an account, a key, a
        grant): the change and its records commit together or not at all. Records
        not consumed (the call failed before writing) are dropped with the block.
        """
        token = _pending_audit.set(list(records))
        try:
            yield
        finally:
            _pending_audit.reset(token)

    @staticmethod
    def take_pending_audit() -> list[Any]:
        """The records :meth:`audited` attached, once (for the write transaction)."""
        pending = _pending_audit.get()
        if not pending:
            return []
        taken = list(pending)
        pending.clear()
        return taken

    @abc.abstractmethod
    def audit_transaction(self, *, write: bool = False) -> AbstractContextManager[Any]:
        """A transaction for the audit ledger's own functions (a SQLAlchemy connection).

        ``write=True`` takes the database's write lock (``BEGIN IMMEDIATE`` on SQLite).
        """

    @abc.abstractmethod
    def append_audit(self, records: Sequence[Any]) -> list[int]:
        """Append records to the audit ledger in a transaction of their own; their seqs."""

    # -- lifecycle -----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether the store is open (between :meth:`open` and :meth:`close`)."""
        return True

    @abc.abstractmethod
    def open(self) -> None:
        """Connect (create the engine). Does not change the schema."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision."""

    @abc.abstractmethod
    def check_schema(self) -> None:
        """Raise ConfigError if the schema is missing or not at the newest revision."""

    # -- organisations, accounts, keys ----------------------------------------------
    @abc.abstractmethod
    def add_org(self, org: Organisation) -> None:
        """Store a new organisation. Raises Conflict if the name or identity exists."""

    @abc.abstractmethod
    def get_org(self, org_id: OrgId) -> Organisation:
        """Raises NotFound."""

    @abc.abstractmethod
    def find_org(self, name_or_id: str) -> Organisation:
        """Look up by name, id or identity id. Raises NotFound."""

    @abc.abstractmethod
    def list_orgs(self) -> list[Organisation]:
        """All organisations, by name."""

    @abc.abstractmethod
    def add_account(self, account: Account) -> None:
        """Raises Conflict if the name exists, NotFound if the org does not."""

    @abc.abstractmethod
    def find_account(self, name_or_id: str) -> Account:
        """Raises NotFound."""

    @abc.abstractmethod
    def list_accounts(self, org_id: OrgId | None = None) -> list[Account]:
        """Accounts, by name, optionally of one organisation."""

    @abc.abstractmethod
    def add_api_key(self, key: ApiKey, digest: bytes) -> None:
        """Store a key's record and its HMAC digest (never the secret)."""

    @abc.abstractmethod
    def revoke_api_key(self, key_id: str, at: int) -> ApiKey:
        """Mark a key revoked. Raises NotFound."""

    @abc.abstractmethod
    def list_api_keys(self, account_id: AccountId | None = None) -> list[ApiKey]:
        """Key records (never secrets or digests)."""

    @abc.abstractmethod
    def lookup_api_key(self, key_id: str) -> tuple[ApiKey, bytes, Account, Organisation] | None:
        """The key record, its stored digest, its account and organisation, or None."""

    # -- collections -----------------------------------------------------------------
    @abc.abstractmethod
    def add_collection(self, collection: Collection, grants: Sequence[Grant]) -> None:
        """Raises Conflict if the id or alias exists."""

    @abc.abstractmethod
    def set_grant(self, grant: Grant) -> None:
        """Insert or replace one organisation's rights on a collection."""

    @abc.abstractmethod
    def get_collection(self, api_root: str, collection_id: str) -> Collection:
        """By id or alias. Raises NotFound."""

    @abc.abstractmethod
    def list_collections(self, api_root: str) -> list[Collection]:
        """All collections of an API root, by title."""

    @abc.abstractmethod
    def grants(self, collection_id: CollectionId) -> list[Grant]:
        """The grants of one collection."""

    @abc.abstractmethod
    def grant_for(self, collection_id: CollectionId, org_id: OrgId) -> Grant | None:
        """One organisation's grant on a collection, if any."""

    # -- objects -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_objects(
        self, collection_id: CollectionId, versions: Sequence[NewVersion], status: Status,
        *, audit: PublishAudit | None = None,
    ) -> tuple[list[AddResult], Status]:
        """Store an envelope's validated versions and its status resource atomically.

        ``audit``, if given, builds the publish's audit records from the outcome; they
        commit in the same transaction (and a failure to write them stores nothing).

        ``status`` arrives with the failures the service already found (validation);
        the store adds its own outcomes (EXISTS counts as success, CONFLICT and
        NOT_CREATOR as failures), assigns ``date_added`` to new rows, and commits the
        rows with the final status in one transaction. The final status lists the
        caller's successes and failures, then the store's (in input order); its counts
        are recomputed from those lists, it has no pendings and is ``complete``.

        Ownership is decided within the collection only (docs/adr/0002): versions of
        the same id in other collections never change an outcome.
        Per version (see :class:`IdOwnership`): for a ``CREATOR`` id, if another
        organisation created the id in this collection it is NOT_CREATOR - checked
        first, so nobody else can probe an object's content through EXISTS/CONFLICT;
        else the same id and version already in the collection (or earlier in the
        envelope) is EXISTS when the bytes are identical, CONFLICT when not. For a
        ``CONTRIBUTOR`` id the same test runs within the producer's own line only, and
        for an ``OPEN`` or ``REGISTERED`` id without the creator test. A version-less object
        (``version`` None) is versioned by its ``date_added``, unless identical bytes
        are already stored for its id (in its line, for ``CONTRIBUTOR``): EXISTS.
        ``is_latest``/``is_first`` are set per (collection, id, producer).

        Returns:
            One result per input version (same order) and the status as stored.
        """

    @abc.abstractmethod
    def get_objects(self, query: ObjectQuery) -> Page:
        """Versions matching the query, ``date_added`` ascending, at most ``limit``.

        The kinds set in ``query.versions`` are OR-ed (``first`` and ``last`` gives both);
        a :class:`VersionMatch` with nothing set means ``last``.
        """

    @abc.abstractmethod
    def get_versions(self, query: ObjectQuery) -> Page:
        """Like :meth:`get_objects` for one id (``query.ids``) with every version
        matching ``added_after``/``spec_versions``; ``query.versions`` is ignored."""

    @abc.abstractmethod
    def search_observables(self, search: ObservableSearch) -> Page:
        """Latest versions, visible under their collection's scope, naming a searched
        value; ``date_added`` ascending, at most ``limit``.

        Raises:
            ValueError: ``search.limit`` is less than 1.
            StorageError: The database failed.
        """

    @abc.abstractmethod
    def feed_values(self, scope: ObjectQuery, kinds: tuple[str, ...], *,
                    with_labels: bool = False) -> list[FeedValue]:
        """The values of ``kinds`` in the observable index named by the latest,
        unrevoked indicator versions ``scope`` may read, ``date_added`` ascending, in
        one query (``labels`` and ``confidence`` too with ``with_labels``).

        ``scope`` filters as in :meth:`get_objects` (``collection_id``, ``ids``,
        ``added_after``, the visibility fields); its ``types``, ``versions``,
        ``limit``, ``cursor`` and ``include_body`` are ignored. No body is read:
        ``valid_from``, ``valid_until``, ``created_by_ref``, ``labels`` and
        ``confidence`` come from ``indicator_facts`` (revision 0013).

        Raises:
            StorageError: The database failed.
        """

    @abc.abstractmethod
    def list_objects(self, listing: ObjectListing) -> Page:
        """Stored versions matching an operator's filters, newest ``date_added`` first,
        without bodies; ``more`` says whether more matched than ``limit``.

        Raises:
            ValueError: ``listing.limit`` is less than 1.
            StorageError: The database failed.
        """

    @abc.abstractmethod
    def object_exists(self, collection_id: CollectionId, object_id: str) -> bool:
        """Whether any version of ``object_id`` is in the collection."""

    @abc.abstractmethod
    def delete_object(
        self,
        collection_id: CollectionId,
        object_id: str,
        versions: VersionMatch,
        spec_versions: tuple[str, ...] = (),
        producer_org: OrgId | None = None,
    ) -> int:
        """Delete matching versions; fixes ``is_latest``. Returns the number deleted.

        ``versions`` reads as in :meth:`get_objects` (per contribution line);
        empty ``spec_versions`` matches any; ``producer_org`` limits the delete to one
        contributor's versions (an SCO others contributed too keeps theirs).
        """

    @abc.abstractmethod
    def get_status(self, api_root: str, status_id: str) -> Status:
        """Raises NotFound."""

    @abc.abstractmethod
    def count_objects(self, collection_id: CollectionId | None = None) -> int:
        """Stored versions, in one collection or in all."""

    @abc.abstractmethod
    def newest_date_added(self, collection_id: CollectionId) -> int:
        """The newest ``date_added`` of the collection's versions (0: none)."""

    # -- signing keys (revision 0002) ------------------------------------------------------
    @abc.abstractmethod
    def add_member_key(self, key: MemberKey) -> None:
        """Store a signing key's public record.

        Raises:
            Conflict: A key with this key id is already stored (for any organisation).
            NotFound: ``key.org_id`` names no organisation.
        """

    @abc.abstractmethod
    def list_member_keys(
        self, org_id: OrgId | None = None, purpose: str | None = None
    ) -> list[MemberKey]:
        """Key records, oldest first (``created_at``, then key id), optionally filtered."""

    @abc.abstractmethod
    def get_member_key(self, kid: str) -> MemberKey:
        """One key record. Raises NotFound."""

    @abc.abstractmethod
    def update_member_key(
        self,
        kid: str,
        *,
        status: str | None = None,
        valid_until: int | None = None,
        compromised_since: int | None = None,
    ) -> MemberKey:
        """Set the given fields of a key record (None leaves a field as it is).

        Returns:
            The record as stored afterwards.

        Raises:
            NotFound: No key has this id.
        """

    @abc.abstractmethod
    def versions_signed_by(self, kid: str) -> list[SignedVersion]:
        """The stored versions (all collections) signed by ``kid``, by ``date_added``."""

    @abc.abstractmethod
    def last_signed_by(self, kid: str) -> int | None:
        """The latest ``date_added`` of a stored version signed by ``kid`` (µs), or None."""

    # -- derived copies (revision 0007) ----------------------------------------------------
    @abc.abstractmethod
    def record_derived_ids(self, entries: Sequence[DerivedIdEntry]) -> None:
        """Remember which original and transforms each derived id stands for.

        Idempotent: an id already recorded is left as it is (a derived id is a function
        of its original and transforms, so a second record can only agree).
        """

    @abc.abstractmethod
    def original_of(self, derived_id: str) -> DerivedIdEntry | None:
        """The original and transforms a derived id stands for, or None."""

    # -- flat feed downloads (revision 0012) ----------------------------------------------
    @abc.abstractmethod
    def record_feed_download(self, feed: str, fmt: str, account: str, org: str, *,
                             at: int, etag: str, values: int) -> None:
        """Count one full download of a feed by an account, and remember its ETag and
        number of values (one transaction; concurrent downloads each count).

        Raises:
            StorageError: The database failed; nothing was changed.
        """

    @abc.abstractmethod
    def feed_downloads(self) -> list[FeedDownloads]:
        """Every feed's downloads, by feed, format and account.

        Raises:
            StorageError: The database failed.
        """

    # -- MISP sync state (revision 0009) ----------------------------------------------------
    @abc.abstractmethod
    def misp_state(self, target: str, direction: str) -> MispSyncState | None:
        """The sync state of one target and direction, or None before its first run."""

    @abc.abstractmethod
    def peer_trust(self, name: str) -> PeerTrust | None:
        """A trusted peer by name, or None."""

    @abc.abstractmethod
    def peer_trusts(self) -> list[PeerTrust]:
        """Every trusted peer, by name."""

    @abc.abstractmethod
    def save_peer_trust(self, trust: PeerTrust) -> None:
        """Insert or replace the trust record of ``trust.name``."""

    @abc.abstractmethod
    def delete_peer_trust(self, name: str) -> bool:
        """Forget a trusted peer; False when there was none by that name."""

    @abc.abstractmethod
    def misp_states(self) -> list[MispSyncState]:
        """Every recorded sync state, by target and direction."""

    @abc.abstractmethod
    def save_misp_state(self, state: MispSyncState) -> None:
        """Insert or replace the sync state of ``state.target`` and ``state.direction``."""

    @abc.abstractmethod
    def misp_pushed(self, target: str, object_ids: Sequence[str] | None = None
                    ) -> dict[str, MispPushed]:
        """What was pushed to a target, by STIX id (all of it, or only ``object_ids``)."""

    @abc.abstractmethod
    def misp_pushed_events(self, target: str, event_uuids: Sequence[str]) -> set[str]:
        """Which of ``event_uuids`` hold something the exchange pushed to ``target``."""

    @abc.abstractmethod
    def record_misp_pushed(self, entries: Sequence[MispPushed]) -> None:
        """Insert or replace pushed entries (by target and object id), in one transaction."""

    @abc.abstractmethod
    def misp_sharing_groups(self, target: str) -> dict[str, tuple[int, str]]:
        """Agreement id -> (sharing group id, UUID) created on a target."""

    @abc.abstractmethod
    def save_misp_sharing_group(self, target: str, agreement: str, group_id: int,
                                group_uuid: str) -> None:
        """Remember the sharing group created on a target for an agreement."""

    @abc.abstractmethod
    def misp_pulled(self, target: str, event_uuids: Sequence[str]) -> dict[str, int]:
        """Event UUID -> the event timestamp last imported from ``target``."""

    @abc.abstractmethod
    def record_misp_pulled(self, target: str, events: dict[str, int], at: int) -> None:
        """Insert or replace the imported timestamp of each event UUID."""

    # -- TAXII sources (revision 0010) -----------------------------------------------------
    @abc.abstractmethod
    def source_state(self, source: str) -> SourceState | None:
        """The ingestion state of one TAXII source, or None before its first run."""

    @abc.abstractmethod
    def source_states(self) -> list[SourceState]:
        """Every recorded TAXII source state, by source name."""

    @abc.abstractmethod
    def save_source_state(self, state: SourceState) -> None:
        """Insert or replace the state of ``state.source``."""


#: What a signing key is for: a member's object signatures, or this node's own signatures
#: (derived objects, receipts).
KEY_PURPOSES = ("object", "node")


@dataclass(frozen=True, slots=True)
class MemberKey:
    """A signing key's public record (table ``member_keys``).

    Attributes:
        kid: The cx-sig key id of ``public_pem``.
        org_id: The owning organisation; None for the node's own keys.
        purpose: ``"object"`` for a member's keys, ``"node"`` for the node's.
        alg: ``"Ed25519"`` or ``"ECDSA-P256"``.
        public_pem: The SPKI PEM of the public key (private keys are never stored).
        valid_from: First instant the key may sign (µs since the epoch).
        valid_until: First instant it may no longer sign, or None.
        status: ``"active"``, ``"retired"`` or ``"revoked"``.
        compromised_since: For revoked keys, the first instant no longer trusted.
        created_at: When the record was stored.
    """

    kid: str
    org_id: OrgId | None
    purpose: str
    alg: str
    public_pem: str
    valid_from: int
    valid_until: int | None
    status: str
    compromised_since: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class DerivedIdEntry:
    """A derived copy's id and what it was derived from (table ``derived_ids``).

    Attributes:
        derived_id: The copy's STIX id.
        original_id: The stored object it is a copy of.
        transforms: The transforms, as :func:`exchange.node.derive.transform_key` names them.
    """

    derived_id: str
    original_id: str
    transforms: str


@dataclass(frozen=True, slots=True)
class SignedVersion:
    """A stored object version signed by a given key (:meth:`Store.versions_signed_by`)."""

    collection_id: CollectionId
    id: StixId
    version: int
    date_added: int


@dataclass(frozen=True, slots=True)
class FeedDownloads:
    """An account's downloads of one flat feed in one format (table ``feed_downloads``).

    Attributes:
        feed: A named feed's name, or ``<collection alias>/<kind>``.
        format: ``txt`` or ``csv``.
        account: The account that downloaded it.
        org: Its organisation.
        downloads: Full downloads (200s); answers 304 are not counted.
        first_download: When the first was served (µs since the epoch).
        last_download: When the last was served.
        last_etag: The ETag of the last (quoted, as served).
        last_values: How many values (text) or rows (CSV) the last held.
    """

    feed: str
    format: str
    account: str
    org: str
    downloads: int
    first_download: int
    last_download: int
    last_etag: str
    last_values: int


@dataclass(frozen=True, slots=True)
class MispSyncState:
    """One MISP target's sync state in one direction (table ``misp_sync_state``).

    Attributes:
        target: The target's name (feeds/misp-targets.yaml).
        direction: ``"push"`` or ``"pull"``.
        cursor: Where the next run starts: for push the last ``date_added`` fully
            pushed, for pull the MISP event timestamp (MISP's clock) last fully imported;
            None before the first success.
        last_started: When the last run started (µs since the epoch).
        last_finished: When it finished.
        outcome: ``never``, ``ok``, ``partial``, ``failed``, ``auth-failed`` or ``running``.
        message: One sentence on the outcome (the failure's message; never a secret).
        counts: Counts of the last run: created, updated, unchanged, deleted, skipped,
            failed, imported...
        reasons: One entry per item skipped or failed in the last run:
            ``{"id": ..., "rule": ..., "reason": ...}``.
        failures: Consecutive failed runs (the scheduler's backoff).
        next_run: When the scheduler runs it next, if known.
    """

    target: str
    direction: str
    cursor: str | None = None
    last_started: int | None = None
    last_finished: int | None = None
    outcome: str = "never"
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    reasons: list[dict[str, str]] = field(default_factory=list)
    failures: int = 0
    next_run: int | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    """One TAXII source's ingestion state (table ``taxii_source_state``).

    Attributes:
        source: The source's name (feeds/sources.yaml).
        cursor: The ``added_after`` the next run asks for: the last
            ``X-TAXII-Date-Added-Last`` (or ``date_added``) whose page was fully stored,
            as the server wrote it; None before the first page.
        paging: How the server pages, as detected: ``next`` (TAXII 2.1 ``next``),
            ``more`` (``added_after`` stepping; the server ignores ``next``), ``offset``
            (a server that pages by offset and repeats itself under ``next``); None
            before the first run.
        last_started: When the last run started (µs since the epoch).
        last_finished: When it finished.
        outcome: ``never``, ``ok``, ``partial``, ``failed``, ``auth-failed`` or ``running``.
        message: One sentence on the outcome (never a secret).
        counts: Counts of the last run: created, duplicate, refused, pages.
        reasons: One entry per object refused in the last run:
            ``{"id": ..., "rule": ..., "reason": ...}``.
        failures: Consecutive failed runs (the scheduler's backoff).
        next_run: When the scheduler runs it next, if known.
        endpoint: Where ``cursor`` was read: the source's configured API root (or
            discovery URL) and collection (:attr:`TaxiiSource.endpoint
            <exchange.feeds.sources.TaxiiSource.endpoint>`); None for a state saved
            before revision 0015.
    """

    source: str
    cursor: str | None = None
    paging: str | None = None
    last_started: int | None = None
    last_finished: int | None = None
    outcome: str = "never"
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    reasons: list[dict[str, str]] = field(default_factory=list)
    failures: int = 0
    next_run: int | None = None
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class MispPushed:
    """An object version pushed to a MISP target (table ``misp_pushed``).

    Attributes:
        target: The target's name.
        object_id: The STIX id.
        version: The version pushed (``modified`` or ``created``).
        event_uuid: The MISP event holding it.
        attribute_uuids: The attributes it became.
        deleted: Whether they were soft-deleted (a revocation pushed).
        pushed_at: When (µs since the epoch).
    """

    target: str
    object_id: str
    version: str
    event_uuid: str
    attribute_uuids: tuple[str, ...]
    deleted: bool
    pushed_at: int


@dataclass(frozen=True, slots=True)
class PeerTrust:
    """A peer exchange node this node trusts (table ``peer_trust``, issue 20).

    Attributes:
        name: The operator's name for the peer (``pk-node``).
        pins: The peer's node keys the operator pinned, as ``(key id, public key PEM)``
            pairs sorted by key id: its signed registry must be signed by one of them.
        registry_url: Where the peer's signed registry is fetched
            (``.../<api_root>/cx/registry/signed/``), or None when it was only given
            as a file.
        api_key_file: The file holding the API key this node presents to the peer
            (never the key itself), or None.
        registry: The last signed registry (a DSSE envelope) that verified against the
            pins, as received.
        fetched_at: When it was received (µs since the epoch).
        created_at: When the peer was first trusted.
        ca_file: The CA bundle ``registry_url`` is fetched with (a peer serving from a
            private PKI), or None for the default one.
    """

    name: str
    pins: tuple[tuple[str, str], ...]
    registry_url: str | None = None
    api_key_file: str | None = None
    registry: bytes | None = None
    fetched_at: int | None = None
    created_at: int = 0
    ca_file: str | None = None

    def __repr__(self) -> str:
        kids = ", ".join(kid for kid, _ in self.pins)
        return f"PeerTrust({self.name!r}, pins=[{kids}], url={self.registry_url!r})"
