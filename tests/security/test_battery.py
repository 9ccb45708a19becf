"""The adversarial battery (issue 18): one real node, every kind of caller, every path.

One ``exchange serve`` on 127.0.0.1 for the module (tests/security/conftest.py), the
shipped example policy, accounts of every kind. Each case asserts the exact status; for
every refusal, a TAXII 2.1 error message in JSON (section 3.6.1); that the server still
answers afterwards; for every refused write and every refused access to an existing
collection, a denial record with its rule in the ledger (read through the auditor API);
and, at the end of the module, that no object of a refused write is readable by anyone.

Sections: malformed input (bodies, numbers, unicode, depth, sizes, headers, parameters,
ids, patterns); the access matrix (every caller x every path x a readable, an
unreadable, a hidden and a non-existent collection); TLP on every read path against the
pure policy engine; Hypothesis at the edges; the oracles and refusals of issue 18 items
4, 7 and 9 (id ownership, refused POSTs in the ledger, bound next tokens).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.errors import ExchangeError
from exchange.model.objects import Tlp
from exchange.node.base import now_micros
from exchange.node.derive import derived_id
from exchange.policy import ObjectMeta, Redact, decide, red_recipients_of
from tests.security.conftest import (
    ACCOUNTS,
    CALLERS,
    LEVELS,
    MISSING,
    TAXII,
    Battery,
    may_read,
    may_write,
    org_of,
    sees,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# -- what every answer must be ------------------------------------------------------------


def taxii_error(r: requests.Response, status: int) -> dict[str, Any]:
    """The answer is a TAXII error message with ``status``."""
    assert r.status_code == status, (r.status_code, r.text[:400])
    assert r.headers.get("Content-Type") == TAXII, r.headers.get("Content-Type")
    body = r.json()
    assert body["http_status"] == str(status), body
    assert isinstance(body["title"], str), body
    assert body["title"], body
    return body  # type: ignore[no-any-return]


def request_id(r: requests.Response) -> str:
    return str(r.request.headers["X-Request-ID"])


def assert_denied(b: Battery, r: requests.Response, rule: str) -> None:
    """The refusal is one denial record in the ledger, with ``rule``."""
    records = b.denials(request_id(r))
    assert [d["rule"] for d in records] == [rule], records


def refused_one(b: Battery, r: requests.Response) -> str:
    """A 202 status resource refusing exactly one object; the reason."""
    assert r.status_code == 202, r.text[:400]
    status = r.json()
    assert (status["success_count"], status["failure_count"]) == (0, 1), status
    return str(status["failures"][0]["message"])


# -- 1. malformed input ------------------------------------------------------------------

def _deep(depth: int) -> bytes:
    return b'{"objects": [' + b"[" * depth + b"]" * depth + b"]}"


#: id -> (raw body, expected status); each refused as a whole with a TAXII error
ENVELOPES: dict[str, tuple[bytes, int]] = {
    "empty": (b"", 400),
    "not-json": (b'{"objects": [', 400),
    "top-level-array": (b"[]", 400),
    "top-level-null": (b"null", 400),
    "top-level-string": (b'"objects"', 400),
    "objects-not-a-list": (b'{"objects": {}}', 400),
    "objects-a-string": (b'{"objects": "x"}', 400),
    "no-objects-member": (b'{"more": false}', 400),
    "duplicate-objects-key": (b'{"objects": [], "objects": []}', 400),
    "duplicate-key-in-object": (b'{"objects": [{"type": "indicator", "type": "x"}]}', 400),
    "nan": (b'{"objects": [NaN]}', 400),
    "infinity": (b'{"objects": [Infinity]}', 400),
    "trailing-comma": (b'{"objects": [],}', 400),
    "single-quotes": (b"{'objects': []}", 400),
    "comment": (b'{"objects": [] /* x */}', 400),
    "trailing-garbage": (b'{"objects": []} x', 400),
    "invalid-utf8": (b'{"objects": ["\xff\xfe"]}', 400),
    "utf16": ('{"objects": []}'.encode("utf-16"), 400),
    "lone-surrogate": (b'{"objects": [{"name": "\\ud800"}]}', 400),
    "depth-over-limit": (_deep(40), 400),
    "number-overflow": (b'{"objects": [1e400]}', 400),
    "control-char-in-string": (b'{"objects": ["a\x01b"]}', 400),
    "too-many-objects": (json.dumps({"objects": [{}] * 1001}).encode(), 413),
}


@pytest.mark.parametrize("case", list(ENVELOPES))
def test_malformed_envelopes_are_refused_whole(battery: Battery, case: str) -> None:
    body, status = ENVELOPES[case]
    r = battery.request("POST", battery.col("jwg") + "objects/", "uz-pub", body=body)
    taxii_error(r, status)
    battery.healthy()


def test_a_body_over_max_content_length_is_413(battery: Battery) -> None:
    limit = battery.exchange.settings.max_content_length
    body = b'{"objects": ["' + b"a" * (limit - 10) + b'"]}'
    assert len(body) > limit
    r = battery.request("POST", battery.col("jwg") + "objects/", "uz-pub", body=body)
    taxii_error(r, 413)
    battery.healthy()


def _location(b: Battery, **extra: Any) -> dict[str, Any]:
    return {"type": "location", "spec_version": "2.1", "id": f"location--{uuid.uuid4()}",
            "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
            "latitude": 41.3, "longitude": 69.2, "created_by_ref": b.identities["UZ-CERT"],
            "object_marking_refs": [
                "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"], **extra}


#: id -> (build the object (raw JSON text of it), expected outcome): "refused" (one
#: failure in a 202 status) or "stored" (stored, and then served whole to every reader)
OBJECTS: dict[str, tuple[Callable[[Battery], str], str]] = {
    "precision-1e17": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"), "precision",
                                      "1e17"), "envelope"),
    "precision-2**53": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"), "precision",
                                       str(2**53)), "envelope"),
    "precision-2**53+1": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"), "precision",
                                         str(2**53 + 1)), "envelope"),
    "precision-2**53-1": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"), "precision",
                                         str(2**53 - 1)), "refused"),
    "precision-negative-zero": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"),
                                               "precision", "-0"), "refused"),
    "precision-huge-mantissa": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"), "precision",
                                               "1." + "1" * 400), "refused"),
    "latitude-exponent": (lambda b: _raw(b.sign(_location(b), "UZ-CERT"), "latitude",
                                         "4.13E1"), "stored"),
    "confidence-2**53": (lambda b: _signed(b, confidence=2**53), "envelope"),
    "id-upper-case": (lambda b: json.dumps(b.indicator(
        "UZ-CERT", "green", id=f"indicator--{str(uuid.uuid4()).upper()}")), "refused"),
    "id-upper-case-type": (lambda b: json.dumps(b.indicator(
        "UZ-CERT", "green", id=f"Indicator--{uuid.uuid4()}")), "refused"),
    "id-wrong-prefix": (lambda b: json.dumps(b.indicator(
        "UZ-CERT", "green", id=f"malware--{uuid.uuid4()}")), "refused"),
    "id-not-a-uuid": (lambda b: json.dumps(b.indicator(
        "UZ-CERT", "green", id="indicator--not-a-uuid")), "refused"),
    "id-overlong": (lambda b: json.dumps(b.indicator(
        "UZ-CERT", "green", id=f"indicator--{uuid.uuid4()}{'0' * 5000}")), "refused"),
    "id-braces": (lambda b: json.dumps(b.indicator(
        "UZ-CERT", "green", id=f"indicator--{{{uuid.uuid4()}}}")), "refused"),
    "pattern-bad-syntax": (lambda b: _signed_pattern(b, "[ipv4-addr:value = '1.2.3.4'"),
                           "refused"),
    "pattern-deep": (lambda b: _signed_pattern(
        b, "(" * 300 + "[ipv4-addr:value = '1.2.3.4']" + ")" * 300), "refused"),
    "pattern-too-many-observations": (lambda b: _signed_pattern(b, " OR ".join(
        f"[file:size = {i}]" for i in range(257))), "refused"),
    "pattern-over-8KiB": (lambda b: _signed_pattern(
        b, "[domain-name:value = '" + "a" * 9000 + ".example']"), "refused"),
    "unsigned-in-a-signed-collection": (lambda b: json.dumps(b.indicator("UZ-CERT", "green")),
                                        "refused"),
    "object-over-max-object-bytes": (lambda b: _signed(b, description="x" * (256 * 1024)),
                                     "refused"),
    "nul-in-a-string": (lambda b: _signed(b, name="a\u0000b"), "envelope"),
    "astral-plane-and-rtl": (lambda b: json.dumps(b.sign(b.indicator(
        "UZ-CERT", "green", name="\U0001f600\u202eevil\u200d\ufeff"), "UZ-CERT")), "stored"),
    "nfd-vs-nfc": (lambda b: json.dumps(b.sign(b.indicator(
        "UZ-CERT", "green", name="e\u0301 \u00e9"), "UZ-CERT")), "stored"),
    "pattern-256-observations": (lambda b: _signed_pattern(b, " OR ".join(
        f"[file:size = {i}]" for i in range(256))), "stored"),
    "confidence-edges": (lambda b: json.dumps(b.sign(b.indicator(
        "UZ-CERT", "green", confidence=100), "UZ-CERT")), "stored"),
}


def _raw(obj: dict[str, Any], key: str, number: str) -> str:
    """The object's JSON with ``key`` spelled as the raw number text ``number`` (the
    signature then no longer matches, but the number must be judged first or either
    way refused)."""
    obj = dict(obj)
    obj[key] = "@NUMBER@"
    return json.dumps(obj).replace('"@NUMBER@"', number)


def _signed(b: Battery, **extra: Any) -> str:
    """A UZ-CERT indicator with ``extra``, signed when it can be (else unsigned)."""
    obj = b.indicator("UZ-CERT", "green", **extra)
    try:
        return json.dumps(b.sign(obj, "UZ-CERT"))
    except ExchangeError:
        return json.dumps(obj)


def _signed_pattern(b: Battery, pattern: str) -> str:
    obj = b.indicator("UZ-CERT", "green", pattern=pattern)
    try:
        return json.dumps(b.sign(obj, "UZ-CERT"))
    except ExchangeError:
        return json.dumps(obj)


@pytest.mark.parametrize("case", list(OBJECTS))
def test_objects_at_the_edges(battery: Battery, case: str) -> None:
    build, outcome = OBJECTS[case]
    text = build(battery)
    object_id = json.loads(text)["id"] if '"id"' in text else ""
    body = ('{"objects": [' + text + "]}").encode()
    r = battery.request("POST", battery.col("jwg") + "objects/", "uz-pub", body=body)
    if outcome == "envelope":
        taxii_error(r, 400)
        battery.refused_ids.add(object_id)
    elif outcome == "refused":
        reason = refused_one(battery, r)
        assert reason
        battery.refused_ids.add(object_id)
    else:
        assert r.status_code == 202, r.text[:400]
        assert r.json()["success_count"] == 1, r.text[:400]
        # stored means servable, whole, to every reader of the collection
        for account in ACCOUNTS:
            if may_read(account, "jwg"):
                page = battery.request("GET", battery.col("jwg") + "objects/", account,
                                       params={"match[type]": "indicator", "limit": "1000"})
                assert page.status_code == 200, (account, page.text[:300])
        got = battery.request("GET", battery.col("jwg") + f"objects/{object_id}/", "uz-pub")
        assert got.status_code == 200
        assert got.json()["objects"] == [json.loads(text)]
    battery.healthy()


#: id -> (method, path under the jwg collection, headers, params, expected status)
REQUESTS: dict[str, tuple[str, str, dict[str, str], dict[str, str], int]] = {
    "accept-missing": ("GET", "objects/", {"Accept": ""}, {}, 406),
    "accept-json": ("GET", "objects/", {"Accept": "application/json"}, {}, 406),
    "accept-taxii-2.0": ("GET", "objects/", {"Accept": "application/taxii+json;version=2.0"},
                         {}, 406),
    "accept-stix": ("GET", "objects/", {"Accept": "application/stix+json;version=2.1"}, {},
                    406),
    "accept-two-ranges": ("GET", "objects/", {"Accept": f"{TAXII}, application/json"}, {},
                          200),
    "accept-garbage": ("GET", "objects/", {"Accept": ";;;==="}, {}, 406),
    "content-type-json": ("POST", "objects/", {"Content-Type": "application/json"}, {}, 415),
    "content-type-missing": ("POST", "objects/", {"Content-Type": ""}, {}, 415),
    "content-type-taxii-2.0": ("POST", "objects/",
                               {"Content-Type": "application/taxii+json;version=2.0"}, {}, 415),
    "content-type-stix": ("POST", "objects/",
                          {"Content-Type": "application/stix+json;version=2.1"}, {}, 415),
    "auth-basic-garbage": ("GET", "objects/", {"Authorization": "Basic !!!"}, {}, 401),
    "auth-basic-no-colon": ("GET", "objects/", {"Authorization": "Basic dXotcHVi"}, {}, 401),
    "auth-bearer-wrong": ("GET", "objects/", {"Authorization": "Bearer cx_wrong"}, {}, 401),
    "auth-unknown-scheme": ("GET", "objects/", {"Authorization": "Digest x"}, {}, 401),
    "added-after-garbage": ("GET", "objects/", {}, {"added_after": "yesterday"}, 400),
    "added-after-month-13": ("GET", "objects/", {}, {"added_after": "2026-13-01T00:00:00Z"},
                             400),
    "added-after-no-zone": ("GET", "objects/", {}, {"added_after": "2026-01-01T00:00:00"},
                            400),
    "limit-zero": ("GET", "objects/", {}, {"limit": "0"}, 400),
    "limit-negative": ("GET", "objects/", {}, {"limit": "-1"}, 400),
    "limit-not-a-number": ("GET", "objects/", {}, {"limit": "ten"}, 400),
    "limit-float": ("GET", "objects/", {}, {"limit": "1e3"}, 400),
    "limit-huge": ("GET", "objects/", {}, {"limit": "9" * 40}, 200),
    "next-garbage": ("GET", "objects/", {}, {"next": "garbage"}, 400),
    "next-empty": ("GET", "objects/", {}, {"next": ""}, 200),
    "next-forged": ("GET", "objects/", {}, {"next": "MTIzOnV6LXB1Yi4AAAAAAAAAAAAAAAA"}, 400),
    "match-id-upper-case": ("GET", "objects/", {},
                            {"match[id]": f"indicator--{str(uuid.uuid4()).upper()}"}, 400),
    "match-version-garbage": ("GET", "objects/", {}, {"match[version]": "sometime"}, 400),
    "match-spec-version-2.0": ("GET", "objects/", {}, {"match[spec_version]": "2.0"}, 200),
    "match-unknown-field": ("GET", "objects/", {}, {"match[colour]": "red"}, 200),
    "match-bracket-unclosed": ("GET", "objects/", {}, {"match[type": "indicator"}, 200),
    "object-id-upper-case": ("GET", f"objects/indicator--{str(uuid.uuid4()).upper()}/", {},
                             {}, 400),
    "object-id-not-a-uuid": ("GET", "objects/indicator--xyz/", {}, {}, 404),
    "object-id-overlong": ("GET", f"objects/indicator--{uuid.uuid4()}{'0' * 3000}/", {}, {},
                           404),
    "object-id-unknown": ("GET", f"objects/indicator--{uuid.uuid4()}/", {}, {}, 404),
    "versions-id-upper-case": ("GET", f"objects/indicator--{str(uuid.uuid4()).upper()}"
                               "/versions/", {}, {}, 400),
    "delete-id-upper-case": ("DELETE", f"objects/indicator--{str(uuid.uuid4()).upper()}/",
                             {}, {}, 400),
    "post-on-object": ("POST", f"objects/indicator--{uuid.uuid4()}/", {}, {}, 405),
    "put-on-objects": ("PUT", "objects/", {}, {}, 405),
    "unknown-endpoint": ("GET", "nothing-here/", {}, {}, 404),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_malformed_requests(battery: Battery, case: str) -> None:
    method, path, headers, params, status = REQUESTS[case]
    account: str | None = "admin" if method == "DELETE" else "uz-pub"
    if "Authorization" in headers:
        account = None  # the header alone speaks
    body = b'{"objects": []}' if method in ("POST", "PUT") else None
    r = battery.request(method, battery.col("jwg") + path, account, body=body,
                        headers=headers, params=params)
    if status >= 400:
        taxii_error(r, status)
    else:
        assert r.status_code == status, r.text[:300]
    battery.healthy()


# -- 2. the access matrix ------------------------------------------------------------------

PATHS = ("collection", "objects", "manifest", "object", "versions", "post", "delete")
TARGETS = ("jwg", "uz", "pk", "drop", "missing")


@dataclass(frozen=True)
class Expect:
    status: int
    rule: str | None = None  # the denial rule the ledger must hold


def expected(account: str | None, path: str, alias: str) -> Expect:
    if account is None:
        return Expect(401)
    if alias == "missing":
        return Expect(404)
    if not sees(account, alias):
        return Expect(404, "deny-no-grant")
    if path == "collection":
        return Expect(200)
    if path == "post":
        return Expect(202) if may_write(account, alias) else Expect(403, "deny-no-write-grant")
    if path == "delete":
        if ACCOUNTS[account][1] == "admin":
            return Expect(200)
        return Expect(403, "deny-delete-not-admin")
    if not may_read(account, alias):
        return Expect(403, "deny-no-read-grant")
    return Expect(200)


def _seed_allowed(b: Battery, account: str, alias: str) -> bool:
    """Whether the policy lets the account receive the collection's CLEAR seed."""
    org = "PK-CERT" if alias in ("pk", "drop") else "UZ-CERT"
    principal = b.exchange.authenticate(account, b.keys[account])
    meta = ObjectMeta(id=_seed(b, alias), type="indicator", producer_org_name=org,
                      tlp=Tlp.CLEAR, tlp_explicit=True, red_recipients=(), revoked=False,
                      date_added=1, collection_alias=alias)
    return decide(b.policy.current(), b.exchange.recipient(principal), meta,
                  now=now_micros()).allowed


#: POSTs of an account that sees a collection but may not write it (medallion used to
#: refuse them before our code ran, with no denial recorded: issue 18 item 7)
def _refused_post(account: str | None, path: str, alias: str) -> bool:
    if account is None or path != "post" or alias == "missing":
        return False
    return sees(account, alias) and not may_write(account, alias)


MATRIX = [(a, p, c) for a in CALLERS for c in TARGETS for p in PATHS]


def _seed(b: Battery, alias: str) -> str:
    """One CLEAR object per collection (visible to all its readers), published once."""
    seeds: dict[str, str] = b.__dict__.setdefault("_seeds", {})
    if alias not in seeds:
        org = "PK-CERT" if alias in ("pk", "drop") else "UZ-CERT"
        account = "pk-pub" if org == "PK-CERT" else "uz-pub"
        obj = b.sign(b.indicator(org, "clear"), org)
        r = b.post_objects(alias, account, [obj])
        assert r.status_code == 202, r.text
        assert r.json()["success_count"] == 1, r.text
        seeds[alias] = obj["id"]
    return seeds[alias]


def _matrix_request(b: Battery, account: str | None, path: str, alias: str
                    ) -> requests.Response:
    target = MISSING if alias == "missing" else alias
    col = b.col(target)
    seed = _seed(b, alias) if alias != "missing" else f"indicator--{uuid.uuid4()}"
    if path == "collection":
        return b.request("GET", col, account)
    if path in ("objects", "manifest"):
        return b.request("GET", col + f"{path}/", account)
    if path == "object":
        return b.request("GET", col + f"objects/{seed}/", account)
    if path == "versions":
        return b.request("GET", col + f"objects/{seed}/versions/", account)
    if path == "post":
        org = org_of(account) if account else "UZ-CERT"
        if org not in b.signing:
            org = "UZ-CERT"
        obj = b.sign(b.indicator(org, "green"), org)
        r = b.post_objects(target, account, [obj])
        if r.status_code != 202:
            b.refused_ids.add(obj["id"])
        return r
    # delete: an admin really deletes, so it deletes a fresh object of its own
    victim = seed
    if account is not None and ACCOUNTS[account][1] == "admin" and alias != "missing":
        org = "PK-CERT" if alias in ("pk", "drop") else "UZ-CERT"
        fresh = b.sign(b.indicator(org, "clear"), org)
        posted = b.post_objects(alias, "pk-pub" if org == "PK-CERT" else "uz-pub", [fresh])
        assert posted.status_code == 202, posted.text
        victim = fresh["id"]
    return b.request("DELETE", col + f"objects/{victim}/", account)


def _same_as_missing(b: Battery, r: requests.Response, alias: str) -> None:
    """A hidden collection's 404 is the missing collection's, but for the id asked."""
    missing = _matrix_request(b, "uz-soc" if alias != "uz" else "outsider", "objects",
                              "missing")
    mine = r.json()
    theirs = missing.json()
    for body in (mine, theirs):
        body.pop("error_id", None)
    mine["description"] = mine["description"].replace(b.collections[alias], "<id>")
    theirs["description"] = theirs["description"].replace(MISSING, "<id>")
    assert mine == theirs


@pytest.mark.parametrize(
    ("account", "path", "alias"),
    [pytest.param(a, p, c, id=f"{a or 'anonymous'}-{p}-{c}") for a, p, c in MATRIX])
def test_access_matrix(battery: Battery, account: str | None, path: str, alias: str) -> None:
    want = expected(account, path, alias)
    if (want.status == 200 and path in ("object", "versions") and account is not None
            and not _seed_allowed(battery, account, alias)):
        want = Expect(404)  # the collection is readable, the object is not for this reader
    r = _matrix_request(battery, account, path, alias)
    if want.status >= 400:
        taxii_error(r, want.status)
    else:
        assert r.status_code == want.status, r.text[:400]
    if (account is not None and alias != "missing" and not sees(account, alias)
            and path not in ("post", "delete")):
        _same_as_missing(battery, r, alias)
    if want.rule is not None:
        assert_denied(battery, r, want.rule)
    if want.status == 202:
        assert r.json()["success_count"] == 1, r.text
    battery.healthy()


def test_the_collections_list_shows_exactly_what_each_account_may_see(battery: Battery
                                                                       ) -> None:
    for account in ACCOUNTS:
        r = battery.request("GET", "cx/collections/", account)
        assert r.status_code == 200
        shown = {c["alias"]: (c["can_read"], c["can_write"])
                 for c in r.json().get("collections", [])}
        assert shown == {alias: (may_read(account, alias), may_write(account, alias))
                         for alias in ("jwg", "uz", "pk", "drop") if sees(account, alias)}
    taxii_error(battery.request("GET", "cx/collections/", None), 401)


#: project and server endpoints: path -> account -> status
def _project_expect(account: str, path: str) -> int:
    role = ACCOUNTS[account][1]
    auditing = role in ("admin", "auditor")
    member = org_of(account) in ("UZ-CERT", "PK-CERT")
    return {
        "taxii2/": 200, "cx/": 200, "cx/cx/whoami/": 200, "cx/cx/registry/": 200,
        "cx/cx/search/?value=198.51.100.7": 200, "cx/cx/audit/key/": 200,
        "cx/cx/extension-definitions/cx-sig-v1/": 200,
        "cx/cx/audit/records/?kind=denial&limit=1": 200 if auditing else 403,
        "cx/cx/audit/proof/0/": 404 if auditing else 403,  # no checkpoint yet... or one
        "cx/cx/audit/checkpoint/": 200 if auditing or member else 403,
        # there is never a checkpoint of size 1 (the first one covers the setup's records)
        "cx/cx/audit/consistency/?from=1": 404 if auditing or member else 403,
        f"cx/cx/explain/?object=indicator--{uuid.UUID(int=1)}&recipient=uz-soc":
            404 if auditing else 403,
        "cx/status/8b3f4c1e-0000-4000-8000-000000000000/": 404,
        "other-root/": 404,
        "other-root/collections/": 404,
    }[path]


PROJECT_PATHS = [
    "taxii2/", "cx/", "cx/cx/whoami/", "cx/cx/registry/", "cx/cx/search/?value=198.51.100.7",
    "cx/cx/audit/key/", "cx/cx/extension-definitions/cx-sig-v1/",
    "cx/cx/audit/records/?kind=denial&limit=1", "cx/cx/audit/checkpoint/",
    "cx/cx/audit/consistency/?from=1",
    f"cx/cx/explain/?object=indicator--{uuid.UUID(int=1)}&recipient=uz-soc",
    "cx/status/8b3f4c1e-0000-4000-8000-000000000000/", "other-root/",
    "other-root/collections/",
]


@pytest.mark.parametrize(
    ("account", "path"),
    [pytest.param(a, p, id=f"{a or 'anonymous'}-{p.split('?')[0].strip('/')}")
     for a in CALLERS for p in PROJECT_PATHS])
def test_server_and_project_endpoints(battery: Battery, account: str | None, path: str
                                      ) -> None:
    if path in ("cx/cx/audit/checkpoint/", "cx/cx/audit/consistency/?from=1"):
        made = battery.request("POST", "cx/cx/audit/checkpoint/", "auditor", body=b"")
        assert made.status_code in (200, 201), made.text
    r = battery.request("GET", path, account)
    status = 401 if account is None else _project_expect(account, path)
    if status >= 400:
        taxii_error(r, status)
    else:
        assert r.status_code == status, r.text[:300]
    battery.healthy()


def test_a_status_is_its_organisations_alone(battery: Battery) -> None:
    obj = battery.sign(battery.indicator("UZ-CERT", "green"), "UZ-CERT")
    posted = battery.post_objects("jwg", "uz-pub", [obj])
    status_id = posted.json()["id"]
    for account in ("uz-pub", "uz-reader", "admin"):  # its organisation's, and the admin
        assert battery.request("GET", f"cx/status/{status_id}/", account).status_code == 200
    for account in ("pk-pub", "pk-reader", "uz-soc", "outsider", "auditor"):
        taxii_error(battery.request("GET", f"cx/status/{status_id}/", account), 404)


# -- 3. TLP on every read path, against the pure engine -----------------------------------

@dataclass
class Published:
    by_id: dict[str, tuple[str, str, str]]  # original id -> (producer org, level, alias)
    aliases: dict[str, str]  # any id a reader may be shown -> original id


def _publish_levels(b: Battery) -> Published:
    cached: Published | None = b.__dict__.get("_levels")
    if cached is not None:
        return cached
    by_id: dict[str, tuple[str, str, str]] = {}
    for alias, org, account in (("jwg", "UZ-CERT", "uz-pub"), ("jwg", "PK-CERT", "pk-pub"),
                                ("uz", "UZ-CERT", "uz-pub"), ("pk", "PK-CERT", "pk-pub")):
        objects = [b.sign(b.indicator(org, level, pattern=f"[ipv4-addr:value = "
                                      f"'192.0.2.{len(by_id) + i}']"), org)
                   for i, level in enumerate(LEVELS)]
        r = b.post_objects(alias, account, objects)
        assert r.status_code == 202, r.text
        assert r.json()["success_count"] == 5, r.text
        for level, obj in zip(LEVELS, objects, strict=True):
            by_id[obj["id"]] = (org, level, alias)
    aliases = {i: i for i in by_id}
    for i in by_id:
        aliases[derived_id(i, (Redact("jwg-constituents"),))] = i
    b.__dict__["_levels"] = published = Published(by_id, aliases)
    return published


def _allowed(b: Battery, account: str, alias: str, pub: Published) -> set[str]:
    principal = b.exchange.authenticate(account, b.keys[account])
    recipient = b.exchange.recipient(principal)
    policy = b.policy.current()
    out = set()
    for object_id, (org, level, where) in pub.by_id.items():
        if where != alias:
            continue
        meta = ObjectMeta(id=object_id, type="indicator", producer_org_name=org,
                          tlp=Tlp(level), tlp_explicit=True,
                          red_recipients=red_recipients_of(b.indicator(org, level)),
                          revoked=False, date_added=1, collection_alias=alias)
        if decide(policy, recipient, meta, now=now_micros()).allowed:
            out.add(object_id)
    return out


def _received(b: Battery, account: str, alias: str, path: str, pub: Published) -> set[str]:
    mine = {i for i, (_, _, where) in pub.by_id.items() if where == alias}
    col = b.col(alias)
    if path in ("objects", "manifest"):
        r = b.request("GET", col + f"{path}/", account,
                      params={"limit": "1000", "match[type]": "indicator"})
        assert r.status_code == 200, r.text[:300]
        shown = set()
        for o in r.json().get("objects", []):
            shown.add(o["id"])  # a derived copy also names its original
            shown |= {ref["external_id"] for ref in o.get("external_references", [])
                      if ref.get("source_name") == "cert-exchange-derived-from"}
        return {pub.aliases[i] for i in shown if i in pub.aliases} & mine
    got = set()
    for object_id in mine:
        if path == "search":
            r = b.request("GET", "cx/cx/search/", account, params={"id": object_id})
            assert r.status_code in (200, 404), r.text[:300]
            if r.status_code == 200 and r.json().get("hits"):
                got.add(object_id)
            continue
        suffix = "versions/" if path == "versions" else ""
        r = b.request("GET", col + f"objects/{object_id}/{suffix}", account)
        if r.status_code == 404:
            taxii_error(r, 404)
            continue
        assert r.status_code == 200, r.text[:300]
        body = r.json()
        if body.get("objects") or body.get("versions"):
            got.add(object_id)
    return got


TLP_CASES = [(a, c, p) for a in ACCOUNTS for c in ("jwg", "uz", "pk")
             for p in ("objects", "object", "versions", "manifest", "search")
             if may_read(a, c)]


@pytest.mark.parametrize(("account", "alias", "path"),
                         [pytest.param(*case, id="-".join(case)) for case in TLP_CASES])
def test_each_reader_receives_exactly_what_the_engine_allows(
        battery: Battery, account: str, alias: str, path: str) -> None:
    published = _publish_levels(battery)
    allowed = _allowed(battery, account, alias, published)
    assert _received(battery, account, alias, path, published) == allowed
    battery.healthy()


def test_the_engine_is_not_trivial_here(battery: Battery) -> None:
    """The comparison above means something: levels differ by reader under this policy."""
    published = _publish_levels(battery)
    counts = {a: len(_allowed(battery, a, "jwg", published))
              for a in ACCOUNTS if may_read(a, "jwg")}
    assert counts["uz-pub"] > counts["uz-soc"] > counts["outsider"] > 0


# -- 4. Hypothesis at the edges ----------------------------------------------------------

_EDGE_INTS = st.sampled_from([0, -1, 1, 2**31, 2**53 - 1, 2**53, 2**53 + 1, -(2**53),
                              2**63, 10**17, 10**30])
_EDGE_FLOATS = st.sampled_from(["-0", "-0.0", "0e0", "1e17", "1E+17", "1.5e-320", "1e308",
                                "2.5", "0.1", "123456789012345678901234567890",
                                "9007199254740993", "1e-7"])
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def _json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), _EDGE_INTS, _TEXT,
                       st.floats(allow_nan=False, allow_infinity=False))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
        max_leaves=max_leaves)


@st.composite
def edge_objects(draw: st.DrawFn) -> tuple[str, str]:
    """(raw object JSON, id): a signed indicator with one property at an edge, the
    number spelled raw where it is one."""
    obj_id = f"indicator--{uuid.uuid4()}"
    key = draw(st.sampled_from(["name", "description", "x_edge", "confidence", "labels",
                                "x_nested"]))
    value: Any = {
        "name": _TEXT, "description": _TEXT,
        "x_edge": _json_values(), "confidence": _EDGE_INTS,
        "labels": st.lists(_TEXT, min_size=1, max_size=3),
        "x_nested": st.integers(20, 40).map(lambda d: json.loads("[" * d + "]" * d)),
    }[key]
    return key, json.dumps({"id": obj_id, "key": key, "value": draw(value),
                            "raw": draw(_EDGE_FLOATS)})


def _hypothesis_post(b: Battery, spec: str) -> None:
    given_spec = json.loads(spec)
    obj = b.indicator("UZ-CERT", "green", id=given_spec["id"])
    obj[given_spec["key"]] = given_spec["value"]
    try:
        text = json.dumps(b.sign(obj, "UZ-CERT"), ensure_ascii=False)
    except (ExchangeError, ValueError, TypeError):
        text = json.dumps(obj, ensure_ascii=False)
    raw = given_spec["raw"]
    text = text[:-1] + f', "x_raw": {raw}}}' if raw != "2.5" else text
    r = b.request("POST", b.col("jwg") + "objects/", "uz-pub",
                  body=('{"objects": [' + text + "]}").encode())
    if r.status_code != 202:
        taxii_error(r, r.status_code)
        assert r.status_code in (400, 413)
        b.refused_ids.add(obj["id"])
        return
    status = r.json()
    assert status["success_count"] + status["failure_count"] == 1
    if status["failure_count"]:
        b.refused_ids.add(obj["id"])
        return
    got = b.request("GET", b.col("jwg") + f"objects/{obj['id']}/", "uz-pub")
    assert got.status_code == 200, got.text[:300]
    assert got.json()["objects"] == [json.loads(text)]
    for reader in ("pk-pub", "uz-soc"):  # the original, and a derived copy
        assert b.request("GET", b.col("jwg") + f"objects/{obj['id']}/",
                         reader).status_code == 200


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(spec=edge_objects())
def test_hypothesis_objects_are_refused_or_served_whole_to_everyone(battery: Battery,
                                                                   spec: tuple[str, str]
                                                                   ) -> None:
    _hypothesis_post(battery, spec[1])
    battery.healthy()


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(value=_json_values(max_leaves=30))
def test_hypothesis_envelopes_never_take_the_server_down(battery: Battery, value: Any
                                                         ) -> None:
    for body in (value, {"objects": value}, {"objects": [value]}):
        r = battery.request("POST", battery.col("jwg") + "objects/", "uz-pub",
                            body=json.dumps(body).encode())
        if r.status_code == 202:
            assert r.json()["success_count"] == 0  # nothing here is a valid, signed object
        else:
            taxii_error(r, r.status_code)
            assert r.status_code == 400, r.text[:300]
    battery.healthy()


# -- 5. the oracles and refusals of issue 18 items 4, 7 and 9 ------------------------------

REFUSED_POSTS = [(a, p, c) for a, p, c in MATRIX if _refused_post(a, p, c)]


@pytest.mark.parametrize(("account", "path", "alias"),
                         [pytest.param(*case, id=f"{case[0]}-{case[2]}") for case in REFUSED_POSTS])
def test_a_refused_post_is_a_denial_in_the_ledger(battery: Battery, account: str, path: str,
                                                  alias: str) -> None:
    r = _matrix_request(battery, account, path, alias)
    taxii_error(r, 403)
    assert_denied(battery, r, "deny-no-write-grant")


def test_an_id_held_in_an_unreadable_collection_answers_like_a_fresh_one(battery: Battery
                                                                        ) -> None:
    hidden = battery.sign(battery.indicator("UZ-CERT", "green"), "UZ-CERT")
    assert battery.post_objects("uz", "uz-pub", [hidden]).json()["success_count"] == 1
    same_id = battery.sign(battery.indicator("PK-CERT", "green", id=hidden["id"]), "PK-CERT")
    fresh = battery.sign(battery.indicator("PK-CERT", "green"), "PK-CERT")
    answers = [battery.post_objects("jwg", "pk-pub", [o]).json() for o in (same_id, fresh)]
    assert [(a["success_count"], a["failure_count"]) for a in answers] == [(1, 0), (1, 0)]


@pytest.mark.parametrize("elsewhere", ["other-collection", "other-filter"])
def test_a_next_token_is_bound_to_its_collection_and_filters(battery: Battery,
                                                            elsewhere: str) -> None:
    for _ in range(3):
        obj = battery.sign(battery.indicator("UZ-CERT", "clear"), "UZ-CERT")
        battery.post_objects("jwg", "uz-pub", [obj])
        battery.post_objects("uz", "uz-pub", [battery.sign(
            battery.indicator("UZ-CERT", "clear"), "UZ-CERT")])
    first = battery.request("GET", battery.col("jwg") + "objects/", "uz-reader",
                            params={"limit": "1"})
    token = first.json()["next"]
    alias, params = (("uz", {"limit": "1", "next": token}) if elsewhere == "other-collection"
                     else ("jwg", {"limit": "1", "next": token, "match[type]": "location"}))
    r = battery.request("GET", battery.col(alias) + "objects/", "uz-reader", params=params)
    taxii_error(r, 400)


# -- last: nothing refused is readable ------------------------------------------------------

def test_nothing_refused_is_ever_readable(battery: Battery) -> None:
    refused = battery.refused_ids - {""}
    assert len(refused) > 100  # the battery above refused many writes
    for account in ACCOUNTS:
        for alias in ("jwg", "uz", "pk", "drop"):
            if not may_read(account, alias):
                continue
            for path in ("objects", "manifest"):
                r = battery.request("GET", battery.col(alias) + f"{path}/", account,
                                    params={"limit": "1000", "match[version]": "all"})
                assert r.status_code == 200, r.text[:300]
                shown = {o["id"] for o in r.json().get("objects", [])}
                shown |= {ref["external_id"] for o in r.json().get("objects", [])
                          for ref in o.get("external_references", [])
                          if ref.get("source_name") == "cert-exchange-derived-from"}
                assert not shown & refused, (account, alias, path)
                assert not r.json().get("more"), "raise the limit: the page is full"
    for object_id in sorted(refused)[:200]:
        if len(object_id) > 200 or object_id.lower() != object_id:
            continue
        r = battery.request("GET", "cx/cx/search/", "admin", params={"id": object_id})
        assert r.status_code in (200, 404, 400), r.text[:300]
        if r.status_code == 200:
            assert not r.json()["hits"], object_id
    battery.healthy()
