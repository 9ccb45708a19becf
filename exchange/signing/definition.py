"""The published definition of cx-sig v1: its STIX extension-definition and entry schema.

:func:`extension_definition` is the STIX 2.1 extension-definition object (section 7.3)
the project publishes under :data:`~exchange.signing.canonical.EXTENSION_ID`; the same
object is shipped as ``exchange/signing/cx-sig-v1.extension-definition.json`` (written by
``tests/vectors/make_cx_sig_vectors.py``, checked by the tests). :data:`ENTRY_SCHEMA` is
the JSON Schema of the property-extension entry an object carries; the checks that
enforce it are in :mod:`exchange.signing.cxsig`.

Pure data, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from exchange.signing.canonical import CANON, EXTENSION_ID, PAYLOAD_TYPE
from exchange.signing.keys import ALGORITHMS

__all__ = [
    "ENTRY_MEMBERS",
    "ENTRY_SCHEMA",
    "KID_PATTERN",
    "PROJECT_IDENTITY_ID",
    "SIG_PATTERN",
    "extension_definition",
    "extension_definition_json",
]

#: The STIX identity of the cert-exchange project, author of the extension-definition.
PROJECT_IDENTITY_ID: Final = "identity--bbd126b6-b0be-42bb-9eef-61374cf92349"

#: Members of a cx-sig v1 entry, all required, no others allowed.
ENTRY_MEMBERS: Final = frozenset({"extension_type", "v", "alg", "kid", "canon", "signed_at", "sig"})

#: A key id: ``sha256:`` and 43 base64url characters (32 bytes, unpadded).
KID_PATTERN: Final = r"sha256:[A-Za-z0-9_-]{43}"
#: A ``sig`` value: 86 base64url characters (64 bytes, unpadded).
SIG_PATTERN: Final = r"[A-Za-z0-9_-]{86}"
_STAMP_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"

#: JSON Schema (2020-12) of the entry. ``cxsig.signature_of`` checks this plus what a schema
#: cannot say: ``v`` is the integer 1 (not 1.0), ``signed_at`` is a real instant, ``sig``
#: is the canonical spelling of 64 bytes.
ENTRY_SCHEMA: Final[Mapping[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cx-sig v1 signature entry (STIX 2.1 property-extension)",
    "type": "object",
    "additionalProperties": False,
    "required": sorted(ENTRY_MEMBERS),
    "properties": {
        "extension_type": {"const": "property-extension"},
        "v": {"const": 1},
        "alg": {"enum": list(ALGORITHMS)},
        "kid": {"type": "string", "pattern": f"^{KID_PATTERN}$"},
        "canon": {"const": CANON},
        "signed_at": {"type": "string", "pattern": _STAMP_PATTERN},
        "sig": {"type": "string", "pattern": f"^{SIG_PATTERN}$"},
    },
}

_DEFINITION_STAMP: Final = "2025-01-01T00:00:00.000Z"


def extension_definition() -> dict[str, Any]:
    """The STIX 2.1 extension-definition object that defines cx-sig v1.

    Published by the project, shipped as ``exchange/signing/cx-sig-v1.extension-definition.json``.
    Its ``schema`` is plain text, which STIX 2.1 section 7.3 allows ("either as a URL or as
    plain text explaining the definition").

    Returns:
        A new dict, the same every time.
    """
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created_by_ref": PROJECT_IDENTITY_ID,
        "created": _DEFINITION_STAMP,
        "modified": _DEFINITION_STAMP,
        "name": "cx-sig v1 object signature",
        "description": (
            "A signature over one STIX 2.1 object version by the key of the identity named"
            " in created_by_ref, made by cert-exchange members. The entry binds content,"
            " markings, authorship and version; it does not bind a collection or audience."
        ),
        "schema": (
            "Property-extension entry with exactly these members: extension_type"
            ' "property-extension"; v 1; alg "Ed25519" (RFC 8032) or "ECDSA-P256" (FIPS'
            ' 186-5, P-256, SHA-256, 64-byte r||s, s <= n/2); kid "sha256:" + base64url'
            " without padding of SHA-256 of the DER SubjectPublicKeyInfo; canon"
            ' "jcs-rfc8785"; signed_at, a UTC timestamp claimed by the signer; sig,'
            " base64url without padding of the 64-byte signature over the DSSE v1"
            ' pre-authentication encoding PAE("' + PAYLOAD_TYPE + '", RFC 8785 canonical'
            " JSON of the object with only this entry's sig member removed). The signed"
            " object must be re-emitted unchanged by the OASIS stix2 library."
        ),
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    }


def extension_definition_json() -> str:
    """The exact text of ``cx-sig-v1.extension-definition.json`` (2-space indent, newline)."""
    return json.dumps(extension_definition(), indent=2, ensure_ascii=False) + "\n"
