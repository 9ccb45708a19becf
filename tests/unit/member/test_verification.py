"""Offline verification by a consumer: the verdict per object against the published registry."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from exchange.member.verification import check_object, describe, summarise
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.cxsig import sign_object
from exchange.signing.keys import SigningKey
from exchange.signing.published import read_registry
from exchange.signing.registry import Registry
from tests.unit.signing.helpers import OWNER, SIGNED_AT, fixed_key, indicator
from tests.unit.signing.published_keys import (
    FUTURE,
    JAN,
    JUN,
    KEYS,
    MAR,
    NOW,
    PK,
    TRUSTED,
    UZ,
    UZ_RETIRED,
    UZ_REVOKED,
)


def signed(key: SigningKey, **changes: Any) -> dict[str, Any]:
    return sign_object(indicator(**changes), key, signed_at=SIGNED_AT)


def test_a_plain_key_registry_is_read_too() -> None:
    plain = Registry(k.record for k in KEYS).to_json()
    trusted = read_registry(plain)
    assert list(trusted.registry) == list(TRUSTED.registry)
    assert trusted.owner_names == {}
    assert check_object(trusted, signed(UZ), now=NOW).owner == OWNER


def tampered(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    copied.update(changes)
    return copied


# (object, recorded between, expected status, expected reason fragment)
CASES: list[Any] = [
    pytest.param(signed(UZ), None, "valid", "", id="valid-unknown-time"),
    pytest.param(indicator(), None, "unsigned", "", id="unsigned"),
    pytest.param(tampered(signed(UZ), confidence=1), None, "invalid",
                 "signature does not verify", id="changed-content"),
    pytest.param(signed(PK), None, "invalid",
                 "belongs to PK-CERT, not to the object's created_by_ref UZ-CERT, another"
                 " member: no member may publish in another member's name",
                 id="another-members-identity-claimed"),
    pytest.param(signed(fixed_key("Ed25519", 9)), None, "invalid", "is not registered",
                 id="unknown-key"),
    pytest.param(signed(FUTURE), None, "invalid", "not yet valid", id="key-not-yet-valid"),
    pytest.param(signed(UZ_RETIRED), None, "valid", "", id="retired-key-unknown-time"),
    pytest.param(signed(UZ_RETIRED), (MAR, MAR), "invalid", "retired since",
                 id="retired-key-recorded-after"),
    pytest.param(signed(UZ_REVOKED), None, "invalid", "not known here",
                 id="revoked-key-unknown-time"),
    pytest.param(signed(UZ_REVOKED), (JAN, MAR - 1), "valid", "",
                 id="revoked-key-page-before-compromise"),
    pytest.param(signed(UZ_REVOKED), (MAR, JUN), "invalid", "compromised since",
                 id="revoked-key-page-after-compromise"),
    pytest.param(signed(UZ_REVOKED), (JAN, JUN), "invalid", "valid only from",
                 id="revoked-key-page-straddles-compromise"),
    pytest.param(signed(UZ), (JAN - 10, JAN + 10), "invalid", "valid only from",
                 id="page-straddles-valid-from"),
    pytest.param(signed(UZ), (JAN - 10, JAN - 1), "invalid", "not yet valid",
                 id="page-before-valid-from"),
    pytest.param(tampered(signed(UZ), extensions={EXTENSION_ID: {"v": 1}}), None, "invalid",
                 "lacks", id="malformed-entry"),
]


@pytest.mark.parametrize(("obj", "between", "status", "reason"), CASES)
def test_verdicts(obj: dict[str, Any], between: tuple[int, int] | None, status: str,
                  reason: str) -> None:
    verdict = check_object(TRUSTED, obj, recorded_between=between, now=NOW)
    assert verdict.status == status
    assert reason in verdict.reason
    assert verdict.object_id == obj["id"]
    assert not verdict.reason.startswith(obj["id"])
    assert verdict.needs_recording_time == ("valid only from" in reason)
    if status == "valid":
        assert verdict.owner == "UZ-CERT"
        assert verdict.attestation == "signed by the author UZ-CERT"


VENDOR = "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"  # a non-member author


def test_a_contributor_attests_what_it_did_not_write() -> None:
    relayed = check_object(TRUSTED, signed(PK, created_by_ref=VENDOR), now=NOW)
    assert (relayed.status, relayed.signed_by) == ("valid", "contributor")
    assert relayed.attestation == "attested by contributor PK-CERT"
    no_author = indicator()
    del no_author["created_by_ref"]
    sco = {"type": "ipv4-addr", "spec_version": "2.1",
           "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3"}
    for obj in (no_author, sco):
        verdict = check_object(TRUSTED, sign_object(obj, UZ, signed_at=SIGNED_AT), now=NOW)
        assert verdict.attestation == "attested by contributor UZ-CERT", verdict
    # a revoked key is judged the same whoever the author is
    late = check_object(TRUSTED, signed(UZ_REVOKED, created_by_ref=VENDOR),
                        recorded_between=(MAR, JUN), now=NOW)
    assert (late.status, late.signed_by) == ("invalid", None)


def test_summary_and_lines() -> None:
    verdicts = [check_object(TRUSTED, obj, now=NOW)
                for obj in (signed(UZ), indicator(), signed(PK))]
    counts = summarise(verdicts)
    assert (counts["valid"], counts["unsigned"], counts["invalid"]) == (1, 1, 1)
    assert (counts["signed_by_author"], counts["attested_by_contributor"]) == (1, 0)
    assert counts["invalid_objects"][0]["reason"].startswith(f"key {PK.kid} belongs to")
    lines = [describe(v) for v in verdicts]
    assert lines[0] == f"valid    {indicator()['id']}  signed by the author UZ-CERT ({UZ.kid})"
    relayed = check_object(TRUSTED, signed(UZ, created_by_ref=VENDOR), now=NOW)
    assert describe(relayed) == (f"valid    {indicator()['id']}  attested by contributor"
                                 f" UZ-CERT ({UZ.kid})")
    assert lines[1] == f"unsigned {indicator()['id']}"
    assert lines[2].startswith(f"invalid  {indicator()['id']}: key {PK.kid}")
