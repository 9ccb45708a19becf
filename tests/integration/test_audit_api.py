"""The auditor's HTTP API (``/<api_root>/cx/audit/...``) through the real application.

Each node is a fresh home in a temporary directory with its own SQLite database, served
by :func:`exchange.taxii.app.create_app` through Flask's WSGI test client (no server
process). Automatic checkpoints are off (``audit_checkpoint_seconds = 0``) so the tests
decide when the log is signed. Records are appended straight to the ledger with the
audit unit tests' builders; the setup itself adds a few admin records (organisations,
accounts, API keys), which every expectation below accounts for.

Expected filter results are computed here, in Python, from the unfiltered listing (whose
records are first checked against the canonical bytes of what was appended), so the
SQL filters are compared with an independent reading of the same records.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from exchange.audit.checkpoint import NoteKey, verify_checkpoint
from exchange.audit.query import MAX_PAGE
from exchange.audit.records import (
    DISCLOSURE_ENTRY_MEMBERS,
    DISCLOSURE_GROUP_MEMBERS,
    Record,
    record_bytes,
)
from exchange.audit.tree import leaf_hash, verify_consistency, verify_inclusion
from exchange.config import load_settings
from exchange.errors import SignatureError
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.storage.timestamps import from_micros, to_micros
from exchange.taxii.app import create_app
from tests.unit.audit.helpers import (
    DIGEST,
    OTHER_DIGEST,
    T0,
    disclosed,
    disclosure,
    one_of_each,
)

TAXII = "application/taxii+json;version=2.1"
ACCOUNTS = [
    ("admin", "Operator", "admin"),
    ("auditor", "Operator", "auditor"),
    ("reader", "PK-CERT", "consumer"),
    ("publisher", "UZ-CERT", "publisher"),
    ("soc", "UZ-SOC", "consumer"),  # a constituent's tool: not a witness
]

# A disclosure whose entries come from two producers: found by the byte search.
MIXED = dataclasses.replace(
    disclosure(500, recipient="org-tj"),
    objects=(disclosed(500, producer="org-kg"), disclosed(501, producer="org-uz")),
)
RECORDS: list[Record] = [
    *one_of_each(0),
    disclosure(100, recipient="org-kz", producer="org-uz", count=3),
    disclosure(110, recipient="org-pk", producer="org-kg", count=2),
    disclosure(101, recipient="org-tj", producer="org-uz"),
    MIXED,
    *(disclosure(200 + 10 * i, recipient=("org-pk", "org-kz", "org-tj")[i % 3],
                 producer=("org-uz", "org-kg")[i % 2], count=1 + i % 3) for i in range(12)),
    *one_of_each(900),
]


class Node:
    """A node in a temporary home, its accounts, and a test client of its application."""

    def __init__(self, home: Path) -> None:
        env = {"EXCHANGE_AUDIT_CHECKPOINT_SECONDS": "0"}
        settings = load_settings(home, env=env)
        init_home(settings)
        self.settings = load_settings(home, env=env)
        self.store = open_store(self.settings)
        self.ex = Exchange(self.settings, self.store)
        for org in ("Operator", "PK-CERT", "UZ-CERT"):
            self.ex.add_org(org)
        self.ex.add_org("UZ-SOC", parent="UZ-CERT")
        self.keys: dict[str, str] = {}
        for account, org, role in ACCOUNTS:
            self.ex.add_account(account, org=org, role=role)
            self.keys[account] = self.ex.create_api_key(account)[1]
        self.client: FlaskClient = create_app(self.settings, exchange=self.ex).test_client()
        self.base = f"/{self.settings.api_root}/cx/audit/"

    def headers(self, account: str) -> dict[str, str]:
        token = base64.b64encode(f"{account}:{self.keys[account]}".encode()).decode()
        return {"Accept": TAXII, "Authorization": f"Basic {token}"}

    def get(self, path: str, account: str = "auditor",
            query: dict[str, Any] | list[tuple[str, str]] | None = None) -> TestResponse:
        return self.client.get(self.base + path, headers=self.headers(account),
                               query_string=query)

    def post_checkpoint(self, account: str = "auditor", body: bytes = b"") -> TestResponse:
        # Werkzeug's test client drops Content-Length for an empty body; a real client
        # sends "Content-Length: 0", which the environ override reproduces.
        return self.client.post(
            self.base + "checkpoint/", data=body,
            headers={**self.headers(account), "Content-Type": TAXII},
            environ_overrides={"CONTENT_LENGTH": str(len(body))})

    def checkpoint(self) -> dict[str, Any]:
        r = self.post_checkpoint()
        assert r.status_code in (200, 201), r.get_data(as_text=True)
        body: dict[str, Any] = json_of(r)
        return body

    def root_of(self, note: str) -> bytes:
        """The root a signed note states, after checking it with the node's keys."""
        return verify_checkpoint(note, self.ex.audit.keys(), origin=self.ex.audit.origin).root

    def walk(self, query: dict[str, Any] | None = None, limit: int | None = None
             ) -> list[tuple[int, dict[str, Any]]]:
        """Every record a query matches, following ``next`` from page to page."""
        params: dict[str, Any] = dict(query or {})
        if limit is not None:
            params["limit"] = str(limit)
        found: list[tuple[int, dict[str, Any]]] = []
        for _ in range(10_000):
            r = self.get("records/", query=params)
            assert r.status_code == 200, r.get_data(as_text=True)
            page = json_of(r)
            if limit is not None:
                assert len(page["records"]) <= limit
            found += [(item["seq"], item["record"]) for item in page["records"]]
            if not page["more"]:
                assert "next" not in page
                return found
            params["after"] = page["next"]
        raise AssertionError("paging did not end")

    def close(self) -> None:
        self.store.close()


def json_of(r: TestResponse) -> Any:
    return json.loads(r.get_data(as_text=True))


def description(r: TestResponse) -> str:
    return str(json_of(r).get("description", ""))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "home")
    yield n
    n.close()


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, list[int]]]:
    """A node holding RECORDS (read-only tests share it), and their seqs."""
    n = Node(tmp_path_factory.mktemp("audit-api") / "home")
    seqs = n.ex.store.append_audit(RECORDS)
    yield n, seqs
    n.close()


# -- who may ask --------------------------------------------------------------------------


def test_a_consumer_gets_checkpoints_and_consistency_but_no_records_or_proofs(
        node: Node) -> None:
    node.ex.store.append_audit(one_of_each())
    first = node.checkpoint()
    node.ex.store.append_audit([disclosure(7)])
    node.checkpoint()
    for account in ("reader", "publisher"):
        r = node.get("records/", account)
        assert r.status_code == 403
        assert "admin and auditor" in description(r)
        assert node.get("proof/0/", account).status_code == 403
        assert node.post_checkpoint(account).status_code == 403
        assert node.get("checkpoint/", account).status_code == 200
        r = node.get("consistency/", account, {"from": str(first["size"])})
        assert r.status_code == 200, r.get_data(as_text=True)
    for account in ("admin", "auditor"):
        assert node.get("records/", account).status_code == 200
        assert node.get("proof/0/", account).status_code == 200


def test_a_constituent_is_no_witness(node: Node) -> None:
    node.ex.store.append_audit(one_of_each())
    first = node.checkpoint()
    for r in (node.get("checkpoint/", "soc"),
              node.get("consistency/", "soc", {"from": str(first["size"])})):
        assert r.status_code == 403
        assert "'UZ-SOC', which is not a member organisation" in description(r)
        assert "root" not in r.get_json()


def test_another_api_root_is_not_found(node: Node) -> None:
    r = node.client.get("/elsewhere/cx/audit/records/", headers=node.headers("auditor"))
    assert r.status_code == 404
    assert "elsewhere" in description(r)


def test_requests_without_credentials_are_refused(node: Node) -> None:
    r = node.client.get(node.base + "checkpoint/", headers={"Accept": TAXII})
    assert r.status_code == 401


# -- records ----------------------------------------------------------------------------


def test_the_listing_shows_the_appended_records_as_canonical_json(
        populated: tuple[Node, list[int]]) -> None:
    node, seqs = populated
    listing = dict(node.walk())
    assert sorted(listing) == list(range(node.ex.audit.size()))
    for seq, record in zip(seqs, RECORDS, strict=True):
        assert listing[seq] == json.loads(record_bytes(record, seq))
    first = json_of(node.get("records/", query={"limit": "1"}))
    assert first["tree_size"] == node.ex.audit.size()
    assert first["more"] is True
    assert first["next"] == "0"


def _matches(record: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether a record (as JSON) matches a query, read independently of the SQL."""
    kind = record["kind"]
    entries = record.get("objects", []) if kind in ("publish", "disclosure") else []
    if kind == "disclosure":  # entries are arrays naming a group of producer, level, rule
        entries = [{**dict(zip(DISCLOSURE_ENTRY_MEMBERS, e, strict=True)),
                    **dict(zip(DISCLOSURE_GROUP_MEMBERS, record["groups"][e[4]], strict=True))}
                   for e in entries]
    for name, value in query.items():
        if name == "recipient" and record.get("recipient_org") != value:
            return False
        if name == "producer" and not (
                (kind == "publish" and record["org"] == value)
                or (kind == "disclosure" and any(e["producer_org"] == value for e in entries))):
            return False
        if name == "object" and all(e["object_id"] != value for e in entries):
            return False
        if name == "policy" and value not in (record.get("policy_digest"),
                                              record.get("old_digest"),
                                              record.get("new_digest")):
            return False
        if name == "kind":
            wanted = {k for v in ([value] if isinstance(value, str) else value)
                      for k in v.split(",")}
            if kind not in wanted:
                return False
        if name == "since" and to_micros(record["time"]) < to_micros(value):
            return False
        if name == "until" and to_micros(record["time"]) >= to_micros(value):
            return False
    return True


FILTERS: list[Any] = [
    {"recipient": "org-kz"},
    {"recipient": "org-tj"},
    {"producer": "org-kg"},
    {"producer": "org-uz"},
    {"object": disclosed(101).object_id},
    {"object": disclosed(501).object_id},
    {"object": "indicator--x"},
    {"kind": "denial,policy-reload"},
    {"kind": ["publish", "denial"]},
    {"kind": "admin"},
    {"policy": OTHER_DIGEST},
    {"policy": DIGEST},
    {"since": from_micros(T0 + 100_000), "until": from_micros(T0 + 250_000)},
    {"since": from_micros(T0 + 500_000)},
    {"until": from_micros(T0 + 101_000)},
    {"recipient": "org-pk", "producer": "org-kg", "kind": "disclosure"},
]


@pytest.mark.parametrize("query", FILTERS, ids=json.dumps)
def test_filters_return_exactly_the_matching_records(populated: tuple[Node, list[int]],
                                                     query: dict[str, Any]) -> None:
    node, _ = populated
    everything = node.walk()
    expected = [seq for seq, record in everything if _matches(record, query)]
    assert 0 < len(expected) < len(everything), "the filter must select a proper subset"
    assert [seq for seq, _ in node.walk(query)] == expected
    # the same set when read two at a time
    assert [seq for seq, _ in node.walk(query, limit=2)] == expected


def test_some_filters_name_known_records(populated: tuple[Node, list[int]]) -> None:
    node, seqs = populated
    # object 101 is the second entry of one batch and the only entry of another
    assert [s for s, _ in node.walk({"object": disclosed(101).object_id})] == [
        seqs[5], seqs[7]]
    # org-kg to org-tj: the mixed batch (one of its two producers) and two generated ones
    assert [s for s, _ in node.walk({"producer": "org-kg", "recipient": "org-tj"})] == [
        seqs[8], *(seqs[9 + i] for i in range(12) if i % 6 == 5)]
    assert [s for s, _ in node.walk({"kind": "policy-reload"})] == [seqs[4], seqs[-1]]


def test_paging_visits_every_record_exactly_once(populated: tuple[Node, list[int]]) -> None:
    node, _ = populated
    size = node.ex.audit.size()
    for limit in (1, 3, 7, size, MAX_PAGE):
        assert [seq for seq, _ in node.walk(limit=limit)] == list(range(size))
    page = json_of(node.get("records/", query={"after": "5", "limit": "2"}))
    assert [item["seq"] for item in page["records"]] == [6, 7]
    assert page["next"] == "7"
    last = json_of(node.get("records/", query={"after": str(size - 1)}))
    assert last["records"] == []
    assert last["more"] is False
    assert "next" not in last


@pytest.mark.parametrize(("query", "named"), [
    ({"limit": "0"}, "limit"),
    ({"limit": str(MAX_PAGE + 1)}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"after": "x"}, "after"),
    ({"after": "-5"}, "after"),
    ({"after": "1e3"}, "after"),
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01T00:00:00Z"}, "until"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ({"kind": "publish,bogus"}, "kind"),
    ({"kind": ""}, "kind"),
    ({"policy": "sha256:xyz"}, "policy"),
    ({"policy": "SHA256:" + "AB" * 32}, "policy"),
    ({"recipient": ""}, "recipient"),
    ({"producer": 'org"x'}, "producer"),
    ({"object": "a\\b"}, "object"),
    ({"recipient": ["org-pk", "org-kz"]}, "recipient"),
    ({"recepient": "org-pk"}, "recepient"),
])
def test_bad_record_parameters_are_refused_by_name(populated: tuple[Node, list[int]],
                                                   query: dict[str, Any], named: str) -> None:
    node, _ = populated
    r = node.get("records/", query=query)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert json_of(r)["http_status"] == "400"
    assert named in description(r)


# -- checkpoints --------------------------------------------------------------------------


def test_checkpoint_is_missing_then_made_then_served_and_verifies(node: Node) -> None:
    node.ex.store.append_audit(one_of_each())
    r = node.get("checkpoint/", "reader")
    assert r.status_code == 404
    assert "no checkpoint" in description(r)

    made = node.post_checkpoint()
    assert made.status_code == 201, made.get_data(as_text=True)
    body = json_of(made)
    assert body["size"] == node.ex.audit.size()
    assert body["origin"] == node.ex.audit.origin
    checkpoint = verify_checkpoint(body["note"], node.ex.audit.keys(), origin=body["origin"])
    assert checkpoint.size == body["size"]
    assert base64.b64encode(checkpoint.root).decode() == body["root"]
    # a member can check it with the verifier keys the API handed out
    keys = [NoteKey.parse(k) for k in body["verifier_keys"]]
    assert verify_checkpoint(body["note"], keys).size == body["size"]
    # ... and a note that says something else does not verify
    forged = body["note"].replace(f"\n{body['size']}\n", f"\n{body['size'] + 1}\n", 1)
    assert forged != body["note"]
    with pytest.raises(SignatureError):
        verify_checkpoint(forged, keys)

    served = node.get("checkpoint/", "reader")
    assert served.status_code == 200
    assert json_of(served) == body

    # nothing new to sign: the newest checkpoint again, not a new one
    again = node.post_checkpoint()
    assert again.status_code == 200
    assert json_of(again)["note"] == body["note"]

    node.ex.store.append_audit([disclosure(3)])
    grown = node.post_checkpoint("admin")
    assert grown.status_code == 201
    assert json_of(grown)["size"] == body["size"] + 1


def test_the_verifier_key_is_served_to_any_member_before_any_checkpoint(node: Node) -> None:
    r = node.get("key/", "reader")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = json_of(r)
    assert body["origin"] == node.ex.audit.origin
    trusted = node.ex.audit.keys()  # a method, not a mapping
    assert body["verifier_keys"] == [k.verifier() for k in trusted]
    assert len(body["verifier_keys"]) == 1
    node.ex.store.append_audit(one_of_each())
    made = json_of(node.post_checkpoint())
    keys = [NoteKey.parse(k) for k in body["verifier_keys"]]
    assert verify_checkpoint(made["note"], keys).size == made["size"]
    assert node.get("key/", "reader", {"x": "1"}).status_code == 400


def test_checkpoint_post_takes_no_body_and_no_parameters(node: Node) -> None:
    r = node.post_checkpoint(body=b"{}")
    assert r.status_code == 400
    assert "no body" in description(r)
    r = node.client.post(node.base + "checkpoint/?size=3",
                         headers={**node.headers("auditor"), "Content-Type": TAXII},
                         environ_overrides={"CONTENT_LENGTH": "0"})
    assert r.status_code == 400
    assert "size" in description(r)
    assert node.get("checkpoint/", "reader").status_code == 404  # nothing was signed


# -- proofs -------------------------------------------------------------------------------


def test_inclusion_proofs_verify_and_fail_for_a_wrong_leaf(node: Node) -> None:
    seqs = node.ex.store.append_audit(RECORDS[:10])
    first = node.checkpoint()
    size = first["size"]
    root = node.root_of(first["note"])
    later = node.ex.store.append_audit(RECORDS[10:])

    proofs: dict[int, dict[str, Any]] = {}
    for seq in range(size):
        r = node.get(f"proof/{seq}/")
        assert r.status_code == 200, r.get_data(as_text=True)
        proof = json_of(r)
        assert proof["seq"] == seq
        assert proof["tree_size"] == size
        assert proof["checkpoint"] == first["note"]
        data = proof["record"].encode()
        assert base64.b64decode(proof["leaf_hash"]) == leaf_hash(data)
        path = [base64.b64decode(h) for h in proof["audit_path"]]
        verify_inclusion(seq, size, leaf_hash(data), path, root)
        proofs[seq] = {"data": data, "path": path}
    for seq, record in zip(seqs, RECORDS[:10], strict=True):
        assert proofs[seq]["data"] == record_bytes(record, seq)

    # a wrong leaf, a wrong index or a changed record does not verify
    a, b = seqs[0], seqs[1]
    with pytest.raises(SignatureError):
        verify_inclusion(a, size, leaf_hash(proofs[b]["data"]), proofs[a]["path"], root)
    with pytest.raises(SignatureError):
        verify_inclusion(b, size, leaf_hash(proofs[a]["data"]), proofs[a]["path"], root)
    changed = proofs[a]["data"].replace(b'"org-uz"', b'"org-xx"')
    assert changed != proofs[a]["data"]
    with pytest.raises(SignatureError):
        verify_inclusion(a, size, leaf_hash(changed), proofs[a]["path"], root)

    # a record newer than the newest checkpoint
    r = node.get(f"proof/{later[0]}/")
    assert r.status_code == 404
    assert "newer than checkpoint" in description(r)

    second = node.checkpoint()
    assert second["size"] > size
    r = node.get(f"proof/{later[0]}/")
    assert r.status_code == 200
    verify_inclusion(later[0], second["size"], leaf_hash(json_of(r)["record"].encode()),
                     [base64.b64decode(h) for h in json_of(r)["audit_path"]],
                     node.root_of(second["note"]))

    # against the older checkpoint by its size
    r = node.get(f"proof/{a}/", query={"size": str(size)})
    assert r.status_code == 200
    old = json_of(r)
    assert old["tree_size"] == size
    assert old["checkpoint"] == first["note"]
    verify_inclusion(a, size, leaf_hash(old["record"].encode()),
                     [base64.b64decode(h) for h in old["audit_path"]], root)
    newest = json_of(node.get(f"proof/{a}/"))
    assert newest["tree_size"] == second["size"]
    with pytest.raises(SignatureError):  # the newest path does not lead to the old root
        verify_inclusion(a, size, leaf_hash(old["record"].encode()),
                         [base64.b64decode(h) for h in newest["audit_path"]], root)


def test_inclusion_proof_errors(node: Node) -> None:
    r = node.get("proof/0/")
    assert r.status_code == 404
    assert "no checkpoint" in description(r)
    node.ex.store.append_audit(one_of_each())
    size = node.checkpoint()["size"]
    for query, status, text in [
        ({"size": "abc"}, 400, "size"),
        ({"size": "0"}, 400, "size"),
        ({"size": str(size + 50)}, 404, f"size {size + 50}"),
        ({"depth": "1"}, 400, "depth"),
    ]:
        r = node.get("proof/0/", query=query)
        assert r.status_code == status, (query, r.get_data(as_text=True))
        assert text in description(r)
    assert node.get(f"proof/{size + 1000}/").status_code == 404
    assert node.get(f"proof/{2**64}/").status_code == 404


def test_consistency_proofs_verify_between_checkpoints(node: Node) -> None:
    node.ex.store.append_audit(RECORDS[:6])
    old = node.checkpoint()
    node.ex.store.append_audit(RECORDS[6:])
    new = node.checkpoint()
    old_root, new_root = node.root_of(old["note"]), node.root_of(new["note"])

    for query in ({"from": str(old["size"])},
                  {"from": str(old["size"]), "to": str(new["size"])}):
        r = node.get("consistency/", "reader", query)
        assert r.status_code == 200, r.get_data(as_text=True)
        body = json_of(r)
        assert (body["from"], body["to"]) == (old["size"], new["size"])
        assert body["old_checkpoint"] == old["note"]
        assert body["new_checkpoint"] == new["note"]
        proof = [base64.b64decode(h) for h in body["proof"]]
        assert proof
        verify_consistency(old["size"], new["size"], proof, old_root, new_root)
        with pytest.raises(SignatureError):
            verify_consistency(old["size"], new["size"], proof, new_root, new_root)
        with pytest.raises(SignatureError):
            verify_consistency(old["size"], new["size"], proof[:-1], old_root, new_root)

    same = json_of(node.get("consistency/", query={"from": str(new["size"])}))
    assert same["proof"] == []
    verify_consistency(new["size"], new["size"], [], new_root, new_root)


def test_consistency_errors(node: Node) -> None:
    node.ex.store.append_audit(one_of_each())
    old = node.checkpoint()["size"]
    node.ex.store.append_audit([disclosure(9)])
    new = node.checkpoint()["size"]
    for query, status, text in [
        ({}, 400, "from"),
        ({"from": "x"}, 400, "from"),
        ({"from": "-1"}, 400, "from"),
        ({"from": str(old), "to": "later"}, 400, "to"),
        ({"from": str(new), "to": str(old)}, 400, "older"),
        ({"from": str(old), "since": "1"}, 400, "since"),
        ({"from": str(old + 100)}, 404, f"size {old + 100}"),
        ({"from": str(old), "to": str(new + 100)}, 404, f"size {new + 100}"),
    ]:
        r = node.get("consistency/", "reader", query)
        assert r.status_code == status, (query, r.get_data(as_text=True))
        assert text in description(r), (query, description(r))
