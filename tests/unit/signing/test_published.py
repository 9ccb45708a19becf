"""The published member registry: written deterministically, read strictly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exchange.errors import SignatureError
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.published import read_registry, registry_document
from exchange.signing.registry import Registry
from tests.unit.signing.helpers import OWNER
from tests.unit.signing.published_keys import DOCUMENT, KEYS, NODE, NODE_KEY, PK, TRUSTED


def test_the_document_round_trips_deterministically() -> None:
    assert registry_document(reversed(KEYS), node_identity=NODE) == DOCUMENT
    assert list(TRUSTED.registry) == list(Registry(k.record for k in KEYS))
    assert TRUSTED.node_kids == {NODE_KEY.kid}
    assert TRUSTED.node_identity == NODE
    assert TRUSTED.owner_of(PK.kid) == "PK-CERT"
    document = json.loads(DOCUMENT)
    assert document["extension_definition"] == EXTENSION_ID
    assert [k["kid"] for k in document["keys"]] == sorted(k.record.kid for k in KEYS)


def _edit(change: Any) -> str:
    document = json.loads(DOCUMENT)
    change(document)
    return json.dumps(document)


@pytest.mark.parametrize(("text", "phrase"), [
    pytest.param(_edit(lambda d: d.update(extra=1)), "exactly the members", id="extra-member"),
    pytest.param(_edit(lambda d: d.update(v=2)), "version 1", id="other-version"),
    pytest.param(_edit(lambda d: d.update(
        extension_definition="extension-definition--00000000-0000-4000-8000-000000000000")),
                 "another signature format", id="other-extension"),
    pytest.param(_edit(lambda d: d["keys"][0].pop("purpose")), "purpose and owner_name",
                 id="key-without-purpose"),
    pytest.param(_edit(lambda d: d["keys"][0].update(purpose="receipts")), "purpose must be",
                 id="unknown-purpose"),
    pytest.param(_edit(lambda d: d.update(node_identity=OWNER)),
                 "must be owned by the node identity", id="node-key-of-another-owner"),
    pytest.param(_edit(lambda d: d["keys"][0].update(kid=d["keys"][1]["kid"])),
                 r"public key's id|listed twice", id="wrong-kid"),
])
def test_malformed_documents_are_refused(text: str, phrase: str) -> None:
    with pytest.raises(SignatureError, match=phrase):
        read_registry(text)
