"""Contract: peer trust records (revision 0014) and the no-loop-back read filter, on
SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from exchange.storage.base import ObjectQuery, PeerTrust
from exchange.storage.sql import SqlStore
from tests.unit.storage.conftest import COLL, ORG_A, ORG_B
from tests.unit.storage.test_contract import add, ids_of, nv, oid, read_all

KID_1 = "sha256:" + "A" * 43
KID_2 = "sha256:" + "B" * 43
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "x" * 44 + "\n-----END PUBLIC KEY-----\n"


def test_a_peer_is_absent_until_trusted_then_replaced_whole_then_forgotten(
        store: SqlStore) -> None:
    assert store.peer_trust("pk-node") is None
    first = PeerTrust("pk-node", ((KID_1, PEM),), registry_url="http://127.0.0.1:1/cx/",
                      api_key_file="/srv/keys/pk.key", created_at=5)
    store.save_peer_trust(first)
    assert store.peer_trust("pk-node") == first
    second = replace(first, pins=((KID_1, PEM), (KID_2, PEM)), registry=b'{"x":1}\x00\xff',
                     fetched_at=9)
    store.save_peer_trust(second)
    store.save_peer_trust(PeerTrust("kz-node", ((KID_2, PEM),), created_at=1))
    assert store.peer_trust("pk-node") == second
    assert [p.name for p in store.peer_trusts()] == ["kz-node", "pk-node"]
    assert store.delete_peer_trust("pk-node")
    assert not store.delete_peer_trust("pk-node")
    assert store.peer_trust("pk-node") is None
    assert "BEGIN" not in repr(second)


def test_excluded_producer_rows_are_never_returned_whatever_their_level(
        world: SqlStore) -> None:
    add(world, [nv(oid(1), producer=ORG_A, tlp="clear"), nv(oid(2), producer=ORG_A)])
    add(world, [nv(oid(3), producer=ORG_B, tlp="clear"), nv(oid(4), producer=None)],
        org_id=ORG_B)
    levels = frozenset({"clear", "green"})
    everything = read_all(world, ObjectQuery(COLL, visible_tlps=levels, limit=1))
    assert ids_of(everything) == [oid(1), oid(2), oid(3), oid(4)]
    peer = read_all(world, ObjectQuery(COLL, visible_tlps=levels, exclude_producer=ORG_A,
                                       limit=1))
    assert ids_of(peer) == [oid(3), oid(4)]
