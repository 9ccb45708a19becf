"""The SQL filter and the pure policy engine agree, on random policies, objects, readers.

For each example: an agreement with a random validity window, embargo, receive levels
and constituent rule; a fresh collection bound to it; random objects (producer, TLP
level, RED recipients, revocation) published through the service; then every reader's
read through the service (SQL) is compared with ``decide`` run object by object. A
revoked version counts as received earlier when an earlier unrevoked version of the same
object is allowed (the service's rule until the disclosure ledger answers it exactly).
Also: nobody ever receives more than their TLP ceiling allows, and ``match[version]=last``
gives each reader the newest version of every contribution line it may see (an SCO two
members contributed is two lines: docs/adr/0001-sco-contributions.md).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.config import load_settings
from exchange.model.objects import Tlp
from exchange.node.base import now_micros
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange, init_home
from exchange.policy import (
    RED_RECIPIENTS_EXTENSION_ID,
    ObjectMeta,
    decide,
    red_recipients_of,
)
from exchange.storage import open_store
from exchange.storage.base import ObjectQuery, VersionMatch
from tests.integration.stixdata import TLP2

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
RED_EXT = RED_RECIPIENTS_EXTENSION_ID
LEVELS = ["clear", "green", "amber", "amber+strict", "red"]
DAY = 86_400


def _iso(offset_days: int) -> str:
    import time  # noqa: PLC0415

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_days * DAY))


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.policies = tmp / "policies"
        shutil.copytree(SHIPPED, self.policies)
        home = tmp / "home"
        home.mkdir()
        settings = load_settings(home, env={})
        init_home(settings)
        self.settings = load_settings(home, env={})
        self.store = open_store(self.settings)
        self.source = PolicySource(self.policies, interval=0)
        self.source.load()
        self.ex = Exchange(self.settings, self.store, policy=self.source)
        self.identity: dict[str, str] = {}
        for name in ("UZ-CERT", "PK-CERT", "JWG-Operator", "Outsider"):
            self.identity[name] = self.ex.add_org(name).identity_id
        self.identity["UZ-SOC"] = self.ex.add_org("UZ-SOC", parent="UZ-CERT").identity_id
        self.principals = {}
        for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                                   ("pk-pub", "PK-CERT", "publisher"),
                                   ("uz-soc", "UZ-SOC", "consumer"),
                                   ("operator", "JWG-Operator", "admin"),
                                   ("outsider", "Outsider", "consumer")]:
            self.ex.add_account(account, org=org, role=role)
            key = self.ex.create_api_key(account)[1]
            self.principals[account] = self.ex.authenticate(account, key)
        self.orgs = {o.id: o.name for o in self.store.list_orgs()}

    def bind(self, alias: str, agreement: dict[str, Any]) -> None:
        lines = [
            "id: uz-pk-jwg-2026", "title: random agreement", "parties: [UZ-CERT, PK-CERT]",
            f"valid_from: {agreement['valid_from']}", f"valid_until: {agreement['valid_until']}",
            "receive:",
            f"  UZ-CERT: [{', '.join(agreement['uz_levels'])}]",
            f"  PK-CERT: [{', '.join(agreement['pk_levels'])}]",
            f"constituents_may_receive_amber: {str(agreement['constituents']).lower()}",
            "redaction:", "  parties: {}", "  constituents: jwg-constituents",
        ]
        if agreement["embargo"] is not None:
            lines.append(f"embargo_until: {agreement['embargo']}")
        (self.policies / "agreements" / "uz-pk-jwg-2026.yaml").write_text("\n".join(lines) + "\n")
        (self.policies / "collections.yaml").write_text(
            "collections:\n"
            f"  {alias}:\n    agreement: uz-pk-jwg-2026\n    require_signatures: false\n")

    def publish(self, alias: str, spec: dict[str, Any]) -> None:
        producer = spec["producer"]
        obj: dict[str, Any] = {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
            "pattern": "[ipv4-addr:value = '203.0.113.9']", "pattern_type": "stix",
            "valid_from": "2026-06-01T00:00:00.000Z",
            "created_by_ref": self.identity[producer],
            "object_marking_refs": [TLP2[spec["level"]]],
        }
        if spec["sco"] is not None:  # one of two shared observables, contributed by either
            obj = {"type": "ipv4-addr", "spec_version": "2.1", "id": SCO_IDS[spec["sco"]],
                   "value": f"203.0.113.{spec['sco']}",
                   "object_marking_refs": [TLP2[spec["level"]]]}
        if spec["red_to"]:
            obj["extensions"] = {RED_EXT: {"extension_type": "property-extension",
                                           "recipients": [self.identity[n]
                                                          for n in spec["red_to"]]}}
        account = "uz-pub" if producer == "UZ-CERT" else "pk-pub"
        revoked = {**obj, "modified": "2026-07-01T00:00:00.000Z", "revoked": True}
        versions = {"no": [obj], "after": [obj, revoked], "only": [revoked]}[spec["revoked"]]
        if spec["sco"] is not None:
            versions = [obj]  # SCOs are not revoked; they are contributed again
        body = json.dumps({"objects": versions}).encode()
        status = self.ex.publish(self.principals[account], "cx", alias, body)
        assert status.failure_count == 0, status.failures


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"))
    yield lab
    lab.store.close()


levels = st.lists(st.sampled_from(LEVELS[:4]), unique=True)
agreements = st.fixed_dictionaries({
    "valid_from": st.sampled_from([_iso(-400), _iso(-10), _iso(5)]),
    "valid_until": st.sampled_from([_iso(-5), _iso(30), _iso(800)]),
    "embargo": st.sampled_from([None, _iso(-3), _iso(3)]),
    "uz_levels": levels, "pk_levels": levels, "constituents": st.booleans(),
}).filter(lambda a: a["valid_until"] > a["valid_from"])
objects = st.lists(st.fixed_dictionaries({
    "producer": st.sampled_from(["UZ-CERT", "PK-CERT"]),
    "level": st.sampled_from(LEVELS),
    "red_to": st.lists(st.sampled_from(["PK-CERT", "UZ-SOC", "Outsider"]), unique=True,
                       max_size=2),
    "revoked": st.sampled_from(["no", "after", "only"]),
    "sco": st.sampled_from([None, None, 1, 2]),
}), min_size=1, max_size=8)
#: Deterministic-looking ids of two observables several members may contribute.
SCO_IDS = {1: "ipv4-addr--3a1f5e2c-6b7d-5c8e-9f01-23456789abcd",
           2: "ipv4-addr--4b2f6e3d-7c8e-5d9f-8a12-3456789abcde"}
CEILING = {"uz-soc": {"clear", "green", "amber", "red"}, "outsider": {"clear", "red"},
           "operator": {"clear", "red"}, "uz-pub": set(LEVELS), "pk-pub": set(LEVELS)}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agreement=agreements, specs=objects)
def test_sql_filter_equals_engine(lab: Lab, agreement: dict[str, Any],
                                  specs: list[dict[str, Any]]) -> None:
    alias = f"p-{uuid.uuid4().hex[:12]}"
    lab.bind(alias, agreement)
    lab.ex.add_collection(alias, alias=alias, readers=list(lab.identity),
                          writers=["UZ-CERT", "PK-CERT"])
    policy = lab.source.current()
    for spec in specs:
        lab.publish(alias, spec)
    collection = lab.store.get_collection("cx", alias)
    everything = lab.store.get_objects(ObjectQuery(
        collection_id=collection.id, versions=VersionMatch(all=True), limit=1000)).rows
    now = now_micros()
    for account, principal in lab.principals.items():
        recipient = lab.ex.recipient(principal)
        allowed: dict[tuple[str, int], bool] = {}
        expected = set()
        for row in everything:  # date_added order: earlier versions first
            meta = ObjectMeta(
                id=row.id, type=row.type, producer_org_name=lab.orgs[row.producer_org],
                tlp=Tlp(row.effective_tlp), tlp_explicit=True,
                red_recipients=red_recipients_of(json.loads(row.body)), revoked=row.revoked,
                date_added=row.date_added, collection_alias=alias)
            earlier = any(ok for (i, d), ok in allowed.items()
                          if i == row.id and d < row.date_added)
            decision = decide(policy, recipient, meta, now=now, received_earlier=earlier)
            allowed[(row.id, row.date_added)] = decision.allowed and not row.revoked
            if decision.allowed:
                expected.add((row.id, row.date_added))
                if row.producer_org != principal.org_id:
                    assert row.effective_tlp in CEILING[account], (account, row.effective_tlp)
        result = lab.ex.read(principal, "cx", alias, ObjectQuery(
            collection_id=collection.id, versions=VersionMatch(all=True), limit=1000))
        got = {(r.id, r.date_added) for r in result.page.rows}
        assert got == expected, (account, agreement)
        # match[version]=last: the newest version of each contribution line (id and
        # contributor), when this reader may receive it; an SCO another member
        # contributed later never hides the one this reader may see
        newest: dict[tuple[str, str | None], int] = {}
        for row in everything:
            line = (row.id, row.producer_org)
            newest[line] = max(newest.get(line, 0), row.version)
        expected_last = {(row.id, row.date_added) for row in everything
                         if (row.id, row.date_added) in expected
                         and row.version == newest[(row.id, row.producer_org)]}
        last = lab.ex.read(principal, "cx", alias, ObjectQuery(
            collection_id=collection.id, versions=VersionMatch(last=True), limit=1000))
        assert {(r.id, r.date_added) for r in last.page.rows} == expected_last, account
