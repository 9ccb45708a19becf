"""Object signatures of cert-exchange ("cx-sig v1", DESIGN.md decision 5).

The only package that touches ``cryptography.hazmat`` (a ruff banned-api rule keeps it
so), and within it only ``keys`` does. Its modules, all pure except ``keyfiles``:

* :mod:`~exchange.signing.canonical`: RFC 8785 canonical bytes, DSSE PAE, the signing
  input, the normal-form rule;
* :mod:`~exchange.signing.keys`: Ed25519 and ECDSA P-256 keys, key ids, encrypted keys;
* :mod:`~exchange.signing.keyfiles`: encrypted key files (the package's only I/O);
* :mod:`~exchange.signing.definition`: the published extension-definition and entry schema;
* :mod:`~exchange.signing.cxsig`: the embedded signature (a STIX 2.1 property-extension);
* :mod:`~exchange.signing.envelope`: the detached DSSE envelope;
* :mod:`~exchange.signing.registry`: key owners and validity windows.

What it leaves to others: where keys and registries are stored and how they are
distributed, and when the exchange recorded an object (the time that decides key
validity).

Core floor: imports only the core (``model``, ``errors``). The published member
registry (:mod:`~exchange.signing.published`) is written by the node and read by members.
"""

from __future__ import annotations

from exchange.signing.canonical import (
    EXTENSION_ID,
    PAYLOAD_TYPE,
    canonical,
    normal_form,
    pae,
    require_normal_form,
    signing_input,
)
from exchange.signing.cxsig import (
    SignatureEntry,
    VerifiedSignature,
    extension_definition,
    sign_object,
    sign_validated,
    signature_of,
    verify_object,
)
from exchange.signing.envelope import (
    envelope_for,
    object_from_envelope,
    object_matches_envelope,
    verify_envelope,
)
from exchange.signing.keyfiles import read_private_key, write_private_key
from exchange.signing.keys import (
    Algorithm,
    KeyId,
    PublicKey,
    SigningKey,
    generate,
    key_id,
    load_public_pem,
)
from exchange.signing.registry import KeyRecord, Registry

__all__ = [
    "EXTENSION_ID",
    "PAYLOAD_TYPE",
    "Algorithm",
    "KeyId",
    "KeyRecord",
    "PublicKey",
    "Registry",
    "SignatureEntry",
    "SigningKey",
    "VerifiedSignature",
    "canonical",
    "envelope_for",
    "extension_definition",
    "generate",
    "key_id",
    "load_public_pem",
    "normal_form",
    "object_from_envelope",
    "object_matches_envelope",
    "pae",
    "read_private_key",
    "require_normal_form",
    "sign_object",
    "sign_validated",
    "signature_of",
    "signing_input",
    "verify_envelope",
    "verify_object",
    "write_private_key",
]
