"""Existence oracles, refused writes and ``next`` tokens, through a real server.

A black-box battery (issue 18) found that a client could tell what it may not see from
how the node answered: posting an id another organisation holds in a collection the
poster cannot read was refused while a fresh id was accepted; a hidden collection and a
missing one answered alike but did different work (one ledger record or none); a
consumer's refused POST left no trace in the ledger; and a ``next`` token could be
carried over to another collection or other filters. Each test below drives the real
server (``exchange serve`` on loopback, gunicorn) with requests or taxii2-client and
reads the ledger back with ``exchange audit records``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from taxii2client.v21 import Collection as TaxiiCollection
from taxii2client.v21 import as_pages

from exchange.cli.main import main
from exchange.config import load_settings
from exchange.node.base import MAX_SHOWN_REF
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from tests.integration.conftest import serving
from tests.integration.stixdata import envelope, indicator

TAXII = "application/taxii+json;version=2.1"
ACCOUNTS = {"uz-pub": ("UZ-CERT", "publisher"), "pk-pub": ("PK-CERT", "publisher"),
            "pk-reader": ("PK-CERT", "consumer")}


@dataclass
class World:
    base: str
    home: Path
    exchange: Exchange
    keys: dict[str, str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)

    def url(self, ref: str) -> str:
        return f"{self.base}/cx/collections/{ref}/"

    def get(self, url: str, account: str, **params: Any) -> requests.Response:
        rid = uuid.uuid4().hex
        return requests.get(url, params=params, auth=(account, self.keys[account]),
                            headers={"Accept": TAXII, "X-Request-ID": rid}, timeout=30)

    def post(self, ref: str, objects: list[dict[str, Any]], account: str) -> requests.Response:
        rid = uuid.uuid4().hex
        return requests.post(self.url(ref) + "objects/", data=envelope(*objects),
                             auth=(account, self.keys[account]),
                             headers={"Accept": TAXII, "Content-Type": TAXII,
                                      "X-Request-ID": rid}, timeout=60)

    def denials(self, response: requests.Response) -> list[dict[str, Any]]:
        """The ledger's denial records of one request (by its X-Request-ID)."""
        result = CliRunner().invoke(main, ["--home", str(self.home), "audit", "records",
                                           "--kind", "denial"],
                                    env={"EXCHANGE_SERVER_SECRET": None})
        assert result.exit_code == 0, result.stderr
        rid = response.headers["X-Request-ID"]
        return [r for r in map(json.loads, result.stdout.splitlines())
                if r["request_id"] == rid]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("oracles-home")
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    try:
        ex = Exchange(settings, store)
        w = World(base="", home=home, exchange=ex)
        for name in ("UZ-CERT", "PK-CERT"):
            w.identities[name] = ex.add_org(name).identity_id
        for account, (org, role) in ACCOUNTS.items():
            ex.add_account(account, org=org, role=role)
            w.keys[account] = ex.create_api_key(account)[1]
        for alias, readers, writers in (
            ("uz-only", ["UZ-CERT"], ["UZ-CERT"]),
            ("joint", ["UZ-CERT", "PK-CERT"], ["UZ-CERT", "PK-CERT"]),
            ("joint-2", ["UZ-CERT", "PK-CERT"], ["UZ-CERT", "PK-CERT"]),
        ):
            w.collections[alias] = ex.add_collection(alias, alias=alias, readers=readers,
                                                     writers=writers)[0].id
        with serving(home, ("uz-pub", w.keys["uz-pub"])) as base:
            w.base = base
            yield w
    finally:
        store.close()


def _shape(response: requests.Response, ref: str) -> tuple[int, str, dict[str, Any]]:
    """What a client sees of a refusal, with the reference it named and the request id
    (which differ by construction) taken out."""
    body = response.json()
    assert body.pop("error_id") == response.headers["X-Request-ID"]
    body["description"] = body["description"].replace(ref, "<ref>")
    return response.status_code, response.headers["Content-Type"], body


# -- the id oracle ---------------------------------------------------------------------------
def test_an_id_held_in_an_unreadable_collection_answers_like_a_fresh_id(world: World) -> None:
    """PK-CERT cannot read uz-only; whether UZ-CERT holds an id there must not show."""
    held = indicator(world.identities["UZ-CERT"])
    assert world.post("uz-only", [held], "uz-pub").json()["success_count"] == 1

    mine = indicator(world.identities["PK-CERT"], id=held["id"])
    fresh = indicator(world.identities["PK-CERT"])
    answers = [world.post("joint", [obj], "pk-pub") for obj in (mine, fresh)]
    assert [a.status_code for a in answers] == [202, 202]
    statuses = [a.json() for a in answers]
    for status in statuses:
        assert (status["success_count"], status["failure_count"]) == (1, 0), status
        assert "failures" not in status
        assert set(status) == set(statuses[0])
    assert [d.get("message") for s in statuses for d in s["successes"]] == [None, None]

    # each collection keeps its own object under the id, with its own contributor
    served = world.get(world.url("joint") + f"objects/{held['id']}/", "pk-reader").json()
    assert [o["created_by_ref"] for o in served["objects"]] == [world.identities["PK-CERT"]]
    kept = world.get(world.url("uz-only") + f"objects/{held['id']}/", "uz-pub").json()
    assert [o["name"] for o in kept["objects"]] == [held["name"]]
    # and within a collection the first contributor still owns the id
    hijack = {**held, "modified": "2026-11-02T10:00:00.000Z"}
    refused = world.post("joint", [hijack], "uz-pub").json()
    assert [f["message"] for f in refused["failures"]] == [
        "only the organisation that created this object may add versions of it"]


# -- the collection oracle ---------------------------------------------------------------------
@pytest.mark.parametrize("path", ["", "objects/", "manifest/"])
def test_hidden_and_missing_collections_answer_alike_and_do_the_same_work(
    world: World, path: str,
) -> None:
    hidden = world.collections["uz-only"]
    missing = str(uuid.uuid4())
    answers = {ref: world.get(world.url(ref) + path, "pk-reader") for ref in (hidden, missing)}
    assert _shape(answers[hidden], hidden) == _shape(answers[missing], missing)
    assert answers[hidden].status_code == 404
    # the same work: exactly one denial each, naming what was asked for
    (denied_hidden,) = world.denials(answers[hidden])
    (denied_missing,) = world.denials(answers[missing])
    assert (denied_hidden["rule"], denied_hidden["collection"]) == ("deny-no-grant", hidden)
    assert (denied_missing["rule"], denied_missing["collection"]) == (
        "deny-no-such-collection", missing)
    assert denied_hidden["channel"] == denied_missing["channel"]
    assert denied_missing["recipient_account"] == "pk-reader"


def test_a_missing_collection_reference_is_recorded_printable_and_bounded(world: World
                                                                          ) -> None:
    ref = "x" * 300 + "%0Aforged-line"
    answer = world.get(world.url(ref) + "objects/", "pk-reader")
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == TAXII
    (denied,) = world.denials(answer)
    assert denied["rule"] == "deny-no-such-collection"
    assert len(denied["collection"]) == MAX_SHOWN_REF
    assert denied["collection"].endswith("...")
    assert "\n" not in denied["reason"]


# -- refused writes ----------------------------------------------------------------------------
@pytest.mark.parametrize(("account", "alias", "status", "rule"), [
    ("pk-reader", "joint", 403, "deny-no-write-grant"),  # may read, may not write
    ("pk-pub", "uz-only", 404, "deny-no-grant"),  # may not see it at all
    ("pk-pub", None, 404, "deny-no-such-collection"),
])
def test_a_refused_post_is_a_denial_with_its_rule(
    world: World, account: str, alias: str | None, status: int, rule: str,
) -> None:
    ref = world.collections[alias] if alias else str(uuid.uuid4())
    obj = indicator(world.identities[ACCOUNTS[account][0]])
    answer = world.post(ref, [obj], account)
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == TAXII
    assert answer.json()["http_status"] == str(status)
    (denied,) = world.denials(answer)
    assert (denied["rule"], denied["recipient_account"], denied["collection"]) == (
        rule, account, ref)
    assert denied["channel"] == "taxii:add_objects"
    for target in world.collections.values():
        assert not world.exchange.store.object_exists(target, obj["id"])


# -- next tokens -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paged(world: World) -> list[str]:
    """Seven indicators in each joint collection; the ids in joint, in order."""
    ids = []
    for alias in ("joint", "joint-2"):
        objects = [indicator(world.identities["UZ-CERT"]) for _ in range(7)]
        assert world.post(alias, objects, "uz-pub").json()["success_count"] == 7
        if alias == "joint":
            ids = [o["id"] for o in objects]
    return ids


def _next_token(world: World, account: str, **params: Any) -> str:
    first = world.get(world.url(world.collections["joint"]) + "objects/", account,
                      limit=2, **params).json()
    assert first["more"] is True
    return str(first["next"])


def _refused_token(answer: requests.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"] == TAXII
    body = answer.json()
    assert body["http_status"] == "400"
    assert "next" in body["description"]


def test_a_next_token_works_only_for_the_listing_it_continues(world: World,
                                                              paged: list[str]) -> None:
    joint, other = world.collections["joint"], world.collections["joint-2"]
    token = _next_token(world, "pk-reader", **{"match[type]": "indicator"})
    # the listing it came from, also with another page size and by alias
    for ref, limit in ((joint, 2), ("joint", 50)):
        same = world.get(world.url(ref) + "objects/", "pk-reader", limit=limit,
                         next=token, **{"match[type]": "indicator"})
        assert same.status_code == 200, same.text
    # another collection, other filters, another endpoint, another account
    refusals = [
        world.get(world.url(other) + "objects/", "pk-reader", limit=2, next=token,
                  **{"match[type]": "indicator"}),
        world.get(world.url(joint) + "objects/", "pk-reader", limit=2, next=token),
        world.get(world.url(joint) + "objects/", "pk-reader", limit=2, next=token,
                  **{"match[type]": "malware"}),
        world.get(world.url(joint) + "objects/", "pk-reader", limit=2, next=token,
                  added_after="2020-01-01T00:00:00Z", **{"match[type]": "indicator"}),
        world.get(world.url(joint) + "manifest/", "pk-reader", limit=2, next=token,
                  **{"match[type]": "indicator"}),
        world.get(world.url(joint) + "objects/", "uz-pub", limit=2, next=token,
                  **{"match[type]": "indicator"}),
    ]
    for answer in refusals:
        _refused_token(answer)
    assert "another listing" in refusals[0].json()["description"]
    assert "issued to you" in refusals[-1].json()["description"]


def test_taxii2_client_pages_through_with_bound_tokens(world: World, paged: list[str]
                                                       ) -> None:
    collection = TaxiiCollection(world.url(world.collections["joint"]), user="pk-reader",
                                 password=world.keys["pk-reader"])
    seen = [o["id"] for page in as_pages(collection.get_objects, per_request=3,
                                         type="indicator")
            for o in page.get("objects", [])]
    assert set(paged) <= set(seen)
    assert len(seen) == len(set(seen))
