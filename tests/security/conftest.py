"""One real node for the adversarial battery: ``exchange serve`` on 127.0.0.1 with the
shipped example policy (policies/, read in place) and accounts of every kind.

Organisations and accounts:

* UZ-CERT and PK-CERT (the agreement's parties): a publisher and a consumer each;
* UZ-SOC (UZ-CERT's constituent): a consumer;
* JWG-Operator (the community's operator): an admin and an auditor;
* Outsider (known to the node, outside the community): a consumer;
* and the unauthenticated client (``None``).

Collections (the shipped collections.yaml binds ``jwg``, ``uz`` and ``pk``; ``drop`` is
bound to nothing, so closed to all but each object's producer):

* ``jwg``: read by everyone above, written by UZ-CERT and PK-CERT;
* ``uz``: read by UZ-CERT and UZ-SOC, written by UZ-CERT;
* ``pk``: read and written by PK-CERT;
* ``drop``: written by PK-CERT (which may not read it), read by UZ-CERT.

The parties' publishers have registered Ed25519 keys and sign what they publish (the
shipped collections require signatures). Every request carries an ``X-Request-ID`` of
its own, so a refusal's denial record is found in the ledger by that id.
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

from exchange.config import load_settings
from exchange.model.objects import Role
from exchange.node.keyring import register_key
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange, init_home
from exchange.policy import RED_RECIPIENTS_EXTENSION_ID
from exchange.signing.canonical import normal_form
from exchange.signing.cxsig import sign_object
from exchange.signing.keys import SigningKey, generate
from exchange.storage import open_store
from tests.integration.conftest import serving
from tests.integration.stixdata import TLP2

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
TAXII = "application/taxii+json;version=2.1"
LEVELS = ("clear", "green", "amber", "amber+strict", "red")

#: account -> (organisation, role)
ACCOUNTS: dict[str, tuple[str, str]] = {
    "uz-pub": ("UZ-CERT", "publisher"),
    "pk-pub": ("PK-CERT", "publisher"),
    "uz-reader": ("UZ-CERT", "consumer"),
    "pk-reader": ("PK-CERT", "consumer"),
    "uz-soc": ("UZ-SOC", "consumer"),
    "admin": ("JWG-Operator", "admin"),
    "auditor": ("JWG-Operator", "auditor"),
    "outsider": ("Outsider", "consumer"),
}
#: Every caller: the accounts and the unauthenticated client.
CALLERS: tuple[str | None, ...] = (*ACCOUNTS, None)

#: alias -> (reader organisations, writer organisations)
COLLECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "jwg": (("UZ-CERT", "PK-CERT", "UZ-SOC", "JWG-Operator", "Outsider"),
            ("UZ-CERT", "PK-CERT")),
    "uz": (("UZ-CERT", "UZ-SOC"), ("UZ-CERT",)),
    "pk": (("PK-CERT",), ("PK-CERT",)),
    "drop": (("UZ-CERT",), ("PK-CERT",)),
}
#: A collection id that exists nowhere.
MISSING = "0d6c0b8e-3c1a-4b7e-9f00-5a5a5a5a5a5a"


def org_of(account: str) -> str:
    return ACCOUNTS[account][0]


def may_read(account: str, alias: str) -> bool:
    return ACCOUNTS[account][1] == "admin" or org_of(account) in COLLECTIONS[alias][0]


def may_write(account: str, alias: str) -> bool:
    return (ACCOUNTS[account][1] in ("publisher", "admin")
            and org_of(account) in COLLECTIONS[alias][1])


def sees(account: str, alias: str) -> bool:
    """Whether the collection exists for the account (it may read or write it: a
    consumer of a writing organisation may do neither)."""
    return may_read(account, alias) or may_write(account, alias)


@dataclass
class Battery:
    """The running node, its members, and the means to talk to it."""

    base: str
    home: Path
    exchange: Exchange
    policy: PolicySource
    keys: dict[str, str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)
    signing: dict[str, SigningKey] = field(default_factory=dict)
    #: every STIX id sent in a refused write (checked unreadable at the end)
    refused_ids: set[str] = field(default_factory=set)

    # -- requests ----------------------------------------------------------------------
    def request(self, method: str, path: str, account: str | None, *,
                body: bytes | None = None, params: Any = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        """One request to ``/<path>`` (relative to the server); a fresh request id."""
        sent = {"Accept": TAXII, "X-Request-ID": f"battery-{uuid.uuid4().hex}"}
        if body is not None:
            sent["Content-Type"] = TAXII
        sent.update(headers or {})
        auth = (account, self.keys[account]) if account else None
        return requests.request(method, f"{self.base}/{path.lstrip('/')}", data=body,
                                params=params, headers=sent, auth=auth, timeout=60)

    def col(self, alias: str) -> str:
        """The collection path of an alias (or of :data:`MISSING`)."""
        return f"cx/collections/{self.collections.get(alias, alias)}/"

    def post_objects(self, alias: str, account: str | None, objects: list[dict[str, Any]]
                     ) -> requests.Response:
        return self.request("POST", self.col(alias) + "objects/", account,
                            body=json.dumps({"objects": objects}).encode())

    def healthy(self) -> None:
        """The server still answers a normal request."""
        r = self.request("GET", "taxii2/", "uz-reader")
        assert r.status_code == 200, r.text[:300]

    def denials(self, request_id: str) -> list[dict[str, Any]]:
        """The denial records the ledger holds for one request (through the auditor API)."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(1000):
            params = {"kind": "denial", "limit": "1000", **({"after": after} if after else {})}
            r = self.request("GET", "cx/cx/audit/records/", "auditor", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            found += [e["record"] for e in body["records"]
                      if e["record"].get("request_id") == request_id]
            if not body["more"]:
                return found
            after = body["next"]
        raise AssertionError("audit records did not end")

    # -- content -----------------------------------------------------------------------
    def indicator(self, org: str, level: str, **extra: Any) -> dict[str, Any]:
        """A fresh indicator by ``org`` at a TLP level (RED names PK-CERT), unsigned."""
        obj: dict[str, Any] = {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
            "name": f"{org} {level}", "description": "analyst notes",
            "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
            "valid_from": "2026-06-01T00:00:00.000Z",
            "created_by_ref": self.identities[org],
            "object_marking_refs": [TLP2[level]],
        }
        if level == "red":
            other = "PK-CERT" if org == "UZ-CERT" else "UZ-CERT"
            obj["extensions"] = {RED_RECIPIENTS_EXTENSION_ID: {
                "extension_type": "property-extension",
                "recipients": [self.identities[other]]}}
        obj.update(extra)
        return obj

    def sign(self, obj: dict[str, Any], org: str) -> dict[str, Any]:
        return sign_object(normal_form(obj), self.signing[org])


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    home = tmp_path_factory.mktemp("battery-home")
    (home / "exchange.toml").write_text(f'policy_dir = "{SHIPPED}"\n', encoding="utf-8")
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    policy = PolicySource(SHIPPED)
    policy.load()
    ex = Exchange(settings, store)
    b = Battery(base="", home=home, exchange=ex, policy=policy)
    try:
        for name in ("UZ-CERT", "PK-CERT", "JWG-Operator", "Outsider"):
            b.identities[name] = ex.add_org(name).identity_id
        b.identities["UZ-SOC"] = ex.add_org("UZ-SOC", parent="UZ-CERT").identity_id
        for account, (org, role) in ACCOUNTS.items():
            ex.add_account(account, org=org, role=Role(role).value)
            b.keys[account] = ex.create_api_key(account)[1]
        for alias, (readers, writers) in COLLECTIONS.items():
            b.collections[alias] = ex.add_collection(
                alias.upper(), alias=alias, readers=list(readers), writers=list(writers)
            )[0].id
        for org in ("UZ-CERT", "PK-CERT"):
            b.signing[org] = generate("Ed25519")
            register_key(store, org, b.signing[org].public_pem())
        with serving(home, ("uz-reader", b.keys["uz-reader"]), workers=2) as base:
            b.base = base
            yield b
    finally:
        store.close()
