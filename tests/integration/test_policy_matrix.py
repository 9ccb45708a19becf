"""Who receives what under the shipped UZ-CERT / PK-CERT policy, on every TAXII path out.

A matrix over recipients (a party's publisher, a constituent SOC, an operator admin, an
organisation outside the community) x TLP levels x agreement states (in force, expired,
embargoed) x paths (objects, object by id, versions, manifest). The policy files are the
shipped ones, with only the agreement's dates rewritten per state and signatures not
required (signatures have their own tests). Requests go through the real application
(medallion's views, our backend, the SQL filter) with Flask's WSGI test client.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from exchange.config import load_settings
from exchange.node.derive import derived_id
from exchange.node.service import Exchange, init_home
from exchange.policy import RED_RECIPIENTS_EXTENSION_ID, Redact
from exchange.signing.canonical import EXTENSION_ID
from exchange.storage import open_store
from exchange.taxii.app import create_app
from tests.integration.stixdata import TLP2

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
TAXII = "application/taxii+json;version=2.1"
LEVELS = ["clear", "green", "amber", "amber+strict", "red"]
RED_EXT = RED_RECIPIENTS_EXTENSION_ID

STATES = {
    "in-force": ("2026-01-01T00:00:00Z", "2028-01-01T00:00:00Z", None),
    "expired": ("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", None),
    "embargoed": ("2026-01-01T00:00:00Z", "2028-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
}

# What each recipient receives of UZ-CERT's objects in the joint collection.
EXPECTED: dict[str, dict[str, set[str]]] = {
    "in-force": {
        "pk-pub": {"clear", "green", "amber", "amber+strict", "red"},
        "uz-soc": {"clear", "green", "amber"},
        "operator": {"clear"},
        "outsider": {"clear"},
        "uz-pub": set(LEVELS),
    },
    "expired": {
        "pk-pub": {"clear", "green", "red"},
        "uz-soc": {"clear", "green"},
        "operator": {"clear"},
        "outsider": {"clear"},
        "uz-pub": set(LEVELS),
    },
    "embargoed": {
        "pk-pub": set(),
        "uz-soc": set(),
        "operator": set(),
        "outsider": set(),
        "uz-pub": set(LEVELS),
    },
}


def _policies(tmp: Path, state: str) -> Path:
    target = tmp / "policies"
    shutil.copytree(SHIPPED, target)
    valid_from, valid_until, embargo = STATES[state]
    agreement = target / "agreements" / "uz-pk-jwg-2026.yaml"
    text = agreement.read_text()
    text = re.sub(r"(?m)^valid_from: .*$", f"valid_from: {valid_from}", text)
    text = re.sub(r"(?m)^valid_until: .*$", f"valid_until: {valid_until}", text)
    if embargo:
        text += f"embargo_until: {embargo}\n"
    agreement.write_text(text)
    collections = target / "collections.yaml"
    collections.write_text(collections.read_text().replace("require_signatures: true",
                                                           "require_signatures: false"))
    return target


class World:
    def __init__(self, tmp: Path, state: str) -> None:
        home = tmp / "home"
        home.mkdir()
        (home / "exchange.toml").write_text(f'policy_dir = "{_policies(tmp, state)}"\n')
        settings = load_settings(home, env={})
        init_home(settings)
        self.settings = load_settings(home, env={})
        self.store = open_store(self.settings)
        self.ex = Exchange(self.settings, self.store)
        self.ids: dict[str, str] = {}
        for name in ("UZ-CERT", "PK-CERT", "JWG-Operator", "Outsider"):
            self.ids[name] = self.ex.add_org(name).identity_id
        self.ex.add_org("UZ-SOC", parent="UZ-CERT")
        self.keys: dict[str, str] = {}
        for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                                   ("pk-pub", "PK-CERT", "publisher"),
                                   ("uz-soc", "UZ-SOC", "consumer"),
                                   ("operator", "JWG-Operator", "admin"),
                                   ("outsider", "Outsider", "consumer")]:
            self.ex.add_account(account, org=org, role=role)
            self.keys[account] = self.ex.create_api_key(account)[1]
        everyone = ["UZ-CERT", "PK-CERT", "UZ-SOC", "JWG-Operator", "Outsider"]
        self.collection = self.ex.add_collection(
            "Joint", alias="jwg", readers=everyone, writers=["UZ-CERT", "PK-CERT"])[0].id
        self.client = create_app(self.settings).test_client()
        self.objects = {level: self._indicator(level) for level in LEVELS}
        status = self.request("POST", "objects/", "uz-pub",
                              {"objects": list(self.objects.values())})
        assert status["success_count"] == 5, status

    def _indicator(self, level: str) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
            "name": f"level {level}", "description": "internal analyst notes",
            "pattern": "[ipv4-addr:value = '203.0.113.9']", "pattern_type": "stix",
            "valid_from": "2026-06-01T00:00:00.000Z", "created_by_ref": self.ids["UZ-CERT"],
            "object_marking_refs": [TLP2[level]],
        }
        if level == "red":
            obj["extensions"] = {RED_EXT: {"extension_type": "property-extension",
                                           "recipients": [self.ids["PK-CERT"]]}}
        return obj

    def request(self, method: str, path: str, account: str, body: Any = None,
                **params: str) -> Any:
        auth = base64.b64encode(f"{account}:{self.keys[account]}".encode()).decode()
        headers = {"Accept": TAXII, "Authorization": f"Basic {auth}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = TAXII
        r = self.client.open(f"/cx/collections/{self.collection}/{path}", method=method,
                             headers=headers, data=data, query_string=params)
        if r.status_code == 404:
            return None
        assert r.status_code in (200, 202), r.get_data(as_text=True)
        return r.get_json()

    def level_of_id(self, shown: str) -> str:
        for level, obj in self.objects.items():
            if shown in (obj["id"], derived_id(obj["id"], (Redact("jwg-constituents"),))):
                return level
        raise AssertionError(f"unexpected id {shown}")

    def received(self, account: str, path: str) -> set[str]:
        if path == "objects":
            body = self.request("GET", "objects/", account) or {}
            return {self.level_of_id(o["id"]) for o in body.get("objects", [])
                    if o["type"] == "indicator"}
        if path == "manifest":
            body = self.request("GET", "manifest/", account) or {}
            return {self.level_of_id(o["id"]) for o in body.get("objects", [])}
        got = set()
        for level, obj in self.objects.items():
            suffix = "versions/" if path == "versions" else ""
            body = self.request("GET", f"objects/{obj['id']}/{suffix}", account)
            if body and (body.get("objects") or body.get("versions")):
                got.add(level)
        return got


@pytest.fixture(scope="module", params=list(STATES))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> World:
    w = World(tmp_path_factory.mktemp(request.param), request.param)
    w.state = request.param  # type: ignore[attr-defined]
    return w


@pytest.mark.parametrize("path", ["objects", "object", "versions", "manifest"])
@pytest.mark.parametrize("account", ["pk-pub", "uz-soc", "operator", "outsider", "uz-pub"])
def test_each_recipient_receives_exactly_what_the_policy_allows(world: World, account: str,
                                                                path: str) -> None:
    expected = EXPECTED[world.state][account]  # type: ignore[attr-defined]
    assert world.received(account, path) == expected


def test_constituents_get_a_redacted_derived_copy_never_the_original(tmp_path: Path) -> None:
    world = World(tmp_path, "in-force")
    original = world.objects["amber"]
    body = world.request("GET", f"objects/{original['id']}/", "uz-soc")
    [copy] = body["objects"]
    assert copy["id"] != original["id"]
    assert "description" not in copy
    assert copy["pattern"] == original["pattern"]
    # UZ-CERT's identity is not in the collection: the reference is dropped, and said so
    assert "created_by_ref" not in copy
    provenance, dropped = copy["external_references"]
    assert provenance["source_name"] == "cert-exchange-derived-from"
    assert provenance["external_id"] == original["id"]
    assert dropped["source_name"] == "cert-exchange-dropped-refs"
    assert dropped["external_id"] == "created_by_ref"
    assert world.ids["UZ-CERT"] not in json.dumps(copy)
    # attested with the node's own key
    [node_key] = world.store.list_member_keys(purpose="node")
    assert copy["extensions"][EXTENSION_ID]["kid"] == node_key.kid
    # the original is untouched in storage and still served to the party
    party = world.request("GET", f"objects/{original['id']}/", "pk-pub")
    assert party["objects"] == [original]


def test_paging_with_heavy_filtering_returns_full_pages(tmp_path: Path) -> None:
    """1 visible object in 1,000: the page holds it and `next` reveals nothing else."""
    w = World(tmp_path, "in-force")
    hidden = [w._indicator("amber+strict") for _ in range(999)]
    for start in range(0, 999, 500):
        w.request("POST", "objects/", "uz-pub", {"objects": hidden[start:start + 500]})
    visible = w._indicator("green")
    w.request("POST", "objects/", "uz-pub", {"objects": [visible]})
    seen: list[str] = []
    params = {"limit": "3", "match[type]": "indicator"}
    pages = 0
    while pages < 10:
        body = w.request("GET", "objects/", "uz-soc", **params)
        pages += 1
        seen += [o["id"] for o in body.get("objects", [])]
        if not body.get("more"):
            break
        params = {**params, "next": body["next"]}
    # clear, green, amber of the fixture plus the new green one; amber+strict never
    assert len(seen) == 4
    assert pages == 2
    assert derived_id(visible["id"], (Redact("jwg-constituents"),)) in seen


def test_explain_over_http_for_admins_and_auditors_only(tmp_path: Path) -> None:
    w = World(tmp_path, "in-force")
    amber = w.objects["amber"]["id"]

    def ask(account: str, recipient: str) -> Any:
        auth = base64.b64encode(f"{account}:{w.keys[account]}".encode()).decode()
        return w.client.get("/cx/cx/explain/", query_string={
            "object": amber, "recipient": recipient},
            headers={"Accept": TAXII, "Authorization": f"Basic {auth}"})

    allowed = ask("operator", "uz-soc").get_json()["explanations"][0]
    assert allowed["allowed"] is True
    assert allowed["rule"] == "tlp-amber-constituent:uz-pk-jwg-2026"
    assert allowed["transforms"] == ["redact(jwg-constituents)"]
    assert allowed["policy_digest"].startswith("sha256:")
    denied = ask("operator", "Outsider").get_json()["explanations"][0]
    assert denied["allowed"] is False
    assert denied["rule"].startswith("deny-")
    assert denied["reason"]
    forbidden = ask("uz-soc", "pk-pub")
    assert forbidden.status_code == 403
    assert forbidden.get_json()["http_status"] == "403"


def test_policy_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from exchange.cli.main import main  # noqa: PLC0415

    w = World(tmp_path, "in-force")
    home = str(w.settings.home)
    runner = CliRunner()
    checked = runner.invoke(main, ["--home", home, "policy", "check", "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["digest"].startswith("sha256:")
    red = w.objects["red"]["id"]
    explained = runner.invoke(main, ["--home", home, "policy", "explain", red,
                                     "--recipient", "uz-soc"])
    assert explained.exit_code == 0, explained.output
    assert "DENIED" in explained.stdout
    assert "deny-tlp-red-not-named" in explained.stdout
    bundle = tmp_path / "bundle.json"
    draft = w._indicator("amber+strict")
    bundle.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                  "objects": [draft]}))
    dry = runner.invoke(main, ["--home", home, "policy", "dry-run", str(bundle),
                               "--collection", "jwg"])
    assert dry.exit_code == 0, dry.output
    assert draft["id"] in dry.stdout
    assert "pk-pub" in dry.stdout
    broken = tmp_path / "broken"
    shutil.copytree(SHIPPED, broken)
    (broken / "community.yaml").write_text("name: x\nmembrs: []\n")
    bad = runner.invoke(main, ["--home", home, "policy", "check", "--dir", str(broken)])
    assert bad.exit_code == 1
    assert "membrs" in bad.stderr
