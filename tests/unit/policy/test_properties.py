"""Hypothesis properties of the engine over random policies, recipients and objects.

1. The SQL-side description agrees with the engine: for every recipient, object and
   time, ``visible_levels(...).admits(obj)`` equals ``decide(...).allowed`` (and the
   transforms match), so a WHERE clause built from a VisibilityRule filters exactly what
   the engine would decide object by object.
2. Nobody receives more than the TLP level allows: an independent, deliberately simple
   ceiling written from FIRST TLP 2.0 / DESIGN.md decision 4 bounds every grant.
"""

from __future__ import annotations

import dataclasses
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.model.objects import Tlp
from exchange.policy.engine import CHANNELS, ObjectMeta, Recipient, decide, visible_levels
from exchange.policy.model import (
    ALL_RECEIVABLE,
    Agreement,
    CollectionBinding,
    Community,
    OrgEntry,
    OrgKind,
    PolicySet,
    Reshare,
    frozen_map,
)

MEMBERS = ["A-CERT", "B-CERT", "C-CERT"]
CONSTITUENTS = {"A-SOC": "A-CERT", "A-BANK": "A-CERT", "B-SOC": "B-CERT"}
OPERATOR = "OPS"
STRANGER = "X-CERT"  # not in the community at all
ORGS = [*MEMBERS, *CONSTITUENTS, OPERATOR, STRANGER]
IDENTITY = {name: f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, name)}" for name in ORGS}
ROGUE = f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'rogue')}"
ALIASES = ["agr", "own", "com", "unbound"]
PROFILES = ["p1", "p2"]

levels_subsets = st.frozensets(st.sampled_from(list(Tlp)))
times = st.integers(min_value=0, max_value=100)


@st.composite
def policies(draw: st.DrawFn) -> PolicySet:
    pinned = draw(st.frozensets(st.sampled_from([*MEMBERS, *CONSTITUENTS, OPERATOR])))
    orgs: dict[str, OrgEntry] = {}
    for name in MEMBERS:
        orgs[name] = OrgEntry(name, OrgKind.MEMBER, IDENTITY[name] if name in pinned else None)
    for name, parent in CONSTITUENTS.items():
        orgs[name] = OrgEntry(name, OrgKind.CONSTITUENT,
                              IDENTITY[name] if name in pinned else None, parent)
    orgs[OPERATOR] = OrgEntry(OPERATOR, OrgKind.OPERATOR,
                              IDENTITY[OPERATOR] if OPERATOR in pinned else None)
    community = Community("c", frozen_map(orgs), Reshare(draw(levels_subsets),
                                                         draw(levels_subsets)))
    parties = tuple(draw(st.lists(st.sampled_from(MEMBERS), min_size=2, max_size=3,
                                  unique=True)))
    start = draw(times)
    receive = {p: draw(st.frozensets(st.sampled_from(sorted(ALL_RECEIVABLE))))
               for p in draw(st.frozensets(st.sampled_from(parties)))}
    agreement = Agreement(
        id="agr-1", title="t", parties=parties, valid_from=start,
        valid_until=start + draw(st.integers(min_value=1, max_value=60)),
        receive=frozen_map(receive),
        constituents_may_receive_amber=draw(st.booleans()),
        embargo_until=draw(st.none() | times),
        provider_attribution=draw(st.sampled_from(["may", "must", "must-not"])),
        reshare=Reshare(draw(levels_subsets), draw(levels_subsets)),
        party_redaction=frozen_map({p: draw(st.sampled_from(PROFILES))
                                    for p in draw(st.frozensets(st.sampled_from(parties)))}),
        constituent_redaction=draw(st.none() | st.sampled_from(PROFILES)),
    )
    collections = {
        "agr": CollectionBinding("agr", agreement="agr-1"),
        "own": CollectionBinding("own", community="c", owner=draw(st.sampled_from(MEMBERS)),
                                 constituents_may_receive_amber=draw(st.booleans())),
        "com": CollectionBinding("com", community="c"),
    }
    return PolicySet(community=community, agreements=frozen_map({"agr-1": agreement}),
                     redaction_profiles=frozen_map(), markings=frozen_map(),
                     collections=frozen_map(collections), files=(),
                     digest="sha256:" + "ab" * 32)


@st.composite
def recipients(draw: st.DrawFn) -> Recipient:
    org = draw(st.sampled_from(ORGS))
    true_parent = CONSTITUENTS.get(org)
    # Mostly what the exchange would really record; sometimes records that disagree.
    identity = draw(st.sampled_from([IDENTITY[org]] * 3 + [None, ROGUE,
                                                           IDENTITY[draw(st.sampled_from(ORGS))]]))
    parent = draw(st.sampled_from([true_parent] * 3 + [None, draw(st.sampled_from(MEMBERS))]))
    return Recipient(org, identity, parent, draw(st.none() | st.just("acct")),
                     draw(st.sampled_from(["publisher", "consumer", "auditor", "admin"])),
                     draw(st.sampled_from(CHANNELS)))


@st.composite
def objects(draw: st.DrawFn) -> ObjectMeta:
    named = draw(st.lists(st.sampled_from([*IDENTITY.values(), ROGUE]), max_size=3,
                          unique=True))
    return ObjectMeta(
        id="indicator--00000000-0000-4000-8000-000000000001", type="indicator",
        producer_org_name=draw(st.none() | st.sampled_from(ORGS)),
        tlp=draw(st.sampled_from(list(Tlp))), tlp_explicit=draw(st.booleans()),
        red_recipients=tuple(named), revoked=draw(st.booleans()), date_added=0,
        collection_alias=draw(st.sampled_from(ALIASES)),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PolicySet, int]:
    """A policy and a time, the time often on an edge of the agreement's window/embargo."""
    policy = draw(policies())
    agreement = policy.agreements["agr-1"]
    edges = [agreement.valid_from - 1, agreement.valid_from, agreement.valid_until - 1,
             agreement.valid_until]
    if agreement.embargo_until is not None:
        edges += [agreement.embargo_until - 1, agreement.embargo_until]
    return policy, draw(st.sampled_from(edges) | times)


#: Every organisation on every channel, as the exchange would record it.
FAITHFUL = [Recipient(org, IDENTITY[org], CONSTITUENTS.get(org), "acct", "consumer", channel)
            for org in ORGS for channel in CHANNELS]


def every_case(objs: list[ObjectMeta], odd: list[Recipient]
               ) -> list[tuple[Recipient, ObjectMeta]]:
    """Each recipient against each object at every TLP level."""
    variants = [dataclasses.replace(o, tlp=level) for o in objs for level in Tlp]
    return [(r, o) for r in [*FAITHFUL, *odd] for o in variants]


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(), objs=st.lists(objects(), min_size=1, max_size=4),
       odd=st.lists(recipients(), max_size=3), received_earlier=st.booleans())
def test_visibility_rule_agrees_with_decide(scenario: tuple[PolicySet, int],
                                           objs: list[ObjectMeta], odd: list[Recipient],
                                           received_earlier: bool) -> None:
    policy, now = scenario
    for r, obj in every_case(objs, odd):
        decision = decide(policy, r, obj, now=now, received_earlier=received_earlier)
        rule = visible_levels(policy, r, obj.collection_alias, now=now)
        assert rule.admits(obj, received_earlier=received_earlier) == decision.allowed, (
            r, obj, decision)
        assert Tlp.RED not in rule.levels
        assert decision.policy_digest == rule.policy_digest == policy.digest
        if decision.allowed and decision.rule != "producer":
            assert decision.transforms == rule.transforms


def tlp_ceiling(policy: PolicySet, r: Recipient, obj: ObjectMeta, now: int,
                received_earlier: bool) -> bool:
    """Whether FIRST TLP 2.0 could possibly let ``r`` have ``obj`` (an upper bound)."""
    if obj.producer_org_name == r.org_name:
        return True
    binding = policy.collections.get(obj.collection_alias)
    if binding is None or (obj.revoked and not received_earlier):
        return False
    agreement = policy.agreements.get(binding.agreement or "")
    if agreement is not None and agreement.embargo_until is not None \
            and now < agreement.embargo_until:
        return False
    entry = policy.community.entry(r.org_name)
    recognised = (entry is not None and entry.parent == r.parent_org_name
                  and (entry.identity is None or r.org_identity in (None, entry.identity)))
    if agreement is not None:
        parties, in_force = agreement.parties, agreement.valid_from <= now < agreement.valid_until
        constituents_amber = agreement.constituents_may_receive_amber
    else:
        parties = (binding.owner,) if binding.owner else ()
        in_force, constituents_amber = True, binding.constituents_may_receive_amber
    is_member = recognised and entry is not None and entry.kind is OrgKind.MEMBER
    is_constituent = recognised and entry is not None and entry.kind is OrgKind.CONSTITUENT
    reshare = agreement.reshare if agreement is not None else policy.community.reshare
    # A peer node carries AMBER+STRICT and RED only where the re-share rules list them
    # (and then only for the party / named recipient it serves); flat feeds never.
    own_channel = r.channel in ("taxii", "pull", "misp") or (
        r.channel == "peer" and obj.tlp in reshare.peer_exchanges)
    match obj.tlp:
        case Tlp.CLEAR:
            return True
        case Tlp.GREEN:
            return is_member or is_constituent
        case Tlp.AMBER:
            return in_force and (
                (is_member and r.org_name in parties)
                or (is_constituent and constituents_amber and entry is not None
                    and entry.parent in parties))
        case Tlp.AMBER_STRICT:
            return in_force and is_member and r.org_name in parties and own_channel
        case _:
            pass
    # RED
    return r.org_identity is not None and r.org_identity in obj.red_recipients and own_channel


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(), objs=st.lists(objects(), min_size=1, max_size=4),
       odd=st.lists(recipients(), max_size=3), received_earlier=st.booleans())
def test_never_more_than_the_tlp_level_allows(scenario: tuple[PolicySet, int],
                                             objs: list[ObjectMeta], odd: list[Recipient],
                                             received_earlier: bool) -> None:
    policy, now = scenario
    for r, obj in every_case(objs, odd):
        decision = decide(policy, r, obj, now=now, received_earlier=received_earlier)
        if decision.allowed:
            assert tlp_ceiling(policy, r, obj, now, received_earlier), (r, obj, decision)
        if r.org_name == obj.producer_org_name:
            continue
        entry = policy.community.entry(r.org_name)
        constituent = entry is not None and entry.kind is OrgKind.CONSTITUENT
        if constituent and obj.tlp is Tlp.AMBER_STRICT:
            assert not decision.allowed, decision
        if obj.tlp is Tlp.RED and r.org_identity not in obj.red_recipients:
            assert not decision.allowed, decision
        if obj.tlp in (Tlp.AMBER, Tlp.AMBER_STRICT) and entry is None:
            assert not decision.allowed, decision


@settings(max_examples=300, deadline=None)
@given(policy=policies(), r=recipients(), obj=objects(), now=times)
def test_producer_always_receives_its_own(policy: PolicySet, r: Recipient, obj: ObjectMeta,
                                         now: int) -> None:
    own = ObjectMeta(obj.id, obj.type, r.org_name, obj.tlp, obj.tlp_explicit,
                     obj.red_recipients, obj.revoked, obj.date_added, obj.collection_alias)
    decision = decide(policy, r, own, now=now)
    assert (decision.allowed, decision.rule, decision.transforms) == (True, "producer", ())
