"""The :class:`~exchange.storage.base.Store` on SQLAlchemy 2 Core: SQLite and PostgreSQL.

One class serves both databases; the URL chooses. Engine set-up (WAL, ``synchronous``,
busy timeout, ``BEGIN IMMEDIATE`` for writes on SQLite; psycopg 3 on PostgreSQL) is in
:mod:`.engines`, the statements in :mod:`.queries`, and the per-envelope decisions in
:mod:`.envelopes`; this module runs them in transactions. It is long because the Store
interface is: one method per operation, each a short transaction.

Every write transaction takes the node-wide write lock first: ``BEGIN IMMEDIATE`` on
SQLite, ``SELECT ... FOR UPDATE`` of the one ``clock`` row on PostgreSQL (READ
COMMITTED). Because the lock is held from the first statement to the commit, the
``date_added`` values a transaction assigns (``max(now, last + 1)``, then ``+ 1`` per row,
then written back to the clock row) are larger than those of every transaction committed
before it and smaller than those of every one committed after: commits become visible in
``date_added`` order and ``added_after`` paging is exact. The checks a write makes
(duplicate names, existing versions, creators) stay true until it commits.

Database failures become :class:`~exchange.errors.StorageError` with a short, generic
reason; the details go to the log, never with the database password (see
:func:`exchange.config.redact_url`). Schema changes happen only in :meth:`SqlStore.upgrade`,
through the Alembic revisions in ``migrations/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from exchange.config import redact_url
from exchange.errors import ConfigError, Conflict, NotFound, StorageError
from exchange.model.objects import AccountId, CollectionId, OrgId, Role, StixId
from exchange.storage import schema as t
from exchange.storage.base import (
    KEY_PURPOSES,
    Account,
    AddResult,
    ApiKey,
    Collection,
    DerivedIdEntry,
    FeedDownloads,
    FeedValue,
    Grant,
    MemberKey,
    MispPushed,
    MispSyncState,
    NewVersion,
    ObjectListing,
    ObjectQuery,
    ObservableSearch,
    Organisation,
    Page,
    PeerTrust,
    PublishAudit,
    SignedVersion,
    SourceState,
    Status,
    StatusDetail,
    Store,
    VersionMatch,
)
from exchange.storage.engines import WRITE_OPTION, SqliteOptions, create_engine
from exchange.storage.envelopes import EnvelopePlan, ExistingVersion, StoredVersions, final_status
from exchange.storage.queries import (
    LOCK_CLOCK,
    META_COLUMNS,
    UPDATE_FLAGS,
    account_record,
    api_key_record,
    collection_record,
    detail_json,
    exists,
    feed_statement,
    grant_record,
    grant_row,
    id_chunks,
    id_in,
    in_collection_by_id,
    one_object,
    org_record,
    ov,
    page_statement,
    search_statement,
    stored_record,
    version_condition,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

#: Key of the PostgreSQL advisory lock held while the schema is upgraded.
_MIGRATION_LOCK = 0x63785F736368656D  # "cx_schem"
#: Key of the PostgreSQL advisory lock that queues writers of the audit ledger: the
#: sequencers of every process (and ``exchange audit`` commands) read the spool offsets
#: and the log's tail, then append; on SQLite ``BEGIN IMMEDIATE`` queues them already.
_AUDIT_LOCK = 0x63785F6C65646772  # "cx_ledgr"


def _describe(error: BaseException) -> str:
    """A log line for a database error: exception classes and the driver's message."""
    orig = getattr(error, "orig", None)
    text = type(error).__name__
    if orig is not None:
        text += f" ({type(orig).__module__}.{type(orig).__name__}: {orig})"
    return redact_url(text)[:1000]


def _reason(error: exc.SQLAlchemyError) -> str:
    """The user-facing reason of a database failure: generic, never the driver's text."""
    orig = getattr(error, "orig", None)
    if isinstance(orig, psycopg.errors.UndefinedTable) or (
        isinstance(orig, sqlite3.OperationalError) and str(orig).startswith("no such table")
    ):
        return "the database has no cert-exchange schema; create it with 'exchange init'"
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError):
        return "the database is unavailable or busy; try again"
    return "the database failed; nothing was changed"


class _WriterLock:
    """Queues this node's SQLite writers: a thread lock inside a process, then an
    advisory file lock (``flock``) beside the database across processes.

    SQLite's own busy handler makes a writer that finds the database locked sleep 1, 2,
    5, 10, 15, 20, 25... ms before it looks again, so a few concurrent short writes (the
    audit ledger writes one per response) turn into tens of milliseconds of waiting.
    Here a waiting thread wakes the moment the lock is released, and a waiting process
    looks again within a millisecond. The file is opened once per process (a lock taken
    through a descriptor inherited across ``fork`` would be shared, not exclusive).
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + self._timeout
        if not self._thread_lock.acquire(timeout=self._timeout):
            raise StorageError("the database is unavailable or busy; try again")
        try:
            fd = self._descriptor()
            pause = 0.0002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StorageError(
                            "the database is unavailable or busy; try again") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.001)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class SqlStore(Store):
    """The store on SQLite or PostgreSQL, chosen by URL.

    Args:
        url: The database URL (see :func:`~exchange.storage.engines.normalise_url`).
            Kept, not used, until
            :meth:`open`. ``sqlite://`` (in memory) is one connection shared by all
            callers: for tests and fakes, not for concurrent use.
        sqlite_synchronous: SQLite's ``PRAGMA synchronous`` in WAL mode: ``FULL`` (the
            default) makes every committed envelope durable across power loss;
            ``NORMAL`` survives process crashes but may lose the last commits on power
            loss or an OS crash, in exchange for skipping the fsync at each commit.
        busy_timeout: Seconds a SQLite writer waits for the database lock.
        sqlite_cache_mib: SQLite page cache per connection (``PRAGMA cache_size``).
        now: The clock, in microseconds since the epoch (replaceable in tests).

    Raises:
        ConfigError: ``sqlite_synchronous`` is not NORMAL, FULL or EXTRA.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        sqlite_cache_mib: int = 16,
        now: Callable[[], int] | None = None,
    ) -> None:
        self._url = url
        self._sqlite = SqliteOptions(
            synchronous=sqlite_synchronous.upper(),
            busy_timeout_ms=int(busy_timeout * 1000),
            cache_mib=sqlite_cache_mib,
        )
        self._now = now or (lambda: time.time_ns() // 1000)
        self._engine: Engine | None = None
        self._writer_lock: _WriterLock | None = None

    def __repr__(self) -> str:
        return f"SqlStore({redact_url(self._url)!r})"

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called and :meth:`close` not since."""
        return self._engine is not None

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``.

        Raises:
            RuntimeError: The store is not open.
        """
        return self._require_engine().dialect.name

    def open(self) -> None:
        """Create the engine. Connections are made lazily, on first use.

        Open in each process that uses the store (after gunicorn forks its workers): a
        pooled connection must never be shared between processes.

        Raises:
            ConfigError: The URL is malformed or names an unsupported database.
        """
        if self._engine is not None:
            return
        self._engine = create_engine(self._url, self._sqlite)
        database = self._engine.url.database
        if self._engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
            self._writer_lock = _WriterLock(Path(f"{database}.writer-lock"),
                                            self._sqlite.busy_timeout_ms / 1000)

    def close(self) -> None:
        """Dispose of the engine and its pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the store is not open: call open() first")
        return self._engine

    def _alembic_config(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        return cfg

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision, in one transaction.

        Safe to run concurrently (from several workers): SQLite serialises on
        ``BEGIN IMMEDIATE``, PostgreSQL on an advisory lock; the later runs find the schema
        current and do nothing.

        Raises:
            StorageError: The database failed; nothing was changed.
        """
        cfg = self._alembic_config()
        with self._transaction(write=True, lock_clock=False) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        log.info("database schema is at the newest revision")

    def check_schema(self) -> None:
        """Check that the schema exists and is at the newest revision.

        Raises:
            ConfigError: The schema is missing, older or newer than this code expects.
            StorageError: The database cannot be reached.
        """
        heads = set(ScriptDirectory.from_config(self._alembic_config()).get_heads())
        with self._transaction(write=False) as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        if not current:
            raise ConfigError(
                "the database has no cert-exchange schema; create it with 'exchange init'"
            )
        if current != heads:
            raise ConfigError(
                f"the database schema is at revision {', '.join(sorted(current))} but this"
                f" version of cert-exchange needs {', '.join(sorted(heads))}; upgrade it with"
                " 'exchange init'"
            )

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def _transaction(self, *, write: bool, lock_clock: bool = True) -> Iterator[Connection]:
        """One transaction; SQLAlchemy errors leave it as StorageError or Conflict.

        A write transaction takes the node-wide write lock first (``BEGIN IMMEDIATE`` on
        SQLite, the clock row on PostgreSQL), so the checks it makes stay true until it
        commits.
        """
        engine = self._require_engine()
        queue = (self._writer_lock.held() if write and self._writer_lock is not None
                 else contextlib.nullcontext())
        try:
            with queue, engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    if write and lock_clock:
                        conn.execute(LOCK_CLOCK)
                    if write and conn.dialect.name == "postgresql":
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_AUDIT_LOCK)))
                    yield conn
                    if write:
                        self._write_audit(conn, self.take_pending_audit())
        except exc.IntegrityError as e:
            log.warning("database refused a write: %s", _describe(e))
            raise Conflict("the change conflicts with data already stored") from e
        except exc.SQLAlchemyError as e:
            log.error("database error: %s", _describe(e))
            raise StorageError(_reason(e)) from e

    def _write_audit(self, conn: Connection, records: Sequence[Any]) -> None:
        if records and self.audit_sink is not None:
            self.audit_sink(conn, records)

    @contextmanager
    def audit_transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """A transaction for :mod:`exchange.audit.ledger` (``write``: the write lock).

        Raises:
            StorageError: The database failed; the transaction was rolled back.
        """
        with self._transaction(write=write, lock_clock=False) as conn:
            yield conn

    def append_audit(self, records: Sequence[Any]) -> list[int]:
        """Append records to the ledger in their own write transaction; their seqs.

        Raises:
            StorageError: The ledger could not be written; nothing was appended.
            RuntimeError: No audit sink is set.
        """
        if not records:
            return []
        if self.audit_sink is None:
            raise RuntimeError("the store has no audit sink")
        with self._transaction(write=True, lock_clock=False) as conn:
            return list(self.audit_sink(conn, records))

    def _last_date_added(self, conn: Connection) -> int:
        return int(conn.execute(LOCK_CLOCK).scalar_one())

    # -- organisations, accounts, keys ---------------------------------------------------
    def add_org(self, org: Organisation) -> None:
        """Store a new organisation.

        Raises:
            Conflict: The id, name or identity id is taken.
            NotFound: ``parent_id`` names no organisation.
            StorageError: The database failed.
        """
        o = t.organisations
        with self._transaction(write=True) as conn:
            taken = conn.execute(
                sa.select(o.c.id, o.c.name, o.c.identity_id).where(
                    sa.or_(o.c.id == org.id, o.c.name == org.name,
                           o.c.identity_id == org.identity_id)
                )
            ).first()
            if taken is not None:
                what = ("name" if taken.name == org.name else
                        "identity" if taken.identity_id == org.identity_id else "id")
                raise Conflict(f"an organisation with this {what} already exists")
            if org.parent_id is not None and not exists(conn, o.c.id == org.parent_id):
                raise NotFound(f"parent organisation {org.parent_id!r} not found")
            conn.execute(o.insert().values(
                id=org.id, name=org.name, identity_id=org.identity_id,
                identity_json=org.identity_json, parent_id=org.parent_id,
                created_at=org.created_at,
            ))

    def get_org(self, org_id: OrgId) -> Organisation:
        """One organisation by id.

        Raises:
            NotFound: No organisation has this id.
            StorageError: The database failed.
        """
        with self._transaction(write=False) as conn:
            row = conn.execute(
                sa.select(t.organisations).where(t.organisations.c.id == org_id)
            ).first()
        if row is None:
            raise NotFound(f"organisation {org_id!r} not found")
        return org_record(row)

    def find_org(self, name_or_id: str) -> Organisation:
        """One organisation by id, identity id or name (in that order of preference).

        Raises:
            NotFound: Nothing matches.
            StorageError: The database failed.
        """
        o = t.organisations
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(o).where(sa.or_(
                o.c.id == name_or_id, o.c.identity_id == name_or_id, o.c.name == name_or_id
            ))).all()
        for key in ("id", "identity_id", "name"):
            for row in rows:
                if getattr(row, key) == name_or_id:
                    return org_record(row)
        raise NotFound(f"organisation {name_or_id!r} not found")

    def list_orgs(self) -> list[Organisation]:
        """All organisations, by name.

        Raises:
            StorageError: The database failed.
        """
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                sa.select(t.organisations).order_by(t.organisations.c.name)
            ).all()
        return [org_record(row) for row in rows]

    def add_account(self, account: Account) -> None:
        """Store a new account.

        Raises:
            Conflict: The id or name is taken.
            NotFound: The organisation does not exist.
            StorageError: The database failed.
        """
        a = t.accounts
        with self._transaction(write=True) as conn:
            if exists(conn, sa.or_(a.c.id == account.id, a.c.name == account.name)):
                raise Conflict(f"an account named {account.name!r} (or with its id) exists")
            if not exists(conn, t.organisations.c.id == account.org_id):
                raise NotFound(f"organisation {account.org_id!r} not found")
            conn.execute(a.insert().values(
                id=account.id, name=account.name, org_id=account.org_id,
                role=account.role.value, created_at=account.created_at,
                disabled=account.disabled,
            ))

    def find_account(self, name_or_id: str) -> Account:
        """One account by id or name (id preferred).

        Raises:
            NotFound: Nothing matches.
            StorageError: The database failed.
        """
        a = t.accounts
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                sa.select(a).where(sa.or_(a.c.id == name_or_id, a.c.name == name_or_id))
            ).all()
        if not rows:
            raise NotFound(f"account {name_or_id!r} not found")
        return account_record(min(rows, key=lambda row: row.id != name_or_id))

    def list_accounts(self, org_id: OrgId | None = None) -> list[Account]:
        """Accounts by name, optionally of one organisation.

        Raises:
            StorageError: The database failed.
        """
        a = t.accounts
        query = sa.select(a).order_by(a.c.name)
        if org_id is not None:
            query = query.where(a.c.org_id == org_id)
        with self._transaction(write=False) as conn:
            return [account_record(row) for row in conn.execute(query)]

    def add_api_key(self, key: ApiKey, digest: bytes) -> None:
        """Store a key's record and its HMAC digest (never the secret).

        Raises:
            Conflict: The key id is taken.
            NotFound: The account does not exist.
            StorageError: The database failed.
        """
        k = t.api_keys
        with self._transaction(write=True) as conn:
            if exists(conn, k.c.key_id == key.key_id):
                raise Conflict(f"an API key with id {key.key_id!r} already exists")
            if not exists(conn, t.accounts.c.id == key.account_id):
                raise NotFound(f"account {key.account_id!r} not found")
            conn.execute(k.insert().values(
                key_id=key.key_id, account_id=key.account_id, digest=digest,
                label=key.label, created_at=key.created_at, revoked_at=key.revoked_at,
            ))

    def revoke_api_key(self, key_id: str, at: int) -> ApiKey:
        """Mark a key revoked at ``at``; a key already revoked keeps its first revocation time.

        Raises:
            NotFound: No key has this id.
            StorageError: The database failed.
        """
        k = t.api_keys
        with self._transaction(write=True) as conn:
            row = conn.execute(sa.select(k).where(k.c.key_id == key_id)).first()
            if row is None:
                raise NotFound(f"API key {key_id!r} not found")
            key = api_key_record(row)
            if key.revoked_at is None:
                conn.execute(k.update().where(k.c.key_id == key_id).values(revoked_at=at))
                key = replace(key, revoked_at=at)
        return key

    def list_api_keys(self, account_id: AccountId | None = None) -> list[ApiKey]:
        """Key records (never digests), oldest first.

        Raises:
            StorageError: The database failed.
        """
        k = t.api_keys
        query = sa.select(k.c.key_id, k.c.account_id, k.c.created_at, k.c.revoked_at,
                          k.c.label).order_by(k.c.created_at, k.c.key_id)
        if account_id is not None:
            query = query.where(k.c.account_id == account_id)
        with self._transaction(write=False) as conn:
            return [api_key_record(row) for row in conn.execute(query)]

    def lookup_api_key(self, key_id: str) -> tuple[ApiKey, bytes, Account, Organisation] | None:
        """The key record, its stored digest, its account and organisation, or None.

        Revoked keys and disabled accounts are returned too; the caller decides.

        Raises:
            StorageError: The database failed.
        """
        k, a, o = t.api_keys, t.accounts, t.organisations
        query = (
            sa.select(k, a, o)
            .join(a, a.c.id == k.c.account_id)
            .join(o, o.c.id == a.c.org_id)
            .where(k.c.key_id == key_id)
        )
        with self._transaction(write=False) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        m = row._mapping
        key = ApiKey(key_id=m[k.c.key_id], account_id=AccountId(m[k.c.account_id]),
                     created_at=m[k.c.created_at], revoked_at=m[k.c.revoked_at],
                     label=m[k.c.label])
        account = Account(id=AccountId(m[a.c.id]), name=m[a.c.name], org_id=OrgId(m[a.c.org_id]),
                          role=Role(m[a.c.role]), created_at=m[a.c.created_at],
                          disabled=bool(m[a.c.disabled]))
        org = Organisation(id=OrgId(m[o.c.id]), name=m[o.c.name],
                           identity_id=StixId(m[o.c.identity_id]),
                           identity_json=bytes(m[o.c.identity_json]),
                           created_at=m[o.c.created_at],
                           parent_id=OrgId(m[o.c.parent_id]) if m[o.c.parent_id] else None)
        return key, bytes(m[k.c.digest]), account, org

    # -- collections -------------------------------------------------------------------
    def add_collection(self, collection: Collection, grants: Sequence[Grant]) -> None:
        """Store a collection and its initial grants.

        Raises:
            Conflict: The id, or the alias within the API root, is taken.
            NotFound: A grant names an organisation that does not exist.
            ValueError: A grant is for another collection.
            StorageError: The database failed.
        """
        c = t.collections
        if any(g.collection_id != collection.id for g in grants):
            raise ValueError("every grant must be for the collection being added")
        with self._transaction(write=True) as conn:
            if exists(conn, c.c.id == collection.id):
                raise Conflict(f"a collection with id {collection.id!r} already exists")
            if collection.alias is not None and exists(
                conn, sa.and_(c.c.api_root == collection.api_root, c.c.alias == collection.alias)
            ):
                raise Conflict(f"a collection with alias {collection.alias!r} already exists")
            for grant in grants:
                if not exists(conn, t.organisations.c.id == grant.org_id):
                    raise NotFound(f"organisation {grant.org_id!r} not found")
            conn.execute(c.insert().values(
                id=collection.id, api_root=collection.api_root, title=collection.title,
                description=collection.description, alias=collection.alias,
                default_tlp=collection.default_tlp,
                require_signatures=collection.require_signatures,
            ))
            if grants:
                conn.execute(t.grants.insert(), [grant_row(g) for g in grants])

    def set_grant(self, grant: Grant) -> None:
        """Insert or replace one organisation's rights on a collection.

        Raises:
            NotFound: The collection or the organisation does not exist.
            StorageError: The database failed.
        """
        g = t.grants
        with self._transaction(write=True) as conn:
            if not exists(conn, t.collections.c.id == grant.collection_id):
                raise NotFound(f"collection {grant.collection_id!r} not found")
            if not exists(conn, t.organisations.c.id == grant.org_id):
                raise NotFound(f"organisation {grant.org_id!r} not found")
            updated = conn.execute(
                g.update()
                .where(g.c.collection_id == grant.collection_id, g.c.org_id == grant.org_id)
                .values(can_read=grant.can_read, can_write=grant.can_write)
            ).rowcount
            if not updated:
                conn.execute(g.insert().values(**grant_row(grant)))

    def get_collection(self, api_root: str, collection_id: str) -> Collection:
        """A collection of an API root by id or alias (id preferred).

        Raises:
            NotFound: Nothing matches.
            StorageError: The database failed.
        """
        c = t.collections
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(c).where(
                c.c.api_root == api_root,
                sa.or_(c.c.id == collection_id, c.c.alias == collection_id),
            )).all()
        if not rows:
            raise NotFound(f"collection {collection_id!r} not found")
        return collection_record(min(rows, key=lambda row: row.id != collection_id))

    def list_collections(self, api_root: str) -> list[Collection]:
        """All collections of an API root, by title.

        Raises:
            StorageError: The database failed.
        """
        c = t.collections
        query = sa.select(c).where(c.c.api_root == api_root).order_by(c.c.title, c.c.id)
        with self._transaction(write=False) as conn:
            return [collection_record(row) for row in conn.execute(query)]

    def grants(self, collection_id: CollectionId) -> list[Grant]:
        """The grants of one collection, by organisation id.

        Raises:
            StorageError: The database failed.
        """
        g = t.grants
        query = sa.select(g).where(g.c.collection_id == collection_id).order_by(g.c.org_id)
        with self._transaction(write=False) as conn:
            return [grant_record(row) for row in conn.execute(query)]

    def grant_for(self, collection_id: CollectionId, org_id: OrgId) -> Grant | None:
        """One organisation's grant on a collection, if any.

        Raises:
            StorageError: The database failed.
        """
        g = t.grants
        query = sa.select(g).where(g.c.collection_id == collection_id, g.c.org_id == org_id)
        with self._transaction(write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else grant_record(row)

    # -- objects -------------------------------------------------------------------------
    def add_objects(
        self, collection_id: CollectionId, versions: Sequence[NewVersion], status: Status,
        *, audit: PublishAudit | None = None,
    ) -> tuple[list[AddResult], Status]:
        """Store an envelope's validated versions and its status resource atomically.

        The rules are those of :meth:`Store.add_objects`; :class:`EnvelopePlan` applies
        them to what the write transaction found stored for the envelope's ids.

        Returns:
            One result per input version (same order) and the status as stored.

        Raises:
            NotFound: The collection does not exist.
            Conflict: The status id is taken.
            StorageError: The database failed; nothing was stored.
        """
        with self._transaction(write=True, lock_clock=False) as conn:
            last = self._last_date_added(conn)
            if not exists(conn, t.collections.c.id == collection_id):
                raise NotFound(f"collection {collection_id!r} not found")
            if exists(conn, t.statuses.c.id == status.id):
                raise Conflict(f"a status with id {status.id!r} already exists")
            plan = EnvelopePlan(collection_id, self._load_existing(conn, collection_id, versions))
            plan.decide(versions, max(self._now(), last + 1))
            flag_updates = plan.set_flags()
            if flag_updates:
                conn.execute(UPDATE_FLAGS, flag_updates)
            if plan.rows:
                conn.execute(ov.insert(), plan.rows)
                if plan.red_rows:
                    conn.execute(t.object_red_recipients.insert(), plan.red_rows)
                if plan.observable_rows:
                    conn.execute(t.observables.insert(), plan.observable_rows)
                if plan.fact_rows:
                    conn.execute(t.indicator_facts.insert(), plan.fact_rows)
                conn.execute(t.clock.update().values(last_date_added=plan.next_date_added - 1))
            final = final_status(status, versions, plan.results)
            self._insert_status(conn, final)
            if audit is not None:
                self._write_audit(conn, audit(plan.results, final))
        return plan.results, final

    def _load_existing(
        self, conn: Connection, collection_id: str, versions: Sequence[NewVersion]
    ) -> StoredVersions:
        """The stored versions of the envelope's ids in this collection, bodies where needed.

        Only this collection: who may add versions of an id is decided per collection
        (docs/adr/0002-id-ownership-per-collection.md), so what other collections hold,
        readable by the poster or not, never changes the outcome or the work done.
        """
        stored = StoredVersions()
        ids = list(dict.fromkeys(v.id for v in versions))
        columns = (ov.c.collection_id, ov.c.id, ov.c.version, ov.c.date_added,
                   ov.c.producer_org, ov.c.is_latest, ov.c.is_first)
        for chunk in id_chunks(conn, ids):
            query = sa.select(*columns).where(id_in(conn, chunk),
                                              in_collection_by_id(collection_id))
            for row in conn.execute(query):
                stored.add(row.id, ExistingVersion(
                    row.collection_id, row.version, row.date_added, row.producer_org,
                    bool(row.is_latest), bool(row.is_first),
                ))
        # Bodies only where bytes must be compared: same (id, version) already in this
        # collection, or a version-less object whose id is already in this collection.
        wanted = {
            v.id for v in versions
            if (v.version is None and stored.in_collection(v.id, collection_id))
            or (v.version is not None and stored.version_in(v.id, v.version, collection_id))
        }
        for chunk in id_chunks(conn, sorted(wanted)):
            query = sa.select(ov.c.id, ov.c.version, ov.c.body).where(
                id_in(conn, chunk), in_collection_by_id(collection_id)
            )
            for body_row in conn.execute(query):
                stored.bodies[(body_row.id, body_row.version)] = bytes(body_row.body)
        return stored

    def _insert_status(self, conn: Connection, status: Status) -> None:
        details = {
            "successes": [detail_json(d) for d in status.successes],
            "failures": [detail_json(d) for d in status.failures],
            "pendings": [detail_json(d) for d in status.pendings],
        }
        conn.execute(t.statuses.insert().values(
            id=status.id, api_root=status.api_root, collection_id=status.collection_id,
            account_id=status.account_id, org_id=status.org_id,
            request_timestamp=status.request_timestamp, status=status.status,
            total_count=status.total_count, success_count=status.success_count,
            failure_count=status.failure_count, pending_count=status.pending_count,
            details=json.dumps(details, separators=(",", ":")),
        ))

    def get_objects(self, query: ObjectQuery) -> Page:
        """Versions matching the query, ``date_added`` ascending, at most ``limit``.

        ``match[version]`` values are OR-ed (``first,last`` returns both); a
        :class:`VersionMatch` with nothing set means the TAXII default, ``last``.

        Raises:
            ValueError: ``query.limit`` is less than 1.
            StorageError: The database failed.
        """
        return self._page(query, query.versions)

    def get_versions(self, query: ObjectQuery) -> Page:
        """Every version of ``query.ids`` matching the other filters; ``versions`` ignored.

        Raises:
            ValueError: ``query.limit`` is less than 1.
            StorageError: The database failed.
        """
        return self._page(query, VersionMatch(all=True))

    def _page(self, query: ObjectQuery, versions: VersionMatch) -> Page:
        if query.limit < 1:
            raise ValueError("limit must be at least 1")
        if query.visible_tlps is not None and not query.visible_tlps and query.own_org is None:
            return Page(rows=[], more=False)
        with self._transaction(write=False) as conn:
            rows = conn.execute(page_statement(query, versions)).all()
        more = len(rows) > query.limit
        return Page(rows=[stored_record(row, query.include_body) for row in rows[: query.limit]],
                    more=more)

    def search_observables(self, search: ObservableSearch) -> Page:
        """Latest visible versions naming a searched value, ``date_added`` ascending.

        Raises:
            ValueError: ``search.limit`` is less than 1.
            StorageError: The database failed.
        """
        if search.limit < 1:
            raise ValueError("limit must be at least 1")
        statement = search_statement(search)
        if statement is None:
            return Page(rows=[], more=False)
        with self._transaction(write=False) as conn:
            rows = conn.execute(statement).all()
        more = len(rows) > search.limit
        return Page(rows=[stored_record(row, search.include_body)
                          for row in rows[: search.limit]], more=more)

    def feed_values(self, scope: ObjectQuery, kinds: tuple[str, ...], *,
                    with_labels: bool = False) -> list[FeedValue]:
        """The values of ``kinds`` latest unrevoked visible indicators name (one query).

        Raises:
            StorageError: The database failed.
        """
        if not kinds or (scope.visible_tlps is not None and not scope.visible_tlps
                         and scope.own_org is None):
            return []
        statement = feed_statement(scope, kinds, with_labels=with_labels)
        with self._transaction(write=False) as conn:
            rows = _driver_rows(conn, statement)
        if not with_labels:
            return list(map(_feed_value, rows))
        return [FeedValue._make((*row[:-2], _labels(row[-2]), _confidence(row[-1])))
                for row in rows]

    def list_objects(self, listing: ObjectListing) -> Page:
        """Versions matching an operator's filters, newest first, without bodies.

        Raises:
            ValueError: ``listing.limit`` is less than 1.
            StorageError: The database failed.
        """
        if listing.limit < 1:
            raise ValueError("limit must be at least 1")
        conditions: list[sa.ColumnElement[bool]] = []
        for column, values in ((ov.c.collection_id, listing.collection_ids),
                               (ov.c.type, listing.types),
                               (ov.c.producer_org, listing.producer_orgs),
                               (ov.c.effective_tlp, listing.tlps)):
            if values:
                conditions.append(column.in_(values))
        if listing.since is not None:
            conditions.append(ov.c.date_added >= listing.since)
        if listing.until is not None:
            conditions.append(ov.c.date_added < listing.until)
        if listing.latest_only:
            conditions.append(ov.c.is_latest == sa.true())
        statement = (sa.select(*META_COLUMNS).where(*conditions)
                     .order_by(ov.c.date_added.desc()).limit(listing.limit + 1))
        with self._transaction(write=False) as conn:
            rows = conn.execute(statement).all()
        return Page(rows=[stored_record(row, False) for row in rows[: listing.limit]],
                    more=len(rows) > listing.limit)

    def object_exists(self, collection_id: CollectionId, object_id: str) -> bool:
        """Whether any version of ``object_id`` is in the collection.

        Raises:
            StorageError: The database failed.
        """
        with self._transaction(write=False) as conn:
            return exists(conn, sa.and_(*one_object(collection_id, object_id)))

    def delete_object(
        self,
        collection_id: CollectionId,
        object_id: str,
        versions: VersionMatch,
        spec_versions: tuple[str, ...] = (),
        producer_org: OrgId | None = None,
    ) -> int:
        """Delete the matching versions of one object and fix the id's first/latest flags.

        ``versions`` is read as in :meth:`get_objects` (OR-ed, empty means ``last``);
        empty ``spec_versions`` matches every spec version; ``producer_org``, when
        given, limits the delete to that contributor's versions.

        Returns:
            The number of versions deleted.

        Raises:
            StorageError: The database failed; nothing was deleted.
        """
        conditions = one_object(collection_id, object_id)
        matching_versions = version_condition(versions)
        if matching_versions is not None:
            conditions.append(matching_versions)
        if spec_versions:
            conditions.append(ov.c.spec_version.in_(spec_versions))
        if producer_org is not None:
            conditions.append(ov.c.producer_org == producer_org)
        with self._transaction(write=True) as conn:
            gone = [row.date_added for row in
                    conn.execute(sa.select(ov.c.date_added).where(*conditions))]
            for chunk in id_chunks(conn, gone):
                conn.execute(t.observables.delete().where(
                    t.observables.c.date_added.in_(chunk)))
                conn.execute(t.indicator_facts.delete().where(
                    t.indicator_facts.c.date_added.in_(chunk)))
            deleted = conn.execute(ov.delete().where(*conditions)).rowcount
            if deleted:
                remaining = conn.execute(
                    sa.select(ov.c.date_added, ov.c.version, ov.c.producer_org,
                              ov.c.is_latest, ov.c.is_first)
                    .where(*one_object(collection_id, object_id))
                ).all()
                # Flags are per contribution line (producer): see IdOwnership.
                lines: dict[str | None, list[Any]] = {}
                for r in remaining:
                    lines.setdefault(r.producer_org, []).append(r)
                updates = []
                for rows in lines.values():
                    newest = max(r.version for r in rows)
                    oldest = min(r.version for r in rows)
                    updates += [
                        {"b_date_added": r.date_added, "b_latest": r.version == newest,
                         "b_first": r.version == oldest}
                        for r in rows
                        if bool(r.is_latest) != (r.version == newest)
                        or bool(r.is_first) != (r.version == oldest)
                    ]
                if updates:
                    conn.execute(UPDATE_FLAGS, updates)
        return int(deleted)

    def get_status(self, api_root: str, status_id: str) -> Status:
        """One status resource of an API root.

        Raises:
            NotFound: No such status in this API root.
            StorageError: The database failed.
        """
        s = t.statuses
        with self._transaction(write=False) as conn:
            row = conn.execute(
                sa.select(s).where(s.c.id == status_id, s.c.api_root == api_root)
            ).first()
        if row is None:
            raise NotFound(f"status {status_id!r} not found")
        details = json.loads(row.details)
        return Status(
            id=row.id, api_root=row.api_root, collection_id=CollectionId(row.collection_id),
            account_id=AccountId(row.account_id), org_id=OrgId(row.org_id),
            request_timestamp=row.request_timestamp, status=row.status,
            total_count=row.total_count, success_count=row.success_count,
            failure_count=row.failure_count, pending_count=row.pending_count,
            successes=tuple(StatusDetail(**d) for d in details["successes"]),
            failures=tuple(StatusDetail(**d) for d in details["failures"]),
            pendings=tuple(StatusDetail(**d) for d in details["pendings"]),
        )

    def count_objects(self, collection_id: CollectionId | None = None) -> int:
        """Stored versions, in one collection or in all.

        Raises:
            StorageError: The database failed.
        """
        query = sa.select(sa.func.count()).select_from(ov)
        if collection_id is not None:
            query = query.where(ov.c.collection_id == collection_id)
        with self._transaction(write=False) as conn:
            return int(conn.execute(query).scalar_one())

    def newest_date_added(self, collection_id: CollectionId) -> int:
        """The newest ``date_added`` of the collection's versions (0: none), from the end
        of one index (``ix_object_versions_collection``).

        Every add raises it (the clock only moves forward), so a reader that remembers it
        knows whether anything was added since (flat feeds key their caches by it).

        Raises:
            StorageError: The database failed.
        """
        query = sa.select(sa.func.max(ov.c.date_added)).where(
            ov.c.collection_id == collection_id)
        with self._transaction(write=False) as conn:
            newest = conn.execute(query).scalar_one()
        return int(newest or 0)

    # -- signing keys (revision 0002) ----------------------------------------------------
    def add_member_key(self, key: MemberKey) -> None:
        """Store a signing key's public record.

        Raises:
            ValueError: ``purpose`` is not ``object`` or ``node``, or ``org_id`` is set
                for a node key or missing for a member key.
            Conflict: The key id is already stored.
            NotFound: ``org_id`` names no organisation.
            StorageError: The database failed.
        """
        if key.purpose not in KEY_PURPOSES:
            raise ValueError(f"key purpose must be one of {', '.join(KEY_PURPOSES)}")
        if (key.purpose == "node") != (key.org_id is None):
            raise ValueError("node keys have no organisation; member keys have one")
        k = t.member_keys
        with self._transaction(write=True) as conn:
            if exists(conn, k.c.kid == key.kid):
                raise Conflict(f"key {key.kid} is already registered")
            if key.org_id is not None and not exists(conn, t.organisations.c.id == key.org_id):
                raise NotFound(f"organisation {key.org_id!r} not found")
            conn.execute(k.insert().values(
                kid=key.kid, org_id=key.org_id, purpose=key.purpose, alg=key.alg,
                public_pem=key.public_pem, valid_from=key.valid_from,
                valid_until=key.valid_until, status=key.status,
                compromised_since=key.compromised_since, created_at=key.created_at,
            ))

    def list_member_keys(
        self, org_id: OrgId | None = None, purpose: str | None = None
    ) -> list[MemberKey]:
        """Key records, oldest first (``created_at``, then key id), optionally filtered.

        Raises:
            StorageError: The database failed.
        """
        k = t.member_keys
        query = sa.select(k).order_by(k.c.created_at, k.c.kid)
        if org_id is not None:
            query = query.where(k.c.org_id == org_id)
        if purpose is not None:
            query = query.where(k.c.purpose == purpose)
        with self._transaction(write=False) as conn:
            return [_member_key(row) for row in conn.execute(query)]

    def get_member_key(self, kid: str) -> MemberKey:
        """One key record.

        Raises:
            NotFound: No key has this id.
            StorageError: The database failed.
        """
        k = t.member_keys
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(k).where(k.c.kid == kid)).first()
        if row is None:
            raise NotFound(f"key {kid[:80]} is not registered")
        return _member_key(row)

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
            StorageError: The database failed; nothing was changed.
        """
        k = t.member_keys
        changes = {name: value for name, value in (
            ("status", status), ("valid_until", valid_until),
            ("compromised_since", compromised_since),
        ) if value is not None}
        with self._transaction(write=True) as conn:
            if changes:
                updated = conn.execute(k.update().where(k.c.kid == kid).values(**changes))
                if not updated.rowcount:
                    raise NotFound(f"key {kid[:80]} is not registered")
            row = conn.execute(sa.select(k).where(k.c.kid == kid)).first()
            if row is None:
                raise NotFound(f"key {kid[:80]} is not registered")
        return _member_key(row)

    def versions_signed_by(self, kid: str) -> list[SignedVersion]:
        """The stored versions (all collections) signed by ``kid``, by ``date_added``.

        One range scan of ``ix_object_versions_signed_kid``.

        Raises:
            StorageError: The database failed.
        """
        query = (
            sa.select(ov.c.collection_id, ov.c.id, ov.c.version, ov.c.date_added)
            .where(ov.c.signed_kid == kid)
            .order_by(ov.c.date_added)
        )
        with self._transaction(write=False) as conn:
            return [
                SignedVersion(CollectionId(row.collection_id), StixId(row.id), row.version,
                              row.date_added)
                for row in conn.execute(query)
            ]

    def last_signed_by(self, kid: str) -> int | None:
        """The latest ``date_added`` of a stored version signed by ``kid`` (µs), or None.

        One index lookup (``ix_object_versions_signed_kid``).

        Raises:
            StorageError: The database failed.
        """
        query = sa.select(sa.func.max(ov.c.date_added)).where(ov.c.signed_kid == kid)
        with self._transaction(write=False) as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    # -- derived copies (revision 0007) ----------------------------------------------------
    def record_derived_ids(self, entries: Sequence[DerivedIdEntry]) -> None:
        """Remember which original and transforms each derived id stands for.

        Idempotent and safe under concurrent writers: ids already recorded are skipped
        (``ON CONFLICT DO NOTHING`` on both databases).

        Raises:
            StorageError: The database failed; nothing was recorded.
        """
        unique = {e.derived_id: e for e in entries}
        if not unique:
            return
        d = t.derived_ids
        with self._transaction(write=True) as conn:
            insert: Any
            insert = pg_insert(d) if conn.dialect.name == "postgresql" else sqlite_insert(d)
            ids = sorted(unique)
            for start in range(0, len(ids), _DERIVED_BATCH):
                chunk = ids[start:start + _DERIVED_BATCH]
                conn.execute(insert.on_conflict_do_nothing(index_elements=["derived_id"]),
                             [{"derived_id": i, "original_id": unique[i].original_id,
                               "transforms": unique[i].transforms} for i in chunk])

    def original_of(self, derived_id: str) -> DerivedIdEntry | None:
        """The original and transforms a derived id stands for, or None.

        Raises:
            StorageError: The database failed.
        """
        d = t.derived_ids
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(d).where(d.c.derived_id == derived_id)).first()
        if row is None:
            return None
        return DerivedIdEntry(row.derived_id, row.original_id, row.transforms)


    # -- MISP sync state (revision 0009) ----------------------------------------------------
    def _upsert(self, conn: Connection, table: sa.Table, keys: list[str],
                rows: list[dict[str, Any]]) -> None:
        insert: Any = (pg_insert(table) if conn.dialect.name == "postgresql"
                       else sqlite_insert(table))
        # One statement per set of columns, run for all its rows at once (executemany):
        # compiling one per row cost a 1,000-indicator MISP push a tenth of its time.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shapes.setdefault(tuple(row), []).append(row)
        for columns, group in shapes.items():
            conn.execute(insert.on_conflict_do_update(
                index_elements=keys,
                set_={k: insert.excluded[k] for k in columns if k not in keys}), group)

    def record_feed_download(self, feed: str, fmt: str, account: str, org: str, *,
                             at: int, etag: str, values: int) -> None:
        """Count one full download of a feed by an account (revision 0012).

        Raises:
            StorageError: The database failed; nothing was changed.
        """
        d = t.feed_downloads
        with self._transaction(write=True) as conn:
            insert: Any = (pg_insert(d) if conn.dialect.name == "postgresql"
                           else sqlite_insert(d))
            conn.execute(insert.values(
                feed=feed, format=fmt, account=account, org=org, downloads=1,
                first_download=at, last_download=at, last_etag=etag, last_values=values,
            ).on_conflict_do_update(
                index_elements=["feed", "format", "account"],
                set_={"org": insert.excluded.org, "downloads": d.c.downloads + 1,
                      "last_download": sa.func.max(d.c.last_download,
                                                   insert.excluded.last_download)
                      if conn.dialect.name == "sqlite" else sa.func.greatest(
                          d.c.last_download, insert.excluded.last_download),
                      "last_etag": insert.excluded.last_etag,
                      "last_values": insert.excluded.last_values}))

    def feed_downloads(self) -> list[FeedDownloads]:
        """Every feed's downloads, by feed, format and account (revision 0012).

        Raises:
            StorageError: The database failed.
        """
        d = t.feed_downloads
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(d).order_by(d.c.feed, d.c.format,
                                                      d.c.account)).all()
        return [FeedDownloads(r.feed, r.format, r.account, r.org, int(r.downloads),
                              int(r.first_download), int(r.last_download), r.last_etag,
                              int(r.last_values)) for r in rows]

    def misp_state(self, target: str, direction: str) -> MispSyncState | None:
        """The sync state of one target and direction, or None before its first run.

        Raises:
            StorageError: The database failed.
        """
        s = t.misp_sync_state
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(s).where(
                s.c.target == target, s.c.direction == direction)).first()
        return None if row is None else _sync_state(row)

    def peer_trust(self, name: str) -> PeerTrust | None:
        """A trusted peer by name, or None.

        Raises:
            StorageError: The database failed.
        """
        p = t.peer_trust
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(p).where(p.c.name == name)).first()
        return None if row is None else _peer_trust(row)

    def peer_trusts(self) -> list[PeerTrust]:
        """Every trusted peer, by name.

        Raises:
            StorageError: The database failed.
        """
        p = t.peer_trust
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(p).order_by(p.c.name)).all()
        return [_peer_trust(r) for r in rows]

    def save_peer_trust(self, trust: PeerTrust) -> None:
        """Insert or replace a peer's trust record.

        Raises:
            StorageError: The database failed; nothing was changed.
        """
        row = {"name": trust.name,
               "pins": json.dumps([list(pin) for pin in trust.pins]),
               "registry_url": trust.registry_url, "api_key_file": trust.api_key_file,
               "registry": trust.registry, "fetched_at": trust.fetched_at,
               "created_at": trust.created_at, "ca_file": trust.ca_file}
        with self._transaction(write=True) as conn:
            self._upsert(conn, t.peer_trust, ["name"], [row])

    def delete_peer_trust(self, name: str) -> bool:
        """Forget a trusted peer; False when there was none by that name.

        Raises:
            StorageError: The database failed.
        """
        p = t.peer_trust
        with self._transaction(write=True) as conn:
            return bool(conn.execute(sa.delete(p).where(p.c.name == name)).rowcount)

    def misp_states(self) -> list[MispSyncState]:
        """Every recorded sync state, by target and direction.

        Raises:
            StorageError: The database failed.
        """
        s = t.misp_sync_state
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(s).order_by(s.c.target, s.c.direction)).all()
        return [_sync_state(r) for r in rows]

    def save_misp_state(self, state: MispSyncState) -> None:
        """Insert or replace a sync state.

        Raises:
            StorageError: The database failed; nothing was changed.
        """
        row = {"target": state.target, "direction": state.direction,
               "cursor": state.cursor, "last_started": state.last_started,
               "last_finished": state.last_finished, "outcome": state.outcome,
               "message": state.message,
               "counts": json.dumps(state.counts, sort_keys=True),
               "reasons": json.dumps(state.reasons, sort_keys=True),
               "failures": state.failures, "next_run": state.next_run}
        with self._transaction(write=True) as conn:
            self._upsert(conn, t.misp_sync_state, ["target", "direction"], [row])

    # -- TAXII sources (revision 0010) -----------------------------------------------------
    def source_state(self, source: str) -> SourceState | None:
        """The ingestion state of one TAXII source, or None before its first run.

        Raises:
            StorageError: The database failed.
        """
        s = t.taxii_source_state
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(s).where(s.c.source == source)).first()
        return None if row is None else _source_state(row)

    def source_states(self) -> list[SourceState]:
        """Every recorded TAXII source state, by source name.

        Raises:
            StorageError: The database failed.
        """
        s = t.taxii_source_state
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(s).order_by(s.c.source)).all()
        return [_source_state(r) for r in rows]

    def save_source_state(self, state: SourceState) -> None:
        """Insert or replace a TAXII source's state.

        Raises:
            StorageError: The database failed; nothing was changed.
        """
        row = {"source": state.source, "cursor": state.cursor, "paging": state.paging,
               "last_started": state.last_started, "last_finished": state.last_finished,
               "outcome": state.outcome, "message": state.message,
               "counts": json.dumps(state.counts, sort_keys=True),
               "reasons": json.dumps(state.reasons, sort_keys=True),
               "failures": state.failures, "next_run": state.next_run,
               "endpoint": state.endpoint}
        with self._transaction(write=True) as conn:
            self._upsert(conn, t.taxii_source_state, ["source"], [row])

    def misp_pushed(self, target: str, object_ids: Sequence[str] | None = None
                    ) -> dict[str, MispPushed]:
        """What was pushed to a target, by STIX id.

        Raises:
            StorageError: The database failed.
        """
        p = t.misp_pushed
        out: dict[str, MispPushed] = {}
        with self._transaction(write=False) as conn:
            if object_ids is None:
                chunks: list[Sequence[str] | None] = [None]
            else:
                ids = sorted(set(object_ids))
                chunks = [ids[i:i + _DERIVED_BATCH] for i in range(0, len(ids),
                                                                   _DERIVED_BATCH)]
            for chunk in chunks:
                query = sa.select(p).where(p.c.target == target)
                if chunk is not None:
                    query = query.where(p.c.object_id.in_(chunk))
                for row in conn.execute(query):
                    out[row.object_id] = MispPushed(
                        row.target, row.object_id, row.version, row.event_uuid,
                        tuple(json.loads(row.attribute_uuids)), bool(row.deleted),
                        row.pushed_at)
        return out

    def misp_pushed_events(self, target: str, event_uuids: Sequence[str]) -> set[str]:
        """Which of ``event_uuids`` hold something the exchange pushed to ``target``.

        Raises:
            StorageError: The database failed.
        """
        p = t.misp_pushed
        found: set[str] = set()
        wanted = sorted(set(event_uuids))
        with self._transaction(write=False) as conn:
            for i in range(0, len(wanted), _DERIVED_BATCH):
                found.update(conn.execute(sa.select(p.c.event_uuid).distinct().where(
                    p.c.target == target,
                    p.c.event_uuid.in_(wanted[i:i + _DERIVED_BATCH]))).scalars())
        return found

    def record_misp_pushed(self, entries: Sequence[MispPushed]) -> None:
        """Insert or replace pushed entries, in one transaction.

        Raises:
            StorageError: The database failed; nothing was recorded.
        """
        if not entries:
            return
        rows = [{"target": e.target, "object_id": e.object_id, "version": e.version,
                 "event_uuid": e.event_uuid, "attribute_uuids": json.dumps(
                     list(e.attribute_uuids)), "deleted": e.deleted,
                 "pushed_at": e.pushed_at} for e in entries]
        with self._transaction(write=True) as conn:
            self._upsert(conn, t.misp_pushed, ["target", "object_id"], rows)

    def misp_sharing_groups(self, target: str) -> dict[str, tuple[int, str]]:
        """Agreement id -> (sharing group id, UUID) created on a target.

        Raises:
            StorageError: The database failed.
        """
        g = t.misp_sharing_groups
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(g).where(g.c.target == target)).all()
        return {r.agreement: (r.sharing_group_id, r.sharing_group_uuid) for r in rows}

    def save_misp_sharing_group(self, target: str, agreement: str, group_id: int,
                                group_uuid: str) -> None:
        """Remember the sharing group created on a target for an agreement.

        Raises:
            StorageError: The database failed; nothing was changed.
        """
        with self._transaction(write=True) as conn:
            self._upsert(conn, t.misp_sharing_groups, ["target", "agreement"], [
                {"target": target, "agreement": agreement, "sharing_group_id": group_id,
                 "sharing_group_uuid": group_uuid}])

    def misp_pulled(self, target: str, event_uuids: Sequence[str]) -> dict[str, int]:
        """Event UUID -> the event timestamp last imported from ``target``.

        Raises:
            StorageError: The database failed.
        """
        p = t.misp_pulled
        out: dict[str, int] = {}
        wanted = sorted(set(event_uuids))
        with self._transaction(write=False) as conn:
            for i in range(0, len(wanted), _DERIVED_BATCH):
                for row in conn.execute(sa.select(p.c.event_uuid, p.c.event_timestamp).where(
                        p.c.target == target,
                        p.c.event_uuid.in_(wanted[i:i + _DERIVED_BATCH]))):
                    out[row.event_uuid] = row.event_timestamp
        return out

    def record_misp_pulled(self, target: str, events: dict[str, int], at: int) -> None:
        """Insert or replace the imported timestamp of each event UUID.

        Raises:
            StorageError: The database failed; nothing was recorded.
        """
        if not events:
            return
        with self._transaction(write=True) as conn:
            self._upsert(conn, t.misp_pulled, ["target", "event_uuid"], [
                {"target": target, "event_uuid": u, "event_timestamp": ts,
                 "imported_at": at} for u, ts in sorted(events.items())])

#: Derived ids recorded per INSERT statement.
_DERIVED_BATCH = 500


def _member_key(row: Any) -> MemberKey:
    return MemberKey(
        kid=row.kid, org_id=OrgId(row.org_id) if row.org_id is not None else None,
        purpose=row.purpose, alg=row.alg, public_pem=row.public_pem,
        valid_from=row.valid_from, valid_until=row.valid_until, status=row.status,
        compromised_since=row.compromised_since, created_at=row.created_at,
    )


def _peer_trust(row: Any) -> PeerTrust:
    pins = tuple(sorted((str(kid), str(pem)) for kid, pem in json.loads(row.pins)))
    return PeerTrust(name=row.name, pins=pins, registry_url=row.registry_url,
                     api_key_file=row.api_key_file,
                     registry=bytes(row.registry) if row.registry is not None else None,
                     fetched_at=row.fetched_at, created_at=row.created_at,
                     ca_file=row.ca_file)


def _source_state(row: Any) -> SourceState:
    return SourceState(
        source=row.source, cursor=row.cursor, paging=row.paging,
        last_started=row.last_started, last_finished=row.last_finished,
        outcome=row.outcome, message=row.message, counts=json.loads(row.counts),
        reasons=json.loads(row.reasons), failures=row.failures, next_run=row.next_run,
        endpoint=row.endpoint)


def _sync_state(row: Any) -> MispSyncState:
    return MispSyncState(
        target=row.target, direction=row.direction, cursor=row.cursor,
        last_started=row.last_started, last_finished=row.last_finished,
        outcome=row.outcome, message=row.message, counts=json.loads(row.counts),
        reasons=json.loads(row.reasons), failures=row.failures, next_run=row.next_run)


#: A driver's row (a tuple in FeedValue's order) as a FeedValue, without _make's checks.
_feed_value = functools.partial(tuple.__new__, FeedValue)


def _driver_rows(conn: Connection, statement: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of ``statement`` as the driver returns them (tuples): for a read of
    100,000 rows whose columns need no conversion, SQLAlchemy's Row per row is a third of
    the time. Executed through SQLAlchemy (compiled and cached, parameters bound); only
    the fetch is the driver's, and its errors are wrapped as SQLAlchemy wraps them."""
    result = conn.execute(statement)
    try:
        try:
            return list(result.cursor.fetchall())
        except conn.dialect.loaded_dbapi.Error as e:
            raise exc.DBAPIError.instance(None, None, e, conn.dialect.loaded_dbapi.Error
                                          ) from e
    finally:
        result.close()


def _labels(text: str | None) -> tuple[str, ...] | None:
    """An indicator's ``labels`` as ``indicator_facts`` keeps them (JSON text)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else None


def _confidence(value: object) -> int | None:
    """An indicator's ``confidence`` as stored (an integer, or NULL)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
