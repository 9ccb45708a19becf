"""decide / visible_levels / explain on the shipped UZ-CERT / PK-CERT policy.

The matrix: roles x TLP levels x agreement states (in force, expired, not yet valid,
embargoed) x channels, against expectations written out by hand from DESIGN.md
decision 4 and the shipped policies/ (AMBER to constituents allowed, MISP re-share up to
AMBER, peer exchanges up to GREEN).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exchange.errors import InvalidInput
from exchange.model.objects import Tlp
from exchange.policy.engine import (
    CHANNELS,
    Channel,
    ObjectMeta,
    Recipient,
    decide,
    explain,
    visible_levels,
)
from exchange.policy.load import load_policies
from exchange.policy.model import (
    AnonymiseProducer,
    OrgEntry,
    PolicySet,
    Redact,
    Reshare,
    frozen_map,
)
from exchange.policy.schema import parse_timestamp

POLICY = load_policies(Path(__file__).resolve().parents[3] / "policies")
JWG = "uz-pk-jwg-2026"
IDS = {
    "UZ-CERT": "identity--05f58713-053b-5b2c-b92a-050f448178b8",
    "PK-CERT": "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb",
    "UZ-SOC": "identity--cccd6599-f5aa-5f67-a3d1-712fc4a09685",
    "JWG-Operator": "identity--d32ed0e6-2135-5676-8ef3-80d24eac7946",
    "KZ-CERT": "identity--9e1b7a4c-2f55-4d7e-8a11-3c5d2e6f7a80",
}
PARENTS = {"UZ-SOC": "UZ-CERT"}

IN_FORCE = parse_timestamp("2026-06-01T00:00:00Z")
C, G, A, S, R = Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED
ALL = frozenset(Tlp)


def with_agreement(policy: PolicySet, **changes: object) -> PolicySet:
    agreement = dataclasses.replace(policy.agreements[JWG], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(policy, agreements=frozen_map({JWG: agreement}))


EMBARGOED = with_agreement(POLICY, embargo_until=parse_timestamp("2026-07-01T00:00:00Z"))
STATES: dict[str, tuple[PolicySet, int]] = {
    "in-force": (POLICY, IN_FORCE),
    "expired": (POLICY, parse_timestamp("2028-01-01T00:00:00Z")),
    "not-yet-valid": (POLICY, parse_timestamp("2025-12-31T23:59:59Z")),
    "embargoed": (EMBARGOED, IN_FORCE),
}

#: (account, organisation, role): every role, and a stranger with a read grant.
ACCOUNTS = [
    ("uz-analyst", "UZ-CERT", "publisher"),
    ("uz-admin", "UZ-CERT", "admin"),
    ("uz-soc", "UZ-SOC", "consumer"),
    ("auditor", "JWG-Operator", "auditor"),
    ("admin", "JWG-Operator", "admin"),
    ("kz-reader", "KZ-CERT", "consumer"),
    ("pk-analyst", "PK-CERT", "publisher"),
]

#: What each organisation receives over TAXII from PK-CERT's objects in jwg. The RED
#: object names UZ-CERT only. PK-CERT produced them all.
OVER_TAXII: dict[str, dict[str, frozenset[Tlp]]] = {
    "in-force": {"UZ-CERT": frozenset({C, G, A, S, R}), "UZ-SOC": frozenset({C, G, A}),
                 "JWG-Operator": frozenset({C}), "KZ-CERT": frozenset({C}), "PK-CERT": ALL},
    "expired": {"UZ-CERT": frozenset({C, G, R}), "UZ-SOC": frozenset({C, G}),
                "JWG-Operator": frozenset({C}), "KZ-CERT": frozenset({C}), "PK-CERT": ALL},
    "not-yet-valid": {"UZ-CERT": frozenset({C, G, R}), "UZ-SOC": frozenset({C, G}),
                      "JWG-Operator": frozenset({C}), "KZ-CERT": frozenset({C}),
                      "PK-CERT": ALL},
    "embargoed": {"UZ-CERT": frozenset(), "UZ-SOC": frozenset(), "JWG-Operator": frozenset(),
                  "KZ-CERT": frozenset(), "PK-CERT": ALL},
}
#: What each channel may carry at most (for others than the producer).
CHANNEL_CEILING: dict[str, frozenset[Tlp]] = {
    "taxii": ALL,
    "pull": ALL,
    "feed": frozenset({C, G, A}),  # flat feeds lose markings: nothing above AMBER
    "misp": frozenset({C, G, A}),  # reshare.misp: up to AMBER
    "peer": frozenset({C, G}),  # reshare.peer_exchanges: up to GREEN
}


def recipient(account: str, org: str, role: str, channel: Channel = "taxii",
              identity: str | None = None) -> Recipient:
    return Recipient(org, identity or IDS.get(org), PARENTS.get(org), account, role, channel)


def obj(level: Tlp, *, producer: str | None = "PK-CERT", alias: str = "jwg",
        named: tuple[str, ...] = (IDS["UZ-CERT"],), revoked: bool = False) -> ObjectMeta:
    return ObjectMeta(
        id="indicator--6a0c5b2e-1f7d-4c3b-9e8a-0d2f4b6c8e10", type="indicator",
        producer_org_name=producer, tlp=level, tlp_explicit=True, red_recipients=named,
        revoked=revoked, date_added=IN_FORCE - 1, collection_alias=alias,
    )


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("state", list(STATES))
def test_matrix_roles_levels_agreement_states_channels(state: str, channel: Channel) -> None:
    policy, now = STATES[state]
    wrong = []
    for account, org, role in ACCOUNTS:
        r = recipient(account, org, role, channel)
        expected = OVER_TAXII[state][org]
        if org != "PK-CERT":
            expected = expected & CHANNEL_CEILING[channel]
        rule = visible_levels(policy, r, "jwg", now=now)
        for level in Tlp:
            decision = decide(policy, r, obj(level), now=now)
            assert decision.policy_digest == policy.digest
            if decision.allowed != (level in expected):
                wrong.append(f"{account} {level.value}: {decision.rule}: {decision.reason}")
            assert rule.admits(obj(level)) == decision.allowed
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("state", "account", "org", "channel", "level", "rule"), [
    ("in-force", "pk-analyst", "PK-CERT", "peer", R, "producer"),
    ("in-force", "kz-reader", "KZ-CERT", "taxii", C, "tlp-clear"),
    ("in-force", "uz-soc", "UZ-SOC", "taxii", G, "tlp-green-community"),
    ("in-force", "uz-analyst", "UZ-CERT", "taxii", A, f"tlp-amber-party:{JWG}"),
    ("in-force", "uz-soc", "UZ-SOC", "pull", A, f"tlp-amber-constituent:{JWG}"),
    ("in-force", "uz-analyst", "UZ-CERT", "taxii", S, f"tlp-amber-strict-party:{JWG}"),
    ("in-force", "uz-analyst", "UZ-CERT", "taxii", R, "tlp-red-named"),
    ("in-force", "admin", "JWG-Operator", "taxii", G, "deny-tlp-green-not-community"),
    ("in-force", "kz-reader", "KZ-CERT", "taxii", A, "deny-tlp-amber-not-party:" + JWG),
    ("in-force", "uz-soc", "UZ-SOC", "taxii", S, f"deny-tlp-amber-strict-constituent:{JWG}"),
    ("in-force", "uz-soc", "UZ-SOC", "taxii", R, "deny-tlp-red-not-named"),
    ("in-force", "uz-analyst", "UZ-CERT", "peer", S, "deny-onward-channel:peer"),
    ("in-force", "uz-analyst", "UZ-CERT", "feed", R, "deny-onward-channel:feed"),
    ("in-force", "uz-analyst", "UZ-CERT", "misp", S, f"deny-reshare-misp:{JWG}"),
    ("in-force", "uz-analyst", "UZ-CERT", "peer", A, f"deny-reshare-peer:{JWG}"),
    ("expired", "uz-analyst", "UZ-CERT", "taxii", A, f"deny-agreement-not-in-force:{JWG}"),
    ("not-yet-valid", "uz-soc", "UZ-SOC", "taxii", A, f"deny-agreement-not-in-force:{JWG}"),
    ("embargoed", "uz-analyst", "UZ-CERT", "taxii", C, f"deny-embargo:{JWG}"),
])
def test_rule_ids(state: str, account: str, org: str, channel: Channel, level: Tlp,
                  rule: str) -> None:
    policy, now = STATES[state]
    decision = decide(policy, recipient(account, org, "consumer", channel), obj(level), now=now)
    assert decision.rule == rule, decision.reason


@pytest.mark.parametrize("now", [IN_FORCE, parse_timestamp("2030-01-01T00:00:00Z")])
def test_national_collection_goes_to_its_owner_and_constituents(now: int) -> None:
    expected = {"UZ-CERT": ALL, "UZ-SOC": frozenset({C, G, A}), "PK-CERT": frozenset({C, G}),
                "JWG-Operator": frozenset({C}), "KZ-CERT": frozenset({C})}
    for account, org, role in ACCOUNTS:
        r = recipient(account, org, role)
        got = {lv for lv in Tlp
               if decide(POLICY, r, obj(lv, producer="UZ-CERT", alias="uz", named=()),
                         now=now).allowed}
        assert got == expected[org], account
    soc = decide(POLICY, recipient("uz-soc", "UZ-SOC", "consumer"),
                 obj(A, producer="UZ-CERT", alias="uz"), now=now)
    assert soc.rule == "tlp-amber-owner-constituent:uz"
    assert soc.transforms == ()


def test_unbound_collection_is_closed_to_all_but_the_producer() -> None:
    for account, org, role in ACCOUNTS:
        decision = decide(POLICY, recipient(account, org, role), obj(C, alias="other"),
                          now=IN_FORCE)
        assert decision.allowed == (org == "PK-CERT")
        if org != "PK-CERT":
            assert decision.rule == "deny-unbound-collection"


def test_transforms_redaction_for_constituents_and_anonymisation() -> None:
    soc = recipient("uz-soc", "UZ-SOC", "consumer")
    uz = recipient("uz-analyst", "UZ-CERT", "publisher")
    pk = recipient("pk-analyst", "PK-CERT", "publisher")
    assert decide(POLICY, soc, obj(A), now=IN_FORCE).transforms == (Redact("jwg-constituents"),)
    assert decide(POLICY, soc, obj(G), now=IN_FORCE).transforms == (Redact("jwg-constituents"),)
    assert decide(POLICY, uz, obj(A), now=IN_FORCE).transforms == ()
    anonymous = with_agreement(POLICY, provider_attribution="must-not",
                               party_redaction=frozen_map({"UZ-CERT": "jwg-constituents"}))
    assert decide(anonymous, uz, obj(A), now=IN_FORCE).transforms == (
        Redact("jwg-constituents"), AnonymiseProducer())
    assert decide(anonymous, soc, obj(A), now=IN_FORCE).transforms == (
        Redact("jwg-constituents"), AnonymiseProducer())
    assert decide(anonymous, pk, obj(A), now=IN_FORCE).transforms == ()  # the producer
    assert visible_levels(anonymous, uz, "jwg", now=IN_FORCE).transforms == (
        Redact("jwg-constituents"), AnonymiseProducer())


def test_revoked_objects_reach_only_earlier_recipients_within_their_levels() -> None:
    uz = recipient("uz-analyst", "UZ-CERT", "publisher")
    revoked = obj(A, revoked=True)
    first = decide(POLICY, uz, revoked, now=IN_FORCE)
    assert (first.allowed, first.rule) == (False, "deny-revoked-not-received")
    assert decide(POLICY, uz, revoked, now=IN_FORCE, received_earlier=True).allowed
    expired = STATES["expired"][1]
    assert not decide(POLICY, uz, revoked, now=expired, received_earlier=True).allowed
    pk = recipient("pk-analyst", "PK-CERT", "publisher")
    assert decide(POLICY, pk, revoked, now=IN_FORCE).allowed
    rule = visible_levels(POLICY, uz, "jwg", now=IN_FORCE)
    assert not rule.admits(revoked)
    assert rule.admits(revoked, received_earlier=True)


def test_party_levels_cap_the_party_and_its_constituents() -> None:
    capped = with_agreement(POLICY, receive=frozen_map({"UZ-CERT": frozenset({C, G})}))
    uz = decide(capped, recipient("uz-analyst", "UZ-CERT", "publisher"), obj(A), now=IN_FORCE)
    soc = decide(capped, recipient("uz-soc", "UZ-SOC", "consumer"), obj(A), now=IN_FORCE)
    assert (uz.allowed, uz.rule) == (False, f"deny-party-levels:{JWG}")
    assert (soc.allowed, soc.rule) == (False, f"deny-party-levels:{JWG}")
    red = decide(capped, recipient("uz-analyst", "UZ-CERT", "publisher"), obj(R), now=IN_FORCE)
    assert red.allowed  # RED follows the names on the object, not the agreement


def test_constituents_excluded_from_amber() -> None:
    closed = with_agreement(POLICY, constituents_may_receive_amber=False)
    soc = decide(closed, recipient("uz-soc", "UZ-SOC", "consumer"), obj(A), now=IN_FORCE)
    assert (soc.allowed, soc.rule) == (False, f"deny-tlp-amber-constituents-excluded:{JWG}")


def test_records_that_disagree_with_the_community_fail_closed() -> None:
    pinned = dataclasses.replace(POLICY, community=dataclasses.replace(
        POLICY.community, orgs=frozen_map({
            **POLICY.community.orgs,
            "UZ-CERT": dataclasses.replace(POLICY.community.orgs["UZ-CERT"],
                                           identity=IDS["UZ-CERT"]),
        })))
    impostor = recipient("x", "UZ-CERT", "consumer", identity=IDS["KZ-CERT"])
    for level, allowed in [(C, True), (G, False), (A, False), (S, False)]:
        decision = decide(pinned, impostor, obj(level), now=IN_FORCE)
        assert decision.allowed is allowed, level
    assert "pins" in decide(pinned, impostor, obj(G), now=IN_FORCE).reason
    named_impostor = decide(pinned, impostor, obj(R, named=(IDS["KZ-CERT"],)), now=IN_FORCE)
    assert not named_impostor.allowed
    # UZ-SOC claiming to belong to PK-CERT: not the constituent community.yaml knows.
    moved = Recipient("UZ-SOC", IDS["UZ-SOC"], "PK-CERT", "uz-soc", "consumer", "taxii")
    decision = decide(POLICY, moved, obj(G), now=IN_FORCE)
    assert not decision.allowed
    assert "treated as unrecognised" in decision.reason


def test_named_outsider_receives_red() -> None:
    kz = recipient("kz-reader", "KZ-CERT", "consumer")
    assert decide(POLICY, kz, obj(R, named=(IDS["KZ-CERT"],)), now=IN_FORCE).allowed
    assert not decide(POLICY, kz, obj(R), now=IN_FORCE).allowed


def test_visibility_rule_shape_for_the_sql_layer() -> None:
    soc = recipient("uz-soc", "UZ-SOC", "consumer")
    rule = visible_levels(POLICY, soc, "jwg", now=IN_FORCE)
    assert rule.own_org_name == "UZ-SOC"
    assert rule.own_rows_visible
    assert rule.revoked_needs_prior_receipt
    assert rule.levels == {C, G, A}
    assert rule.red_recipient_identity == IDS["UZ-SOC"]
    assert rule.transforms == (Redact("jwg-constituents"),)
    assert rule.policy_digest == POLICY.digest
    peer = visible_levels(POLICY, recipient("uz", "UZ-CERT", "consumer", "peer"), "jwg",
                          now=IN_FORCE)
    assert peer.levels == {C, G}
    assert peer.red_recipient_identity is None


def test_explain_names_rule_reason_digest_and_transforms() -> None:
    soc = recipient("uz-soc", "UZ-SOC", "consumer")
    target = obj(A)
    decision = decide(POLICY, soc, target, now=IN_FORCE)
    text = explain(decision, recipient=soc, obj=target)
    assert text.splitlines()[0] == f"ALLOWED by rule tlp-amber-constituent:{JWG}"
    assert decision.reason in text
    assert POLICY.digest in text
    assert "redact(jwg-constituents)" in text
    assert "UZ-SOC (account uz-soc, consumer) via taxii" in text
    assert target.id in text
    denied = decide(POLICY, soc, obj(S), now=IN_FORCE)
    lines = explain(denied).splitlines()
    assert lines[0] == f"DENIED by rule deny-tlp-amber-strict-constituent:{JWG}"
    assert "never their constituents" in denied.reason
    assert f"  policy:     {POLICY.digest}" in lines
    assert "transforms: none" in explain(denied)


def test_embargo_and_window_reasons_name_the_times() -> None:
    uz = recipient("uz-analyst", "UZ-CERT", "publisher")
    policy, now = STATES["embargoed"]
    assert "2026-07-01T00:00:00Z" in decide(policy, uz, obj(G), now=now).reason
    policy, now = STATES["expired"]
    reason = decide(policy, uz, obj(A), now=now).reason
    assert "2026-01-01T00:00:00Z" in reason
    assert "2028-01-01T00:00:00Z" in reason


def test_unknown_channel_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown channel 'email'"):
        Recipient("UZ-CERT", None, None, None, "consumer", "email")  # type: ignore[arg-type]


def test_operator_entry_is_not_a_member() -> None:
    entry = POLICY.community.entry("JWG-Operator")
    assert isinstance(entry, OrgEntry)
    admin = recipient("admin", "JWG-Operator", "admin")
    assert "operates the node but is not a member" in decide(POLICY, admin, obj(G),
                                                             now=IN_FORCE).reason


#: The agreement's re-share rules listing every level for peer exchanges.
PEER_ALL = with_agreement(POLICY, reshare=Reshare(misp=POLICY.agreements[JWG].reshare.misp,
                                                  peer_exchanges=ALL))


@pytest.mark.parametrize(("org", "level", "named", "allowed", "rule"), [
    # A peer node serving a party receives AMBER+STRICT where re-share lists it.
    ("UZ-CERT", S, (), True, f"tlp-amber-strict-party:{JWG}"),
    # ... and RED only when the organisation it serves is named on the object.
    ("UZ-CERT", R, (IDS["UZ-CERT"],), True, "tlp-red-named"),
    ("UZ-CERT", R, (IDS["UZ-SOC"],), False, "deny-tlp-red-not-named"),
    # A peer serving a constituent never gets AMBER+STRICT; a stranger nothing above CLEAR.
    ("UZ-SOC", S, (), False, f"deny-tlp-amber-strict-constituent:{JWG}"),
    ("KZ-CERT", R, (IDS["UZ-CERT"],), False, "deny-tlp-red-not-named"),
    ("KZ-CERT", S, (), False, f"deny-tlp-amber-strict-not-party:{JWG}"),
])
def test_peer_serving_a_party_or_named_recipient_receives_strict_levels_if_reshare_allows(
        org: str, level: Tlp, named: tuple[str, ...], allowed: bool, rule: str) -> None:
    r = recipient(f"{org.lower()}-node", org, "peer", "peer")
    target = obj(level, named=named)
    decision = decide(PEER_ALL, r, target, now=IN_FORCE)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.reason
    assert visible_levels(PEER_ALL, r, "jwg", now=IN_FORCE).admits(target) == allowed
    # Under the shipped re-share rules (peer exchanges up to GREEN) it never federates.
    shipped = decide(POLICY, r, target, now=IN_FORCE)
    assert not shipped.allowed
    if allowed:
        assert shipped.rule == "deny-onward-channel:peer"
        assert "re-share" in shipped.reason
