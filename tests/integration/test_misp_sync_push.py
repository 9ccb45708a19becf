"""The push run against two real MISP 2.5.1 instances, through the real PyMISP client.

A real exchange node (SQLite in a temporary home, the shipped policies/, members UZ-CERT,
PK-CERT and UZ-SOC) holds real STIX 2.1 files from ../shared/data/real, signed by
UZ-CERT and published into the joint working group's collection ``jwg`` (agreement
uz-pk-jwg-2026), one TLP level per file: indicator-for-malicious-url CLEAR,
malware-indicator-for-file-hash GREEN, poisonivy AMBER, apt1 AMBER+STRICT, and the
indicator of using-marking-definitions made TLP:RED naming UZ-CERT only, with a value of
its own. :func:`exchange.misp.push.run_push` then pushes to UZ-CERT's MISP and to
PK-CERT's, each reached through a sync user of a fresh organisation made for this module
as a real deployment would (``add_organisation``, ``add_user`` with the "Sync user"
role, and its API key), and the instances are read back with plain PyMISP as site
admin.

The instances keep their data between sessions, so every object id of the files gets a
fresh UUID per module (references rewritten alike) and loose indicators go one event
each (``event_grouping: indicator``): each module creates its events afresh. Requests
are counted with a response hook on the PyMISP session of each run's client.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymisp import PyMISP

from exchange.audit.query import RecordFilter
from exchange.audit.records import Disclosure, Kind
from exchange.config import load_settings
from exchange.member.signer import sign_all
from exchange.misp.client import MispClient
from exchange.misp.push import run_push, sharing_group_uuid
from exchange.misp.report import Outcome, RunReport
from exchange.misp.targets import (
    Direction,
    EventGrouping,
    MispTarget,
    Schedule,
    TargetFilters,
)
from exchange.model.objects import Principal, Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.node.keyring import register_key
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange, init_home
from exchange.policy.tlp import RED_RECIPIENTS_EXTENSION_ID
from exchange.signing.keys import generate
from exchange.storage import open_store
from exchange.storage.base import MispSyncState
from tests.integration.conftest import Misp, misp_account

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "real" / "stix21"
AGREEMENT = "uz-pk-jwg-2026"
#: Inside the agreement's term (2026-2027), whatever the machine's clock says.
NOW = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000
SYNC_ROLE = "Sync user"
READ_ONLY_POSTS = ("/events/view/", "/events/restSearch", "/attributes/restSearch",
                   "/events/index")
LEVELS = {
    "indicator-for-malicious-url.json": Tlp.CLEAR,
    "malware-indicator-for-file-hash.json": Tlp.GREEN,
    "poisonivy.json": Tlp.AMBER,
    "apt1.json": Tlp.AMBER_STRICT,
}
_ID = re.compile(r'"((?!marking-definition)[a-z0-9-]+)--([0-9a-f-]{36})"')


class Counter:
    """Every HTTP request a PyMISP client built through it makes after construction."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.built = 0

    def factory(self, *args: Any, **kwargs: Any) -> PyMISP:
        api = PyMISP(*args, **kwargs)
        self.built += 1
        session = api._PyMISP__session  # type: ignore[attr-defined]
        session.hooks["response"].append(
            lambda r, *a, **k: self.calls.append((r.request.method, r.request.path_url)))
        return api

    @property
    def writes(self) -> list[tuple[str, str]]:
        """Requests that can change something: PyMISP also POSTs to read-only
        endpoints (an event with its deleted attributes, searches), left out here."""
        return [c for c in self.calls if c[0] not in ("GET", "HEAD")
                and not c[1].startswith(READ_ONLY_POSTS)]


@dataclass
class Instance:
    """One member's MISP, the exchange's sync user on it, and a site-admin reader."""

    misp: Misp
    owner: str
    key: str
    org_name: str
    admin: PyMISP
    target: MispTarget

    def client(self, counter: Counter) -> MispClient:
        return MispClient(self.target, self.key, factory=counter.factory)


@dataclass
class World:
    ex: Exchange
    principal: Principal
    signing: Any
    salt: uuid.UUID
    uz: Instance
    pk: Instance
    red_value: str
    published: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runs: dict[str, RunReport] = field(default_factory=dict)
    counters: dict[str, Counter] = field(default_factory=dict)

    def publish(self, objects: list[dict[str, Any]]) -> None:
        signed = sign_all(objects, self.signing, normalise=True)
        assert signed.refused == []
        body = json.dumps({"objects": signed.objects}).encode()
        status = self.ex.publish(self.principal, self.ex.settings.api_root, "jwg", body)
        assert status.failure_count == 0, status.failures

    def push(self, instance: Instance, label: str, *, dry_run: bool = False,
             save: bool = True) -> RunReport:
        counter = Counter()
        report = run_push(self.ex, instance.target, instance.client(counter),
                          dry_run=dry_run, now=NOW)
        self.runs[label], self.counters[label] = report, counter
        if save and not dry_run:  # what exchange.misp.sync.run_target does
            self.ex.store.save_misp_state(MispSyncState(
                instance.target.name, "push", cursor=report.cursor_after,
                outcome=report.outcome.value, counts=dict(report.counts)))
        return report


def fresh(name: str, salt: uuid.UUID) -> list[dict[str, Any]]:
    """A real file's objects with this module's ids (references rewritten alike)."""
    text = (REAL / name).read_text()
    text = _ID.sub(lambda m: f'"{m[1]}--{uuid.uuid5(salt, m[2])}"', text)
    objects: list[dict[str, Any]] = json.loads(text)["objects"]
    return objects


def marked(objects: list[dict[str, Any]], level: Tlp) -> list[dict[str, Any]]:
    out = []
    for original in objects:
        obj = {k: v for k, v in original.items() if k != "granular_markings"}
        if obj["type"] != "marking-definition":
            obj["object_marking_refs"] = [TLP2_IDS[level]]
        out.append(obj)
    return out


def sync_user(misp: Misp, owner: str, tag: str, *, role: str = SYNC_ROLE,
              name: str | None = None,
              grouping: EventGrouping = EventGrouping.INDICATOR) -> Instance:
    """A fresh organisation on ``misp`` with one user of ``role`` (the exchange's
    account), and the target reaching it as ``owner``'s instance."""
    admin = PyMISP(misp.url, misp.key, timeout=30)
    org_name = f"cert-exchange {tag}"
    key = misp_account(admin, org_name, role, f"sync-{tag}@exchange.test")
    target = MispTarget(name or f"{owner.lower()}-misp", misp.url, None, "CX_UNUSED",
                        owner, Direction.PUSH, Schedule(interval=900), TargetFilters(),
                        None, 30.0, grouping)
    return Instance(misp, owner, key, org_name, admin, target)


def policy_node(home: Path, config: str = "") -> Exchange:
    """A fresh exchange in ``home`` under the shipped policies (``config``: more lines
    of exchange.toml), with members UZ-CERT, PK-CERT and UZ-SOC."""
    (home / "exchange.toml").write_text(f'policy_dir = "{REPO / "policies"}"\n{config}')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    assert settings.policy_path is not None
    store = open_store(settings)
    policy = PolicySource(settings.policy_path)
    policy.load()
    ex = Exchange(settings, store, policy=policy)
    ex.add_org("UZ-CERT")
    ex.add_org("PK-CERT")
    ex.add_org("UZ-SOC", parent="UZ-CERT")
    return ex


def new_node(home: Path) -> tuple[Exchange, Principal, Any]:
    """:func:`policy_node` with collection ``jwg``, UZ-CERT's publisher and its
    registered signing key."""
    ex = policy_node(home)
    store = ex.store
    ex.add_account("uz-pub", org="UZ-CERT", role="publisher")
    secret = ex.create_api_key("uz-pub")[1]
    ex.add_collection("UZ-PK Joint Working Group", alias="jwg",
                      readers=["UZ-CERT", "PK-CERT", "UZ-SOC"], writers=["UZ-CERT"],
                      default_tlp="amber", require_signatures=True)
    signing = generate("Ed25519")
    register_key(store, "UZ-CERT", signing.public_pem())
    return ex, ex.authenticate("uz-pub", secret), signing


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, misp_uz: Misp, misp_pk: Misp
          ) -> Iterator[World]:
    ex, principal, signing = new_node(tmp_path_factory.mktemp("misp-push-home"))
    store = ex.store
    tag = uuid.uuid4().hex[:10]
    w = World(ex, principal, signing, uuid.uuid4(),
              sync_user(misp_uz, "UZ-CERT", tag), sync_user(misp_pk, "PK-CERT", tag),
              red_value=f"http://red-{tag}.uz-only.example/beacon")
    for name, level in LEVELS.items():
        w.published[name] = marked(fresh(name, w.salt), level)
        w.publish(w.published[name])
    uz_identity = ex.store.find_org("UZ-CERT").identity_id
    [red] = [o for o in fresh("using-marking-definitions.json", w.salt)
             if o["type"] == "indicator"]
    red = {k: v for k, v in red.items() if k not in ("created_by_ref", "granular_markings")}
    red["pattern"] = f"[url:value = '{w.red_value}']"
    red["object_marking_refs"] = [TLP2_IDS[Tlp.RED]]
    red["extensions"] = {RED_RECIPIENTS_EXTENSION_ID: {
        "extension_type": "property-extension", "recipients": [uz_identity]}}
    w.published["red"] = [red]
    w.publish([red])
    try:
        yield w
    finally:
        ex.audit.drain()
        store.close()


@pytest.fixture(scope="module")
def first(world: World) -> World:
    for instance, label in ((world.uz, "uz-1"), (world.pk, "pk-1")):
        report = world.push(instance, label)
        assert report.outcome is Outcome.OK, (label, report.message, report.items[:3])
    return world


def indicators(world: World, name: str) -> list[dict[str, Any]]:
    return [o for o in world.published[name] if o["type"] == "indicator"]


def attribute(instance: Instance, indicator: dict[str, Any]) -> dict[str, Any] | None:
    """The attribute with the indicator's UUID on the instance (deleted ones too)."""
    found = instance.admin.search(controller="attributes", uuid=indicator["id"][11:],
                                  deleted=[0, 1])
    assert isinstance(found, dict), found
    attributes = found.get("Attribute", [])
    assert len(attributes) <= 1
    return attributes[0] if attributes else None


def event_of(instance: Instance, attr: dict[str, Any]) -> dict[str, Any]:
    answer = instance.admin.get_event(attr["event_id"], deleted=True)
    assert isinstance(answer, dict), answer
    assert "Event" in answer, answer
    event: dict[str, Any] = answer["Event"]
    return event


def test_first_push_creates_published_events_on_both(first: World) -> None:
    for label, instance in (("uz-1", first.uz), ("pk-1", first.pk)):
        report = first.runs[label]
        assert report.counts["created"] >= 3, (label, report.counts)
        assert report.counts["pushed"] >= 3
        assert report.counts["failed"] == 0
        assert report.cursor_after is not None
        assert report.cursor_before is None
        for name in ("indicator-for-malicious-url.json", "poisonivy.json"):
            for indicator in indicators(first, name):
                attr = attribute(instance, indicator)
                assert attr is not None, (label, indicator["id"])
                assert attr["to_ids"] is True
                assert event_of(instance, attr)["published"] is True


def test_a_second_run_makes_no_write_request(first: World) -> None:
    # With the cursor saved: nothing new, so MISP is not even asked.
    again = first.push(first.pk, "pk-2")
    assert again.counts == {}
    assert again.outcome is Outcome.OK
    assert first.counters["pk-2"].calls == []
    assert first.counters["pk-2"].built == 0
    # From the beginning again (a lost cursor): every event is compared, none written.
    first.ex.store.save_misp_state(MispSyncState(first.pk.target.name, "push"))
    redo = first.push(first.pk, "pk-redo")
    assert first.counters["pk-redo"].writes == []
    assert len(first.counters["pk-redo"].calls) > 0  # it did read every event
    assert redo.counts["created"] == redo.counts["updated"] == 0
    assert redo.counts["unchanged"] == first.runs["pk-1"].counts["created"]
    assert redo.counts["pushed"] == 0  # nothing new went out, nothing new disclosed
    assert redo.cursor_after == first.runs["pk-1"].cursor_after


def test_red_never_reaches_an_instance_it_does_not_name(first: World) -> None:
    red = first.red_value
    # Positive control: the producer's own instance holds it (distribution 0, tlp:red).
    [held] = first.uz.admin.search(controller="attributes", value=red)["Attribute"]  # type: ignore[index, call-overload]
    assert held["distribution"] == "0"
    event = first.uz.admin.get_event(held["event_id"], pythonify=False)["Event"]  # type: ignore[index, call-overload]
    # The attribute's own tag, or its event's, which applies to it.
    assert "tlp:red" in {t["name"] for t in held.get("Tag", []) + event.get("Tag", [])}
    pk = first.pk.admin
    assert pk.search(controller="attributes", value=red, deleted=[0, 1]) == {"Attribute": []}
    assert pk.search(controller="events", value=red) == []
    assert pk.search(controller="objects", value=red) == []
    assert pk.search_index(all=red) == []
    assert pk.search(controller="events", eventinfo=red) == []
    assert not [t for t in pk.tags(pythonify=False) if red in json.dumps(t)]  # type: ignore[union-attr]
    for event in pk.search(controller="events", org=first.pk.org_name):  # type: ignore[union-attr]
        assert red not in json.dumps(event)
    skipped = {i.id: i for i in first.runs["pk-1"].items}
    assert skipped[first.published["red"][0]["id"]].rule == "deny-tlp-red-not-named"


def test_distribution_follows_tlp(first: World) -> None:
    sg_uuid = sharing_group_uuid(AGREEMENT)
    for instance in (first.uz, first.pk):
        groups = first.ex.store.misp_sharing_groups(instance.target.name)
        assert groups[AGREEMENT][1] == sg_uuid
        expected = {Tlp.CLEAR: "3", Tlp.GREEN: "1", Tlp.AMBER: "4"}
        for name, level in LEVELS.items():
            if level is Tlp.AMBER_STRICT:
                continue
            for indicator in indicators(first, name):
                attr = attribute(instance, indicator)
                assert attr is not None
                assert attr["distribution"] == expected[level], (name, attr)
                if level is Tlp.AMBER:
                    assert attr["sharing_group_id"] == str(groups[AGREEMENT][0])
        group = instance.admin.get_sharing_group(sg_uuid)
        orgs = {o["Organisation"]["name"] for o in group["SharingGroupOrg"]}  # type: ignore[call-overload, index]
        assert {"UZ-CERT", "PK-CERT", instance.org_name} <= orgs
    # AMBER+STRICT: to the producer's own instance only, organisation-only there.
    for indicator in indicators(first, "apt1.json"):
        attr = attribute(first.uz, indicator)
        assert attr is not None
        assert attr["distribution"] == "0"
        assert attribute(first.pk, indicator) is None
    rules = {i.id: i.rule for i in first.runs["pk-1"].items}
    assert all(rules[o["id"]].startswith("deny-reshare-misp")
               for o in indicators(first, "apt1.json"))


def test_the_sharing_group_is_created_once(first: World) -> None:
    sg_uuid = sharing_group_uuid(AGREEMENT)
    for instance in (first.uz, first.pk):
        found = [g for g in instance.admin.sharing_groups()  # type: ignore[union-attr]
                 if g["SharingGroup"]["uuid"] == sg_uuid]  # type: ignore[index]
        assert len(found) == 1
    # More AMBER later: the remembered group is used, no sharing-group request is made.
    extra = marked(fresh("indicator-for-malicious-url.json", uuid.uuid4()), Tlp.AMBER)
    first.publish(extra)
    report = first.push(first.pk, "pk-amber")
    assert report.counts["created"] == 1, report.counts
    calls = first.counters["pk-amber"].calls
    assert not [c for c in calls if "haring" in c[1]], calls
    [indicator] = [o for o in extra if o["type"] == "indicator"]
    attr = attribute(first.pk, indicator)
    assert attr is not None
    assert attr["distribution"] == "4"


def test_orgc_is_the_contributor_with_a_sync_user(first: World) -> None:
    for instance in (first.uz, first.pk):
        for name in ("poisonivy.json", "indicator-for-malicious-url.json"):
            attr = attribute(instance, indicators(first, name)[0])
            assert attr is not None
            event = event_of(instance, attr)
            assert event["Orgc"]["name"] == "UZ-CERT"
            assert event["Org"]["name"] == instance.org_name  # the pushing account's
            assert 'cert-exchange:contributor="UZ-CERT"' in {t["name"] for t in event["Tag"]}


def test_the_ledger_holds_one_disclosure_per_pushed_version(first: World) -> None:
    entries = first.ex.audit.each(RecordFilter(kinds=(Kind.DISCLOSURE,),
                                               recipient_org="PK-CERT"))
    records = [e.record for e in entries if isinstance(e.record, Disclosure)]
    assert records
    assert all(r.channel == "misp" for r in records)
    assert {r.recipient_account for r in records} == {f"misp:{first.pk.target.name}"}
    disclosed = [d.object_id for r in records for d in r.objects]
    assert len(disclosed) == len(set(disclosed))  # the redo disclosed nothing again
    pushed = first.ex.store.misp_pushed(first.pk.target.name)
    assert set(disclosed) == set(pushed)
    assert first.published["red"][0]["id"] not in disclosed
    assert not {o["id"] for o in indicators(first, "apt1.json")} & set(disclosed)
    assert {d.tlp for r in records for d in r.objects} == {"clear", "green", "amber"}


def test_revocation_becomes_a_soft_delete(first: World) -> None:
    victim = indicators(first, "poisonivy.json")[0]
    revoked = {**victim, "revoked": True, "modified": "2026-05-01T00:00:00.000Z"}
    revoked.pop("extensions", None)
    first.publish([revoked])
    report = first.push(first.pk, "pk-revoke")
    # The indicator's attribute and the one carrying its signature.
    assert report.counts["deleted"] == 2, (report.counts, report.items)
    assert report.counts["pushed"] == 1
    assert report.outcome is Outcome.OK
    attr = attribute(first.pk, victim)
    assert attr is not None
    assert attr["deleted"] is True
    event = event_of(first.pk, attr)
    assert event["published"] is True  # published again after the delete
    gone = set(first.ex.store.misp_pushed(first.pk.target.name)[victim["id"]].attribute_uuids)
    assert attr["uuid"] in gone
    assert len(gone) == 2
    held = {a["uuid"]: a["deleted"] for a in event["Attribute"]}
    assert all(held[u] for u in gone)
    assert [u for u, deleted in held.items() if not deleted]  # the others stay
    # Again: already deleted, nothing is written.
    first.ex.store.save_misp_state(MispSyncState(first.pk.target.name, "push"))
    first.push(first.pk, "pk-revoke-again")
    assert first.counters["pk-revoke-again"].writes == []


def test_a_dry_run_writes_nothing_and_says_why(first: World) -> None:
    extra = marked(fresh("malware-indicator-for-file-hash.json", uuid.uuid4()), Tlp.GREEN)
    first.publish(extra)
    [indicator] = [o for o in extra if o["type"] == "indicator"]
    state = first.ex.store.misp_state(first.uz.target.name, "push")
    pushed = first.ex.store.misp_pushed(first.uz.target.name)
    before = len(first.ex.audit.each(RecordFilter(kinds=(Kind.DISCLOSURE,))))
    dry = first.push(first.uz, "uz-dry", dry_run=True)
    assert dry.dry_run
    assert first.counters["uz-dry"].writes == []
    # Since UZ's last push: another AMBER indicator, a revocation, and this one.
    [line] = [p for p in dry.plan if indicator["id"] in p]
    assert line.startswith("create event")
    assert "distribution 1" in line
    creates = [p for p in dry.plan if p.startswith("create event")]
    deletes = [p for p in dry.plan if p.startswith("soft-delete attribute")]
    assert dry.counts["created"] == len(creates) == 2
    assert len(deletes) == 2
    assert all("is revoked" in p for p in deletes)
    assert {i.rule for i in dry.items} == {"unsupported-type"}  # the malware, the relationship
    assert attribute(first.uz, indicator) is None
    assert first.ex.store.misp_state(first.uz.target.name, "push") == state
    assert first.ex.store.misp_pushed(first.uz.target.name) == pushed
    after = len(first.ex.audit.each(RecordFilter(kinds=(Kind.DISCLOSURE,))))
    assert after == before
    real = first.push(first.uz, "uz-after-dry")
    assert (real.counts["created"], real.counts["deleted"]) == (2, 2)
    assert attribute(first.uz, indicator) is not None


def test_an_unchanged_event_found_unpublished_is_published_by_misp_itself(
        first: World) -> None:
    """An event the exchange left as it was, but which someone unpublished on the target
    since: the sync user (whose events keep UZ-CERT as Orgc, so MISP's publish action
    refuses it) publishes it by an edit that MISP takes as a change, so MISP runs its own
    publish: a new publish_timestamp, and its sync to its own partners."""
    instance = first.uz
    attr = attribute(instance, indicators(first, "poisonivy.json")[0])
    assert attr is not None
    event = event_of(instance, attr)
    assert event["published"] in (True, 1, "1")
    instance.admin.unpublish(event["id"])
    assert event_of(instance, attr)["published"] in (False, 0, "0")
    time.sleep(1.1)  # MISP's stamps are in seconds
    client = instance.client(Counter())
    assert client.publish_event(event["uuid"], if_needed=True) is True
    after = event_of(instance, attr)
    assert after["published"] in (True, 1, "1")
    assert int(after["publish_timestamp"]) > int(event["publish_timestamp"])
    assert after["Orgc"]["name"] == "UZ-CERT"
    assert [(a["uuid"], a["value"], a["deleted"]) for a in after["Attribute"]] == \
        [(a["uuid"], a["value"], a["deleted"]) for a in event["Attribute"]]
    # published now: asking again makes no request that writes
    counter = Counter()
    assert instance.client(counter).publish_event(event["uuid"], if_needed=True) is False
    assert counter.writes == []
