"""The loaded sharing policy as frozen, typed values.

:func:`exchange.policy.load.load_policies` builds a :class:`PolicySet` from the files in
``policies/``; the engine (:mod:`exchange.policy.engine`) only reads it. Nothing here does
I/O, and every value is immutable, so one :class:`PolicySet` can be shared by all threads
and swapped atomically when policies are reloaded.

The policy digest
-----------------
:attr:`PolicySet.digest` names the exact set of policy files in force, for the audit
ledger and for ``explain``. It is computed by :func:`policy_digest` with this scheme
(``cx-policy-digest v1``)::

    digest = "sha256:" + hex(SHA-256(
        b"cx-policy-digest v1\\n"
        || for each file, in ascending order of its relative POSIX path
           compared as UTF-8 bytes:
               u64be(len(path_utf8)) || path_utf8 || u64be(len(content)) || content
    ))

where ``path_utf8`` is the file's path relative to the policy directory with ``/``
separators (``agreements/uz-pk-jwg-2026.yaml``), ``content`` its bytes exactly as read
(no newline or encoding normalisation) and ``u64be`` an unsigned 64-bit big-endian
integer. The files counted are exactly the files the loader reads; anything it ignores
(``*.md`` notes, hidden files) is not part of the digest. An auditor can recompute the
digest offline from a copy of the directory.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeVar

from exchange.model.objects import Tlp

__all__ = [
    "ALL_RECEIVABLE",
    "CUSTOM_CONTENT",
    "DIGEST_DOMAIN",
    "Agreement",
    "AnonymiseProducer",
    "Attribution",
    "CollectionBinding",
    "Community",
    "OrgEntry",
    "OrgKind",
    "PolicySet",
    "Redact",
    "RedactionProfile",
    "Reshare",
    "Transform",
    "frozen_map",
    "policy_digest",
]

DIGEST_DOMAIN = b"cx-policy-digest v1\n"

#: The levels an agreement party may receive unless the agreement says otherwise. RED is
#: never granted by an agreement: it goes only to the recipients named on the object.
ALL_RECEIVABLE: frozenset[Tlp] = frozenset({Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT})

#: FIRST IEP 2.0 ``provider_attribution``.
Attribution = Literal["may", "must", "must-not"]


K = TypeVar("K")
V = TypeVar("V")


def frozen_map(items: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only copy of ``items`` (an empty mapping for None)."""
    return MappingProxyType(dict(items or {}))


def policy_digest(files: Mapping[str, bytes]) -> str:
    """The ``cx-policy-digest v1`` of a set of policy files (see the module docstring).

    Args:
        files: Relative POSIX path -> the file's bytes.

    Returns:
        ``"sha256:"`` followed by 64 lowercase hex digits.
    """
    h = hashlib.sha256(DIGEST_DOMAIN)
    for path in sorted(files, key=lambda p: p.encode("utf-8")):
        name = path.encode("utf-8")
        content = files[path]
        h.update(len(name).to_bytes(8, "big"))
        h.update(name)
        h.update(len(content).to_bytes(8, "big"))
        h.update(content)
    return "sha256:" + h.hexdigest()


class OrgKind(enum.StrEnum):
    """An organisation's place in the community registry (``community.yaml``)."""

    MEMBER = "member"  # a member CERT: receives GREEN, may be a party to agreements
    CONSTITUENT = "constituent"  # a member's client (e.g. its national SOC)
    OPERATOR = "operator"  # runs the node; known, but not a member: CLEAR only


@dataclass(frozen=True, slots=True)
class OrgEntry:
    """One organisation named in ``community.yaml``.

    Attributes:
        name: The organisation's name, as registered in the exchange.
        kind: Member, constituent of a member, or operator.
        identity: Its STIX identity id when the policy pins one; a recipient presenting
            another identity under this name is not recognised (fail closed).
        parent: For a constituent, the member it belongs to.
    """

    name: str
    kind: OrgKind
    identity: str | None = None
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Reshare:
    """Levels that may leave through automated onward channels.

    Attributes:
        misp: Effective TLP levels that may be pushed to a recipient's MISP instance.
        peer_exchanges: Levels that may be exported to peer exchange nodes.
    """

    misp: frozenset[Tlp]
    peer_exchanges: frozenset[Tlp]


@dataclass(frozen=True, slots=True)
class Community:
    """The community: its name, organisations and default re-share rules.

    Attributes:
        name: The community's name (collections bind to it by this name).
        orgs: Every organisation named in ``community.yaml``, by name.
        reshare: Re-share rules for collections bound to the community (not to an
            agreement).
    """

    name: str
    orgs: Mapping[str, OrgEntry]
    reshare: Reshare

    def entry(self, name: str) -> OrgEntry | None:
        """The registry entry of an organisation, or None when it is not named."""
        return self.orgs.get(name)

    @property
    def members(self) -> tuple[str, ...]:
        """Member organisation names, sorted."""
        return tuple(sorted(n for n, e in self.orgs.items() if e.kind is OrgKind.MEMBER))

    def constituents_of(self, member: str) -> tuple[str, ...]:
        """Names of a member's constituents, sorted."""
        return tuple(sorted(
            n for n, e in self.orgs.items()
            if e.kind is OrgKind.CONSTITUENT and e.parent == member
        ))


@dataclass(frozen=True, slots=True)
class Agreement:
    """A sharing agreement between member organisations (``agreements/<id>.yaml``).

    Timestamps are microseconds since the Unix epoch (UTC).

    Attributes:
        id: The agreement id (also the file name's stem).
        title: A human-readable title.
        parties: The member organisations bound by the agreement.
        valid_from: First instant the agreement is in force.
        valid_until: First instant it is no longer in force (exclusive).
        receive: Per party, the TLP levels it may receive from the agreement's
            collections (default :data:`ALL_RECEIVABLE`); its constituents receive at most
            the same, and AMBER only when ``constituents_may_receive_amber``.
        constituents_may_receive_amber: Whether the parties' constituents receive AMBER.
        embargo_until: When set, nothing from the agreement's collections reaches anyone
            but its producer before this instant.
        provider_attribution: IEP 2.0: ``must-not`` makes recipients get a copy without the
            producer (anonymised); ``may`` and ``must`` leave the producer visible.
        reshare: What may go on to MISP instances and peer exchanges.
        party_redaction: Party name -> redaction profile applied to that party's accounts.
        constituent_redaction: Redaction profile applied to the parties' constituents.
        source: The file the agreement came from (relative path).
    """

    id: str
    title: str
    parties: tuple[str, ...]
    valid_from: int
    valid_until: int
    receive: Mapping[str, frozenset[Tlp]]
    constituents_may_receive_amber: bool
    embargo_until: int | None
    provider_attribution: Attribution
    reshare: Reshare
    party_redaction: Mapping[str, str] = field(default_factory=frozen_map)
    constituent_redaction: str | None = None
    source: str = ""

    def in_force(self, now: int) -> bool:
        """Whether ``valid_from <= now < valid_until``."""
        return self.valid_from <= now < self.valid_until

    def embargoed(self, now: int) -> bool:
        """Whether the embargo still holds at ``now``."""
        return self.embargo_until is not None and now < self.embargo_until

    def levels_for(self, party: str) -> frozenset[Tlp]:
        """The levels a party may receive (:data:`ALL_RECEIVABLE` unless restricted)."""
        return self.receive.get(party, ALL_RECEIVABLE)


@dataclass(frozen=True, slots=True)
class RedactionProfile:
    """Fields dropped from, or replaced in, what a recipient gets (``redaction/*.yaml``).

    Attributes:
        name: The profile name (also the file name's stem).
        description: What the profile is for.
        drop: Top-level property names removed.
        replace: Top-level property name -> the fixed value it is replaced with (only
            when the object has the property).
    """

    name: str
    description: str
    drop: tuple[str, ...]
    replace: Mapping[str, str | int | bool] = field(default_factory=frozen_map)


#: The values of a collection binding's ``custom_content``, from most to least permissive.
CUSTOM_CONTENT: Final = ("accept", "no-custom-objects", "predefined-only")


@dataclass(frozen=True, slots=True)
class CollectionBinding:
    """Which rules govern a collection (``collections.yaml``).

    Exactly one of ``agreement`` and ``community`` is set.

    Attributes:
        alias: The collection alias (``jwg``, ``uz``).
        agreement: The agreement whose parties receive AMBER and AMBER+STRICT.
        community: The community, for a collection not bound to an agreement.
        owner: For a community collection, the member that owns it (a national
            collection): AMBER reaches the owner and, when allowed, its constituents;
            AMBER+STRICT the owner only. Without an owner, AMBER and AMBER+STRICT
            reach nobody but the producer.
        constituents_may_receive_amber: For a community collection with an owner, whether
            the owner's constituents receive AMBER.
        require_signatures: Whether objects must carry a valid cx-sig signature to be
            accepted (enforced at ingest, not by the engine).
        custom_content: Which STIX 2.1 section 11 custom content the collection takes
            (enforced at ingest): one of :data:`CUSTOM_CONTENT` -- ``accept`` (the
            default) takes custom properties and custom object types; ``no-custom-objects``
            refuses objects of types STIX 2.1 does not define (legacy ``x-`` types and
            extension-defined ``new-sdo``/``new-sro``/``new-sco`` types);
            ``predefined-only`` also refuses properties STIX 2.1 does not define for the
            type (legacy custom properties, toplevel-property-extension properties and
            custom properties inside predefined SCO extensions). Property-extensions
            (``extensions`` keyed by an extension-definition id, the exchange's signature
            among them) are always accepted.
    """

    alias: str
    agreement: str | None = None
    community: str | None = None
    owner: str | None = None
    constituents_may_receive_amber: bool = True
    require_signatures: bool = True
    custom_content: str = "accept"


@dataclass(frozen=True, slots=True)
class Redact:
    """Transform: serve a derived copy with a redaction profile applied."""

    profile: str

    def __str__(self) -> str:
        return f"redact({self.profile})"


@dataclass(frozen=True, slots=True)
class AnonymiseProducer:
    """Transform: serve a derived copy that does not name the producer."""

    def __str__(self) -> str:
        return "anonymise_producer"


Transform = Redact | AnonymiseProducer


@dataclass(frozen=True, slots=True)
class PolicySet:
    """All policy files in force, validated and cross-checked.

    Attributes:
        community: The community registry.
        agreements: Agreement id -> agreement.
        redaction_profiles: Profile name -> profile.
        markings: Extra marking-definition ids the policy names -> the TLP level they
            stand for, or None for ``ignore`` (e.g. PAP, IEP or statement markings).
        collections: Collection alias -> binding.
        files: The relative paths of the files in force, sorted.
        digest: ``sha256:<hex>`` over those files (:func:`policy_digest`).
    """

    community: Community
    agreements: Mapping[str, Agreement]
    redaction_profiles: Mapping[str, RedactionProfile]
    markings: Mapping[str, Tlp | None]
    collections: Mapping[str, CollectionBinding]
    files: tuple[str, ...]
    digest: str
