"""Pure sharing decisions: who receives which object, by which rule, with which changes.

Two views of the same policy, kept in agreement by a Hypothesis property test
(``tests/unit/policy/test_properties.py``):

* :func:`decide` judges one object for one recipient, as a readable chain of rules, and
  returns a :class:`Decision` naming the rule, the reason and the policy digest; this is
  what ``explain``, ``dry-run`` and the audit ledger use.
* :func:`visible_levels` describes, for one recipient and one collection, which rows are
  visible at all as a :class:`VisibilityRule` the storage layer turns into a WHERE clause,
  so pages stay full and ``next`` never leaks a hidden object.

The meanings (FIRST TLP 2.0, DESIGN.md decision 4), for a collection bound in
``collections.yaml``:

* the producer organisation always sees its own objects, on every channel;
* CLEAR: any reader of the collection (the caller has already checked the grant);
* GREEN: members of the community and their constituents;
* AMBER: the parties to the collection's agreement while it is in force (or, for a
  national collection, its owner), and their constituents where the agreement allows;
* AMBER+STRICT: the parties' (owner's) own organisations only: never constituents, never
  flat feeds; MISP only as the party's own instance; a peer exchange node only when the
  organisation it serves is a party and the re-share rules list ``amber+strict``;
* RED: only the organisations whose identity the object names
  (:data:`~exchange.policy.tlp.RED_RECIPIENTS_EXTENSION_ID`); never flat feeds; MISP only
  as the named recipient's own instance; a peer exchange node only when the organisation
  it serves is named and the re-share rules list ``red``.

A peer exchange node is a recipient like any other (issue 20): ``org_name`` is the
organisation the peer node serves (its account's organisation on this node), decided on
channel ``peer``. That the peer never receives back what came from it (no loop-back) is
the node's read filter, not a policy rule (:meth:`exchange.node.base.NodeBase.visibility`).

On top: an embargo withholds everything of an agreement's collections until its time; an
agreement's ``receive`` caps what each party (and its constituents) gets; re-share rules
cap what goes to MISP (``misp``) and peer exchanges (``peer``); a revoked object reaches
only those who received an earlier version (and still only what the rules above allow).
Roles do not widen access: an admin or auditor account sees what its organisation may.
Collections not bound by the policy are closed to all but the producer (fail closed),
as are organisations whose place in ``community.yaml`` disagrees with the exchange's
records (their standing counts as unknown: CLEAR only).

Pure code: time is passed in (``now``, microseconds since the epoch), nothing is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, get_args

from exchange.errors import InvalidInput
from exchange.model.objects import Tlp
from exchange.policy.model import (
    Agreement,
    AnonymiseProducer,
    CollectionBinding,
    OrgKind,
    PolicySet,
    Redact,
    Reshare,
    Transform,
)

__all__ = [
    "CHANNELS",
    "Channel",
    "Decision",
    "ObjectMeta",
    "Recipient",
    "VisibilityRule",
    "decide",
    "explain",
    "visible_levels",
]

#: How an object leaves the exchange: a TAXII read, ``exchange pull``, a push to a MISP
#: instance, an export to a peer exchange node, or a flat feed.
Channel = Literal["taxii", "pull", "misp", "peer", "feed"]
CHANNELS: Final[tuple[Channel, ...]] = get_args(Channel)
#: Channels that carry nothing above AMBER: flat feeds lose markings. A peer exchange
#: carries AMBER+STRICT and RED only to the party / named recipient it serves, and only
#: where the re-share rules list the level (it passes data on).
_NO_STRICT_CHANNELS: Final = frozenset({"feed"})
_STRICT_LEVELS: Final = frozenset({Tlp.AMBER_STRICT, Tlp.RED})


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who would receive an object, and through which channel.

    Attributes:
        org_name: The receiving organisation (for ``misp``/``peer``/``feed``: the owner
            of the MISP instance, peer node or feed consumer).
        org_identity: Its STIX identity id, as the exchange registered it.
        parent_org_name: The member it is a constituent of, as the exchange registered
            it; must agree with ``community.yaml``.
        account_name: The account, when a person or tool reads (for explanations only).
        role: The account's role (for explanations; roles do not widen access).
        channel: One of :data:`CHANNELS`.

    Raises:
        InvalidInput: ``channel`` is not one of :data:`CHANNELS`.
    """

    org_name: str
    org_identity: str | None
    parent_org_name: str | None
    account_name: str | None
    role: str
    channel: Channel

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise InvalidInput(f"unknown channel {self.channel!r}; use one of "
                               f"{', '.join(CHANNELS)}")

    def describe(self) -> str:
        """``UZ-SOC (account uz-soc, consumer) via taxii``."""
        who = f"account {self.account_name}, " if self.account_name else ""
        return f"{self.org_name} ({who}{self.role}) via {self.channel}"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What the engine needs to know about one stored (or proposed) object version.

    Attributes:
        id: The STIX id.
        type: The STIX type.
        producer_org_name: The organisation that published it (None if unknown).
        tlp: The effective level: its own TLP marking, or the collection's default.
        tlp_explicit: Whether ``tlp`` comes from the object's own markings.
        red_recipients: Identity ids the object names as TLP:RED recipients.
        revoked: The STIX ``revoked`` flag.
        date_added: When the exchange stored it (microseconds; 0 if not yet stored).
        collection_alias: The alias of the collection it is in (or would go to).
    """

    id: str
    type: str
    producer_org_name: str | None
    tlp: Tlp
    tlp_explicit: bool
    red_recipients: tuple[str, ...]
    revoked: bool
    date_added: int
    collection_alias: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer for one recipient and one object.

    Attributes:
        allowed: Whether the object may be disclosed.
        rule: A stable rule id (``tlp-amber-party:uz-pk-jwg-2026``, ``deny-embargo:...``).
        reason: One sentence for people.
        transforms: What to apply before disclosure (a derived copy, never the original).
        policy_digest: The digest of the policy files that decided.
    """

    allowed: bool
    rule: str
    reason: str
    transforms: tuple[Transform, ...]
    policy_digest: str


@dataclass(frozen=True, slots=True)
class VisibilityRule:
    """Which rows of one collection one recipient may receive, for the SQL layer.

    The predicate, for a stored row, is::

        (own_rows_visible AND row.producer_org = own_org_name)
        OR (   (NOT row.revoked OR <own_org_name received an earlier version of row.id>)
           AND (   row.effective_tlp IN levels
                OR (    red_recipient_identity IS NOT NULL
                    AND row.effective_tlp = 'red'
                    AND red_recipient_identity IN row.red_recipient_identity)))

    Columns: ``producer_org``, ``effective_tlp``, ``revoked``, and
    ``red_recipient_identity`` (the set of identity ids the row names, e.g. a side table
    ``(object row, identity)``); "received earlier" is a lookup in the disclosure ledger
    by recipient organisation and object id. ``levels`` never holds RED.
    :meth:`admits` evaluates the same predicate in Python.

    Attributes:
        collection_alias: The collection the rule is for.
        own_org_name: The recipient organisation (rows it produced are always visible).
        own_rows_visible: Always True: a producer sees its own objects.
        levels: Effective TLP levels visible for other producers' rows.
        red_recipient_identity: The identity that must be named for a RED row, or None
            when no RED row of another producer is visible.
        revoked_needs_prior_receipt: Always True: a revoked row of another producer also
            needs an earlier disclosure of that object to the recipient organisation.
        transforms: Transforms for other producers' rows (own rows: none).
        policy_digest: The digest of the policy files in force.
    """

    collection_alias: str
    own_org_name: str
    levels: frozenset[Tlp]
    red_recipient_identity: str | None
    transforms: tuple[Transform, ...]
    policy_digest: str
    own_rows_visible: bool = True
    revoked_needs_prior_receipt: bool = True

    def admits(self, obj: ObjectMeta, *, received_earlier: bool = False) -> bool:
        """The predicate above, for one object (must equal ``decide(...).allowed``)."""
        if self.own_rows_visible and obj.producer_org_name == self.own_org_name:
            return True
        if obj.revoked and self.revoked_needs_prior_receipt and not received_earlier:
            return False
        if obj.tlp in self.levels:
            return True
        return (self.red_recipient_identity is not None and obj.tlp is Tlp.RED
                and self.red_recipient_identity in obj.red_recipients)


# -- what the policy says about a collection and a recipient -----------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """The audience rules of one bound collection."""

    binding: CollectionBinding
    agreement: Agreement | None
    parties: tuple[str, ...]  # agreement parties, or the owner of a national collection
    kind: str  # "party" (agreement) or "owner" (national collection)
    ref: str  # agreement id, or the collection alias
    constituents_amber: bool
    reshare: Reshare

    @property
    def constituent_rule(self) -> str:
        return "constituent" if self.kind == "party" else "owner-constituent"

    def in_force(self, now: int) -> bool:
        return self.agreement is None or self.agreement.in_force(now)


def _scope(policy: PolicySet, alias: str) -> _Scope | None:
    binding = policy.collections.get(alias)
    if binding is None:
        return None
    if binding.agreement is not None:
        agreement = policy.agreements[binding.agreement]
        return _Scope(binding, agreement, agreement.parties, "party", agreement.id,
                      agreement.constituents_may_receive_amber, agreement.reshare)
    owners = (binding.owner,) if binding.owner is not None else ()
    return _Scope(binding, None, owners, "owner", alias,
                  binding.constituents_may_receive_amber, policy.community.reshare)


@dataclass(frozen=True, slots=True)
class _Standing:
    """The recipient's place in the community, as both the policy and the caller agree."""

    kind: OrgKind | None  # None: not recognised (unknown, or records disagree)
    parent: str | None
    note: str  # how to describe it in a reason

    @property
    def in_community(self) -> bool:
        return self.kind in (OrgKind.MEMBER, OrgKind.CONSTITUENT)


def _standing(policy: PolicySet, r: Recipient) -> _Standing:
    entry = policy.community.entry(r.org_name)
    community = policy.community.name
    if entry is None:
        return _Standing(None, None, f"{r.org_name} is not named in community {community!r}")
    if entry.identity is not None and r.org_identity not in (None, entry.identity):
        return _Standing(None, None, f"{r.org_name} presents identity {r.org_identity}, but"
                         f" community.yaml pins {entry.identity}; treated as unrecognised")
    if entry.parent != r.parent_org_name:
        policy_place = (f"a constituent of {entry.parent}" if entry.parent
                        else f"a {entry.kind.value}")
        records = (f"a constituent of {r.parent_org_name}" if r.parent_org_name
                   else "not a constituent")
        return _Standing(None, None, f"community.yaml lists {r.org_name} as {policy_place}"
                         f" but the exchange records it as {records}; treated as unrecognised")
    if entry.kind is OrgKind.CONSTITUENT:
        return _Standing(entry.kind, entry.parent,
                         f"{r.org_name} is a constituent of {entry.parent}")
    if entry.kind is OrgKind.OPERATOR:
        return _Standing(entry.kind, None, f"{r.org_name} operates the node but is not a"
                         f" member of community {community!r}")
    return _Standing(entry.kind, None, f"{r.org_name} is a member of community {community!r}")


def _transforms(scope: _Scope, standing: _Standing, org: str) -> tuple[Transform, ...]:
    agreement = scope.agreement
    if agreement is None:
        return ()
    out: list[Transform] = []
    profile = None
    if standing.kind is OrgKind.MEMBER and org in agreement.parties:
        profile = agreement.party_redaction.get(org)
    elif standing.kind is OrgKind.CONSTITUENT and standing.parent in agreement.parties:
        profile = agreement.constituent_redaction
    if profile is not None:
        out.append(Redact(profile))
    if agreement.provider_attribution == "must-not":
        out.append(AnonymiseProducer())
    return tuple(out)


def _cap_holder(scope: _Scope, standing: _Standing, org: str) -> str | None:
    """The party whose ``receive`` levels bound this recipient, if any."""
    if scope.agreement is None:
        return None
    if standing.kind is OrgKind.MEMBER and org in scope.parties:
        return org
    if standing.kind is OrgKind.CONSTITUENT and standing.parent in scope.parties:
        return standing.parent
    return None


# -- decide ------------------------------------------------------------------------------


def decide(policy: PolicySet, recipient: Recipient, obj: ObjectMeta, *, now: int,
           received_earlier: bool = False) -> Decision:
    """Decide whether ``recipient`` may receive ``obj`` at ``now``.

    Args:
        policy: The policy in force.
        recipient: Who would receive it, and through which channel.
        obj: The object version.
        now: The current time, microseconds since the epoch.
        received_earlier: Whether the recipient organisation received an earlier version
            of this object (the caller looks it up in the disclosure ledger); only
            matters for revoked objects.

    Returns:
        The decision, with its rule id, reason, transforms and the policy digest.
    """
    digest = policy.digest
    org = recipient.org_name
    level = obj.tlp
    label = f"TLP:{level.value.upper()}"
    via = f"via {recipient.channel}"

    def allow(rule: str, reason: str, transforms: tuple[Transform, ...] = ()) -> Decision:
        return Decision(True, rule, reason, transforms, digest)

    def deny(rule: str, reason: str) -> Decision:
        return Decision(False, rule, reason, (), digest)

    if obj.producer_org_name is not None and org == obj.producer_org_name:
        return allow("producer", f"{org} produced {obj.id}; a producer always receives its"
                                 " own objects")
    scope = _scope(policy, obj.collection_alias)
    if scope is None:
        return deny("deny-unbound-collection",
                    f"collection {obj.collection_alias!r} is not bound in collections.yaml;"
                    " only the producer may receive its objects (fail closed)")
    if obj.revoked and not received_earlier:
        return deny("deny-revoked-not-received",
                    f"{obj.id} is revoked and {org} never received an earlier version")
    agreement = scope.agreement
    if agreement is not None and agreement.embargoed(now):
        return deny(f"deny-embargo:{agreement.id}",
                    f"agreement {agreement.id} embargoes its collections until "
                    f"{_when(agreement.embargo_until)}; only the producer receives before")

    standing = _standing(policy, recipient)
    denial = _level_denial(policy, scope, standing, recipient, obj, now)
    if denial is not None:
        return deny(*denial)
    rule, reason = _level_grant(policy, scope, standing, recipient, obj)

    holder = _cap_holder(scope, standing, org)
    if agreement is not None and holder is not None and level is not Tlp.RED \
            and level not in agreement.levels_for(holder):
        return deny(f"deny-party-levels:{agreement.id}",
                    f"agreement {agreement.id} lets {holder} (and its constituents) receive "
                    f"only {_names(agreement.levels_for(holder))}; {obj.id} is {label}")
    if level in _STRICT_LEVELS and recipient.channel in _NO_STRICT_CHANNELS:
        return deny(f"deny-onward-channel:{recipient.channel}",
                    f"{label} never leaves {via}: flat feeds lose markings")
    if level in _STRICT_LEVELS and recipient.channel == "peer" \
            and level not in scope.reshare.peer_exchanges:
        return deny("deny-onward-channel:peer",
                    f"{label} federates only to a peer node serving the party or named"
                    f" recipient ({org}), and only where the re-share rules list it;"
                    f" {_scope_name(scope)} allows peer exports of"
                    f" {_names(scope.reshare.peer_exchanges)} only")
    if recipient.channel == "misp" and level not in scope.reshare.misp:
        return deny(f"deny-reshare-misp:{scope.ref}",
                    f"re-share rules of {_scope_name(scope)} allow MISP pushes of "
                    f"{_names(scope.reshare.misp)} only; {obj.id} is {label}")
    if recipient.channel == "peer" and level not in scope.reshare.peer_exchanges:
        return deny(f"deny-reshare-peer:{scope.ref}",
                    f"re-share rules of {_scope_name(scope)} allow peer exports of "
                    f"{_names(scope.reshare.peer_exchanges)} only; {obj.id} is {label}")
    return allow(rule, f"{reason} ({via})", _transforms(scope, standing, org))


def _level_denial(policy: PolicySet, scope: _Scope, standing: _Standing, r: Recipient,
                  obj: ObjectMeta, now: int) -> tuple[str, str] | None:
    """Why the object's TLP level keeps it from the recipient, or None."""
    level = obj.tlp
    label = f"TLP:{level.value.upper()}"
    org = r.org_name
    community = policy.community.name
    if level is Tlp.CLEAR:
        return None
    if level is Tlp.GREEN:
        if standing.in_community:
            return None
        return ("deny-tlp-green-not-community",
                f"{label} goes to the members of community {community!r} and their "
                f"constituents; {standing.note}")
    if level is Tlp.RED:
        if standing.kind is None and policy.community.entry(org) is not None:
            return ("deny-tlp-red-not-named", f"{label}: {standing.note}")
        if r.org_identity is not None and r.org_identity in obj.red_recipients:
            return None
        named = ", ".join(obj.red_recipients) or "nobody"
        return ("deny-tlp-red-not-named",
                f"{label} goes only to the recipients named on {obj.id} ({named}); "
                f"{org} ({r.org_identity or 'no identity'}) is not named")
    strict = "-strict" if level is Tlp.AMBER_STRICT else ""
    if not scope.parties:
        return (f"deny-tlp-amber{strict}-no-agreement",
                f"{label} needs an agreement (or an owner) for collection "
                f"{scope.binding.alias!r}; only the producer receives it")
    if not scope.in_force(now) and scope.agreement is not None:
        a = scope.agreement
        return (f"deny-agreement-not-in-force:{a.id}",
                f"{label} goes to the parties of agreement {a.id}, which is in force from "
                f"{_when(a.valid_from)} until {_when(a.valid_until)}; not at {_when(now)}")
    party = standing.kind is OrgKind.MEMBER and org in scope.parties
    constituent = standing.kind is OrgKind.CONSTITUENT and standing.parent in scope.parties
    if party:
        return None
    who = _scope_name(scope)
    if constituent and level is Tlp.AMBER_STRICT:
        return (f"deny-tlp-amber-strict-constituent:{scope.ref}",
                f"{label} stays within the {scope.kind} organisations of {who}, never "
                f"their constituents; {standing.note}")
    if constituent:
        if scope.constituents_amber:
            return None
        return (f"deny-tlp-amber-constituents-excluded:{scope.ref}",
                f"{who} does not let constituents receive {label}; {standing.note}")
    return (f"deny-tlp-amber{strict}-not-{scope.kind}:{scope.ref}",
            f"{label} goes to the {scope.kind} organisations of {who} "
            f"({', '.join(scope.parties)}) only; {standing.note}")


def _level_grant(policy: PolicySet, scope: _Scope, standing: _Standing, r: Recipient,
                 obj: ObjectMeta) -> tuple[str, str]:
    """The rule and reason that grant the object's level (after _level_denial passed)."""
    level = obj.tlp
    label = f"TLP:{level.value.upper()}"
    if level is Tlp.CLEAR:
        return ("tlp-clear", f"{label}: any reader of collection {obj.collection_alias!r}"
                             " may receive it")
    if level is Tlp.GREEN:
        return ("tlp-green-community", f"{label} goes to community "
                                       f"{policy.community.name!r}; {standing.note}")
    if level is Tlp.RED:
        return ("tlp-red-named", f"{label}: {r.org_name} is named as a recipient on {obj.id}")
    who = _scope_name(scope)
    if standing.kind is OrgKind.CONSTITUENT:
        return (f"tlp-amber-{scope.constituent_rule}:{scope.ref}",
                f"{label}: {standing.note}, a {scope.kind} of {who}, whose constituents may"
                " receive AMBER")
    strict = "-strict" if level is Tlp.AMBER_STRICT else ""
    return (f"tlp-amber{strict}-{scope.kind}:{scope.ref}",
            f"{label}: {r.org_name} is a {scope.kind} of {who}")


# -- visible_levels -----------------------------------------------------------------------


def visible_levels(policy: PolicySet, recipient: Recipient, collection_alias: str, *,
                   now: int) -> VisibilityRule:
    """The rows of a collection the recipient may receive at ``now``, for a SQL filter.

    Computed by set algebra, independently of :func:`decide`; the property test checks
    that ``visible_levels(...).admits(obj)`` equals ``decide(...).allowed``.

    Args:
        policy: The policy in force.
        recipient: The reader (its channel matters).
        collection_alias: The collection read.
        now: The current time, microseconds since the epoch.

    Returns:
        The visibility rule (see :class:`VisibilityRule` for the SQL predicate).
    """
    org = recipient.org_name

    def rule(levels: frozenset[Tlp], red: str | None,
             transforms: tuple[Transform, ...] = ()) -> VisibilityRule:
        return VisibilityRule(collection_alias, org, levels, red, transforms, policy.digest)

    scope = _scope(policy, collection_alias)
    if scope is None or (scope.agreement is not None and scope.agreement.embargoed(now)):
        return rule(frozenset(), None)
    standing = _standing(policy, recipient)
    levels = {Tlp.CLEAR}
    if standing.in_community:
        levels.add(Tlp.GREEN)
    if scope.parties and scope.in_force(now):
        if standing.kind is OrgKind.MEMBER and org in scope.parties:
            levels |= {Tlp.AMBER, Tlp.AMBER_STRICT}
        elif (standing.kind is OrgKind.CONSTITUENT and standing.parent in scope.parties
              and scope.constituents_amber):
            levels.add(Tlp.AMBER)
    holder = _cap_holder(scope, standing, org)
    if scope.agreement is not None and holder is not None:
        levels &= scope.agreement.levels_for(holder)
    red_ok = standing.kind is not None or policy.community.entry(org) is None
    if recipient.channel in _NO_STRICT_CHANNELS:
        levels.discard(Tlp.AMBER_STRICT)
        red_ok = False
    if recipient.channel == "misp":
        levels &= scope.reshare.misp
        red_ok = red_ok and Tlp.RED in scope.reshare.misp
    if recipient.channel == "peer":
        levels &= scope.reshare.peer_exchanges
        red_ok = red_ok and Tlp.RED in scope.reshare.peer_exchanges
    red = recipient.org_identity if red_ok else None
    return rule(frozenset(levels), red, _transforms(scope, standing, org))


# -- explain -------------------------------------------------------------------------------


def explain(decision: Decision, *, recipient: Recipient | None = None,
            obj: ObjectMeta | None = None) -> str:
    """A readable, multi-line explanation of a decision.

    Args:
        decision: What :func:`decide` returned.
        recipient: The recipient, to name it in the header (optional).
        obj: The object, to name it in the header (optional).

    Returns:
        Lines: the verdict and rule, then object, recipient, reason, transforms, policy.
    """
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    lines = [f"{verdict} by rule {decision.rule}"]
    if obj is not None:
        origin = "marked" if obj.tlp_explicit else "collection default"
        state = ", revoked" if obj.revoked else ""
        lines.append(f"  object:     {obj.id} (TLP:{obj.tlp.value.upper()}, {origin}{state};"
                     f" collection {obj.collection_alias}; producer "
                     f"{obj.producer_org_name or 'unknown'})")
    if recipient is not None:
        lines.append(f"  recipient:  {recipient.describe()}")
    lines.append(f"  reason:     {decision.reason}")
    transforms = ", ".join(str(t) for t in decision.transforms) or "none"
    lines.append(f"  transforms: {transforms}")
    lines.append(f"  policy:     {decision.policy_digest}")
    return "\n".join(lines)


# -- helpers -----------------------------------------------------------------------------


def _names(levels: frozenset[Tlp]) -> str:
    if not levels:
        return "nothing"
    return ", ".join(f"TLP:{lv.value.upper()}" for lv in sorted(levels, key=lambda x: x.rank))


def _scope_name(scope: _Scope) -> str:
    if scope.agreement is not None:
        return f"agreement {scope.agreement.id}"
    return f"national collection {scope.binding.alias!r} (owner {', '.join(scope.parties)})"


def _when(micros: int | None) -> str:
    if micros is None:
        return "-"
    seconds, fraction = divmod(micros, 1_000_000)
    try:
        stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{micros} microseconds after the epoch"
    return f"{stamp}.{fraction:06d}Z" if fraction else f"{stamp}Z"

