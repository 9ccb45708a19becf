"""Custom content (STIX 2.1 section 11) and inline statement markings through TAXII POST.

Two nodes run the real application (medallion's views, our backend, the store) through
Flask's WSGI test client: one without a sharing policy, one with the shipped policy whose
collection bindings set ``custom_content`` (``jwg`` accepts, ``uz`` takes no custom
objects, ``pk`` only predefined types and properties). Signatures are not required here;
they have their own tests.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from exchange.config import load_settings
from exchange.model.objects import CollectionId, StixId
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.storage.base import ObjectQuery
from exchange.taxii.app import create_app

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
TAXII = "application/taxii+json;version=2.1"
EXT = "extension-definition--d83fce45-ef58-4c6c-a3f4-1fbc32e98c6e"
STATEMENT = "marking-definition--d81f86b9-975b-4c0b-875e-810c5ad45a4f"


def _policies(tmp: Path) -> Path:
    target = tmp / "policies"
    shutil.copytree(SHIPPED, target)
    collections = target / "collections.yaml"
    text = collections.read_text().replace("require_signatures: true",
                                           "require_signatures: false")
    for owner, rule in (("UZ-CERT", "no-custom-objects"), ("PK-CERT", "predefined-only")):
        text = text.replace(f"owner: {owner}\n", f"owner: {owner}\n    custom_content: {rule}\n")
    collections.write_text(text)
    return target


class Node:
    def __init__(self, tmp: Path, *, policy: bool) -> None:
        home = tmp / "home"
        home.mkdir()
        if policy:
            (home / "exchange.toml").write_text(f'policy_dir = "{_policies(tmp)}"\n')
        settings = load_settings(home, env={})
        init_home(settings)
        self.settings = load_settings(home, env={})
        self.store = open_store(self.settings)
        self.ex = Exchange(self.settings, self.store)
        self.ids = {name: self.ex.add_org(name).identity_id
                    for name in ("UZ-CERT", "PK-CERT")}
        # Stark Industries, the author of the OASIS marking example, as a member here.
        self.ids["Stark"] = self.ex.add_org(
            "Stark", identity_id="identity--611d9d41-dba5-4e13-9b29-e22488058ffc").identity_id
        self.keys: dict[str, str] = {}
        for account, org in (("uz-pub", "UZ-CERT"), ("stark-pub", "Stark")):
            self.ex.add_account(account, org=org, role="publisher")
            self.keys[account] = self.ex.create_api_key(account)[1]
        self.collections = {
            alias: self.ex.add_collection(alias, alias=alias, readers=["UZ-CERT", "PK-CERT"],
                                          writers=["UZ-CERT", "Stark"])[0].id
            for alias in ("jwg", "uz", "pk")
        }
        self.client = create_app(self.settings).test_client()

    def post(self, alias: str, objects: list[dict[str, Any]], account: str = "uz-pub"
             ) -> tuple[int, Any]:
        auth = base64.b64encode(f"{account}:{self.keys[account]}".encode()).decode()
        r = self.client.post(f"/cx/collections/{self.collections[alias]}/objects/",
                             headers={"Accept": TAXII, "Content-Type": TAXII,
                                      "Authorization": f"Basic {auth}"},
                             data=json.dumps({"objects": objects}).encode())
        return r.status_code, r.get_json()

    def stored(self, alias: str, object_id: str) -> Any:
        page = self.store.get_versions(ObjectQuery(
            collection_id=CollectionId(self.collections[alias]), ids=(StixId(object_id),),
            limit=10, include_body=True))
        return page.rows[0] if page.rows else None


@pytest.fixture(scope="module")
def with_policy(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return Node(tmp_path_factory.mktemp("policy"), policy=True)


@pytest.fixture(scope="module")
def without_policy(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return Node(tmp_path_factory.mktemp("baseline"), policy=False)


def _failures(status: Any) -> dict[str, str]:
    return {f["id"]: f["message"] for f in status.get("failures", [])}


def _custom(node: Node, n: int) -> dict[str, dict[str, Any]]:
    """One of each kind of custom content, by UZ-CERT, with ids unique to ``n``."""
    author = node.ids["UZ-CERT"]
    uid = f"{n:08d}-1f0c-4c55-9a52-3b7c2de0a8f1"
    common = {"spec_version": "2.1", "created": "2026-06-01T00:00:00.000Z",
              "modified": "2026-06-01T00:00:00.000Z", "created_by_ref": author}
    return {
        "legacy-property": {**common, "type": "indicator", "id": f"indicator--{uid}",
                            "pattern": "[ipv4-addr:value = '203.0.113.9']",
                            "pattern_type": "stix", "valid_from": "2026-06-01T00:00:00Z",
                            "x_acme_score": {"value": 7, "scale": "0-10"}},
        "legacy-object": {**common, "type": "x-acme-ticket", "id": f"x-acme-ticket--{uid}",
                          "x_ticket": "INC-42"},
        "new-sdo": {**common, "type": "acme-case", "id": f"acme-case--{uid}",
                    "case_number": "C-7", "extensions": {EXT: {"extension_type": "new-sdo"}}},
        "extension-definition": {
            **common, "type": "extension-definition",
            "id": f"extension-definition--{uid}", "name": "ACME case",
            "schema": "https://acme.example/case.json", "version": "1.0.0",
            "extension_types": ["new-sdo"]},
        "predefined-only": {**common, "type": "malware", "id": f"malware--{uid}",
                            "name": "Emotet", "is_family": True},
    }


def test_custom_content_is_stored_byte_exact_and_served_unchanged(without_policy: Node) -> None:
    node = without_policy
    objects = _custom(node, 1)
    code, status = node.post("jwg", list(objects.values()))
    assert code == 202
    assert status["success_count"] == len(objects), _failures(status)
    for obj in objects.values():
        row = node.stored("jwg", obj["id"])
        assert row.body == rfc8785.dumps(obj)  # nothing dropped or rewritten
    legacy = objects["legacy-property"]
    auth = base64.b64encode(f"uz-pub:{node.keys['uz-pub']}".encode()).decode()
    r = node.client.get(f"/cx/collections/{node.collections['jwg']}/objects/{legacy['id']}/",
                        headers={"Accept": TAXII, "Authorization": f"Basic {auth}"})
    assert r.get_json()["objects"] == [legacy]


@pytest.mark.parametrize(("alias", "refused"), [
    pytest.param("jwg", set(), id="accept"),
    pytest.param("uz", {"legacy-object", "new-sdo"}, id="no-custom-objects"),
    pytest.param("pk", {"legacy-object", "new-sdo", "legacy-property"}, id="predefined-only"),
])
def test_a_collection_binding_restricts_custom_content(with_policy: Node, alias: str,
                                                       refused: set[str]) -> None:
    objects = _custom(with_policy, {"jwg": 2, "uz": 3, "pk": 4}[alias])
    code, status = with_policy.post(alias, list(objects.values()))
    assert code == 202
    failures = _failures(status)
    assert {name for name, obj in objects.items() if obj["id"] in failures} == refused
    for name in refused:
        message = failures[objects[name]["id"]]
        assert message.endswith(f"refused in this collection (policy: custom_content"
                                f" {'no-custom-objects' if alias == 'uz' else 'predefined-only'})")
    # the extension-definition itself is a STIX 2.1 type: every binding takes it
    assert objects["extension-definition"]["id"] not in failures
    assert status["success_count"] == len(objects) - len(refused)


@pytest.mark.parametrize("policy", [True, False], ids=["with-policy", "without-policy"])
def test_inline_statement_marking_is_accepted_and_tlp_comes_from_the_tlp_marking(
    with_policy: Node, without_policy: Node, policy: bool,
) -> None:
    node = with_policy if policy else without_policy
    document = json.loads((REAL / "stix21" / "using-marking-definitions.json").read_text())
    code, status = node.post("jwg", document["objects"], account="stark-pub")
    assert code == 202
    assert status["failure_count"] == 0, _failures(status)
    indicator = node.stored("jwg", "indicator--33fe3b22-0201-47cf-85d0-97c02164528d")
    assert indicator.tlp == "amber"  # TLP 1.0 AMBER; the statement adds no level
    assert node.stored("jwg", STATEMENT) is not None


def test_a_statement_not_in_the_envelope_is_still_unknown_under_a_policy(
    with_policy: Node,
) -> None:
    obj = _custom(with_policy, 5)["legacy-property"]
    other = "marking-definition--0f6b1a4e-1f0c-4c55-9a52-3b7c2de0a8f1"
    code, status = with_policy.post("jwg", [{**obj, "object_marking_refs": [other]}])
    assert code == 202
    assert "unknown marking-definition" in _failures(status)[obj["id"]]


def test_taxii_post_of_stix_2_0_is_refused_once_naming_the_cli(without_policy: Node) -> None:
    document = json.loads((REAL / "stix20" / "unit42-dearcry-ransomware.json").read_text())
    for body in (document["objects"], None):
        if body is None:  # the 2.0 bundle posted as it is
            auth = base64.b64encode(f"uz-pub:{without_policy.keys['uz-pub']}".encode()).decode()
            r = without_policy.client.post(
                f"/cx/collections/{without_policy.collections['jwg']}/objects/",
                headers={"Accept": TAXII, "Content-Type": TAXII,
                         "Authorization": f"Basic {auth}"},
                data=json.dumps(document).encode())
            code, error = r.status_code, r.get_json()
        else:
            code, error = without_policy.post("jwg", body)
        assert code == 422
        text = json.dumps(error)
        assert text.count("STIX 2.0 is not accepted over TAXII 2.1") == 1
        assert "exchange publish" in text
        assert "failures" not in error  # one refusal, not one per object
    assert without_policy.stored("jwg", document["objects"][0]["id"]) is None


def test_a_mixed_envelope_is_judged_object_by_object(without_policy: Node) -> None:
    modern = _custom(without_policy, 6)["predefined-only"]
    old = {k: v for k, v in _custom(without_policy, 7)["predefined-only"].items()
           if k != "spec_version"}
    code, status = without_policy.post("jwg", [modern, old])
    assert code == 202
    assert status["success_count"] == 1
    assert "exchange publish FILE` upgrades it" in _failures(status)[old["id"]]
