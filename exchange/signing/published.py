"""The published member registry: the keys a node trusts, as one document anyone can check.

The exchange publishes its trusted keys as one JSON document (``exchange keys export``,
written by :func:`registry_document`)::

    {"type": "cx-member-registry", "v": 1,
     "extension_definition": "extension-definition--8cfe494a-...",   # the cx-sig v1 id
     "payload_type": "application/vnd.cti-exchange.stix-object+json; v=1",
     "node_identity": "identity--...",                                # or null
     "keys": [{<the members of a cx-key-registry key>, "purpose": "object" | "node",
               "owner_name": "UZ-CERT"}, ...]}

Each key carries the members of :meth:`exchange.signing.registry.Registry.to_json`
(``kid``, ``alg``, ``public_pem``, ``owner_identity``, validity window, ``status``,
``compromised_since``) plus its purpose (a member's ``object`` key or one of the node's
own ``node`` keys, whose owner is ``node_identity``) and the owner's name. Keys are sorted
by key id and the text is deterministic: the same keys give the same bytes. A plain
``cx-key-registry`` document is read too (without owner names).

The node writes it (:mod:`exchange.node.keyring`); a member reads it to verify objects
offline (:mod:`exchange.member.verification`). Pure code, no I/O; distributing the
document signed (research/security.md 1.5) is left to the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchange.errors import SignatureError
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.signing.canonical import EXTENSION_ID, PAYLOAD_TYPE
from exchange.signing.keys import KeyId
from exchange.signing.registry import KeyRecord, Registry

__all__ = [
    "DOCUMENT_TYPE",
    "PublishedKey",
    "TrustedKeys",
    "read_registry",
    "registry_document",
]

DOCUMENT_TYPE: Final = "cx-member-registry"
_PLAIN_TYPE: Final = "cx-key-registry"
_PURPOSES: Final = ("object", "node")
_DOCUMENT_MEMBERS: Final = frozenset(
    {"type", "v", "extension_definition", "payload_type", "node_identity", "keys"}
)
_EXTRA_KEY_MEMBERS: Final = frozenset({"purpose", "owner_name"})
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_IDENTITY = re.compile(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """One key of the published registry.

    Attributes:
        record: The key, its owner identity and its validity.
        purpose: ``"object"`` (a member's signing key) or ``"node"`` (the exchange's own).
        owner_name: The owning organisation's name (the node's title for node keys).
    """

    record: KeyRecord
    purpose: str
    owner_name: str


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """A registry document as read by a consumer.

    Attributes:
        registry: The keys, checked.
        owner_names: Owner identity id -> name, as published (may be empty).
        node_identity: The node's own identity, if the document names one.
        node_kids: Key ids of the node's own keys.
    """

    registry: Registry
    owner_names: Mapping[str, str]
    node_identity: str | None
    node_kids: frozenset[KeyId]

    def owner_of(self, kid: KeyId) -> str:
        """The published name of a key's owner, else its identity id.

        Raises:
            SignatureError: The key is not in the registry.
        """
        identity = self.registry.record(kid).owner_identity
        return self.owner_names.get(identity, identity)


def registry_document(keys: Iterable[PublishedKey], *, node_identity: str | None) -> str:
    """The published registry: deterministic JSON text (2-space indent, sorted, newline).

    Args:
        keys: The keys to publish.
        node_identity: The identity that owns the node's keys, or None.

    Returns:
        The document described in the module docstring.

    Raises:
        SignatureError: A key record is inconsistent, a key id appears twice, a purpose or
            owner name is malformed, or a node key is not owned by ``node_identity``.
    """
    published = sorted(keys, key=lambda key: key.record.kid)
    for key in published:
        _check_annotations(key.record, key.purpose, key.owner_name, node_identity)
    core = json.loads(Registry(key.record for key in published).to_json())["keys"]
    items = [
        {**item, "purpose": key.purpose, "owner_name": key.owner_name}
        for item, key in zip(core, published, strict=True)
    ]
    document = {
        "type": DOCUMENT_TYPE,
        "v": 1,
        "extension_definition": EXTENSION_ID,
        "payload_type": PAYLOAD_TYPE,
        "node_identity": node_identity,
        "keys": items,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _check_annotations(record: KeyRecord, purpose: Any, owner_name: Any,
                       node_identity: str | None) -> None:
    where = f"registry key {str(record.kid)[:60]}"
    if purpose not in _PURPOSES:
        raise SignatureError(f"{where}: purpose must be one of {', '.join(_PURPOSES)}")
    if not isinstance(owner_name, str) or _NAME.fullmatch(owner_name) is None:
        raise SignatureError(f"{where}: owner_name must be 1-128 printable characters")
    if purpose == "node" and record.owner_identity != node_identity:
        raise SignatureError(f"{where}: a node key must be owned by the node identity")


def read_registry(data: str | bytes, *, limits: Limits | None = None) -> TrustedKeys:
    """Read a published registry (or a plain ``cx-key-registry`` document).

    Args:
        data: The document text.
        limits: Parsing limits (default :class:`Limits`).

    Returns:
        The trusted keys.

    Raises:
        SignatureError: The document is not a cx-member-registry v1 for cx-sig v1, has
            unknown or missing members, or inconsistent keys.
        MalformedJSON: The text breaks the strict JSON profile.
        LimitExceeded: The text exceeds ``limits``.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    document = parse_json(raw, limits or Limits())
    if isinstance(document, dict) and document.get("type") == _PLAIN_TYPE:
        registry = Registry.from_json(raw, limits=limits)
        return TrustedKeys(registry, {}, None, frozenset())
    if not isinstance(document, dict) or document.keys() != _DOCUMENT_MEMBERS:
        members = ", ".join(sorted(_DOCUMENT_MEMBERS))
        raise SignatureError(f"a {DOCUMENT_TYPE} document has exactly the members {members}")
    if document["type"] != DOCUMENT_TYPE or type(document["v"]) is not int or document["v"] != 1:
        raise SignatureError(f"not a {DOCUMENT_TYPE} version 1 document")
    if document["extension_definition"] != EXTENSION_ID or document["payload_type"] != PAYLOAD_TYPE:
        raise SignatureError("this registry is for another signature format than cx-sig v1")
    node_identity = document["node_identity"]
    if node_identity is not None and (
        not isinstance(node_identity, str) or _IDENTITY.fullmatch(node_identity) is None
    ):
        raise SignatureError("node_identity must be identity--<UUID> or null")
    items = document["keys"]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise SignatureError("registry 'keys' must be a list of objects")
    core = [{k: v for k, v in item.items() if k not in _EXTRA_KEY_MEMBERS} for item in items]
    for item in items:
        if not item.keys() >= _EXTRA_KEY_MEMBERS:
            raise SignatureError("every registry key has the members purpose and owner_name")
    registry = Registry.from_json(json.dumps({"type": _PLAIN_TYPE, "v": 1, "keys": core}),
                                  limits=limits)
    names: dict[str, str] = {}
    node_kids: set[KeyId] = set()
    for item in items:
        record = registry.record(KeyId(item["kid"]))
        _check_annotations(record, item["purpose"], item["owner_name"], node_identity)
        names[record.owner_identity] = item["owner_name"]
        if item["purpose"] == "node":
            node_kids.add(record.kid)
    return TrustedKeys(registry, names, node_identity, frozenset(node_kids))
