"""The detached DSSE envelope of cx-sig v1 (exchange.signing.envelope)."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from exchange.errors import LimitExceeded, MalformedJSON, SignatureError
from exchange.model.limits import Limits
from exchange.signing.canonical import EXTENSION_ID, PAYLOAD_TYPE, canonical, pae, without_signature
from exchange.signing.cxsig import sign_object, verify_object
from exchange.signing.envelope import (
    envelope_for,
    object_from_envelope,
    object_matches_envelope,
    verify_envelope,
)
from exchange.signing.keys import ALGORITHMS, SigningKey
from tests.unit.signing.helpers import SIGNED_AT, fixed_key, indicator, resolver, unb64url


@pytest.fixture(params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> SigningKey:
    return fixed_key(request.param)


def _signed(key: SigningKey, **changes: Any) -> dict[str, Any]:
    return sign_object(indicator(**changes), key, signed_at=SIGNED_AT)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _resign_payload(key: SigningKey, payload: bytes) -> dict[str, Any]:
    """An envelope with a *valid* signature by ``key`` over an arbitrary payload."""
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": _b64(payload),
        "signatures": [{"keyid": key.kid, "sig": _b64(key.sign(pae(PAYLOAD_TYPE, payload)))}],
    }


def test_envelope_round_trip(key: SigningKey) -> None:
    signed = _signed(key)
    envelope = envelope_for(signed)
    assert envelope.keys() == {"payloadType", "payload", "signatures"}
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(envelope["payload"]) == canonical(without_signature(signed))
    assert envelope["signatures"][0]["keyid"] == key.kid
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    assert sig == unb64url(signed["extensions"][EXTENSION_ID]["sig"])  # the same signature
    payload = verify_envelope(envelope, resolver(key))
    assert payload == without_signature(signed)
    assert object_matches_envelope(signed, envelope)
    rebuilt = object_from_envelope(envelope, resolver(key))
    assert canonical(rebuilt) == canonical(signed)
    verify_object(rebuilt, resolver(key))


def test_envelope_survives_json_transport(key: SigningKey) -> None:
    envelope = json.loads(json.dumps(envelope_for(_signed(key)), indent=2))
    verify_envelope(envelope, resolver(key))


def test_url_safe_base64_is_accepted_as_dsse_requires(key: SigningKey) -> None:
    envelope = envelope_for(_signed(key))
    for field in (envelope, envelope["signatures"][0]):
        name = "payload" if field is envelope else "sig"
        field[name] = base64.urlsafe_b64encode(base64.b64decode(field[name])).decode().rstrip("=")
    verify_envelope(envelope, resolver(key))


def test_object_matches_envelope_detects_another_object(key: SigningKey) -> None:
    envelope = envelope_for(_signed(key))
    assert not object_matches_envelope(_signed(key, name="Other name"), envelope)
    assert not object_matches_envelope(indicator(), envelope)  # unsigned original


def test_envelope_of_unsigned_object_is_refused() -> None:
    with pytest.raises(SignatureError, match="object is not signed"):
        envelope_for(indicator())


def _set_payload(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda env: env.__setitem__("payload", value)


def _set_sig(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda env: env["signatures"][0].__setitem__(name, value)


def _payload_changed(env: dict[str, Any]) -> None:
    obj = json.loads(base64.b64decode(env["payload"]))
    obj["name"] = "Harmless"
    env["payload"] = _b64(canonical(obj))


ENVELOPE_ATTACKS: list[Any] = [
    pytest.param(_payload_changed, "signature does not verify", id="payload-changed"),
    pytest.param(_set_payload(""), "signature does not verify", id="payload-empty"),
    pytest.param(_set_payload("not base64!"), "payload is not base64", id="payload-not-base64"),
    pytest.param(_set_payload("QQ"), "signature does not verify", id="payload-unpadded-other"),
    pytest.param(_set_payload("QR=="), "not canonical base64", id="payload-non-canonical-bits"),
    pytest.param(_set_payload(12), "payload must be a base64 string", id="payload-not-string"),
    pytest.param(
        lambda env: env.__setitem__("payloadType", "application/json"),
        "payloadType",
        id="payload-type-generic",
    ),
    pytest.param(
        lambda env: env.__setitem__("payloadType", PAYLOAD_TYPE.upper()),
        "payloadType",
        id="payload-type-case",
    ),
    pytest.param(
        lambda env: env.pop("payloadType"), "payloadType is None", id="payload-type-missing"
    ),
    pytest.param(
        lambda env: env.__setitem__("x", 1), "unexpected member(s) 'x'", id="envelope-extra-member"
    ),
    pytest.param(
        lambda env: env.__setitem__("signatures", []), "exactly one signature", id="no-signature"
    ),
    pytest.param(
        lambda env: env["signatures"].append(copy.deepcopy(env["signatures"][0])),
        "exactly one signature",
        id="two-signatures",
    ),
    pytest.param(
        lambda env: env["signatures"][0].pop("keyid"),
        "exactly 'keyid' and 'sig'",
        id="keyid-missing",
    ),
    pytest.param(_set_sig("keyid", "sha256:" + "B" * 43), "is not registered", id="keyid-unknown"),
    pytest.param(_set_sig("keyid", "k1"), "keyid must be sha256:", id="keyid-malformed"),
    pytest.param(_set_sig("sig", _b64(b"\x00" * 64)), "signature does not verify", id="sig-zero"),
    pytest.param(_set_sig("sig", _b64(b"\x00" * 63)), "64 bytes", id="sig-truncated"),
    pytest.param(_set_sig("sig", "****"), "sig is not base64", id="sig-not-base64"),
]


@pytest.mark.parametrize(("change", "reason"), ENVELOPE_ATTACKS)
def test_envelope_attack_is_refused(
    key: SigningKey, change: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    envelope = envelope_for(_signed(key))
    change(envelope)
    with pytest.raises(SignatureError) as caught:
        verify_envelope(envelope, resolver(key, fixed_key(key.alg, 2)))
    assert reason in caught.value.reason


def test_keyid_of_another_trusted_key_does_not_verify(key: SigningKey) -> None:
    other = fixed_key(key.alg, 2)
    envelope = envelope_for(_signed(key))
    envelope["signatures"][0]["keyid"] = other.kid
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_envelope(envelope, resolver(key, other))


# Payloads validly signed by the key, but not acceptable cx-sig payloads.


def test_signed_payload_that_is_not_canonical_is_refused(key: SigningKey) -> None:
    obj = without_signature(_signed(key))
    envelope = _resign_payload(key, json.dumps(obj).encode())
    with pytest.raises(SignatureError, match="not RFC 8785 canonical"):
        verify_envelope(envelope, resolver(key))


def test_signed_payload_without_cx_sig_entry_is_refused(key: SigningKey) -> None:
    envelope = _resign_payload(key, canonical(indicator()))
    with pytest.raises(SignatureError, match="carries no cx-sig entry"):
        verify_envelope(envelope, resolver(key))


def test_signed_payload_naming_another_key_is_refused(key: SigningKey) -> None:
    other = fixed_key(key.alg, 2)
    payload = canonical(without_signature(_signed(other)))
    with pytest.raises(SignatureError, match="differs from the payload's cx-sig kid"):
        verify_envelope(_resign_payload(key, payload), resolver(key, other))


def test_signed_payload_claiming_another_algorithm_is_refused(key: SigningKey) -> None:
    obj = without_signature(_signed(key))
    other_alg = next(alg for alg in ALGORITHMS if alg != key.alg)
    obj["extensions"][EXTENSION_ID]["alg"] = other_alg
    with pytest.raises(SignatureError, match="algorithm mismatch"):
        verify_envelope(_resign_payload(key, canonical(obj)), resolver(key))


def test_signed_payload_with_sig_member_is_refused(key: SigningKey) -> None:
    payload = canonical(_signed(key))  # the embedded form, sig included
    with pytest.raises(SignatureError, match=re.escape("unexpected member(s) 'sig'")):
        verify_envelope(_resign_payload(key, payload), resolver(key))


def test_signed_payload_not_an_object_is_refused(key: SigningKey) -> None:
    with pytest.raises(SignatureError, match="not a JSON object"):
        verify_envelope(_resign_payload(key, b"[1,2]"), resolver(key))


def test_signed_payload_breaking_the_strict_profile_is_refused_after_verification(
    key: SigningKey,
) -> None:
    with pytest.raises(MalformedJSON, match="duplicate key"):
        verify_envelope(_resign_payload(key, b'{"a":1,"a":2}'), resolver(key))
    with pytest.raises(LimitExceeded):
        verify_envelope(
            _resign_payload(key, canonical(without_signature(_signed(key)))),
            resolver(key),
            limits=Limits(max_body_bytes=100),
        )


def test_payload_is_not_parsed_before_the_signature_verifies(key: SigningKey) -> None:
    # Unsigned garbage never reaches the JSON parser: the refusal is about the signature.
    envelope = envelope_for(_signed(key))
    envelope["payload"] = _b64(b'{"a":1,"a":2}' + b"[" * 10_000)
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_envelope(envelope, resolver(key))


def test_object_matches_envelope_refuses_malformed_envelopes() -> None:
    with pytest.raises(SignatureError, match="payloadType"):
        object_matches_envelope(indicator(), {"payload": ""})
    with pytest.raises(SignatureError, match="must be a JSON object"):
        object_matches_envelope(indicator(), [])  # type: ignore[arg-type]
