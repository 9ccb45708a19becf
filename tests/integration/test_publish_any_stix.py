"""``exchange publish`` takes the STIX a CERT holds: the Unit 42 STIX 2.0 playbooks, upgraded
and signed into a collection that requires signatures, read back with taxii2-client; STIX
1.x XML through the stix1 extra; and refusals grouped one line per reason.

The node is the session's real gunicorn server (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from taxii2client.v21 import Collection as TaxiiCollection
from taxii2client.v21 import as_pages

from exchange.cli.main import main
from exchange.member.upgrade import PROVENANCE_SOURCE
from exchange.signing.canonical import EXTENSION_ID
from tests.integration.conftest import Node

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
STIX20 = sorted((REAL / "stix20").glob("*.json"))
PASSPHRASE = "relay analyst passphrase 2026"
# A STIX 1.2 package as a CERT's older TAXII 1.1 feed delivers it (written for this test).
STIX1_XML = """<stix:STIX_Package
    xmlns:stix="http://stix.mitre.org/stix-1"
    xmlns:indicator="http://stix.mitre.org/Indicator-2"
    xmlns:cybox="http://cybox.mitre.org/cybox-2"
    xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2"
    xmlns:stixVocabs="http://stix.mitre.org/default_vocabularies-1"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:relay="http://relay.example"
    id="relay:Package-2b8f6e2a-3c5d-4b1e-9a7f-0d2c4e6f8a10" version="1.2"
    timestamp="2024-03-01T10:00:00Z">
  <stix:Indicators>
    <stix:Indicator id="relay:indicator-5e2c7c1a-7d1e-4c3b-8f4a-6a5b3c2d1e0f"
        timestamp="2024-03-01T10:00:00Z" xsi:type="indicator:IndicatorType">
      <indicator:Title>C2 server of a phishing wave</indicator:Title>
      <indicator:Type xsi:type="stixVocabs:IndicatorTypeVocab-1.1">IP Watchlist</indicator:Type>
      <indicator:Observable id="relay:Observable-1c1f5e2e-3b1c-4a7c-9b3e-2f0b8d9e7a61">
        <cybox:Object id="relay:Address-4e2c7c1a-7d1e-4c3b-8f4a-6a5b3c2d1e0f">
          <cybox:Properties xsi:type="AddressObj:AddressObjectType" category="ipv4-addr">
            <AddressObj:Address_Value condition="Equals">198.51.100.23</AddressObj:Address_Value>
          </cybox:Properties>
        </cybox:Object>
      </indicator:Observable>
    </stix:Indicator>
  </stix:Indicators>
</stix:STIX_Package>
"""


@dataclass
class Relay:
    node: Node
    workdir: Path
    key: Path
    passfile: Path
    identity: str

    def cli(self, *args: str, admin: bool = False) -> tuple[int, str, str]:
        env: dict[str, str | None] = {
            "EXCHANGE_SERVER_SECRET": None, "EXCHANGE_SIGNING_KEY": None,
            "EXCHANGE_IDENTITY": None, "EXCHANGE_PASSPHRASE": None,
            "EXCHANGE_API_KEY": None if admin else self.node.keys["relay-pub"]}
        prefix = ["--home", str(self.node.home)] if admin else []
        result = CliRunner().invoke(main, [*prefix, *args], env=env)
        return result.exit_code, result.stdout, result.stderr

    def collection(self, *, required: bool) -> str:
        alias = f"relay-{uuid.uuid4().hex[:10]}"
        col, _ = self.node.exchange.add_collection(
            alias, alias=alias, readers=["RELAY-CERT", "UZ-CERT"], writers=["RELAY-CERT"],
            require_signatures=required)
        self.node.collections[alias] = col.id
        return alias


@pytest.fixture(scope="module")
def relay(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Relay:
    """RELAY-CERT, a member that forwards vendor playbooks, with a registered signing key."""
    workdir = tmp_path_factory.mktemp("relay")
    ex = node.exchange
    identity = ex.add_org("RELAY-CERT").identity_id
    ex.add_account("relay-pub", org="RELAY-CERT", role="publisher")
    node.keys["relay-pub"] = ex.create_api_key("relay-pub")[1]
    passfile = workdir / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")
    passfile.chmod(0o600)
    r = Relay(node, workdir, workdir / "relay.key", passfile, identity)
    code, _, err = r.cli("keys", "generate", "--out", str(r.key), "--public-out",
                         str(workdir / "relay.pub"), "--passphrase-file", str(passfile))
    assert code == 0, err
    code, _, err = r.cli("keys", "register", "--org", "RELAY-CERT", "--public-key",
                         str(workdir / "relay.pub"), admin=True)
    assert code == 0, err
    time.sleep(ex.settings.cache_seconds + 0.3)  # every worker's registry knows the key
    return r


def _read_back(node: Node, alias: str, account: str) -> list[dict[str, Any]]:
    user, password = node.auth(account)
    collection = TaxiiCollection(node.collection_url(alias), user=user, password=password)
    objects: list[dict[str, Any]] = []
    for page in as_pages(collection.get_objects, per_request=500):
        objects += page.get("objects", [])
    return objects


@pytest.mark.slow
@pytest.mark.parametrize("path", STIX20, ids=lambda p: p.stem)
def test_unit42_stix_2_0_playbook_publishes_signed_and_reads_back(relay: Relay,
                                                                  path: Path) -> None:
    node = relay.node
    alias = relay.collection(required=True)
    source = json.loads(path.read_text())["objects"]
    code, out, err = relay.cli(
        "publish", str(path), "--url", node.collection_url(alias), "--user", "relay-pub",
        "--sign-key", str(relay.key), "--passphrase-file", str(relay.passfile),
        "--identity", relay.identity, "--json")
    result = json.loads(out)
    assert f"upgraded {len(source)} STIX 2.0 object(s) to STIX 2.1" in err
    assert result["source"] == "stix2.0"
    assert result["upgrade"]["objects"] == len(source)
    assert result["total"] == len(source)
    # Objects authored by a third party (MITRE's attack-patterns) wait for the
    # contributor/author change (issue 17, h1); every other object is accepted, signed.
    third_party = {o["id"] for o in source
                   if o.get("created_by_ref") not in (None, relay.identity)}
    refused = {f["id"]: f["message"] for f in result["failures"]}
    assert set(refused) <= third_party, refused
    assert all("you may only publish your own objects" in m for m in refused.values())
    assert code == (1 if refused else 0), err
    assert result["succeeded"] == len(source) - len(refused)
    assert result["signing"]["signed"] == len(source)

    served = _read_back(node, alias, "uz-reader")
    assert len(served) == result["succeeded"]
    by_id = {o["id"]: o for o in served}
    for original in source:
        if original["id"] in refused:
            continue
        got = by_id[original["id"]]  # the id is kept
        assert got["spec_version"] == "2.1"
        assert got["extensions"][EXTENSION_ID]["kid"]  # signed by the member
        assert got["external_references"][-1]["source_name"] == PROVENANCE_SOURCE
        if original.get("created_by_ref"):
            assert got["created_by_ref"] == original["created_by_ref"]
        for key, value in original.items():
            if key.startswith("x_"):
                assert got[key] == value  # custom properties travel
        if original["type"] == "indicator":
            assert got["pattern_type"] == "stix"
            assert got["indicator_types"] == original["labels"]

NO_EXTRA = "the stix1 extra is not installed: pip install 'cert-exchange[stix1]'"


def test_refusals_are_grouped_one_line_per_reason(relay: Relay) -> None:
    node = relay.node
    alias = relay.collection(required=True)
    objects = json.loads((REAL / "stix20" / "unit42-dearcry-ransomware.json").read_text())
    count = len(objects["objects"])
    # Three objects claim another member as their author: a second reason for refusal.
    for obj in objects["objects"][:3]:
        obj["created_by_ref"] = node.identities["UZ-CERT"]
    path = relay.workdir / "dearcry-three-claiming-uz-cert.json"
    path.write_text(json.dumps(objects))
    args = ("publish", str(path), "--url", node.collection_url(alias), "--user", "relay-pub")
    code, out, _ = relay.cli(*args)  # unsigned, into a collection that requires signatures
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"0 of {count} objects accepted, {count} refused"
    refused = [line for line in lines if line.startswith("  refused ")]
    assert len(refused) == 2  # unsigned, and another member named as author
    assert refused[0].startswith(f"  refused {count - 3}: ")
    assert "requires signed objects" in refused[0]
    assert f", ... {count - 6} more)" in refused[0]
    assert refused[1].startswith("  refused 3: ")
    assert "registered identity of UZ-CERT" in refused[1]
    assert lines[-1] == "  (one line per reason; --verbose or --json lists every object)"

    code, out, _ = relay.cli(*args, "--verbose")
    assert len([line for line in out.splitlines() if line.startswith("  refused ")]) == count

    code, out, _ = relay.cli(*args, "--json")
    data = json.loads(out)
    assert len(data["failures"]) == count
    assert [g["count"] for g in data["refusals"]] == [count - 3, 3]
    assert sum(len(g["ids"]) for g in data["refusals"]) == count


def test_stix_1_xml_publishes_through_the_elevator(relay: Relay) -> None:
    pytest.importorskip("stix2elevator", reason=NO_EXTRA)
    node = relay.node
    alias = relay.collection(required=True)
    xml = relay.workdir / "feed.xml"
    xml.write_text(STIX1_XML)
    code, out, err = relay.cli(
        "publish", str(xml), "--url", node.collection_url(alias), "--user", "relay-pub",
        "--sign-key", str(relay.key), "--passphrase-file", str(relay.passfile),
        "--identity", relay.identity, "--json")
    assert code == 0, out + err
    assert "converted STIX 1.x XML to 1 STIX 2.1 object(s) with stix2-elevator" in err
    assert json.loads(out)["source"] == "stix1"
    (served,) = _read_back(node, alias, "uz-reader")
    assert served["id"] == "indicator--5e2c7c1a-7d1e-4c3b-8f4a-6a5b3c2d1e0f"  # id kept
    assert served["pattern"] == "[ipv4-addr:value = '198.51.100.23']"
    assert served["external_references"][-1]["external_id"] == "stix-1.x"
