"""The push run when something goes wrong, against real MISP 2.5.1 through real PyMISP.

The setting is that of :mod:`tests.integration.test_misp_sync_push` (a real node, the
shipped policies, UZ-CERT's signed indicators in collection ``jwg``), with content of
this module's own: three GREEN indicators published one after the other (so their
``date_added`` are in that order) and one AMBER indicator, every value fresh.

* **Partial failure and retry.** UZ-CERT's MISP is made to refuse exactly one event by a
  rule of MISP itself: an attribute UUID is unique on an instance, so an event holding
  the second indicator's UUID is created first with plain PyMISP (as the site admin, as
  if an analyst had imported it by hand). MISP then saves that indicator's event without
  its attribute; the run must say so for that object, push the others, and stop the
  cursor before it. Once the conflicting event is gone, the next run pushes it and the
  cursor moves past everything.
* **A ledger that cannot be written.** The audit trail's spool refuses the append: the
  run fails, saying so, and not one write request reaches MISP.
* **Not a sync user.** An org admin (no ``perm_sync``) pushes to PK-CERT's MISP: the
  events are created with the exchange's own organisation as creator, the contributor in
  a tag, and the report says why MISP did not keep the contributor as ``Orgc``.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import pytest
from pymisp import PyMISP

from exchange.errors import StorageError
from exchange.member.signer import sign_all
from exchange.misp.push import run_push
from exchange.misp.report import Outcome, RunReport
from exchange.misp.targets import EventGrouping
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.node.service import Exchange
from exchange.storage.base import MispSyncState, ObjectQuery, VersionMatch
from tests.integration.conftest import Misp
from tests.integration.test_misp_sync_push import (
    NOW,
    Counter,
    Instance,
    attribute,
    event_of,
    new_node,
    sync_user,
)


@dataclass
class Node:
    ex: Exchange
    publish_: Any
    green: list[dict[str, Any]]
    amber: dict[str, Any]
    tag: str

    def date_added(self, stix_id: str) -> int:
        [collection] = [c for c in self.ex.store.list_collections(
            self.ex.settings.api_root) if c.alias == "jwg"]
        page = self.ex.store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=(stix_id,), versions=VersionMatch(all=True),
            limit=10))
        [row] = page.rows
        return row.date_added

    def push(self, instance: Instance, counter: Counter) -> RunReport:
        """One run, its state saved as the sync would (exchange.misp.sync)."""
        report = run_push(self.ex, instance.target, instance.client(counter), now=NOW)
        self.ex.store.save_misp_state(MispSyncState(
            instance.target.name, "push", cursor=report.cursor_after,
            outcome=report.outcome.value, counts=dict(report.counts)))
        return report


def indicator(value: str, level: Tlp, day: date) -> dict[str, Any]:
    stamp = f"{day.isoformat()}T08:00:00.000Z"
    return {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
        "created": stamp, "modified": stamp,
        "name": f"failure test {value}", "pattern": f"[domain-name:value = '{value}']",
        "pattern_type": "stix", "pattern_version": "2.1",
        "valid_from": stamp, "object_marking_refs": [TLP2_IDS[level]],
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    ex, principal, signing = new_node(tmp_path_factory.mktemp("misp-push-failures"))
    tag = uuid.uuid4().hex[:10]
    # The instances keep their data between sessions and a producer-day event's UUID
    # follows from the day: a day of this module's own (one in 36,500), so an event
    # another session's account created is not this one's.
    day = date(1990, 1, 1) + timedelta(days=random.randrange(36_500))

    def publish(objects: list[dict[str, Any]]) -> None:
        signed = sign_all(objects, signing, normalise=True)
        assert signed.refused == []
        body = json.dumps({"objects": signed.objects}).encode()
        status = ex.publish(principal, ex.settings.api_root, "jwg", body)
        assert status.failure_count == 0, status.failures

    green = [indicator(f"{n}-{tag}.failures.example", Tlp.GREEN, day) for n in ("a", "b", "c")]
    for obj in green:  # one publish each: date_added in this order
        publish([obj])
    amber = indicator(f"amber-{tag}.failures.example", Tlp.AMBER, day)
    publish([amber])
    try:
        yield Node(ex, publish, green, amber, tag)
    finally:
        ex.audit.drain()
        ex.store.close()


def test_a_ledger_that_cannot_be_written_stops_the_push_before_misp(
        node: Node, misp_pk: Misp, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = sync_user(misp_pk, "PK-CERT", f"ledger-{node.tag}", name="pk-misp-ledger")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("the audit spool is full")

    monkeypatch.setattr(node.ex.audit.writer, "append", refuse)
    counter = Counter()
    report = node.push(instance, counter)
    assert report.outcome is Outcome.FAILED
    assert "audit ledger could not be written" in report.message
    assert "nothing was pushed" in report.message
    assert "the audit spool is full" in report.message
    assert counter.writes == []
    assert report.cursor_after is None
    assert node.ex.store.misp_pushed(instance.target.name) == {}
    for obj in [*node.green, node.amber]:
        assert attribute(instance, obj) is None


def test_one_refused_event_makes_a_partial_run_and_the_next_run_retries_it(
        node: Node, misp_uz: Misp) -> None:
    instance = sync_user(misp_uz, "UZ-CERT", f"partial-{node.tag}", name="uz-misp-partial")
    first, victim, last = node.green
    admin = PyMISP(misp_uz.url, misp_uz.key, timeout=30)
    # MISP's own rule: an attribute UUID is used once per instance.
    conflict = admin.add_event({
        "info": f"hand import holding {victim['id']}", "distribution": "0",
        "Attribute": [{"uuid": victim["id"][11:], "type": "comment", "category": "Other",
                       "value": "imported by hand", "to_ids": False}]})
    assert isinstance(conflict, dict), conflict
    assert "Event" in conflict, conflict
    try:
        report = node.push(instance, Counter())
        assert report.outcome is Outcome.PARTIAL, report.message
        failed = [i for i in report.items if i.failed]
        assert [i.id for i in failed] == [victim["id"]]
        assert failed[0].rule == "misp-refused"
        assert "dropped 1 attribute(s)" in failed[0].reason
        assert victim["id"][11:] in failed[0].reason
        assert report.counts["failed"] == 1
        for obj in (first, last, node.amber):
            held = attribute(instance, obj)
            assert held is not None, obj["id"]
            assert held["value"] == obj["pattern"].split("'")[1]
        # The hand-imported attribute is still the only one with that UUID.
        held = attribute(instance, victim)
        assert held is not None
        assert held["event_id"] == conflict["Event"]["id"]
        # The cursor stops just before the failed object (the first one is done).
        assert report.cursor_after is not None
        assert node.date_added(first["id"]) <= int(report.cursor_after) \
            < node.date_added(victim["id"])
        assert victim["id"] not in node.ex.store.misp_pushed(instance.target.name)
    finally:
        admin.delete_event(conflict["Event"]["id"])
    counter = Counter()
    retry = node.push(instance, counter)
    assert retry.outcome is Outcome.OK, (retry.message, retry.items)
    assert retry.cursor_before == report.cursor_after
    assert retry.cursor_after == str(node.date_added(node.amber["id"]))
    assert retry.counts["updated"] == 1  # the victim's event, created without it
    held = attribute(instance, victim)
    assert held is not None
    assert held["value"] == victim["pattern"].split("'")[1]
    event = event_of(instance, held)
    assert event["Orgc"]["name"] == "UZ-CERT"
    assert event["published"] is True
    assert victim["id"] in node.ex.store.misp_pushed(instance.target.name)


def test_a_user_without_sync_rights_pushes_as_the_exchange_and_says_why(
        node: Node, misp_pk: Misp) -> None:
    instance = sync_user(misp_pk, "PK-CERT", f"orgadmin-{node.tag}", role="Org Admin",
                         name="pk-misp-orgadmin", grouping=EventGrouping.PRODUCER_DAY)
    report = node.push(instance, Counter())
    assert report.outcome is Outcome.OK, (report.message, report.items)
    assert "not a sync user" in report.message
    assert "Orgc" in report.message
    events = set()
    for obj in [*node.green, node.amber]:
        held = attribute(instance, obj)
        assert held is not None, obj["id"]
        event = event_of(instance, held)
        events.add(event["uuid"])
        assert event["Orgc"]["name"] == instance.org_name  # the exchange's own
        assert event["Org"]["name"] == instance.org_name
        assert 'cert-exchange:contributor="UZ-CERT"' in {t["name"] for t in event["Tag"]}
        assert event["published"] is True
    assert len(events) == 2  # one producer, one day, two levels (GREEN, AMBER)


def test_indicators_another_home_pushed_are_updated_where_the_target_holds_them(
        node: Node, misp_uz: Misp, tmp_path_factory: pytest.TempPathFactory) -> None:
    """MISP keeps an attribute UUID in one event: a second home (a rebuilt node, a
    fresh demo) pushing the same indicators in other events must find them, not have
    MISP drop them."""
    instance = sync_user(misp_uz, "UZ-CERT", f"rehome-{node.tag}", name="uz-misp-rehome",
                         grouping=EventGrouping.INDICATOR)
    assert node.push(instance, Counter()).outcome is Outcome.OK
    before = {o["id"]: event_of(instance, attribute(instance, o) or {})["uuid"]
              for o in node.green}
    assert len(set(before.values())) == len(node.green)  # one event each

    other, principal, signing = new_node(tmp_path_factory.mktemp("misp-push-rehome"))
    try:
        signed = sign_all([dict(o) for o in node.green], signing, normalise=True)
        assert signed.refused == []
        status = other.publish(principal, other.settings.api_root, "jwg",
                               json.dumps({"objects": signed.objects}).encode())
        assert status.failure_count == 0, status.failures
        # The other home groups by producer and day: other event UUIDs than the first.
        regrouped = Instance(instance.misp, instance.owner, instance.key, instance.org_name,
                             instance.admin, replace(
                                 instance.target, event_grouping=EventGrouping.PRODUCER_DAY))
        report = run_push(other, regrouped.target, regrouped.client(Counter()), now=NOW)
        assert report.outcome is Outcome.OK, (report.message, report.items)
        assert report.counts["created"] == 0  # nothing went to a new event
        for obj in node.green:
            held = attribute(instance, obj)
            assert held is not None
            assert held["deleted"] is False
            assert event_of(instance, held)["uuid"] == before[obj["id"]]
        assert set(other.store.misp_pushed(instance.target.name)) >= \
            {o["id"] for o in node.green}
    finally:
        other.audit.drain()
        other.store.close()
