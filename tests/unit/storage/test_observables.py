"""The observable index (revision 0008), on SQLite and PostgreSQL.

What an analyst would notice if it broke: a value an indicator or SCO names is found, an
address inside a network an indicator names is found, subdomains only when asked for,
only the newest version counts, nobody finds what they may not receive, a deleted object
is no longer found, and a database upgraded from before the index finds what it held.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import pytest
import sqlalchemy as sa
from alembic import command

from exchange.model.objects import OrgId, StixId
from exchange.model.observables import search_terms
from exchange.storage import schema
from exchange.storage.base import (
    NewVersion,
    ObjectListing,
    ObjectQuery,
    ObservableSearch,
    StoredVersion,
    VersionMatch,
)
from exchange.storage.sql import SqlStore

from .conftest import COLL, ORG_A, ORG_B, OTHER_COLL
from .test_contract import SECOND, T0, add, nv, oid

BASIC = frozenset({"clear", "green", "amber"})


def indicator(n: int, pattern: str, version: int = T0, **kw: object) -> NewVersion:
    object_id = oid(n)
    body = json.dumps({"type": "indicator", "id": object_id, "pattern": pattern,
                       "pattern_type": "stix", "modified": version}).encode()
    return nv(object_id, version, body=body, **kw)  # type: ignore[arg-type]


def sco(n: int, kind: str, value: str, **kw: object) -> NewVersion:
    object_id = oid(n, kind)
    body = json.dumps({"type": kind, "id": object_id, "value": value}).encode()
    return nv(object_id, None, body=body, **kw)  # type: ignore[arg-type]


def find(store: SqlStore, value: str, *, subdomains: bool = False,
         scopes: Sequence[ObjectQuery] = (ObjectQuery(COLL),), after: int | None = None,
         limit: int = 100) -> list[StoredVersion]:
    term = search_terms(value, subdomains=subdomains)
    return store.search_observables(ObservableSearch(
        kinds=term.kinds, keys=term.keys, prefix=term.prefix, scopes=tuple(scopes),
        after=after, limit=limit)).rows


def ids(rows: Sequence[StoredVersion]) -> list[str]:
    return [r.id for r in rows]


@pytest.fixture
def indexed(world: SqlStore) -> SqlStore:
    add(world, [
        indicator(1, "[ipv4-addr:value = '203.0.113.7']"),
        indicator(2, "[ipv4-addr:value = '203.0.113.0/24'] OR [domain-name:value = 'c2.example']"),
        indicator(3, "[file:hashes.'SHA-256' = "
                     "'AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899']"),
        indicator(4, "[ipv4-addr:value != '198.51.100.1']"),
        sco(5, "domain-name", "WWW.Evil.Example"),
        sco(6, "domain-name", "evil.example"),
        sco(7, "domain-name", "notevil.example"),
        sco(8, "url", "HTTP://Evil.Example:80/login?a=B"),
        sco(9, "email-addr", "Phisher@Evil.Example"),
        sco(10, "ipv6-addr", "2001:DB8::/32"),
    ])
    return world


@pytest.mark.parametrize(("value", "expected"), [
    ("203.0.113.7", [1, 2]),
    ("203.0.113.9", [2]),
    ("203.0.113.0/24", [2]),
    ("203.0.114.1", []),
    ("198.51.100.1", []),
    ("c2.example", [2]),
    ("aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899", [3]),
    ("AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899", [3]),
    ("evil.example", [6]),
    ("http://evil.example/login?a=B", [8]),
    ("http://evil.example/login?a=b", []),
    ("phisher@evil.example", [9]),
    ("2001:db8:0:0::1", [10]),
], ids=["ip", "ip-in-cidr", "cidr-itself", "ip-miss", "negated-not-indexed", "domain",
        "sha256", "sha256-upper", "domain-not-subdomains", "url", "url-query-case",
        "email", "ipv6-in-cidr"])
def test_values_are_found(indexed: SqlStore, value: str, expected: list[int]) -> None:
    assert [int(i.rsplit("-", 1)[1]) for i in ids(find(indexed, value))] == expected


def test_subdomains_only_when_asked(indexed: SqlStore) -> None:
    assert [int(i.rsplit("-", 1)[1]) for i in ids(find(indexed, "evil.example",
                                                       subdomains=True))] == [5, 6]
    assert [int(i.rsplit("-", 1)[1]) for i in ids(find(indexed, "www.evil.example",
                                                       subdomains=True))] == [5]


def test_only_the_newest_version_counts(world: SqlStore) -> None:
    add(world, [indicator(1, "[ipv4-addr:value = '192.0.2.1']", T0)])
    assert ids(find(world, "192.0.2.1")) == [oid(1)]
    add(world, [indicator(1, "[ipv4-addr:value = '192.0.2.2']", T0 + SECOND)])
    assert find(world, "192.0.2.1") == []
    rows = find(world, "192.0.2.2")
    assert [(r.id, r.version) for r in rows] == [(oid(1), T0 + SECOND)]
    assert b"192.0.2.2" in rows[0].body


def test_nobody_finds_what_they_may_not_receive(world: SqlStore) -> None:
    add(world, [indicator(6, "[ipv4-addr:value = '192.0.2.66']", producer=ORG_B,
                          tlp="red")], org_id=ORG_B)
    reader = ObjectQuery(COLL, visible_tlps=BASIC, own_org=ORG_A)
    assert find(world, "192.0.2.66", scopes=[reader]) == []
    producer = ObjectQuery(COLL, visible_tlps=BASIC, own_org=ORG_B)
    assert ids(find(world, "192.0.2.66", scopes=[producer])) == [oid(6)]
    nothing = ObjectQuery(COLL, visible_tlps=frozenset())
    assert find(world, "192.0.2.66", scopes=[nothing]) == []


def test_only_the_collections_searched(world: SqlStore) -> None:
    add(world, [indicator(1, "[domain-name:value = 'a.example']")], OTHER_COLL)
    assert find(world, "a.example") == []
    rows = find(world, "a.example", scopes=[ObjectQuery(COLL), ObjectQuery(OTHER_COLL)])
    assert [r.collection_id for r in rows] == [OTHER_COLL]


def test_pages_follow_date_added(world: SqlStore) -> None:
    add(world, [indicator(n, "[ipv4-addr:value = '192.0.2.5']") for n in range(1, 8)])
    seen: list[str] = []
    after = None
    while True:
        page = world.search_observables(ObservableSearch(
            kinds=("ipv4",), keys=("192.0.2.5",), scopes=(ObjectQuery(COLL),),
            after=after, limit=3))
        seen += ids(page.rows)
        if not page.more:
            break
        after = page.rows[-1].date_added
    assert seen == [oid(n) for n in range(1, 8)]


def test_a_deleted_object_is_no_longer_found(indexed: SqlStore) -> None:
    assert indexed.delete_object(COLL, oid(1), VersionMatch(all=True)) == 1
    assert ids(find(indexed, "203.0.113.7")) == [oid(2)]
    with indexed._require_engine().connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(schema.observables)
                            .where(schema.observables.c.key == "203.0.113.7")).scalar_one()
    assert left == 0


def test_upgrading_an_older_database_indexes_what_it_holds(indexed: SqlStore) -> None:
    cfg = indexed._alembic_config()
    with indexed._require_engine().begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    with indexed._require_engine().begin() as conn:
        assert not sa.inspect(conn).has_table("observables")
    indexed.upgrade()
    indexed.check_schema()
    assert [int(i.rsplit("-", 1)[1]) for i in ids(find(indexed, "203.0.113.7"))] == [1, 2]
    assert ids(find(indexed, "phisher@evil.example")) == [StixId(oid(9, "email-addr"))]


def test_a_store_without_matching_kinds_or_scopes_finds_nothing(indexed: SqlStore) -> None:
    search = ObservableSearch(kinds=("ipv4",), keys=("203.0.113.7",), scopes=())
    assert indexed.search_observables(search).rows == []
    assert indexed.search_observables(replace(search, kinds=("md5",),
                                              scopes=(ObjectQuery(COLL),))).rows == []
    with pytest.raises(ValueError, match="limit"):
        indexed.search_observables(replace(search, limit=0))


# -- the operator's listing (exchange objects list) -------------------------------------


def test_listing_filters_and_orders_newest_first(world: SqlStore) -> None:
    first, _ = add(world, [indicator(1, "[ipv4-addr:value = '192.0.2.1']", tlp="green"),
                           sco(2, "domain-name", "a.example", tlp="amber")])
    add(world, [indicator(1, "[ipv4-addr:value = '192.0.2.2']", T0 + SECOND)])
    add(world, [indicator(3, "[ipv4-addr:value = '192.0.2.3']", producer=ORG_B,
                          tlp="red")], OTHER_COLL, org_id=ORG_B)

    def listed(**kw: object) -> list[str]:
        return [r.id for r in world.list_objects(ObjectListing(**kw)).rows]  # type: ignore[arg-type]

    assert listed() == [oid(3), oid(1), oid(2, "domain-name")]
    assert listed(latest_only=False) == [oid(3), oid(1), oid(2, "domain-name"), oid(1)]
    assert listed(collection_ids=(OTHER_COLL,)) == [oid(3)]
    assert listed(types=("domain-name",)) == [oid(2, "domain-name")]
    assert listed(producer_orgs=(ORG_B,)) == [oid(3)]
    assert listed(tlps=("amber", "red")) == [oid(3), oid(2, "domain-name")]
    assert listed(until=first[1].date_added + 1, since=first[1].date_added) == \
        [oid(2, "domain-name")]
    page = world.list_objects(ObjectListing(limit=2))
    assert (len(page.rows), page.more) == (2, True)
    assert page.rows[0].body == b""


# -- flat feeds (Store.feed_values) ------------------------------------------------------


def feed_indicator(n: int, pattern: str, version: int = T0, *, producer: OrgId = ORG_A,
                   tlp: str = "green", **body: object) -> NewVersion:
    object_id = oid(n)
    data = {"type": "indicator", "id": object_id, "pattern": pattern,
            "pattern_type": "stix", "modified": version, **body}
    return nv(object_id, version, body=json.dumps(data).encode(), producer=producer, tlp=tlp)


def test_feed_values_are_the_latest_unrevoked_visible_indicators_of_one_kind(
        world: SqlStore) -> None:
    """What a SOC's firewall would get: one kind, the newest version only, never a
    revoked or invisible indicator, with the facts the CSV feed lists."""
    add(world, [
        feed_indicator(1, "[ipv4-addr:value = '192.0.2.1'] OR [ipv4-addr:value = '192.0.2.9']",
                       valid_from="2024-01-01T00:00:00Z", valid_until="2030-01-01T00:00:00.5Z",
                       created_by_ref="identity--00000000-0000-4000-8000-000000000001",
                       labels=["c2", 7], confidence=80),
        feed_indicator(2, "[domain-name:value = 'c2.example']"),
        feed_indicator(3, "[ipv4-addr:value = '192.0.2.3']"),
        replace(feed_indicator(4, "[ipv4-addr:value = '192.0.2.4']", revoked=True),
                revoked=True),
        sco(5, "ipv4-addr", "192.0.2.5"),
    ])
    add(world, [feed_indicator(3, "[ipv4-addr:value = '192.0.2.33']", T0 + SECOND)])
    add(world, [feed_indicator(6, "[ipv4-addr:value = '192.0.2.6']", producer=ORG_B,
                               tlp="red")], org_id=ORG_B)
    add(world, [feed_indicator(7, "[ipv4-addr:value = '192.0.2.7']")], OTHER_COLL)

    reader = ObjectQuery(COLL, visible_tlps=BASIC, own_org=ORG_A)
    got = world.feed_values(reader, ("ipv4",))
    assert [(r.id, r.key) for r in got] == [
        (oid(1), "192.0.2.1"), (oid(1), "192.0.2.9"), (oid(3), "192.0.2.33")]
    first = got[0]
    assert (first.valid_from, first.valid_until, first.author, first.effective_tlp) == (
        "2024-01-01T00:00:00Z", "2030-01-01T00:00:00.5Z",
        "identity--00000000-0000-4000-8000-000000000001", "green")
    assert (first.producer_org, first.version, first.tlp) == (ORG_A, T0, "green")
    assert got[2].valid_from is None
    assert got[2].author is None
    assert [r.date_added for r in got] == sorted(r.date_added for r in got)
    # RED reaches its producer only; the domain kind is another feed
    assert [r.key for r in world.feed_values(
        ObjectQuery(COLL, visible_tlps=BASIC, own_org=ORG_B), ("ipv4",))][-1] == "192.0.2.6"
    assert [r.key for r in world.feed_values(reader, ("domain",))] == ["example.c2."]
    # added_after and ids narrow it, as in a read; nothing visible reads nothing
    after = world.feed_values(replace(reader, added_after=got[1].date_added), ("ipv4",))
    assert [r.id for r in after] == [oid(3)]
    assert [r.id for r in world.feed_values(replace(reader, ids=(oid(1),)), ("ipv4",))] == [
        oid(1), oid(1)]
    assert world.feed_values(ObjectQuery(COLL, visible_tlps=frozenset()), ("ipv4",)) == []
    # several kinds at once, each row naming its kind; labels and confidence on request
    both = world.feed_values(reader, ("ipv4", "domain"), with_labels=True)
    assert [(r.id, r.kind, r.key) for r in both] == [
        (oid(1), "ipv4", "192.0.2.1"), (oid(1), "ipv4", "192.0.2.9"),
        (oid(2), "domain", "example.c2."), (oid(3), "ipv4", "192.0.2.33")]
    assert (both[0].labels, both[0].confidence) == (("c2",), 80)
    assert (both[2].labels, both[2].confidence) == (None, None)
    assert got[0].labels is None  # not asked for


def test_upgrading_a_database_from_before_indicator_facts_fills_them(world: SqlStore) -> None:
    add(world, [feed_indicator(1, "[ipv4-addr:value = '192.0.2.1']", labels=["c2"],
                               confidence=70, valid_from="2024-01-01T00:00:00Z",
                               created_by_ref="identity--00000000-0000-4000-8000-000000000009"),
                sco(2, "ipv4-addr", "192.0.2.2")])
    reader = ObjectQuery(COLL, visible_tlps=BASIC, own_org=ORG_A)
    before = world.feed_values(reader, ("ipv4",), with_labels=True)
    assert [(r.key, r.labels, r.confidence, r.valid_from) for r in before] == [
        ("192.0.2.1", ("c2",), 70, "2024-01-01T00:00:00Z")]
    cfg = world._alembic_config()
    with world._require_engine().begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
    with world._require_engine().begin() as conn:
        assert not sa.inspect(conn).has_table("indicator_facts")
    world.upgrade()
    world.check_schema()
    assert world.feed_values(reader, ("ipv4",), with_labels=True) == before
