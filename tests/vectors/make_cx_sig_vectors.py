"""Write the cx-sig v1 golden vectors (tests/vectors/cx-sig-v1/*.json) and the published
extension-definition (exchange/signing/cx-sig-v1.extension-definition.json).

    .venv/bin/python tests/vectors/make_cx_sig_vectors.py           # (re)write the files
    .venv/bin/python tests/vectors/make_cx_sig_vectors.py --check   # exit 1 if any differs

Every vector is made with a FIXED, PUBLISHED, TEST-ONLY private key whose 32 bytes are
written into the vector itself. Ed25519 signatures are deterministic (RFC 8032), so those
vectors regenerate byte for byte. ECDSA signatures are randomised: when a committed ECDSA
vector's signature still verifies over the same signing input it is kept, so regenerating
changes nothing; otherwise a fresh signature is made. tests/unit/signing/test_vectors.py
regenerates everything in memory and compares with the committed files.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exchange.errors import SignatureError  # noqa: E402
from exchange.model.objects import Tlp  # noqa: E402
from exchange.model.tlp import TLP2_IDS  # noqa: E402
from exchange.signing.canonical import (  # noqa: E402
    EXTENSION_ID,
    PAYLOAD_TYPE,
    canonical,
    signing_input,
    without_signature,
)
from exchange.signing.cxsig import (  # noqa: E402
    b64url_decode_signature,
    extension_definition_json,
    sign_object,
)
from exchange.signing.envelope import envelope_for  # noqa: E402
from exchange.signing.keys import Algorithm, load_raw_private_key  # noqa: E402

VECTOR_DIR = Path(__file__).resolve().parent / "cx-sig-v1"
DEFINITION_FILE = ROOT / "exchange" / "signing" / "cx-sig-v1.extension-definition.json"

WARNING = (
    "TEST-ONLY KEY. The private key in this file is published; never use it to sign"
    " anything real, and never trust it in a real key registry."
)
KEY_ENCODING = {
    "Ed25519": "32-byte seed (RFC 8032 section 5.1.5), hex",
    "ECDSA-P256": "private scalar d, 32 bytes big-endian, hex",
}
UZ_CERT = "identity--5c0bb7c1-9a4e-4b83-8f67-0c4f1e2d3a11"
PK_CERT = "identity--7e1d2c3b-4a59-4687-9f0e-1d2c3b4a5968"


def _indicator() -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--9b2f1c3e-5d4a-4e6b-8c7d-0a1b2c3d4e5f",
        "created": "2025-02-10T06:30:00.000Z",
        "modified": "2025-02-10T06:30:00.000Z",
        "created_by_ref": UZ_CERT,
        "name": "Loader dropped by a spear-phishing attachment",
        "indicator_types": ["malicious-activity"],
        "pattern": (
            "[file:hashes.'SHA-256' ="
            " '4bc3a1f8e0d2c9b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a098']"
        ),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": "2025-02-10T06:30:00Z",
        "confidence": 70,
        "object_marking_refs": [TLP2_IDS[Tlp.AMBER]],
    }


def _identity() -> dict[str, Any]:
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": PK_CERT,
        "created": "2025-01-05T00:00:00.000Z",
        "modified": "2025-01-05T00:00:00.000Z",
        "created_by_ref": PK_CERT,
        "name": "PK-CERT (پاکستان) \u2014 test identity",
        "description": (
            "Non-ASCII and control characters: \U0001f512 \ufb33 \u20ac \u00f6 \u0080 \r \u000f."
        ),
        "identity_class": "organization",
        "sectors": ["government-national"],
        "contact_information": "cert@pk-cert.example",
    }


@dataclass(frozen=True)
class Case:
    """One vector file."""

    name: str
    alg: Algorithm
    secret_hex: str
    signed_at: str
    description: str
    make: Callable[[], dict[str, Any]]


CASES = (
    Case(
        "ed25519-indicator",
        "Ed25519",
        "c0f46882d64354414e552629b02e23f84954dbe2927e91de7965269b7cdb48c7",
        "2025-02-10T06:31:12.345Z",
        "A TLP:AMBER indicator signed with Ed25519 (deterministic signature).",
        _indicator,
    ),
    Case(
        "ed25519-identity-unicode",
        "Ed25519",
        "5d5278cda900130b9eeb2c46f5e370a0610f3e0c87b3925c9712aedaaa528c53",
        "2025-01-05T00:00:01Z",
        "An identity with non-ASCII text and control characters, signed with Ed25519.",
        _identity,
    ),
    Case(
        "ecdsa-p256-indicator",
        "ECDSA-P256",
        "eabb9d057d2c1a102d6c9e4bf17f4a69201c093329e968f4e715d67462debe8a",
        "2025-02-10T06:31:12.345Z",
        "The same indicator signed with ECDSA P-256/SHA-256 (raw r||s, low-S). ECDSA is"
        " randomised: regenerate the signature and it differs, but it must verify.",
        _indicator,
    ),
)


def _keep_committed_signature(signed: dict[str, Any], key: Any, committed: str | None) -> None:
    """For ECDSA: put back the committed signature when it still verifies."""
    if committed is None:
        return
    try:
        old = json.loads(committed)["signature_base64url"]
        key.public_key.verify(signing_input(signed), b64url_decode_signature(old))
    except (SignatureError, KeyError, TypeError, ValueError):
        return
    signed["extensions"][EXTENSION_ID]["sig"] = old


def vector_text(case: Case, committed: str | None = None) -> str:
    """The exact text of one vector file.

    Args:
        case: The vector to build.
        committed: The committed text of this file, if any (only ECDSA looks at it).

    Returns:
        JSON, 2-space indent, UTF-8 kept, trailing newline.
    """
    key = load_raw_private_key(case.alg, bytes.fromhex(case.secret_hex))
    obj = case.make()
    signed = sign_object(obj, key, signed_at=case.signed_at)
    if case.alg == "ECDSA-P256":
        _keep_committed_signature(signed, key, committed)
    payload = canonical(without_signature(signed))
    vector = {
        "description": case.description,
        "warning": WARNING,
        "alg": case.alg,
        "test_only_private_key_hex": case.secret_hex,
        "private_key_encoding": KEY_ENCODING[case.alg],
        "public_key_pem": key.public_pem(),
        "kid": key.kid,
        "payload_type": PAYLOAD_TYPE,
        "signed_at": case.signed_at,
        "object": obj,
        "canonical_payload": payload.decode("utf-8"),
        "signing_input_base64": base64.b64encode(signing_input(signed)).decode("ascii"),
        "signature_base64url": signed["extensions"][EXTENSION_ID]["sig"],
        "signature_is_deterministic": case.alg == "Ed25519",
        "signed_object": signed,
        "signed_object_canonical": canonical(signed).decode("utf-8"),
        "envelope": envelope_for(signed),
    }
    return json.dumps(vector, indent=2, ensure_ascii=False) + "\n"


def build(committed: Mapping[str, str] | None = None) -> dict[Path, str]:
    """Every generated file and its exact text.

    Args:
        committed: Committed texts by file name (to keep ECDSA signatures stable).

    Returns:
        Path -> text, for the vectors and the extension-definition file.
    """
    committed = committed or {}
    files = {
        VECTOR_DIR / f"{case.name}.json": vector_text(case, committed.get(f"{case.name}.json"))
        for case in CASES
    }
    files[DEFINITION_FILE] = extension_definition_json()
    return files


def committed_texts() -> dict[str, str]:
    """The committed vector files, by name."""
    return {path.name: path.read_text(encoding="utf-8") for path in VECTOR_DIR.glob("*.json")}


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the generated files; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on change")
    args = parser.parse_args(argv)
    files = build(committed_texts())
    changed = [
        path
        for path, text in files.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    for path in changed:
        print(f"{'differs' if args.check else 'writing'}: {path.relative_to(ROOT)}")
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text := files[path], encoding="utf-8")
            assert path.read_text(encoding="utf-8") == text
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
