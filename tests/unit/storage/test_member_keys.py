"""The member-key part of the Store contract, on SQLite and PostgreSQL (see conftest.py).

What an operator would notice if it broke: a key id registered twice, a key of a
non-existent organisation, rotation and revocation not sticking, and ``exchange keys
affected`` missing a version signed by the key or listing one it did not sign.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from exchange.errors import Conflict, NotFound
from exchange.model.objects import CollectionId, OrgId, StixId
from exchange.storage.base import MemberKey, NewVersion, SignedVersion, Status
from exchange.storage.sql import SqlStore

from .conftest import ACCOUNT_A, ACCOUNT_B, COLL, ORG_A, ORG_B, OTHER_COLL

T0 = 1_740_000_000_000_000
KID_A = "sha256:" + "A" * 43
KID_B = "sha256:" + "B" * 43
KID_NODE = "sha256:" + "N" * 43


def key(kid: str = KID_A, org_id: OrgId | None = ORG_A, **changes: Any) -> MemberKey:
    base = MemberKey(
        kid=kid, org_id=org_id, purpose="object" if org_id else "node", alg="Ed25519",
        public_pem="-----BEGIN PUBLIC KEY-----\nMCow...\n-----END PUBLIC KEY-----\n",
        valid_from=T0, valid_until=None, status="active", compromised_since=None,
        created_at=T0,
    )
    return replace(base, **changes)


def version(object_id: str, at: int, signed_kid: str | None, org_id: OrgId = ORG_A
            ) -> NewVersion:
    body = json.dumps({"id": object_id, "v": at}).encode()
    return NewVersion(
        id=StixId(object_id), type="indicator", spec_version="2.1", version=at, created=at,
        modified=at, producer_org=org_id, tlp="green", effective_tlp="green", revoked=False,
        body=body, signed_kid=signed_kid,
    )


def publish(store: SqlStore, collection: CollectionId, versions: list[NewVersion],
            org_id: OrgId = ORG_A) -> None:
    status = Status(
        id=str(uuid.uuid4()), api_root="cx", collection_id=collection,
        account_id=ACCOUNT_A if org_id == ORG_A else ACCOUNT_B, org_id=org_id,
        request_timestamp=T0, status="complete", total_count=len(versions),
        success_count=0, failure_count=0, pending_count=0,
    )
    store.add_objects(collection, versions, status)


def oid(n: int) -> str:
    return f"indicator--00000000-0000-4000-8000-{n:012d}"


def test_keys_are_stored_and_read_back(world: SqlStore) -> None:
    member = key()
    node = key(KID_NODE, None, created_at=T0 + 1)
    world.add_member_key(member)
    world.add_member_key(node)
    assert world.get_member_key(KID_A) == member
    assert world.get_member_key(KID_NODE) == node
    assert world.list_member_keys() == [member, node]


def test_listing_filters_by_organisation_and_purpose(world: SqlStore) -> None:
    a1 = key(KID_A, created_at=T0 + 2)
    b1 = key(KID_B, ORG_B, created_at=T0 + 1)
    node = key(KID_NODE, None, created_at=T0 + 3)
    for k in (a1, b1, node):
        world.add_member_key(k)
    assert world.list_member_keys() == [b1, a1, node]
    assert world.list_member_keys(ORG_A) == [a1]
    assert world.list_member_keys(purpose="node") == [node]
    assert world.list_member_keys(ORG_B, purpose="node") == []


def test_a_key_id_is_registered_once_whoever_asks(world: SqlStore) -> None:
    world.add_member_key(key())
    with pytest.raises(Conflict, match="already registered"):
        world.add_member_key(key(org_id=ORG_B))
    assert world.list_member_keys(ORG_B) == []


def test_a_key_of_an_unknown_organisation_is_refused(world: SqlStore) -> None:
    with pytest.raises(NotFound, match="organisation"):
        world.add_member_key(key(org_id=OrgId("no-such-org")))
    assert world.list_member_keys() == []


@pytest.mark.parametrize(("org_id", "purpose"), [
    pytest.param(None, "object", id="member-key-without-org"),
    pytest.param(ORG_A, "node", id="node-key-with-org"),
    pytest.param(ORG_A, "receipts", id="unknown-purpose"),
])
def test_inconsistent_purpose_is_a_programming_error(world: SqlStore, org_id: OrgId | None,
                                                      purpose: str) -> None:
    with pytest.raises(ValueError, match=r"purpose|organisation"):
        world.add_member_key(key(org_id=org_id, purpose=purpose))


def test_unknown_key_is_not_found(world: SqlStore) -> None:
    with pytest.raises(NotFound, match="not registered"):
        world.get_member_key(KID_B)
    with pytest.raises(NotFound, match="not registered"):
        world.update_member_key(KID_B, status="retired", valid_until=T0 + 5)
    with pytest.raises(NotFound, match="not registered"):
        world.update_member_key(KID_B)


def test_updates_change_only_the_given_fields(world: SqlStore) -> None:
    world.add_member_key(key())
    retired = world.update_member_key(KID_A, status="retired", valid_until=T0 + 10)
    assert retired == key(status="retired", valid_until=T0 + 10)
    revoked = world.update_member_key(KID_A, status="revoked", compromised_since=T0 + 5)
    assert revoked == key(status="revoked", valid_until=T0 + 10, compromised_since=T0 + 5)
    assert world.get_member_key(KID_A) == revoked
    assert world.update_member_key(KID_A) == revoked


def test_versions_signed_by_a_key_across_collections_in_date_added_order(
    world: SqlStore,
) -> None:
    world.add_member_key(key())
    world.add_member_key(key(KID_B, ORG_B))
    publish(world, COLL, [version(oid(1), T0, KID_A), version(oid(2), T0, None)])
    publish(world, OTHER_COLL, [version(oid(3), T0, KID_B, ORG_B)], ORG_B)
    publish(world, OTHER_COLL, [version(oid(4), T0, KID_A)])
    publish(world, COLL, [version(oid(1), T0 + 1, KID_A)])  # a new version, same key

    found = world.versions_signed_by(KID_A)
    assert [(v.collection_id, v.id, v.version) for v in found] == [
        (COLL, oid(1), T0), (OTHER_COLL, oid(4), T0), (COLL, oid(1), T0 + 1),
    ]
    assert [v.date_added for v in found] == sorted(v.date_added for v in found)
    assert all(isinstance(v, SignedVersion) for v in found)
    assert [v.id for v in world.versions_signed_by(KID_B)] == [oid(3)]
    assert world.versions_signed_by(KID_NODE) == []
    # the latest recording time under a key (a peer's retired key is kept valid to it)
    assert world.last_signed_by(KID_A) == found[-1].date_added
    assert world.last_signed_by(KID_B) == world.versions_signed_by(KID_B)[0].date_added
    assert world.last_signed_by(KID_NODE) is None


def test_versions_signed_by_is_an_index_range_scan(world: SqlStore) -> None:
    if world.dialect != "sqlite":
        pytest.skip("SQLite's plan is checked here; PostgreSQL plans from statistics")
    statements: list[tuple[str, Any]] = []
    engine = world._require_engine()

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        if "signed_kid =" in statement:
            statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        world.versions_signed_by(KID_A)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len(statements) == 1
    sql, parameters = statements[0]
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}",
                                                        parameters)]
    assert plan == ["SEARCH object_versions USING INDEX ix_object_versions_signed_kid"
                    " (signed_kid=?)"]
