"""Small builders of STIX 2.1 test objects (unique ids, valid unless told otherwise)."""

from __future__ import annotations

import json
import uuid
from typing import Any

TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


def indicator(identity: str, *, tlp: str | None = "green", modified: str | None = None,
              value: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid STIX 2.1 domain indicator created by ``identity``."""
    created = "2026-11-01T10:00:00.000Z"
    domain = value or f"{uuid.uuid4().hex[:12]}.example.net"
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": created,
        "modified": modified or created,
        "name": f"C2 domain {domain}",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[domain-name:value = '{domain}']",
        "pattern_type": "stix",
        "valid_from": created,
        "created_by_ref": identity,
    }
    if tlp:
        obj["object_marking_refs"] = [TLP2[tlp]]
    obj.update(extra)
    return obj


def envelope(*objects: dict[str, Any]) -> bytes:
    """A TAXII envelope as bytes."""
    return json.dumps({"objects": list(objects)}).encode()
