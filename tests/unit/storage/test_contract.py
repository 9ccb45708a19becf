"""The Store contract, run on SQLite and PostgreSQL (see conftest.py).

What a user of the exchange would notice if it broke: objects stored and served byte for
byte, the outcome of every object of an envelope, ``added_after`` paging that never
skips or repeats, TAXII filters, deletes that keep "latest" right, and envelopes that are
stored whole or not at all, also under concurrent writers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.errors import ConfigError, Conflict, NotFound, StorageError
from exchange.model.objects import AccountId, CollectionId, OrgId, Role, StixId
from exchange.signing.canonical import EXTENSION_ID
from exchange.storage import schema
from exchange.storage.base import (
    Account,
    AddOutcome,
    AddResult,
    ApiKey,
    Collection,
    Grant,
    IdOwnership,
    NewVersion,
    ObjectQuery,
    Page,
    Status,
    StatusDetail,
    StoredVersion,
    VersionMatch,
)
from exchange.storage.envelopes import MSG_CONFLICT, MSG_NOT_CREATOR
from exchange.storage.sql import MIGRATIONS_DIR, SqlStore
from exchange.storage.timestamps import from_micros, to_micros

from .conftest import ACCOUNT_A, ACCOUNT_B, COLL, ORG_A, ORG_B, OTHER_COLL, org

T0 = to_micros("2024-03-01T12:00:00.000Z")
SECOND = 1_000_000


def oid(n: int, kind: str = "indicator") -> StixId:
    return StixId(f"{kind}--00000000-0000-4000-8000-{n:012d}")


def nv(
    object_id: str,
    version: int | None = T0,
    *,
    body: bytes | None = None,
    producer: OrgId | None = ORG_A,
    tlp: str | None = "green",
    spec: str = "2.1",
    ownership: IdOwnership = IdOwnership.CREATOR,
) -> NewVersion:
    if body is None:
        body = json.dumps({"id": object_id, "v": version}, separators=(",", ":")).encode()
    return NewVersion(
        id=StixId(object_id), type=object_id.split("--", maxsplit=1)[0], spec_version=spec,
        version=version, created=version, modified=version, producer_org=producer, tlp=tlp,
        effective_tlp=tlp or "amber", revoked=False, body=body, ownership=ownership,
    )


def new_status(
    collection: CollectionId = COLL,
    *,
    failures: Sequence[StatusDetail] = (),
    total: int = 0,
    account: AccountId = ACCOUNT_A,
    org_id: OrgId = ORG_A,
) -> Status:
    return Status(
        id=str(uuid.uuid4()), api_root="cx", collection_id=collection, account_id=account,
        org_id=org_id, request_timestamp=T0, status="complete", total_count=total,
        success_count=0, failure_count=len(failures), pending_count=0,
        failures=tuple(failures),
    )


def add(
    store: SqlStore, versions: Sequence[NewVersion], collection: CollectionId = COLL,
    org_id: OrgId = ORG_A,
) -> tuple[list[AddResult], Status]:
    account = ACCOUNT_A if org_id == ORG_A else ACCOUNT_B
    return store.add_objects(
        collection, versions, new_status(collection, account=account, org_id=org_id)
    )


def outcomes(results: Sequence[AddResult]) -> list[AddOutcome]:
    return [r.outcome for r in results]


def read_all(store: SqlStore, query: ObjectQuery) -> list[StoredVersion]:
    """Walk every page of a query, following the cursor as a TAXII client would."""
    rows: list[StoredVersion] = []
    page = Page(rows=[], more=True)
    cursor = query.cursor
    while page.more:
        page = store.get_objects(replace(query, cursor=cursor))
        rows += page.rows
        if page.rows:
            cursor = page.rows[-1].date_added
        assert page.more or len(page.rows) <= query.limit
    return rows


def ids_of(rows: Sequence[StoredVersion]) -> list[str]:
    return [r.id for r in rows]


def versions_of(store: SqlStore, object_id: str, coll: CollectionId = COLL
                ) -> dict[int, tuple[bool, bool]]:
    """version -> (is_latest, is_first) of one object, read back through the store."""
    page = store.get_versions(ObjectQuery(coll, ids=(object_id,), limit=1000))
    latest = {r.version: r.is_latest for r in page.rows}
    first = store.get_objects(ObjectQuery(coll, ids=(object_id,), limit=1000,
                                          versions=VersionMatch(first=True))).rows
    first_versions = {r.version for r in first}
    return {v: (is_latest, v in first_versions) for v, is_latest in latest.items()}


# -- lifecycle and schema -------------------------------------------------------------


def test_check_schema_refuses_an_empty_database(empty_store: SqlStore) -> None:
    with pytest.raises(ConfigError, match="no cert-exchange schema"):
        empty_store.check_schema()


def test_using_a_database_without_schema_says_so(empty_store: SqlStore) -> None:
    with pytest.raises(StorageError, match="no cert-exchange schema"):
        empty_store.count_objects()


def test_upgrade_is_idempotent(empty_store: SqlStore) -> None:
    empty_store.upgrade()
    empty_store.check_schema()
    empty_store.upgrade()
    empty_store.check_schema()
    assert empty_store.count_objects() == 0


def test_migration_builds_exactly_the_schema_module(store: SqlStore) -> None:
    engine = store._require_engine()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, schema.metadata)
    assert diff == []


def test_check_schema_refuses_an_unknown_revision(store: SqlStore) -> None:
    with store._require_engine().begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ConfigError, match="9999"):
        store.check_schema()


def test_constructor_and_open_do_no_io(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    store.open()
    store.close()
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"], ids=str
)
def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        SqlStore(url).open()


def test_database_password_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    store = SqlStore("postgresql://cx:hunter2-secret@127.0.0.1:1/cx")
    assert "hunter2" not in repr(store)
    store.open()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError) as info:
        store.count_objects()
    store.close()
    assert "hunter2" not in info.value.reason
    assert "hunter2" not in caplog.text
    assert info.value.reason == "the database is unavailable or busy; try again"


@pytest.mark.parametrize(("sync", "level"), [("full", 2), ("NORMAL", 1)])
def test_sqlite_connections_are_durable_and_concurrent(tmp_path: Path, sync: str,
                                                       level: int) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous=sync, busy_timeout=7)
    store.open()
    with store._require_engine().connect() as conn:
        pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                  for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    store.close()
    assert pragma == {"journal_mode": "wal", "synchronous": level, "foreign_keys": 1,
                      "busy_timeout": 7000}


def test_unknown_sqlite_synchronous_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        SqlStore("sqlite://", sqlite_synchronous="OFF")


def test_concurrent_upgrades_all_succeed(store_url: str) -> None:
    if "options=" in store_url:  # fail, rather than hang, if upgrades were not serialised
        store_url = store_url.replace("options=", "options=-clock_timeout%3D10s%20", 1)
    stores = [SqlStore(store_url) for _ in range(3)]
    errors: list[Exception] = []

    def upgrade(store: SqlStore) -> None:
        try:
            store.open()
            store.upgrade()
        except Exception as e:  # noqa: BLE001 - collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=upgrade, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    stores[0].check_schema()
    for store in stores:
        store.close()


def test_using_a_closed_store_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="not open"):
        SqlStore("sqlite://").count_objects()


def test_in_memory_sqlite_works_for_fakes() -> None:
    store = SqlStore("sqlite://")
    store.open()
    store.upgrade()
    store.check_schema()
    store.close()


# -- organisations, accounts, keys ----------------------------------------------------


def test_organisations(store: SqlStore) -> None:
    a, b = org(ORG_A, "UZ-CERT"), org(ORG_B, "PK-CERT")
    constituent = org("org-soc", "UZ-SOC", parent=ORG_A)
    for o in (a, b, constituent):
        store.add_org(o)
    assert store.get_org(ORG_A) == a
    assert store.find_org("PK-CERT") == b
    assert store.find_org(b.identity_id) == b
    assert store.find_org("org-soc").parent_id == ORG_A
    assert [o.name for o in store.list_orgs()] == ["PK-CERT", "UZ-CERT", "UZ-SOC"]
    with pytest.raises(NotFound):
        store.get_org(OrgId("nope"))
    with pytest.raises(NotFound):
        store.find_org("nope")


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"id": OrgId("other")}, "name"),
        ({"id": OrgId("other"), "name": "Other"}, "identity"),
        ({"name": "Other", "identity_id": StixId("identity--x")}, "id"),
    ],
    ids=["same-name", "same-identity", "same-id"],
)
def test_duplicate_organisations_conflict(store: SqlStore, change: dict[str, str],
                                          what: str) -> None:
    a = org(ORG_A, "UZ-CERT")
    store.add_org(a)
    with pytest.raises(Conflict, match=what):
        store.add_org(replace(a, **change))  # type: ignore[arg-type]
    assert store.list_orgs() == [a]


def test_find_org_prefers_id_over_name(store: SqlStore) -> None:
    store.add_org(org("x", "first"))
    store.add_org(org("first", "second"))
    assert store.find_org("first").id == "first"


def test_constituent_of_unknown_parent_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound):
        store.add_org(org("soc", "SOC", parent="nope"))


def test_accounts(store: SqlStore) -> None:
    store.add_org(org(ORG_A, "UZ-CERT"))
    store.add_org(org(ORG_B, "PK-CERT"))
    a = Account(ACCOUNT_A, "uz-pub", ORG_A, Role.PUBLISHER, 5)
    b = Account(ACCOUNT_B, "pk-read", ORG_B, Role.CONSUMER, 6, disabled=True)
    store.add_account(b)
    store.add_account(a)
    assert store.find_account("uz-pub") == a
    assert store.find_account(ACCOUNT_B) == b
    assert store.list_accounts() == [b, a]
    assert store.list_accounts(ORG_A) == [a]
    with pytest.raises(Conflict):
        store.add_account(replace(a, id=AccountId("another")))
    with pytest.raises(NotFound):
        store.add_account(Account(AccountId("x"), "x", OrgId("nope"), Role.ADMIN, 1))
    with pytest.raises(NotFound):
        store.find_account("nope")


def test_api_keys(world: SqlStore) -> None:
    digest = bytes(range(32))
    key = ApiKey("0123456789ab", ACCOUNT_A, created_at=10, label="soc tool")
    world.add_api_key(key, digest)
    world.add_api_key(ApiKey("ba9876543210", ACCOUNT_B, created_at=11), b"\x01" * 32)
    found = world.lookup_api_key("0123456789ab")
    assert found is not None
    got_key, got_digest, account, organisation = found
    assert (got_key, got_digest) == (key, digest)
    assert (account.id, organisation.id, organisation.name) == (ACCOUNT_A, ORG_A, "UZ-CERT")
    assert world.lookup_api_key("ffffffffffff") is None
    assert [k.key_id for k in world.list_api_keys()] == ["0123456789ab", "ba9876543210"]
    assert world.list_api_keys(ACCOUNT_B) == [ApiKey("ba9876543210", ACCOUNT_B, 11)]

    revoked = world.revoke_api_key("0123456789ab", at=20)
    assert revoked == replace(key, revoked_at=20)
    assert world.revoke_api_key("0123456789ab", at=30).revoked_at == 20  # first time kept
    found = world.lookup_api_key("0123456789ab")
    assert found is not None
    assert found[0].revoked_at == 20
    with pytest.raises(NotFound):
        world.revoke_api_key("ffffffffffff", at=1)
    with pytest.raises(Conflict):
        world.add_api_key(key, digest)
    with pytest.raises(NotFound):
        world.add_api_key(ApiKey("aaaaaaaaaaaa", AccountId("nope"), 1), digest)


# -- collections and grants -----------------------------------------------------------


def test_collections(world: SqlStore) -> None:
    coll = world.get_collection("cx", COLL)
    assert coll == Collection(COLL, "cx", "Indicators", alias="indicators")
    assert world.get_collection("cx", "indicators") == coll
    assert [c.title for c in world.list_collections("cx")] == ["Indicators", "Other"]
    assert world.list_collections("elsewhere") == []
    with pytest.raises(NotFound):
        world.get_collection("elsewhere", COLL)
    with pytest.raises(NotFound):
        world.get_collection("cx", "nope")
    with pytest.raises(Conflict, match="id"):
        world.add_collection(Collection(COLL, "cx", "Again"), [])
    with pytest.raises(Conflict, match="alias"):
        world.add_collection(Collection(CollectionId("c3"), "cx", "T", alias="indicators"), [])
    # the same alias in another API root is fine; no alias at all never collides
    world.add_collection(Collection(CollectionId("c3"), "other", "T", alias="indicators"), [])
    world.add_collection(Collection(CollectionId("c4"), "cx", "No alias 1"), [])
    world.add_collection(Collection(CollectionId("c5"), "cx", "No alias 2"), [])


def test_add_collection_with_unknown_org_stores_nothing(world: SqlStore) -> None:
    cid = CollectionId("c9")
    with pytest.raises(NotFound):
        world.add_collection(
            Collection(cid, "cx", "T"),
            [Grant(cid, ORG_A, True, True), Grant(cid, OrgId("nope"), True, False)],
        )
    with pytest.raises(NotFound):
        world.get_collection("cx", cid)


def test_grants(world: SqlStore) -> None:
    assert world.grants(COLL) == [Grant(COLL, ORG_A, True, True), Grant(COLL, ORG_B, True, True)]
    world.set_grant(Grant(COLL, ORG_B, True, False))
    assert world.grant_for(COLL, ORG_B) == Grant(COLL, ORG_B, True, False)
    world.add_org(org("org-c", "Third"))
    assert world.grant_for(COLL, OrgId("org-c")) is None
    world.set_grant(Grant(COLL, OrgId("org-c"), False, True))
    assert world.grant_for(COLL, OrgId("org-c")) == Grant(COLL, OrgId("org-c"), False, True)
    with pytest.raises(NotFound):
        world.set_grant(Grant(CollectionId("nope"), ORG_A, True, True))
    with pytest.raises(NotFound):
        world.set_grant(Grant(COLL, OrgId("nope"), True, True))


# -- add_objects ----------------------------------------------------------------------


def test_added_objects_come_back_byte_for_byte(world: SqlStore) -> None:
    odd_body = '{"name":"Ташкент \\u0000 \U0001f600","id":"x","a":[1,2.50,"z"]}'.encode()
    versions = [nv(oid(1)), nv(oid(2), body=odd_body), nv(oid(3, "malware"), T0 + 1)]
    results, final = add(world, versions)
    assert outcomes(results) == [AddOutcome.ADDED] * 3
    assert [r.version for r in results] == [T0, T0, T0 + 1]
    rows = world.get_objects(ObjectQuery(COLL)).rows
    assert [(r.id, r.body) for r in rows] == [(v.id, v.body) for v in versions]
    assert [r.date_added for r in rows] == [r.date_added for r in results]
    assert rows[0].producer_org == ORG_A
    assert (rows[0].tlp, rows[0].effective_tlp, rows[0].revoked) == ("green", "green", False)
    assert final.successes == (
        StatusDetail(oid(1), from_micros(T0)),
        StatusDetail(oid(2), from_micros(T0)),
        StatusDetail(oid(3, "malware"), from_micros(T0 + 1)),
    )
    assert (final.total_count, final.success_count, final.failure_count) == (3, 3, 0)
    assert final.status == "complete"
    assert world.get_status("cx", final.id) == final


def test_date_added_strictly_increases_within_and_across_envelopes(world: SqlStore) -> None:
    seen: list[int] = []
    for n in range(5):
        results, _ = add(world, [nv(oid(n * 10 + i)) for i in range(10)])
        seen += [r.date_added for r in results if r.date_added is not None]
    assert len(seen) == 50
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert seen[0] > T0  # from the wall clock


def test_date_added_increases_even_when_the_clock_goes_back(store_url: str) -> None:
    clock = iter([2_000_000, 1_000_000, 1_000_000, 5])
    store = SqlStore(store_url, now=lambda: next(clock))
    store.open()
    store.upgrade()
    store.add_org(org(ORG_A, "UZ-CERT"))
    store.add_account(Account(ACCOUNT_A, "uz-pub", ORG_A, Role.PUBLISHER, 1))
    store.add_collection(Collection(COLL, "cx", "T"), [])
    dates = []
    for n in range(4):
        results, _ = add(store, [nv(oid(n * 2)), nv(oid(n * 2 + 1))])
        dates += [r.date_added for r in results]
    store.close()
    assert dates == [2_000_000 + i for i in range(8)]


def test_identical_version_again_exists(world: SqlStore) -> None:
    first, _ = add(world, [nv(oid(1))])
    results, final = add(world, [nv(oid(1)), nv(oid(2))])
    assert outcomes(results) == [AddOutcome.EXISTS, AddOutcome.ADDED]
    assert results[0].date_added == first[0].date_added
    assert final.success_count == 2
    assert final.successes[0].message
    assert world.count_objects(COLL) == 2


def test_same_version_different_bytes_conflicts(world: SqlStore) -> None:
    add(world, [nv(oid(1))])
    results, final = add(world, [nv(oid(1), body=b'{"changed":true}')])
    assert outcomes(results) == [AddOutcome.CONFLICT]
    assert final.failures == (StatusDetail(oid(1), from_micros(T0), MSG_CONFLICT),)
    assert (final.success_count, final.failure_count, final.total_count) == (0, 1, 1)
    assert world.get_objects(ObjectQuery(COLL)).rows[0].body == nv(oid(1)).body


def _signed(object_id: str, signature: str, **extra: object) -> bytes:
    body = {"id": object_id, "name": "CIRCL", **extra,
            "extensions": {EXTENSION_ID: {"extension_type": "property-extension",
                                          "sig": signature}}}
    return json.dumps(body, separators=(",", ":")).encode()


def test_the_same_version_signed_again_exists(world: SqlStore) -> None:
    """A member publishing two exports that share an object (MISP's event and attribute
    exports share the event's identity) signs it afresh each time: the same version,
    another signature. It was refused as a different object (issue 17)."""
    first = _signed(oid(1), "first")
    add(world, [nv(oid(1), body=first)])
    results, final = add(world, [nv(oid(1), body=_signed(oid(1), "second"))])
    assert outcomes(results) == [AddOutcome.EXISTS]
    assert final.failure_count == 0
    assert world.get_objects(ObjectQuery(COLL)).rows[0].body == first  # the first kept
    # other content under the same version is still a different object
    results, final = add(world, [nv(oid(1), body=_signed(oid(1), "third", x_changed=1))])
    assert outcomes(results) == [AddOutcome.CONFLICT]
    assert final.failures[0].message == MSG_CONFLICT


def test_only_the_creator_may_add_versions(world: SqlStore) -> None:
    add(world, [nv(oid(1))])
    results, final = add(world, [nv(oid(1), T0 + SECOND, producer=ORG_B),
                                 nv(oid(1), T0, producer=ORG_B)], org_id=ORG_B)
    assert outcomes(results) == [AddOutcome.NOT_CREATOR, AddOutcome.NOT_CREATOR]
    assert {f.message for f in final.failures} == {MSG_NOT_CREATOR}
    # the creator itself may, here and in another collection
    results, _ = add(world, [nv(oid(1), T0 + SECOND)])
    assert outcomes(results) == [AddOutcome.ADDED]
    results, _ = add(world, [nv(oid(1), T0)], OTHER_COLL)
    assert outcomes(results) == [AddOutcome.ADDED]
    assert world.count_objects() == 3


def test_ownership_is_per_collection(world: SqlStore) -> None:
    """docs/adr/0002: what another collection holds never changes the answer."""
    add(world, [nv(oid(1))], OTHER_COLL)  # ORG_A's, in a collection ORG_B may not read
    held, held_final = add(world, [nv(oid(1), producer=ORG_B)], org_id=ORG_B)
    fresh, fresh_final = add(world, [nv(oid(2), producer=ORG_B)], org_id=ORG_B)
    assert outcomes(held) == outcomes(fresh) == [AddOutcome.ADDED]
    assert (held_final.success_count, held_final.failure_count) == (1, 0)
    assert [d.message for d in held_final.successes] == [
        d.message for d in fresh_final.successes]
    # from then on each collection has its own first contributor
    results, _ = add(world, [nv(oid(1), T0 + SECOND)])
    assert outcomes(results) == [AddOutcome.NOT_CREATOR]
    results, _ = add(world, [nv(oid(1), T0 + SECOND, producer=ORG_B)], OTHER_COLL, ORG_B)
    assert outcomes(results) == [AddOutcome.NOT_CREATOR]
    rows = {r.collection_id: r.producer_org
            for c in (COLL, OTHER_COLL) for r in world.get_objects(ObjectQuery(c)).rows}
    assert rows == {COLL: ORG_B, OTHER_COLL: ORG_A}


def test_duplicates_inside_one_envelope(world: SqlStore) -> None:
    results, final = add(world, [
        nv(oid(1)), nv(oid(1)), nv(oid(1), body=b'{"other":1}'),
        nv(oid(2), producer=ORG_A), nv(oid(2), T0 + 1, producer=ORG_B),
    ])
    assert outcomes(results) == [
        AddOutcome.ADDED, AddOutcome.EXISTS, AddOutcome.CONFLICT,
        AddOutcome.ADDED, AddOutcome.NOT_CREATOR,
    ]
    assert results[1].date_added == results[0].date_added
    assert (final.success_count, final.failure_count) == (3, 2)
    assert world.count_objects() == 2


def test_versionless_objects_are_versioned_by_date_added(world: SqlStore) -> None:
    sco = oid(1, "ipv4-addr")
    body = b'{"id":"ipv4-addr--1","type":"ipv4-addr","value":"203.0.113.7"}'
    results, final = add(world, [nv(sco, None, body=body)])
    assert results[0].outcome is AddOutcome.ADDED
    assert results[0].version == results[0].date_added
    assert final.successes[0].version == from_micros(results[0].version)
    again, _ = add(world, [nv(sco, None, body=body)])
    assert again[0].outcome is AddOutcome.EXISTS
    assert again[0].version == results[0].version
    changed, _ = add(world, [nv(sco, None, body=body.replace(b"7", b"8"))])
    assert changed[0].outcome is AddOutcome.ADDED
    latest = world.get_objects(ObjectQuery(COLL)).rows
    assert [(r.version, r.is_latest) for r in latest] == [(changed[0].version, True)]


def sco(body: bytes, producer: OrgId, tlp: str = "green") -> NewVersion:
    return nv(oid(7, "ipv4-addr"), None, body=body, producer=producer, tlp=tlp,
              ownership=IdOwnership.CONTRIBUTOR)


def test_two_members_contribute_the_same_sco_each_in_its_own_line(world: SqlStore) -> None:
    uz = b'{"id":"ipv4-addr--7","value":"203.0.113.7","x":"signed by A"}'
    pk = b'{"id":"ipv4-addr--7","value":"203.0.113.7","x":"signed by B"}'
    first, _ = add(world, [sco(uz, ORG_A, "red")])
    second, final = add(world, [sco(pk, ORG_B)], org_id=ORG_B)
    assert outcomes(first + second) == [AddOutcome.ADDED, AddOutcome.ADDED]
    assert final.failure_count == 0
    # identical bytes from the other member are still its own contribution, stored apart
    same, _ = add(world, [sco(uz, ORG_B)], org_id=ORG_B)
    assert same[0].outcome is AddOutcome.ADDED
    again, _ = add(world, [sco(uz, ORG_A, "red")])
    assert (again[0].outcome, again[0].date_added) == (AddOutcome.EXISTS, first[0].date_added)
    # match[version]=last gives each contributor's newest: a reader who may see only
    # A's RED contribution (its producer) still gets it, though B contributed later
    latest = world.get_objects(ObjectQuery(COLL)).rows
    assert [(r.producer_org, r.body) for r in latest] == [(ORG_A, uz), (ORG_B, uz)]
    own_only = world.get_objects(ObjectQuery(COLL, visible_tlps=frozenset(), own_org=ORG_A))
    assert [r.body for r in own_only.rows] == [uz]
    green = world.get_objects(ObjectQuery(COLL, visible_tlps=frozenset({"green"})))
    assert [(r.producer_org, r.body) for r in green.rows] == [(ORG_B, uz)]
    first_rows = world.get_objects(ObjectQuery(COLL, versions=VersionMatch(first=True))).rows
    assert [(r.producer_org, r.body) for r in first_rows] == [(ORG_A, uz), (ORG_B, pk)]
    # one contributor deletes its own contributions only
    assert world.delete_object(COLL, oid(7, "ipv4-addr"), VersionMatch(last=True),
                               producer_org=ORG_A) == 1
    left = world.get_objects(ObjectQuery(COLL)).rows
    assert [(r.producer_org, r.body) for r in left] == [(ORG_B, uz)]
    # deleting each line's last leaves B's earlier contribution as B's last
    assert world.delete_object(COLL, oid(7, "ipv4-addr"), VersionMatch(last=True)) == 1
    left = world.get_objects(ObjectQuery(COLL)).rows
    assert [(r.producer_org, r.body) for r in left] == [(ORG_B, pk)]


def test_an_sdo_id_is_owned_per_collection_and_open_ids_may_be_reposted(
    world: SqlStore,
) -> None:
    tlp = oid(9, "marking-definition")
    add(world, [nv(oid(1)), nv(tlp, ownership=IdOwnership.OPEN)])
    results, _ = add(world, [nv(oid(1), T0 + SECOND, producer=ORG_B),
                             nv(tlp, producer=ORG_B, ownership=IdOwnership.OPEN),
                             nv(tlp, producer=ORG_B, ownership=IdOwnership.OPEN)],
                     OTHER_COLL, ORG_B)
    # another collection: ORG_B is the first contributor of oid(1) there (docs/adr/0002)
    assert outcomes(results) == [AddOutcome.ADDED, AddOutcome.ADDED, AddOutcome.EXISTS]
    reposted, _ = add(world, [nv(tlp, producer=ORG_B, ownership=IdOwnership.OPEN)],
                      org_id=ORG_B)
    assert reposted[0].outcome is AddOutcome.EXISTS  # the same bytes, already here


def test_a_registered_identity_is_not_blocked_by_an_earlier_squatter(world: SqlStore) -> None:
    me = oid(5, "identity")
    add(world, [nv(me, producer=ORG_B)], org_id=ORG_B)  # before ORG_A registered it
    results, _ = add(world, [nv(me, T0 + SECOND, ownership=IdOwnership.REGISTERED)])
    assert outcomes(results) == [AddOutcome.ADDED]
    clash, _ = add(world, [nv(me, T0, body=b'{"mine":1}', ownership=IdOwnership.REGISTERED)])
    assert outcomes(clash) == [AddOutcome.CONFLICT]  # same version, other bytes


def test_validation_failures_stay_in_the_status(world: SqlStore) -> None:
    rejected = StatusDetail("objects[1]", "", "not a STIX object")
    status = new_status(failures=[rejected], total=3)
    results, final = world.add_objects(COLL, [nv(oid(1)), nv(oid(2))], status)
    assert final.failures == (rejected,)
    assert (final.total_count, final.success_count, final.failure_count) == (3, 2, 1)
    assert final.pending_count == 0
    assert final.pendings == ()
    assert world.get_status("cx", final.id) == final
    assert len(results) == 2


def test_an_envelope_with_nothing_valid_still_has_a_status(world: SqlStore) -> None:
    rejected = StatusDetail("objects[0]", "", "bad")
    results, final = world.add_objects(COLL, [], new_status(failures=[rejected], total=1))
    assert results == []
    assert world.get_status("cx", final.id).failures == (rejected,)


def test_adding_to_an_unknown_collection_is_not_found(world: SqlStore) -> None:
    with pytest.raises(NotFound):
        add(world, [nv(oid(1))], CollectionId("nope"))


def test_statuses(world: SqlStore) -> None:
    _, final = add(world, [nv(oid(1))])
    assert world.get_status("cx", final.id) == final
    with pytest.raises(NotFound):
        world.get_status("other-root", final.id)
    with pytest.raises(NotFound):
        world.get_status("cx", str(uuid.uuid4()))
    with pytest.raises(Conflict):
        world.add_objects(COLL, [nv(oid(2))], final)
    assert world.count_objects() == 1


@pytest.mark.parametrize(
    "arrival",
    [[1, 2, 3], [3, 2, 1], [2, 3, 1], [2, 1, 3]],
    ids=["in-order", "reversed", "oldest-last", "newest-last"],
)
def test_latest_and_first_follow_versions_not_arrival(world: SqlStore,
                                                      arrival: list[int]) -> None:
    for k in arrival:  # one envelope each
        add(world, [nv(oid(1), T0 + k * SECOND)])
    assert versions_of(world, oid(1)) == {
        T0 + SECOND: (False, True), T0 + 2 * SECOND: (False, False),
        T0 + 3 * SECOND: (True, False),
    }
    add(world, [nv(oid(2), T0 + k * SECOND) for k in arrival])  # all in one envelope
    assert versions_of(world, oid(2)) == versions_of(world, oid(1))


# -- reads --------------------------------------------------------------------------


@pytest.fixture
def loaded(world: SqlStore) -> dict[str, list[AddResult]]:
    """Three envelopes: indicators with versions, a malware, TLP variety, another org."""
    first, _ = add(world, [
        nv(oid(1), T0), nv(oid(2), T0, tlp="red"), nv(oid(3, "malware"), T0, tlp=None),
    ])
    second, _ = add(world, [
        nv(oid(1), T0 + SECOND), nv(oid(4), T0, tlp="amber+strict"),
        nv(oid(5, "malware"), T0, spec="2.0"),
    ])
    third, _ = add(world, [nv(oid(1), T0 + 2 * SECOND),
                           nv(oid(6), T0, producer=ORG_B, tlp="red")], org_id=ORG_B)
    return {"first": first, "second": second, "third": third}


def q(**kw: object) -> ObjectQuery:
    return ObjectQuery(COLL, **{"limit": 100, **kw})  # type: ignore[arg-type]


def test_default_read_is_latest_versions_in_date_added_order(
    world: SqlStore, loaded: dict[str, list[AddResult]]
) -> None:
    rows = world.get_objects(q()).rows
    assert [(r.id, r.version) for r in rows] == [
        (oid(2), T0), (oid(3, "malware"), T0), (oid(4), T0), (oid(5, "malware"), T0),
        (oid(1), T0 + 2 * SECOND), (oid(6), T0),
    ]
    assert all(r.is_latest for r in rows)
    assert [r.date_added for r in rows] == sorted(r.date_added for r in rows)


def test_added_after_is_exclusive(world: SqlStore, loaded: dict[str, list[AddResult]]) -> None:
    cut = loaded["second"][0].date_added
    rows = world.get_objects(q(added_after=cut, versions=VersionMatch(all=True))).rows
    assert [r.date_added for r in rows] == [
        r.date_added for r in loaded["second"][1:] + loaded["third"]
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"ids": (oid(1),)}, [(1, 2)]),
        ({"ids": (oid(1), oid(4))}, [(4, 0), (1, 2)]),
        ({"types": ("malware",)}, [(3, 0), (5, 0)]),
        ({"types": ("malware", "indicator"), "ids": (oid(5, "malware"), oid(2))},
         [(2, 0), (5, 0)]),
        ({"spec_versions": ("2.0",)}, [(5, 0)]),
        ({"ids": (oid(1),), "versions": VersionMatch(all=True)}, [(1, 0), (1, 1), (1, 2)]),
        ({"ids": (oid(1),), "versions": VersionMatch(first=True)}, [(1, 0)]),
        ({"ids": (oid(1),), "versions": VersionMatch(first=True, last=True)},
         [(1, 0), (1, 2)]),
        ({"ids": (oid(1),), "versions": VersionMatch(exact=(T0 + SECOND,))}, [(1, 1)]),
        ({"ids": (oid(1),), "versions": VersionMatch(exact=(T0 + SECOND,), last=True)},
         [(1, 1), (1, 2)]),
        ({"ids": (oid(1),), "versions": VersionMatch(exact=(T0 + 7,))}, []),
        ({"ids": (oid(1),), "versions": VersionMatch()}, [(1, 2)]),
        ({"ids": ("indicator--none",)}, []),
    ],
    ids=["id", "ids", "type", "types-and-ids", "spec-version", "all", "first",
         "first-and-last", "exact", "exact-or-last", "exact-missing", "empty-match", "no-id"],
)
def test_filters(world: SqlStore, loaded: dict[str, list[AddResult]],
                 filters: dict[str, object], expected: list[tuple[int, int]]) -> None:
    rows = world.get_objects(q(**filters)).rows
    found = [(int(r.id.rsplit("-", 1)[1]), (r.version - T0) // SECOND) for r in rows]
    assert found == expected


def test_visibility_by_tlp_and_own_org(world: SqlStore,
                                       loaded: dict[str, list[AddResult]]) -> None:
    basic = frozenset({"clear", "green", "amber"})
    rows = world.get_objects(q(visible_tlps=basic)).rows
    assert ids_of(rows) == [oid(3, "malware"), oid(5, "malware"), oid(1)]
    assert rows[0].tlp is None
    assert rows[0].effective_tlp == "amber"
    rows = world.get_objects(q(visible_tlps=basic, own_org=ORG_B)).rows
    assert ids_of(rows) == [oid(3, "malware"), oid(5, "malware"), oid(1), oid(6)]
    assert world.get_objects(q(visible_tlps=frozenset())).rows == []
    rows = world.get_objects(q(visible_tlps=frozenset(), own_org=ORG_B)).rows
    assert ids_of(rows) == [oid(6)]


def test_manifest_reads_leave_the_body_out(world: SqlStore,
                                           loaded: dict[str, list[AddResult]]) -> None:
    rows = world.get_objects(q(include_body=False)).rows
    assert len(rows) == 6
    assert {r.body for r in rows} == {b""}
    assert {r.body_sha256 for r in rows} == {None}
    with_body = world.get_objects(q()).rows
    assert all(r.body for r in with_body)


def test_each_version_keeps_the_sha256_of_its_body(world: SqlStore,
                                                   loaded: dict[str, list[AddResult]]) -> None:
    rows = world.get_objects(q()).rows
    assert len(rows) == 6
    assert [r.body_sha256 for r in rows] == [hashlib.sha256(r.body).digest() for r in rows]


def test_revision_0005_fills_the_digest_of_every_stored_version(world: SqlStore) -> None:
    store = world
    add(store, [nv(oid(n), T0 + n) for n in range(12)])
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store._require_engine().begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
        assert "body_sha256" not in {
            c["name"] for c in sa.inspect(conn).get_columns("object_versions")}
        command.upgrade(config, "head")
    rows = read_all(store, ObjectQuery(COLL, limit=5))
    assert len(rows) == 12
    assert [r.body_sha256 for r in rows] == [hashlib.sha256(r.body).digest() for r in rows]


def test_limit_must_be_positive(world: SqlStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        world.get_objects(q(limit=0))


def test_paging_with_limit_7_yields_every_row_once(world: SqlStore) -> None:
    expected: list[int] = []
    for n in range(5):
        results, _ = add(world, [nv(oid(n * 10 + i), T0 + i) for i in range(10)])
        expected += [r.date_added for r in results if r.date_added is not None]
    pages: list[Page] = []
    cursor = None
    while not pages or pages[-1].more:
        pages.append(world.get_objects(q(limit=7, cursor=cursor)))
        cursor = pages[-1].rows[-1].date_added
    assert [len(p.rows) for p in pages] == [7] * 7 + [1]
    assert [r.date_added for p in pages for r in p.rows] == expected
    assert not pages[-1].more
    # a page that ends exactly at the last row says there is no more
    assert world.get_objects(q(limit=50)).more is False
    assert world.get_objects(q(limit=49)).more is True


def test_cursor_and_added_after_combine_as_the_later(world: SqlStore,
                                                     loaded: dict[str, list[AddResult]]) -> None:
    early = loaded["first"][0].date_added
    late = loaded["second"][2].date_added
    all_versions = VersionMatch(all=True)
    a = world.get_objects(q(added_after=early, cursor=late, versions=all_versions)).rows
    b = world.get_objects(q(added_after=late, cursor=early, versions=all_versions)).rows
    assert ids_of(a) == ids_of(b) == [oid(1), oid(6)]


def test_get_versions_lists_every_version_of_one_object(
    world: SqlStore, loaded: dict[str, list[AddResult]]
) -> None:
    page = world.get_versions(q(ids=(oid(1),), versions=VersionMatch(first=True)))
    assert [r.version for r in page.rows] == [T0, T0 + SECOND, T0 + 2 * SECOND]
    assert [r.is_latest for r in page.rows] == [False, False, True]
    cut = loaded["first"][0].date_added
    page = world.get_versions(q(ids=(oid(1),), added_after=cut, limit=1))
    assert ([r.version for r in page.rows], page.more) == ([T0 + SECOND], True)
    assert world.get_versions(q(ids=(oid(1),), spec_versions=("2.0",))).rows == []
    assert world.get_versions(q(ids=(oid(99),))).rows == []


def test_object_exists_and_counts(world: SqlStore, loaded: dict[str, list[AddResult]]) -> None:
    assert world.object_exists(COLL, oid(1))
    assert not world.object_exists(OTHER_COLL, oid(1))
    assert not world.object_exists(COLL, oid(99))
    assert world.count_objects(COLL) == 8
    assert world.count_objects(OTHER_COLL) == 0
    assert world.count_objects() == 8


# -- delete ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "deleted", "left"),
    [
        (VersionMatch(last=True), 1, {0: (False, True), 1: (True, False)}),
        (VersionMatch(first=True), 1, {1: (False, True), 2: (True, False)}),
        (VersionMatch(first=True, last=True), 2, {1: (True, True)}),
        (VersionMatch(exact=(T0 + SECOND,)), 1, {0: (False, True), 2: (True, False)}),
        (VersionMatch(exact=(T0 + 9,)), 0, {0: (False, True), 1: (False, False),
                                            2: (True, False)}),
        (VersionMatch(all=True), 3, {}),
        (VersionMatch(), 1, {0: (False, True), 1: (True, False)}),
    ],
    ids=["last", "first", "first-and-last", "exact", "exact-missing", "all", "default-last"],
)
def test_delete_keeps_latest_and_first_right(
    world: SqlStore, match: VersionMatch, deleted: int, left: dict[int, tuple[bool, bool]]
) -> None:
    add(world, [nv(oid(1), T0 + k * SECOND) for k in (2, 0, 1)])
    add(world, [nv(oid(2))])
    assert world.delete_object(COLL, oid(1), match) == deleted
    assert versions_of(world, oid(1)) == {T0 + k * SECOND: f for k, f in left.items()}
    assert world.object_exists(COLL, oid(1)) == bool(left)
    assert world.object_exists(COLL, oid(2))


def test_delete_by_spec_version_and_of_nothing(world: SqlStore) -> None:
    add(world, [nv(oid(1), T0, spec="2.0"), nv(oid(1), T0 + 1)])
    assert world.delete_object(COLL, oid(1), VersionMatch(all=True), ("2.0",)) == 1
    assert versions_of(world, oid(1)) == {T0 + 1: (True, True)}
    assert world.delete_object(COLL, oid(99), VersionMatch(all=True)) == 0
    assert world.delete_object(OTHER_COLL, oid(1), VersionMatch(all=True)) == 0


def test_creator_check_stays_in_its_collection_after_a_delete(world: SqlStore) -> None:
    add(world, [nv(oid(1)), nv(oid(1), T0, producer=ORG_A)], OTHER_COLL)
    add(world, [nv(oid(1))])
    world.delete_object(COLL, oid(1), VersionMatch(all=True))
    # removed outright from COLL: the id is free there, still ORG_A's in OTHER_COLL
    results, _ = add(world, [nv(oid(1), T0 + 1, producer=ORG_B)], org_id=ORG_B)
    assert outcomes(results) == [AddOutcome.ADDED]
    results, _ = add(world, [nv(oid(1), T0 + 1, producer=ORG_B)], OTHER_COLL, ORG_B)
    assert outcomes(results) == [AddOutcome.NOT_CREATOR]


# -- atomicity and concurrency -----------------------------------------------------------


def test_a_failing_envelope_leaves_no_trace(world: SqlStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before, _ = add(world, [nv(oid(1), T0)])

    def broken_insert(conn: sa.Connection, status: Status) -> None:
        raise sa.exc.OperationalError("INSERT INTO statuses", {}, Exception("disk I/O error"))

    monkeypatch.setattr(world, "_insert_status", broken_insert)
    status = new_status()
    with pytest.raises(StorageError) as info:
        world.add_objects(COLL, [nv(oid(1), T0 + SECOND), nv(oid(2))], status)
    assert "disk" not in info.value.reason
    monkeypatch.undo()
    assert world.count_objects() == 1
    assert versions_of(world, oid(1)) == {T0: (True, True)}
    with pytest.raises(NotFound):
        world.get_status("cx", status.id)
    after, _ = add(world, [nv(oid(1), T0 + SECOND), nv(oid(2))])
    assert outcomes(after) == [AddOutcome.ADDED, AddOutcome.ADDED]
    assert before[0].date_added is not None
    assert all(r.date_added is not None and r.date_added > before[0].date_added for r in after)


WRITERS = 2
ENVELOPES = 20
PER_ENVELOPE = 10


def _writer(url: str, writer: int, start: Any, out: Any) -> None:
    """Add envelopes from another process; put the date_added values assigned on ``out``.

    The clock is stopped, so every ``date_added`` comes from the clock row alone: two
    writers that read it without holding the write lock would collide.
    """
    store = SqlStore(url, now=lambda: 0)
    store.open()
    dates: list[int] = []
    try:
        store.count_objects()  # connected before the race starts
        start.wait(timeout=60)
        for e in range(ENVELOPES):
            base = (writer * ENVELOPES + e) * PER_ENVELOPE
            results, final = add(store, [nv(oid(base + i)) for i in range(PER_ENVELOPE)])
            assert final.success_count == PER_ENVELOPE
            dates += [r.date_added for r in results if r.date_added is not None]
            time.sleep(0.005)  # a request's parsing and validation between envelopes
        out.put((writer, dates))
    except Exception as e:
        out.put((writer, repr(e)))
        raise
    finally:
        store.close()


@pytest.mark.slow
def test_concurrent_writers_and_a_tailing_reader(world: SqlStore, store_url: str) -> None:
    """Writers in separate processes; a reader following added_after misses nothing."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS + 1)
    out = context.Queue()
    workers = [context.Process(target=_writer, args=(store_url, w, start, out))
               for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    start.wait(timeout=60)
    seen: list[StoredVersion] = []
    cursor = None
    all_versions = VersionMatch(all=True)
    while any(worker.is_alive() for worker in workers) and len(seen) < 1000:
        page = world.get_objects(q(limit=20, cursor=cursor, versions=all_versions,
                                   include_body=False))
        seen += page.rows
        cursor = page.rows[-1].date_added if page.rows else cursor
    per_writer = dict(out.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert all(isinstance(dates, list) for dates in per_writer.values()), per_writer
    seen += read_all(world, q(limit=20, cursor=cursor, versions=all_versions,
                              include_body=False))
    total = WRITERS * ENVELOPES * PER_ENVELOPE
    assert world.count_objects() == total
    for dates in per_writer.values():
        assert len(dates) == ENVELOPES * PER_ENVELOPE
        assert all(a < b for a, b in itertools.pairwise(dates))
    every = sorted(d for dates in per_writer.values() for d in dates)
    assert len(set(every)) == total
    # the writers really interleaved (else this test proves nothing)
    first = set(per_writer[0])
    switches = sum((a in first) != (b in first) for a, b in itertools.pairwise(every))
    assert switches > 2
    # the tailing reader saw every row exactly once, in order: no skipped commits
    assert [r.date_added for r in seen] == every


# -- pagination property ---------------------------------------------------------------

_objects = st.lists(  # envelopes of (id number, version second, type, tlp)
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.sampled_from(["indicator", "malware"]),
                  st.sampled_from(["green", "amber", "red"])),
        min_size=1, max_size=8,
    ),
    min_size=1, max_size=3,
)
_version_matches = st.sampled_from([
    VersionMatch(last=True), VersionMatch(first=True), VersionMatch(all=True),
    VersionMatch(first=True, last=True), VersionMatch(exact=(T0 + SECOND,)),
    VersionMatch(exact=(T0, T0 + 2 * SECOND), last=True),
])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    envelopes=_objects,
    types=st.sampled_from([(), ("indicator",), ("malware",), ("malware", "indicator")]),
    id_numbers=st.sampled_from([(), (0,), (1, 2), (3, 4, 5)]),
    versions=_version_matches,
    tlps=st.sampled_from([None, frozenset({"green"}), frozenset({"green", "amber"})]),
    limit=st.integers(1, 6),
    after_index=st.one_of(st.none(), st.integers(0, 30)),
)
def test_paging_returns_exactly_the_matching_rows(
    world: SqlStore, envelopes: list[list[tuple[int, int, str, str]]], types: tuple[str, ...],
    id_numbers: tuple[int, ...], versions: VersionMatch, tlps: frozenset[str] | None,
    limit: int, after_index: int | None,
) -> None:
    coll = CollectionId(str(uuid.uuid4()))
    world.add_collection(Collection(coll, "cx", coll), [])
    kinds: dict[int, str] = {}  # an id keeps its first type

    def stix_id(n: int) -> str:
        return f"{kinds.get(n, 'indicator')}--{coll}-{n}"

    stored: list[tuple[int, str, int, str, str]] = []  # date_added, id, version, type, tlp
    for envelope in envelopes:
        batch = []
        for n, k, kind, tlp in envelope:
            kinds.setdefault(n, kind)
            batch.append(nv(stix_id(n), T0 + k * SECOND, tlp=tlp))
        results, _ = add(world, batch, coll)
        stored += [(r.date_added, v.id, v.version or 0, v.type,
                    v.tlp or "")
                   for r, v in zip(results, batch, strict=True)
                   if r.outcome is AddOutcome.ADDED and r.date_added is not None]
    newest: dict[str, int] = {}
    oldest: dict[str, int] = {}
    for _, i, v, _, _ in stored:
        newest[i] = max(newest.get(i, v), v)
        oldest[i] = min(oldest.get(i, v), v)
    ids = tuple(stix_id(n) for n in id_numbers)
    dates = sorted(row[0] for row in stored)
    after = None if after_index is None else dates[after_index % len(dates)]

    def wanted(d: int, i: str, v: int, kind: str, tlp: str) -> bool:
        version_ok = (versions.all or (versions.last and v == newest[i])
                      or (versions.first and v == oldest[i]) or v in versions.exact)
        return (version_ok and (not types or kind in types) and (not ids or i in ids)
                and (after is None or d > after) and (tlps is None or tlp in tlps))

    got = read_all(world, ObjectQuery(coll, added_after=after, ids=ids, types=types,
                                      versions=versions, limit=limit, visible_tlps=tlps))
    assert [r.date_added for r in got] == [row[0] for row in sorted(stored) if wanted(*row)]


def test_newest_date_added_moves_with_every_add_to_its_collection(world: SqlStore) -> None:
    store = world
    assert store.newest_date_added(COLL) == 0
    first, _ = add(store, [nv(oid(1))])
    assert store.newest_date_added(COLL) == first[0].date_added
    second, _ = add(store, [nv(oid(1), T0 + SECOND)])  # a new version of the same id
    assert second[0].date_added is not None
    assert store.newest_date_added(COLL) == second[0].date_added > first[0].date_added
    add(store, [nv(oid(2))], OTHER_COLL)  # another collection's add leaves it alone
    assert store.newest_date_added(COLL) == second[0].date_added
