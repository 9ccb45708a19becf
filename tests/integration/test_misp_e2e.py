"""``exchange scheduler`` keeps two real MISP 2.5.1 instances in sync (issue 19, "Done when").

One exchange home (SQLite, the shipped policies/, members UZ-CERT, PK-CERT and UZ-SOC,
the joint working group's collection ``jwg``) with a targets file naming UZ-CERT's and
PK-CERT's real MISP instances (fixtures ``misp_uz``, ``misp_pk``), direction both, every
3 seconds. On each instance the exchange's account is a sync user of a fresh
organisation, its key in a 0600 file. ``exchange scheduler`` runs as a real child
process for the whole module and is stopped by its pid.

What a user would notice, checked by polling MISP and the exchange with a deadline:

* indicators published to the exchange reach each instance per policy: CLEAR, GREEN,
  AMBER to both; AMBER+STRICT and RED (naming its producer) only to the producer's own;
* an event published on UZ's MISP by UZ's own analysts (distribution 3, tlp:clear) is
  pulled as UZ-CERT's contribution and pushed on to PK's MISP; distribution 1 and 0
  content of UZ's MISP never reaches PK's;
* after several cycles nothing grows anywhere (no echo, no ping-pong), and the pushes
  say why they skipped what they skipped (``echo-from-target`` among them);
* deletions travel both ways: a soft-deleted attribute on UZ's MISP becomes a revoked
  indicator and a soft delete on PK's MISP; an indicator revoked in the exchange becomes
  a soft delete on both.

The instances keep their data between sessions: every value and UUID here is fresh,
the indicators go one event each (``event_grouping: indicator``), and each target's pull
starts at this module's start (its cursor set before the scheduler starts), so other
modules' events on the same instances are not pulled. The interval of 3 s is below the
60 s floor; the test-only variable ``CX_TEST_MISP_MIN_INTERVAL`` allows it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymisp import MISPEvent, MISPTag, PyMISP

from exchange.member.signer import sign_all
from exchange.misp.targets import TEST_MIN_INTERVAL_ENV
from exchange.model.objects import Principal, Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.node.keyring import register_key
from exchange.node.service import Exchange
from exchange.policy.tlp import RED_RECIPIENTS_EXTENSION_ID
from exchange.signing.keys import generate
from exchange.storage.base import MispSyncState, ObjectQuery, VersionMatch
from exchange.taxii.procs import stop_child
from tests.integration.conftest import Misp, misp_account
from tests.integration.test_misp_sync_push import policy_node

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 3
#: Seconds any one expected change may take (several scheduler cycles).
DEADLINE = 40.0
#: Completed runs of every job that must pass with nothing changing.
QUIET_RUNS = 3
JOBS = [(t, d) for t in ("uz-cert-misp", "pk-cert-misp") for d in ("push", "pull")]


def stamp(moment: float | None = None) -> str:
    when = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def wait_for(check: Callable[[], Any], what: str, seconds: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something true (bounded in time and count)."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.5) + 1):
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {seconds:g} s")


@dataclass
class Instance:
    """One member's MISP: a site-admin reader, a local analyst of the member, and the
    exchange's sync user there."""

    misp: Misp
    target: str
    admin: PyMISP
    analyst: PyMISP
    sync_org: str

    def attribute(self, attribute_uuid: str) -> dict[str, Any] | None:
        found = self.admin.search(controller="attributes", uuid=attribute_uuid,
                                  deleted=[0, 1])
        assert isinstance(found, dict), found
        attributes = found.get("Attribute", [])
        assert len(attributes) <= 1
        return attributes[0] if attributes else None

    def holds_value(self, value: str) -> bool:
        found = self.admin.search(controller="attributes", value=value, deleted=[0, 1])
        assert isinstance(found, dict), found
        return bool(found.get("Attribute"))

    def snapshot(self, since: int) -> dict[str, Any]:
        """Every event and attribute changed since ``since``, with its timestamps."""
        events = self.admin.search_index(timestamp=since)
        assert isinstance(events, list), events
        attributes = self.admin.search(controller="attributes", timestamp=since,
                                       deleted=[0, 1])
        assert isinstance(attributes, dict), attributes
        return {
            "events": sorted((e["uuid"], e["timestamp"], e["publish_timestamp"],
                              e["attribute_count"], e["published"]) for e in events),
            "attributes": sorted((a["uuid"], a["timestamp"], a["deleted"])
                                 for a in attributes.get("Attribute", [])),
        }


@dataclass
class World:
    home: Path
    env: dict[str, str]
    ex: Exchange
    uz: Instance
    pk: Instance
    start: int
    run: str
    signers: dict[str, Any] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    misp_events: dict[str, MISPEvent] = field(default_factory=dict)
    seen_states: list[MispSyncState] = field(default_factory=list)
    scheduler: subprocess.Popen[bytes] | None = None

    # -- the exchange ---------------------------------------------------------------
    def publish(self, org: str, objects: list[dict[str, Any]]) -> None:
        signed = sign_all(objects, self.signers[org], normalise=True)
        assert signed.refused == []
        body = json.dumps({"objects": signed.objects}).encode()
        status = self.ex.publish(self.principals[org], self.ex.settings.api_root, "jwg",
                                 body)
        assert status.failure_count == 0, status.failures

    def versions(self, *ids: str) -> list[Any]:
        collection = self.ex.store.get_collection(self.ex.settings.api_root, "jwg")
        page = self.ex.store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=ids, limit=10_000,
            versions=VersionMatch(all=True), include_body=True))
        assert not page.more
        return list(page.rows)

    def latest(self, object_id: str) -> dict[str, Any] | None:
        rows = self.versions(object_id)
        if not rows:
            return None
        newest = max(rows, key=lambda r: r.version)
        return {"row": newest, "body": json.loads(newest.body)}

    def states(self) -> dict[tuple[str, str], MispSyncState]:
        states = {(s.target, s.direction): s for s in self.ex.store.misp_states()}
        self.seen_states += [s for s in states.values() if s.last_finished]
        return states

    # -- commands ----------------------------------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "exchange", "--home", str(self.home),
                               *args], env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)

    def start_scheduler(self) -> None:
        log = (self.home / "scheduler.log").open("ab")
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--home", str(self.home), "scheduler",
             "--poll", "0.5"], env=self.env, stdout=log, stderr=log)
        log.close()

    def stop_scheduler(self) -> None:
        if self.scheduler is not None:
            stop_child(self.scheduler, timeout=30)

    def log(self) -> str:
        path = self.home / "scheduler.log"
        return path.read_text() if path.exists() else ""

    def quiet_cycles(self) -> None:
        """Wait until every job has finished :data:`QUIET_RUNS` more runs."""
        assert self.scheduler is not None
        assert self.scheduler.poll() is None, self.log()[-3000:]
        before = {k: s.last_finished for k, s in self.states().items()}
        runs: dict[tuple[str, str], set[int]] = {job: set() for job in JOBS}

        def enough() -> bool:
            for key, state in self.states().items():
                if key in runs and state.last_finished and state.last_finished != before.get(key):
                    runs[key].add(state.last_finished)
            return all(len(r) >= QUIET_RUNS for r in runs.values())

        wait_for(enough, f"{QUIET_RUNS} more runs of every job",
                 seconds=QUIET_RUNS * INTERVAL * 4 + 10)

    def snapshot(self) -> dict[str, Any]:
        return {"exchange": sorted((r.id, r.version, r.date_added) for r in self.versions()),
                "uz": self.uz.snapshot(self.start), "pk": self.pk.snapshot(self.start)}


def indicator(identity: str, value: str, level: Tlp, red_for: str | None = None
              ) -> dict[str, Any]:
    now = stamp()
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
        "created": now, "modified": now, "created_by_ref": identity,
        "name": f"{level.value} e2e indicator", "indicator_types": ["malicious-activity"],
        "pattern": f"[domain-name:value = '{value}']", "pattern_type": "stix",
        "valid_from": now, "object_marking_refs": [TLP2_IDS[level]]}
    if red_for is not None:
        obj["extensions"] = {RED_RECIPIENTS_EXTENSION_ID: {
            "extension_type": "property-extension", "recipients": [red_for]}}
    return obj


def roles(admin: PyMISP) -> dict[str, str]:
    found = admin.roles()
    assert isinstance(found, list), found
    return {r["Role"]["name"]: r["Role"]["id"] for r in found}


def user_of(admin: PyMISP, org_name: str, role: str, email: str) -> tuple[PyMISP, str]:
    """A fresh local organisation and a user of it with ``role``; (its client, key)."""
    key = misp_account(admin, org_name, role, email)
    return PyMISP(admin.root_url, key, timeout=30), key


def instance(misp: Misp, target: str, member: str, run: str, key_file: Path) -> Instance:
    admin = PyMISP(misp.url, misp.key, timeout=30)
    for level in ("clear", "green", "amber", "amber+strict", "red"):
        tag = MISPTag()
        tag.name, tag.exportable = f"tlp:{level}", True
        admin.add_tag(tag)  # already there after the first module: MISP says so
    sync_org = f"cert-exchange e2e {run}"
    _, key = user_of(admin, sync_org, "Sync user", f"sync-e2e-{run}@exchange.test")
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    analyst, _ = user_of(admin, f"{member} analysts {run}", "Publisher",
                         f"analyst-e2e-{run}@{member.lower()}.test")
    return Instance(misp, target, admin, analyst, sync_org)


def targets_yaml(home: Path, uz: Misp, pk: Misp) -> str:
    entries = []
    for name, misp, owner in (("uz-cert-misp", uz, "UZ-CERT"), ("pk-cert-misp", pk, "PK-CERT")):
        entries.append(f"""  {name}:
    url: {misp.url}
    api_key_file: {home / (name + '.key')}
    owner: {owner}
    direction: both
    schedule: {{interval: {INTERVAL}}}
    filters: {{collections: [jwg]}}
    timeout: 30
    event_grouping: indicator
""")
    return "version: 1\ntargets:\n" + "".join(entries)


def misp_event(api: PyMISP, info: str, distribution: int, tlp: str,
               values: list[tuple[str, str]]) -> MISPEvent:
    """An event published by a member's own analyst on its MISP."""
    event = MISPEvent()
    event.info, event.distribution, event.threat_level_id, event.analysis = info, \
        distribution, 2, 1
    event.add_tag(f"tlp:{tlp}")
    for kind, value in values:
        event.add_attribute(kind, value, to_ids=True, distribution=5)  # the event's
    made = api.add_event(event, pythonify=True)
    assert isinstance(made, MISPEvent), made
    answer = api.publish(made)
    assert "errors" not in answer, answer
    return made


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, misp_uz: Misp, misp_pk: Misp
          ) -> Iterator[World]:
    home = tmp_path_factory.mktemp("misp-e2e-home")
    run = uuid.uuid4().hex[:10]
    uz = instance(misp_uz, "uz-cert-misp", "UZ-CERT", run, home / "uz-cert-misp.key")
    pk = instance(misp_pk, "pk-cert-misp", "PK-CERT", run, home / "pk-cert-misp.key")
    (home / "misp-targets.yaml").write_text(targets_yaml(home, misp_uz, misp_pk))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env[TEST_MIN_INTERVAL_ENV] = "1"
    ex = policy_node(home, 'misp_targets = "misp-targets.yaml"\n')
    store = ex.store
    ex.add_collection("UZ-PK Joint Working Group", alias="jwg",
                      readers=["UZ-CERT", "PK-CERT", "UZ-SOC"],
                      writers=["UZ-CERT", "PK-CERT"], default_tlp="amber",
                      require_signatures=True)
    start = int(time.time()) - 1
    w = World(home, env, ex, uz, pk, start, run)
    for org, account in (("UZ-CERT", "uz-pub"), ("PK-CERT", "pk-pub")):
        ex.add_account(account, org=org, role="publisher")
        secret = ex.create_api_key(account)[1]
        w.principals[org] = ex.authenticate(account, secret)
        w.signers[org] = generate("Ed25519")
        register_key(store, org, w.signers[org].public_pem())
    # Pull only what appears from now on (the instances hold other modules' events).
    for target in ("uz-cert-misp", "pk-cert-misp"):
        store.save_misp_state(MispSyncState(target, "pull", cursor=str(start)))
    try:
        yield w
    finally:
        w.stop_scheduler()
        ex.audit.drain()
        store.close()


@pytest.fixture(scope="module")
def synced(world: World) -> World:
    """The content of both sides, then the scheduler started."""
    uz_id = world.ex.store.find_org("UZ-CERT").identity_id
    pk_id = world.ex.store.find_org("PK-CERT").identity_id
    run = world.run
    for level in (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT):
        world.published[level.value] = indicator(uz_id, f"{level.value.replace('+', '-')}"
                                                 f"-{run}.uz.e2e.example", level)
    world.published["red-uz"] = indicator(uz_id, f"red-{run}.uz.e2e.example", Tlp.RED,
                                          red_for=uz_id)
    world.published["red-pk"] = indicator(pk_id, f"red-{run}.pk.e2e.example", Tlp.RED,
                                          red_for=pk_id)
    world.publish("UZ-CERT", [v for k, v in world.published.items() if k != "red-pk"])
    world.publish("PK-CERT", [world.published["red-pk"]])
    api = world.uz.analyst
    world.misp_events["clear"] = misp_event(api, f"e2e {run} shared", 3, "clear", [
        ("ip-dst", f"198.51.100.{int(run[:2], 16) % 250 + 1}"),
        ("domain", f"shared-{run}.uz-misp.example"),
        ("domain", f"deleted-later-{run}.uz-misp.example")])
    world.misp_events["community"] = misp_event(api, f"e2e {run} community", 1, "green", [
        ("domain", f"community-{run}.uz-misp.example")])
    world.misp_events["org"] = misp_event(api, f"e2e {run} org only", 0, "green", [
        ("domain", f"org-only-{run}.uz-misp.example")])
    world.start_scheduler()
    return world


def uuid_of(obj: dict[str, Any]) -> str:
    return str(obj["id"]).split("--", 1)[1]


def test_exchange_indicators_reach_each_instance_per_policy(synced: World) -> None:
    both = ("clear", "green", "amber")
    only = {"amber+strict": synced.uz, "red-uz": synced.uz, "red-pk": synced.pk}

    def arrived() -> bool:
        return all(i.attribute(uuid_of(synced.published[k])) is not None
                   for k in both for i in (synced.uz, synced.pk)) and all(
            i.attribute(uuid_of(synced.published[k])) is not None for k, i in only.items())

    wait_for(arrived, "CLEAR/GREEN/AMBER on both, AMBER+STRICT/RED on their owner's")
    expected = {"clear": "3", "green": "1", "amber": "4"}
    for key in both:
        for inst in (synced.uz, synced.pk):
            attr = inst.attribute(uuid_of(synced.published[key]))
            assert attr is not None
            assert attr["distribution"] == expected[key], (key, inst.target, attr)
    for key, inst in only.items():
        other = synced.pk if inst is synced.uz else synced.uz
        attr = inst.attribute(uuid_of(synced.published[key]))
        assert attr is not None
        assert attr["distribution"] == "0", attr
        assert other.attribute(uuid_of(synced.published[key])) is None
        value = synced.published[key]["pattern"].split("'")[1]
        assert not other.holds_value(value), (key, other.target)


def test_an_event_of_uz_misp_is_pulled_then_pushed_to_pk(synced: World) -> None:
    event = synced.misp_events["clear"]
    uz_org = synced.ex.store.find_org("UZ-CERT").id
    for attribute in event.attributes:
        held = wait_for(lambda a=attribute: synced.latest(f"indicator--{a.uuid}"),
                        f"the exchange importing {attribute.value}")
        assert held["row"].producer_org == uz_org  # UZ-CERT's contribution
        assert held["row"].effective_tlp == "clear"
        copy = wait_for(lambda a=attribute: synced.pk.attribute(a.uuid),
                        f"{attribute.value} reaching PK's MISP")
        assert copy["value"] == attribute.value
    on_pk = synced.pk.admin.get_event(event.uuid, pythonify=True)
    assert isinstance(on_pk, MISPEvent), on_pk
    assert on_pk.Orgc.name == "UZ-CERT"
    # Distribution 1 (UZ's community) is imported as RED for UZ-CERT only; 0 is not even
    # visible to the exchange's account. Neither reaches PK's instance.
    [community] = synced.misp_events["community"].attributes
    held = wait_for(lambda: synced.latest(f"indicator--{community.uuid}"),
                    "the distribution-1 attribute imported")
    assert held["row"].effective_tlp == "red"
    [org_only] = synced.misp_events["org"].attributes
    for attribute in (community, org_only):
        assert synced.pk.attribute(attribute.uuid) is None
        assert not synced.pk.holds_value(attribute.value)
    assert synced.latest(f"indicator--{org_only.uuid}") is None


def test_nothing_grows_over_several_cycles(synced: World) -> None:
    synced.quiet_cycles()  # whatever was in flight settles
    before = synced.snapshot()
    synced.quiet_cycles()
    after = synced.snapshot()
    assert after == before
    states = synced.states()
    assert {k: s.outcome for k, s in states.items()} == dict.fromkeys(JOBS, "ok"), \
        {k: (s.outcome, s.message) for k, s in states.items()}
    # No echo: UZ's event, pushed to PK's MISP, was listed by PK's pull and skipped as
    # the exchange's own; the exchange still holds one version of each of its objects,
    # UZ-CERT's.
    event = synced.misp_events["clear"]
    assert event.uuid in synced.ex.store.misp_pulled("pk-cert-misp", [event.uuid])
    assert synced.ex.store.misp_pushed_events("pk-cert-misp", [event.uuid]) == {event.uuid}
    ids = [f"indicator--{a.uuid}" for a in event.attributes]
    rows = synced.versions(*ids, f"report--{event.uuid}", f"grouping--{event.uuid}")
    assert sorted(r.id for r in rows if r.type == "indicator") == sorted(ids)
    assert len([r for r in rows if r.type != "indicator"]) == 1
    assert {synced.ex.org_name(r.producer_org) for r in rows} == {"UZ-CERT"}


def test_deletions_travel_both_ways(synced: World) -> None:
    event = synced.misp_events["clear"]
    [gone] = [a for a in event.attributes if a.value.startswith("deleted-later-")]
    answer = synced.uz.analyst.delete_attribute(gone.uuid)  # a soft delete
    assert "errors" not in answer, answer
    answer = synced.uz.analyst.publish(event.uuid)
    assert "errors" not in answer, answer
    victim = synced.published["clear"]
    revoked = {k: v for k, v in victim.items() if k != "extensions"}
    revoked.update(revoked=True, modified=stamp())
    synced.publish("UZ-CERT", [revoked])

    held = wait_for(lambda: (h := synced.latest(f"indicator--{gone.uuid}"))
                    and h["body"].get("revoked") and h, "the soft delete becoming a revocation")
    assert held["row"].revoked
    wait_for(lambda: (synced.pk.attribute(gone.uuid) or {}).get("deleted") is True,
             "the soft delete reaching PK's MISP")
    for inst in (synced.uz, synced.pk):
        wait_for(lambda i=inst: (i.attribute(uuid_of(victim)) or {}).get("deleted") is True,
                 f"the revocation reaching {inst.target}")
    # UZ's own attribute is deleted by UZ, not by the exchange: no second delete, and
    # the other attributes of the event stay.
    live = [a for a in event.attributes if a.uuid != gone.uuid]
    for attribute in live:
        for inst in (synced.uz, synced.pk):
            found = inst.attribute(attribute.uuid)
            assert found is not None
            assert found["deleted"] is False, (inst.target, found)


def test_no_ping_pong_after_the_deletions(synced: World) -> None:
    synced.quiet_cycles()
    before = synced.snapshot()
    synced.quiet_cycles()
    assert synced.snapshot() == before
    synced.stop_scheduler()
    assert synced.scheduler is not None
    assert synced.scheduler.returncode == 0
    log = synced.log()
    assert "Traceback" not in log
    assert "scheduler stopped" in log


def test_status_explains_every_skipped_item(synced: World) -> None:
    # Every state seen while the scheduler ran kept a reason for each skipped item.
    assert synced.seen_states
    for state in synced.seen_states:
        kept = [r for r in state.reasons if r["kind"] == "skipped"]
        assert len(kept) == state.counts.get("skipped", 0), state
        assert all(r["rule"] and r["reason"] and r["id"] for r in kept)
    # A full re-judge by hand (push cursors reset): nothing written, every skip said.
    before = synced.snapshot()
    for target in ("uz-cert-misp", "pk-cert-misp"):
        state = synced.ex.store.misp_state(target, "push")
        assert state is not None
        synced.ex.store.save_misp_state(MispSyncState(target, "push"))
        done = synced.cli("sync", "run", target, "--direction", "push")
        assert done.returncode == 0, done.stdout + done.stderr
    assert synced.snapshot() == before
    text = synced.cli("sync", "status")
    assert text.returncode == 0, text.stderr
    as_json = synced.cli("sync", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = {(r["target"], r["direction"]): r for r in json.loads(as_json.stdout)["targets"]}
    assert set(rows) == set(JOBS)
    for row in rows.values():
        assert row["outcome"] == "ok", row
        skipped = [r for r in row["reasons"] if r["kind"] == "skipped"]
        assert len(skipped) == row["counts"]["skipped"], row
    uz_rules = {r["id"]: r["rule"] for r in rows["uz-cert-misp", "push"]["reasons"]}
    pk_rules = {r["id"]: r["rule"] for r in rows["pk-cert-misp", "push"]["reasons"]}
    pulled = [f"indicator--{a.uuid}" for key in ("clear", "community")
              for a in synced.misp_events[key].attributes]
    assert all(uz_rules[i] == "echo-from-target" for i in pulled), uz_rules
    assert pk_rules[synced.published["red-uz"]["id"]] == "deny-tlp-red-not-named"
    assert pk_rules[synced.published["amber+strict"]["id"]].startswith("deny-reshare-misp")
    assert rows["uz-cert-misp", "push"]["counts"]["created"] == 0
    assert rows["pk-cert-misp", "push"]["counts"]["created"] == 0
    lines = text.stdout.splitlines()
    header = [line for line in lines if line.startswith("  skipped ")
              and "[echo-from-target]:" in line]
    assert header, text.stdout
    for row in rows.values():
        for reason in row["reasons"][:1]:
            assert f"    {reason['id']}: {reason['reason']}" in lines
