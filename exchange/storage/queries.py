"""The SQL the store runs, as SQLAlchemy Core statements, and row -> record mapping.

Every read is one statement shape, built by :func:`page_statement`; its query plans are
checked by ``tests/unit/storage/test_query_plans.py`` (SQLite) and were checked by hand on
a 1M-row PostgreSQL table. Statements that find one object by id go through
:func:`in_collection_by_id` so that both databases use the index that leads with ``id``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Row

from exchange.model.objects import AccountId, CollectionId, OrgId, Role, StixId
from exchange.storage import schema as t
from exchange.storage.base import (
    Account,
    ApiKey,
    Collection,
    Grant,
    ObjectQuery,
    ObservableSearch,
    Organisation,
    StatusDetail,
    StoredVersion,
    VersionMatch,
)

AnyRow = Row[*tuple[Any, ...]]

#: Largest number of values bound into one SQLite ``IN (...)`` list.
IN_CHUNK = 500

ov = t.object_versions


def id_chunks(conn: Connection, ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """Split ids for :func:`id_in`: one array on PostgreSQL, bounded lists on SQLite."""
    size = len(ids) if conn.dialect.name == "postgresql" else IN_CHUNK
    for start in range(0, len(ids), max(size, 1)):
        yield ids[start : start + size]


def id_in(conn: Connection, ids: Sequence[str]) -> sa.ColumnElement[bool]:
    """``object_versions.id`` is one of ``ids``.

    PostgreSQL gets ``id = ANY(%s)`` with one array parameter, which plans in
    microseconds where a 1000-item ``IN`` list takes milliseconds.
    """
    if conn.dialect.name == "postgresql":
        return ov.c.id == sa.any_(sa.bindparam("ids", list(ids), type_=ARRAY(sa.String)))
    return ov.c.id.in_(ids)


#: The first statement of every write transaction: on PostgreSQL it takes the node-wide
#: write lock (the clock row) until commit; SQLite ignores FOR UPDATE (BEGIN IMMEDIATE
#: already holds the lock).
LOCK_CLOCK = (
    sa.select(t.clock.c.last_date_added).where(t.clock.c.id == 1).with_for_update()
)
#: Set ``is_latest``/``is_first`` of one row (executemany over ``b_*`` parameters).
UPDATE_FLAGS = (
    ov.update()
    .where(ov.c.date_added == sa.bindparam("b_date_added"))
    .values(is_latest=sa.bindparam("b_latest"), is_first=sa.bindparam("b_first"))
)
#: Every column but the body (manifests and version lists never read the body).
META_COLUMNS = [
    ov.c.collection_id, ov.c.id, ov.c.type, ov.c.spec_version, ov.c.version,
    ov.c.date_added, ov.c.producer_org, ov.c.tlp, ov.c.effective_tlp, ov.c.revoked,
    ov.c.is_latest, ov.c.signed_kid,
]
#: Where a page row with bodies holds body_sha256 (after the body; both drivers give bytes).
_BODY_SHA256_AT = len(META_COLUMNS) + 1


#: The same table seen as "an earlier version" in the revocation test; built once, since
#: building an alias copies every column (a measurable cost per request).
_EARLIER = ov.alias("earlier")


def _level_condition(table: Any, query: ObjectQuery
                     ) -> sa.ColumnElement[bool]:
    levels = sorted(query.visible_tlps or ())
    visible: sa.ColumnElement[bool] = table.c.effective_tlp.in_(levels)
    if query.red_identity is not None:
        red = t.object_red_recipients
        visible = sa.or_(visible, sa.and_(
            table.c.effective_tlp == "red",
            sa.exists().where(red.c.date_added == table.c.date_added,
                              red.c.identity_id == query.red_identity),
        ))
    return visible


def visibility_condition(query: ObjectQuery) -> sa.ColumnElement[bool]:
    """The sharing-policy filter of a read (see :class:`ObjectQuery`), as SQL.

    Built once per distinct filter and reused: constructing the expression costs more
    Python time than running the query it guards.
    """
    return _visibility(tuple(sorted(query.visible_tlps or ())), query.own_org,
                       query.red_identity, query.revoked_needs_prior, query.exclude_producer)


@functools.lru_cache(maxsize=4096)
def _visibility(levels: tuple[str, ...], own_org: str | None, red_identity: str | None,
                revoked_needs_prior: bool, exclude_producer: str | None = None
                ) -> sa.ColumnElement[bool]:
    query = ObjectQuery(collection_id=CollectionId(""), visible_tlps=frozenset(levels),
                        own_org=OrgId(own_org) if own_org is not None else None,
                        red_identity=red_identity, revoked_needs_prior=revoked_needs_prior)
    visible = _build_visibility(query)
    if exclude_producer is not None:
        # No loop-back: a peer node never receives what its own organisation contributed.
        visible = sa.and_(visible, sa.or_(ov.c.producer_org.is_(None),
                                          ov.c.producer_org != exclude_producer))
    return visible


def _build_visibility(query: ObjectQuery) -> sa.ColumnElement[bool]:
    """The filter itself, written out.

    ``(producer_org = own) OR ((NOT revoked OR <an earlier unrevoked version passes the
    level test>) AND <level test>)``, where the level test is ``effective_tlp IN levels``
    or a RED row naming ``red_identity``.
    """
    visible = _level_condition(ov, query)
    if query.revoked_needs_prior:
        earlier = _EARLIER
        prior = sa.exists().where(
            earlier.c.collection_id == ov.c.collection_id, earlier.c.id == ov.c.id,
            earlier.c.date_added < ov.c.date_added, sa.not_(earlier.c.revoked),
            _level_condition(earlier, query),
        )
        visible = sa.and_(visible, sa.or_(sa.not_(ov.c.revoked), prior))
    if query.own_org is not None:
        visible = sa.or_(ov.c.producer_org == query.own_org, visible)
    return visible


def page_statement(query: ObjectQuery, versions: VersionMatch) -> sa.Select[Any]:
    """The SELECT of one page of a read: filters, ``date_added`` order, ``limit + 1`` rows.

    Public so that the query plans of every read shape can be checked (``EXPLAIN``).
    """
    columns = [*META_COLUMNS, ov.c.body, ov.c.body_sha256] if query.include_body \
        else META_COLUMNS  # stored_record reads body_sha256 at _BODY_SHA256_AT
    conditions = [
        in_collection_by_id(query.collection_id) if query.ids
        else ov.c.collection_id == query.collection_id
    ]
    after = max((v for v in (query.added_after, query.cursor) if v is not None), default=None)
    if after is not None:
        conditions.append(ov.c.date_added > after)
    if query.ids:
        conditions.append(ov.c.id.in_(query.ids))
    if query.types:
        conditions.append(ov.c.type.in_(query.types))
    if query.spec_versions:
        conditions.append(ov.c.spec_version.in_(query.spec_versions))
    matching_versions = version_condition(versions)
    if matching_versions is not None:
        conditions.append(matching_versions)
    if query.visible_tlps is not None:
        conditions.append(visibility_condition(query))
    return (
        sa.select(*columns).where(*conditions).order_by(ov.c.date_added)
        .limit(query.limit + 1)
    )


def search_statement(search: ObservableSearch) -> sa.Select[Any] | None:
    """The SELECT of one page of an observable search (None: no scope can see anything).

    The versions naming a searched key come from the ``observables`` primary key (exact
    keys, and a prefix as one key range); each is kept when it is its object's latest
    version and passes the visibility filter of its collection's scope.
    """
    obs = t.observables
    # The collection tests are written as expressions (in_collection_by_id) so that no
    # index leading with collection_id can drive the query: the versions must come from
    # the observables found, one rowid (primary key) lookup each, never from a walk of a
    # collection probing the found set.
    scopes = [
        sa.and_(in_collection_by_id(scope.collection_id), visibility_condition(scope))
        if scope.visible_tlps is not None else in_collection_by_id(scope.collection_id)
        for scope in search.scopes
        if scope.visible_tlps is None or scope.visible_tlps or scope.own_org is not None
    ]
    if not scopes or not search.kinds or not (search.keys or search.prefix):
        return None
    wanted: list[sa.ColumnElement[bool]] = []
    if search.keys:
        wanted.append(obs.c.key.in_(search.keys))
    if search.prefix:
        # Keys starting with the prefix (which ends in "."): from it up to, not
        # including, the same text ending in "/", the next character.
        wanted.append(sa.and_(obs.c.key >= search.prefix,
                              obs.c.key < search.prefix[:-1] + "/"))
    matching = sa.select(obs.c.date_added).where(
        obs.c.kind.in_(search.kinds), sa.or_(*wanted))
    columns = [*META_COLUMNS, ov.c.body, ov.c.body_sha256] if search.include_body \
        else META_COLUMNS
    conditions = [ov.c.date_added.in_(matching), ov.c.is_latest == sa.true(),
                  sa.or_(*scopes)]
    if search.after is not None:
        conditions.append(ov.c.date_added > search.after)
    return (sa.select(*columns).where(*conditions).order_by(ov.c.date_added)
            .limit(search.limit + 1))


def feed_statement(query: ObjectQuery, kinds: Sequence[str], *,
                   with_labels: bool = False) -> sa.Select[Any]:
    """The SELECT of :meth:`~exchange.storage.base.Store.feed_values`.

    The versions come from the collection's ``type`` index (latest indicators, in
    ``date_added`` order); each is joined by ``date_added`` to its rows of the
    observable index of ``kinds`` (``ix_observables_date_added``, covering on SQLite)
    and to its ``indicator_facts`` row (primary key). No body is read. An indicator
    without a facts row (none: ingest and revision 0013 write one for each) is left out.
    """
    obs = t.observables
    facts = t.indicator_facts
    conditions = [
        in_collection_by_id(query.collection_id) if query.ids
        else ov.c.collection_id == query.collection_id,
        ov.c.type == "indicator", ov.c.is_latest == sa.true(), ov.c.revoked == sa.false(),
    ]
    after = max((v for v in (query.added_after, query.cursor) if v is not None), default=None)
    if after is not None:
        conditions.append(ov.c.date_added > after)
    if query.ids:
        conditions.append(ov.c.id.in_(query.ids))
    if query.visible_tlps is not None:
        conditions.append(visibility_condition(query))
    joined = ov.join(obs, sa.and_(obs.c.date_added == ov.c.date_added,
                                  obs.c.kind.in_(tuple(kinds)))).join(
        facts, facts.c.date_added == ov.c.date_added)
    # Without labels, two NULL columns keep the row's shape (FeedValue's last fields).
    labels = (facts.c.labels, facts.c.confidence) if with_labels else (sa.null(), sa.null())
    return sa.select(
        ov.c.date_added, ov.c.id, ov.c.version, ov.c.producer_org, ov.c.tlp,
        ov.c.effective_tlp, obs.c.kind, obs.c.key, facts.c.valid_from, facts.c.valid_until,
        facts.c.author, *labels,
    ).select_from(joined).where(*conditions).order_by(ov.c.date_added)


def in_collection_by_id(collection_id: str) -> sa.ColumnElement[bool]:
    """``collection_id = ?`` for statements that also select by id: keeps the id index.

    Given ``id`` and ``collection_id`` equalities, SQLite (planning without statistics)
    may pick an index that leads with ``collection_id`` instead of the one that leads
    with ``id`` - because it also matches ``is_latest``, or yields ``date_added`` order -
    and then walk the whole collection. Written as an expression, the collection test
    cannot use those indexes; PostgreSQL, planning from statistics, loses nothing.
    """
    return ov.c.collection_id.concat(sa.literal_column("''")) == collection_id


def one_object(collection_id: str, object_id: str) -> list[sa.ColumnElement[bool]]:
    """The versions of one object in one collection, found through the id index."""
    return [ov.c.id == object_id, in_collection_by_id(collection_id)]


def exists(conn: Connection, condition: sa.ColumnElement[bool]) -> bool:
    """Whether any row of the condition's table matches it."""
    return conn.execute(sa.select(sa.literal(1)).where(condition).limit(1)).first() is not None


def version_condition(versions: VersionMatch) -> sa.ColumnElement[bool] | None:
    """``match[version]`` as SQL: the OR of the requested kinds; None for ``all``."""
    if versions.all:
        return None
    parts: list[sa.ColumnElement[bool]] = []
    if versions.last:
        parts.append(ov.c.is_latest == sa.true())
    if versions.first:
        parts.append(ov.c.is_first == sa.true())
    if versions.exact:
        parts.append(ov.c.version.in_(versions.exact))
    if not parts:
        parts.append(ov.c.is_latest == sa.true())
    return parts[0] if len(parts) == 1 else sa.or_(*parts)


def org_record(row: AnyRow) -> Organisation:
    """An ``organisations`` row as a record."""
    return Organisation(
        id=OrgId(row.id), name=row.name, identity_id=StixId(row.identity_id),
        identity_json=bytes(row.identity_json), created_at=row.created_at,
        parent_id=OrgId(row.parent_id) if row.parent_id else None,
    )


def account_record(row: AnyRow) -> Account:
    """An ``accounts`` row as a record."""
    return Account(
        id=AccountId(row.id), name=row.name, org_id=OrgId(row.org_id), role=Role(row.role),
        created_at=row.created_at, disabled=bool(row.disabled),
    )


def api_key_record(row: AnyRow) -> ApiKey:
    """An ``api_keys`` row as a record (without the digest)."""
    return ApiKey(
        key_id=row.key_id, account_id=AccountId(row.account_id), created_at=row.created_at,
        revoked_at=row.revoked_at, label=row.label,
    )


def collection_record(row: AnyRow) -> Collection:
    """A ``collections`` row as a record."""
    return Collection(
        id=CollectionId(row.id), api_root=row.api_root, title=row.title,
        description=row.description, alias=row.alias, default_tlp=row.default_tlp,
        require_signatures=bool(row.require_signatures),
    )


def grant_record(row: AnyRow) -> Grant:
    """A ``grants`` row as a record."""
    return Grant(
        collection_id=CollectionId(row.collection_id), org_id=OrgId(row.org_id),
        can_read=bool(row.can_read), can_write=bool(row.can_write),
    )


def grant_row(grant: Grant) -> dict[str, Any]:
    """A grant as insert parameters."""
    return {"collection_id": grant.collection_id, "org_id": grant.org_id,
            "can_read": grant.can_read, "can_write": grant.can_write}


def stored_record(row: AnyRow, with_body: bool) -> StoredVersion:
    """An ``object_versions`` row (of :func:`page_statement`) as a record."""
    return StoredVersion(
        collection_id=CollectionId(row.collection_id), id=StixId(row.id), type=row.type,
        spec_version=row.spec_version, version=row.version, date_added=row.date_added,
        producer_org=OrgId(row.producer_org) if row.producer_org is not None else None,
        tlp=row.tlp, effective_tlp=row.effective_tlp, revoked=bool(row.revoked),
        is_latest=bool(row.is_latest), body=bytes(row.body) if with_body else b"",
        signed_kid=row.signed_kid,
        # By position (page_statement puts it last): a Row's attribute lookup costs a
        # full read about 2 % more, for the one column the audit ledger adds.
        body_sha256=row[_BODY_SHA256_AT] if with_body else None,
    )


def detail_json(detail: StatusDetail) -> dict[str, str]:
    """One status detail as stored in ``statuses.details``."""
    return {"id": detail.id, "version": detail.version, "message": detail.message}
