"""Every refusal is a clear TAXII error (request level) or a per-object failure.

Each row names the bad input, the status expected, and a phrase the error must contain
so that a person reading it knows what was wrong. Nothing of a refused request is stored.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.integration.conftest import TAXII, Node
from tests.integration.stixdata import envelope, indicator

UZ = "UZ-CERT"


def _deep(depth: int) -> bytes:
    return b'{"objects": [' + b"[" * depth + b"]" * depth + b"]}"


REQUEST_LEVEL: list[Any] = [
    pytest.param(lambda n: b'{"objects": [', {}, 400, "JSON", id="malformed-json"),
    pytest.param(lambda n: b'{"objects": [], "objects": []}', {}, 400, "duplicate",
                 id="duplicate-top-level-key"),
    pytest.param(lambda n: b'{"objects": [{"a": NaN}]}', {}, 400, "NaN", id="nan"),
    pytest.param(lambda n: b'{"objects": [{"a": Infinity}]}', {}, 400, "Infinity",
                 id="infinity"),
    pytest.param(lambda n: b'{"objects": ["\\ud800"]}', {}, 400, "surrogate",
                 id="lone-surrogate"),
    # Issue 18 item 1: a double beyond 2**53 once passed ingest, was stored as the integer
    # RFC 8785 writes for it, and then broke every page and pull that held it.
    pytest.param(lambda n: json.dumps({"objects": [{
        "type": "location", "spec_version": "2.1", "id": f"location--{uuid.uuid4()}",
        "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
        "created_by_ref": n.identities[UZ], "latitude": 41.3, "longitude": 69.2,
        "precision": 1e17}]}).encode(), {}, 400, "outside +-(2**53-1)",
                 id="double-beyond-2-pow-53"),
    pytest.param(lambda n: _deep(40), {}, 400, "levels deep", id="nesting-depth"),
    pytest.param(lambda n: _deep(100_000), {}, 400, "levels deep",
                 id="nesting-depth-hostile"),
    pytest.param(lambda n: b"\xff\xfe{}", {}, 400, "UTF-8", id="not-utf8"),
    pytest.param(lambda n: b'{"objects": []}', {}, 400, "empty", id="empty-envelope"),
    pytest.param(lambda n: b'[1, 2]', {}, 400, "envelope", id="not-an-envelope"),
    pytest.param(lambda n: json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                       "objects": [indicator(n.identities[UZ])]}).encode(),
                 {}, 400, "bundle", id="bundle-instead-of-envelope"),
    pytest.param(lambda n: json.dumps({"objects": [indicator(n.identities[UZ])
                                                   for _ in range(1001)]}).encode(),
                 {}, 413, "1000", id="too-many-objects"),
    pytest.param(lambda n: b'{"objects": ["' + b"a" * (10 * 1024 * 1024) + b'"]}', {}, 413,
                 "max_content_length", id="oversize-body"),
    pytest.param(lambda n: envelope(indicator(n.identities[UZ])),
                 {"Content-Type": "application/json"}, 415, "Content-Type",
                 id="wrong-content-type"),
    pytest.param(lambda n: envelope(indicator(n.identities[UZ])),
                 {"Content-Type": "application/taxii+json;version=2.0"}, 415,
                 "Content-Type", id="content-type-taxii-2.0"),
    pytest.param(lambda n: envelope(indicator(n.identities[UZ])),
                 {"Accept": "text/html"}, 406, "Accept", id="wrong-accept"),
    pytest.param(lambda n: envelope(indicator(n.identities[UZ])),
                 {"Authorization": ""}, 401, "authentication", id="no-credentials"),
    pytest.param(lambda n: envelope(indicator(n.identities[UZ])),
                 {"Authorization": "Basic " + base64.b64encode(
                     b"uz-pub:cx_000000000000_" + b"A" * 43).decode()},
                 401, "invalid credentials", id="wrong-key"),
    pytest.param(lambda n: envelope(indicator(n.identities[UZ])),
                 {"Authorization": "Basic " + base64.b64encode(b"uz-soc:").decode()},
                 401, "invalid credentials", id="empty-password"),
]


@pytest.mark.parametrize(("make_body", "headers", "status", "phrase"), REQUEST_LEVEL)
def test_request_level_refusals(node: Node, make_body: Callable[[Node], bytes],
                                headers: dict[str, str], status: int, phrase: str) -> None:
    before = node.exchange.store.count_objects()
    all_headers = {"Accept": TAXII, "Content-Type": TAXII}
    auth: tuple[str, str] | None = node.auth("uz-pub")
    for k, v in headers.items():
        if k == "Authorization":
            auth = None
            if v:
                all_headers[k] = v
        else:
            all_headers[k] = v
    r = requests.post(node.collection_url("jwg") + "objects/", data=make_body(node),
                      headers=all_headers, auth=auth, timeout=60)
    assert r.status_code == status, r.text[:300]
    assert r.headers["Content-Type"].startswith("application/taxii+json")
    body = r.json()
    assert body["http_status"] == str(status)
    assert phrase.lower() in (body.get("description", "") + body["title"]).lower(), body
    assert "Traceback" not in r.text
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert node.exchange.store.count_objects() == before


def _mutate(change: Callable[[dict[str, Any]], None]) -> Callable[[Node], dict[str, Any]]:
    def make(n: Node) -> dict[str, Any]:
        obj = indicator(n.identities[UZ])
        change(obj)
        return obj
    return make


PER_OBJECT: list[Any] = [
    pytest.param(_mutate(lambda o: o.pop("pattern")), "pattern", id="missing-pattern"),
    pytest.param(_mutate(lambda o: o.update(pattern="[domain-name:value = ")), "pattern",
                 id="bad-pattern"),
    pytest.param(_mutate(lambda o: o.update(
        pattern=" OR ".join(f"[url:x={i}]" for i in range(300)))),
        "observation", id="too-many-observations"),
    pytest.param(_mutate(lambda o: o.update(
        pattern="[url:value = '" + "a" * 9000 + "']")), "pattern", id="oversize-pattern"),
    pytest.param(_mutate(lambda o: o.update(id="malware--" + o["id"].split("--")[1])),
                 "indicator", id="id-prefix-mismatch"),
    pytest.param(_mutate(lambda o: o.update(id="indicator--not-a-uuid")), "id",
                 id="bad-uuid"),
    pytest.param(_mutate(lambda o: o.update(created="2026-13-01T00:00:00Z")), "created",
                 id="bad-timestamp"),
    pytest.param(_mutate(lambda o: o.update(modified="2020-01-01T00:00:00.000Z")),
                 "modified", id="modified-before-created"),
    pytest.param(_mutate(lambda o: o.update(zz="x")), "custom property 'zz' must have at least 3",
                 id="custom-property-name-too-short"),
    pytest.param(_mutate(lambda o: o.update(defanged=True)), "'defanged' is not a property",
                 id="common-property-of-another-kind"),
    pytest.param(_mutate(lambda o: o.pop("spec_version")), "2.1", id="stix-2.0-object"),
    pytest.param(_mutate(lambda o: o.update(description="x" * (300 * 1024))), "bytes",
                 id="oversize-object"),
    pytest.param(lambda n: "just a string", "object", id="not-an-object"),
    pytest.param(_mutate(lambda o: o.update(created_by_ref=n_pk_identity())),
                 "identity", id="forged-created-by-ref"),
]


_PK: dict[str, str] = {}


def n_pk_identity() -> str:
    return _PK["id"]


@pytest.mark.parametrize(("make_obj", "phrase"), PER_OBJECT)
def test_per_object_failures(node: Node, make_obj: Callable[[Node], Any], phrase: str) -> None:
    _PK["id"] = node.identities["PK-CERT"]
    good = indicator(node.identities[UZ])
    bad = make_obj(node)
    r = node.post(node.collection_url("jwg") + "objects/", envelope(bad, good))
    assert r.status_code == 202, r.text[:300]
    status = r.json()
    assert (status["success_count"], status["failure_count"]) == (1, 1), status
    message = status["failures"][0]["message"]
    assert phrase.lower() in message.lower(), message
    assert "Traceback" not in message
    assert node.get(node.collection_url("jwg") + f"objects/{good['id']}/").status_code == 200
    if isinstance(bad, dict) and isinstance(bad.get("id"), str) and "--" in bad["id"]:
        r = node.get(node.collection_url("jwg") + f"objects/{bad['id']}/")
        assert r.status_code in (404, 400)


@pytest.mark.parametrize(("method", "path", "status"), [
    pytest.param("GET", "nope/", 404, id="unknown-endpoint"),
    pytest.param("PUT", "collections/", 405, id="wrong-method"),
    pytest.param("GET", "collections/unknown-collection/objects/", 404,
                 id="unknown-collection"),
    pytest.param("GET", "status/00000000-0000-4000-8000-000000000000/", 404,
                 id="unknown-status"),
])
def test_http_errors_are_taxii_json(node: Node, method: str, path: str, status: int) -> None:
    r = requests.request(method, node.root + path, auth=node.auth("uz-pub"),
                         headers={"Accept": TAXII}, timeout=30)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("application/taxii+json")
    assert r.json()["http_status"] == str(status)
    assert "<html" not in r.text.lower()


def test_accept_without_version_means_taxii_2_1(node: Node) -> None:
    r = node.get(node.root, headers={"Accept": "application/taxii+json"})
    assert r.status_code == 200


def test_revoked_key_stops_working(node: Node) -> None:
    node.exchange.add_account("temp-reader", org="UZ-CERT", role="consumer")
    key, token = node.exchange.create_api_key("temp-reader")
    assert requests.get(node.root, auth=("temp-reader", token), headers={"Accept": TAXII},
                        timeout=30).status_code == 200
    node.exchange.revoke_api_key(key.key_id)
    # workers trust a checked key for cache_seconds (5 by default), no longer
    deadline = time.monotonic() + 8
    while True:
        r = requests.get(node.root, auth=("temp-reader", token), headers={"Accept": TAXII},
                         timeout=30)
        if r.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 401
    assert token not in r.text
