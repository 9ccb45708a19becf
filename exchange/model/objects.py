"""Pure domain types for STIX objects and the principals that handle them.

Nothing here does I/O. A :class:`StixObject` is only ever built by
:func:`exchange.model.stix.validate_object`, so holding one means the object passed the
strict ingest profile; its :attr:`StixObject.canonical` bytes (RFC 8785) are what the
exchange stores and serves unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NewType

StixId = NewType("StixId", str)
OrgId = NewType("OrgId", str)
AccountId = NewType("AccountId", str)
CollectionId = NewType("CollectionId", str)


class Role(enum.StrEnum):
    """What an account may do. Roles are fixed; what they reach is set per collection."""

    PUBLISHER = "publisher"
    CONSUMER = "consumer"
    AUDITOR = "auditor"
    ADMIN = "admin"
    #: A peer exchange node: reads on channel ``peer`` for the organisation it serves
    #: (its account's), never writes, never receives back what that organisation
    #: contributed (issue 20).
    PEER = "peer"


class Tlp(enum.StrEnum):
    """TLP 2.0 levels, from least to most restrictive (FIRST TLP 2.0)."""

    CLEAR = "clear"
    GREEN = "green"
    AMBER = "amber"
    AMBER_STRICT = "amber+strict"
    RED = "red"

    @property
    def rank(self) -> int:
        """0 for CLEAR up to 4 for RED."""
        return _TLP_ORDER.index(self)


_TLP_ORDER = (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED)


@dataclass(frozen=True, slots=True)
class StixObject:
    """One validated STIX 2.1 object version.

    Attributes:
        id: The STIX id (``type--uuid``).
        type: The STIX type.
        spec_version: Always ``"2.1"`` for objects the exchange accepts.
        created: The ``created`` timestamp as sent, or None (SCOs).
        modified: The ``modified`` timestamp as sent, or None.
        created_by_ref: The producer identity, or None.
        marking_refs: ``object_marking_refs`` as sent.
        revoked: The ``revoked`` flag.
        tlp: The TLP level the object's own markings carry, or None when unmarked.
        canonical: RFC 8785 canonical JSON bytes of the whole object.
        data: The parsed object (treat as read-only).
        plain: ``canonical`` is certain to parse back, under the strict JSON profile,
            as ``data`` itself (:func:`exchange.model.jcs.dumps_plain`); false says
            nothing either way.
    """

    id: StixId
    type: str
    spec_version: str
    created: str | None
    modified: str | None
    created_by_ref: str | None
    marking_refs: tuple[str, ...]
    revoked: bool
    tlp: Tlp | None
    canonical: bytes
    data: Mapping[str, Any]
    plain: bool = False

    @property
    def version(self) -> str:
        """The TAXII version key: ``modified``, else ``created``, else empty.

        TAXII 2.1 section 3.4.1: objects without ``modified`` use ``created``; objects
        with neither (some SCOs) are versioned by the time the server added them, which
        the storage layer fills in.
        """
        return self.modified or self.created or ""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: one account of one organisation."""

    account_id: AccountId
    account_name: str
    org_id: OrgId
    org_name: str
    identity_id: StixId
    role: Role
    parent_org_id: OrgId | None = None  # set when the organisation is a constituent

    def __repr__(self) -> str:
        return f"Principal({self.account_name!r} of {self.org_name!r}, {self.role.value})"
