"""The STIX identities the node gives organisations, and its own.

An organisation registered without an identity of its own gets a deterministic
``identity--<uuid5>`` derived from its name under :data:`IDENTITY_NAMESPACE`; the node's
own identity (producer of derived copies, owner of the node key) is derived from its
title the same way. Pure code: no store, no I/O.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from exchange.errors import InvalidInput

log = logging.getLogger(__name__)

#: Namespace for the deterministic identity ids the exchange gives organisations.
IDENTITY_NAMESPACE = uuid.UUID("6f2a4f0e-3c4b-5d8e-9a71-0c3e8b5d2f10")


def stix_now() -> str:
    """The current time as a STIX timestamp with millisecond precision."""
    t = time.gmtime()
    ms = (time.time_ns() // 1_000_000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z"


def make_identity(name: str, *, identity_id: str | None = None, sector: str | None = None
                  ) -> dict[str, Any]:
    """The STIX 2.1 identity object the exchange records for an organisation.

    Args:
        name: The organisation's name.
        identity_id: An existing identity id to reuse (e.g. the one the member already
            signs with); by default a deterministic id derived from the name.
        sector: An optional STIX industry-sector-ov value.

    Raises:
        InvalidInput: ``identity_id`` is not an ``identity--<uuid>``.
    """
    if identity_id is None:
        identity_id = f"identity--{uuid.uuid5(IDENTITY_NAMESPACE, name)}"
    elif not re.fullmatch(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                          r"[0-9a-f]{12}", identity_id):
        raise InvalidInput(f"{identity_id!r} is not a STIX identity id (identity--<uuid>)")
    ts = stix_now()
    identity: dict[str, Any] = {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": ts,
        "modified": ts,
        "name": name,
        "identity_class": "organization",
    }
    if sector:
        identity["sectors"] = [sector]
    return identity


def node_identity_id(title: str) -> str:
    """The node's own STIX identity id, derived from its title (``settings.title``): the
    owner of its keys and the producer of the objects it derives."""
    return f"identity--{uuid.uuid5(IDENTITY_NAMESPACE, title)}"
