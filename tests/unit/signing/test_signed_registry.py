"""The signed registry a peer node pins: signed by a node key, checked against the pin."""

from __future__ import annotations

import base64
import json

import pytest

from exchange.errors import SignatureError
from exchange.signing.signed_registry import open_signed_registry, pin_key, sign_registry
from tests.unit.signing.published_keys import DOCUMENT, NODE_KEY, PK, UZ

SIGNED = sign_registry(DOCUMENT, NODE_KEY).encode()


def test_first_contact_pins_the_node_key_that_hashes_to_the_fingerprint() -> None:
    kid, pem, keys = pin_key(SIGNED, NODE_KEY.kid)
    assert kid == NODE_KEY.kid
    assert pem == NODE_KEY.public_pem()
    assert UZ.kid in {r.kid for r in keys.registry}
    again = open_signed_registry(SIGNED, {kid: pem})
    assert {r.kid for r in again.registry} == {r.kid for r in keys.registry}


def _reencoded(change: str) -> bytes:
    envelope = json.loads(SIGNED)
    envelope["payload"] = base64.b64encode(
        DOCUMENT.replace("PK-CERT", change).encode()).decode()
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(("data", "fingerprint", "message"), [
    pytest.param(SIGNED, UZ.kid, "not by the pinned node key", id="other-fingerprint"),
    pytest.param(_reencoded("XX-CERT"), NODE_KEY.kid, "does not verify", id="payload-changed"),
    pytest.param(sign_registry(DOCUMENT, PK).encode(), PK.kid, "publishes no node key",
                 id="signed-by-a-member-key"),
    pytest.param(b'{"payload": "", "payloadType": "x", "signatures": []}', NODE_KEY.kid,
                 "payloadType", id="wrong-type"),
    pytest.param(b"[1, 2", NODE_KEY.kid, "not valid JSON", id="not-json"),
    pytest.param(SIGNED.replace(b'{"payload"', b'{"extra": 1, "payload"'), NODE_KEY.kid,
                 "exactly the members", id="extra-member"),
])
def test_first_contact_refuses(data: bytes, fingerprint: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        pin_key(data, fingerprint)


def test_later_fetches_are_checked_against_the_pins_before_reading() -> None:
    pins = {NODE_KEY.kid: NODE_KEY.public_pem()}
    with pytest.raises(SignatureError, match="not a pinned node key"):
        open_signed_registry(sign_registry(DOCUMENT, PK).encode(), pins)
    with pytest.raises(SignatureError, match="does not verify"):
        open_signed_registry(_reencoded("XX-CERT"), pins)
    with pytest.raises(SignatureError, match="does not hash"):
        open_signed_registry(SIGNED, {NODE_KEY.kid: PK.public_pem()})
