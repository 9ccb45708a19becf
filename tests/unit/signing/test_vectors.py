"""The committed cx-sig v1 golden vectors (tests/vectors/cx-sig-v1/, see its README)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from exchange.signing.canonical import EXTENSION_ID, PAYLOAD_TYPE, canonical, pae, without_signature
from exchange.signing.cxsig import verify_object
from exchange.signing.envelope import object_from_envelope, verify_envelope
from exchange.signing.keys import load_public_pem, load_raw_private_key
from tests.unit.signing.helpers import resolver, spki_kid, unb64url
from tests.vectors import make_cx_sig_vectors as generator

VECTOR_FILES = sorted(generator.VECTOR_DIR.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def test_the_committed_files_are_what_the_generator_writes() -> None:
    files = generator.build(generator.committed_texts())
    assert sorted(files) == sorted([*VECTOR_FILES, generator.DEFINITION_FILE])
    for path, text in files.items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name}: regenerate the vectors"


def test_ecdsa_vectors_verify_with_a_fresh_signature_too() -> None:
    # Without the committed files, ECDSA gets a new (random) signature: everything else
    # is identical, and the new signature verifies as well.
    fresh = generator.build()
    for path in VECTOR_FILES:
        vector, regenerated = _load(path), json.loads(fresh[path])
        if vector["signature_is_deterministic"]:
            assert fresh[path] == path.read_text(encoding="utf-8")
            continue
        assert regenerated["signature_base64url"] != vector["signature_base64url"]
        for name in ("object", "canonical_payload", "signing_input_base64", "kid"):
            assert regenerated[name] == vector[name]
        public = load_public_pem(regenerated["public_key_pem"])
        verify_object(regenerated["signed_object"], resolver(public))


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def test_vector_field_by_field(path: Path) -> None:
    vector = _load(path)
    assert "TEST-ONLY" in vector["warning"]
    public = load_public_pem(vector["public_key_pem"])
    assert public.alg == vector["alg"]
    assert spki_kid(vector["public_key_pem"]) == vector["kid"] == public.kid
    secret = load_raw_private_key(vector["alg"], bytes.fromhex(vector["test_only_private_key_hex"]))
    assert secret.kid == vector["kid"]

    signed = vector["signed_object"]
    entry = signed["extensions"][EXTENSION_ID]
    assert entry["kid"] == vector["kid"]
    assert entry["signed_at"] == vector["signed_at"]
    assert entry["sig"] == vector["signature_base64url"]
    unsigned = {key: value for key, value in signed.items() if key != "extensions"}
    assert unsigned == {k: v for k, v in vector["object"].items() if k != "extensions"}

    payload = vector["canonical_payload"].encode("utf-8")
    assert canonical(without_signature(signed)) == payload
    assert canonical(json.loads(payload)) == payload
    message = base64.b64decode(vector["signing_input_base64"])
    assert message == pae(PAYLOAD_TYPE, payload)
    assert message == b"DSSEv1 %d %b %d %b" % (
        len(PAYLOAD_TYPE),
        PAYLOAD_TYPE.encode(),
        len(payload),
        payload,
    )
    signature = unb64url(vector["signature_base64url"])
    public.verify(message, signature)
    if vector["signature_is_deterministic"]:
        assert secret.sign(message) == signature

    assert canonical(signed) == vector["signed_object_canonical"].encode("utf-8")
    verify_object(signed, resolver(public))
    envelope = vector["envelope"]
    assert base64.b64decode(envelope["payload"]) == payload
    assert base64.b64decode(envelope["signatures"][0]["sig"]) == signature
    assert verify_envelope(envelope, resolver(public)) == json.loads(payload)
    assert canonical(object_from_envelope(envelope, resolver(public))) == canonical(signed)


def test_the_generator_check_mode_passes() -> None:
    assert generator.main(["--check"]) == 0
