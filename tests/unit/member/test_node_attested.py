"""Objects the node signed itself (a revocation an admin ordered by TAXII DELETE) verify
as node-attested, bound to the node rather than to the author they still name."""

from __future__ import annotations

from exchange.member.verification import check_object, describe
from exchange.signing.cxsig import sign_object
from exchange.signing.revocation import revoked_version
from tests.unit.signing.helpers import OWNER, SIGNED_AT, fixed_key, indicator
from tests.unit.signing.published_keys import NODE_KEY, NOW, TRUSTED


def test_a_node_signed_revocation_is_valid_and_says_who_attests_it() -> None:
    withdrawn = sign_object(revoked_version(indicator(), "withdrawn by the operator"),
                            NODE_KEY, signed_at=SIGNED_AT)
    assert withdrawn["created_by_ref"] == OWNER  # the author is kept
    verdict = check_object(TRUSTED, withdrawn, now=NOW)
    assert (verdict.status, verdict.kid, verdict.node_attested) == ("valid", NODE_KEY.kid, True)
    assert "attested by the node" in describe(verdict)


def test_a_key_the_registry_does_not_hold_is_still_invalid() -> None:
    stranger = sign_object(revoked_version(indicator(), "withdrawn"), fixed_key("Ed25519", 9),
                           signed_at=SIGNED_AT)
    assert check_object(TRUSTED, stranger, now=NOW).status == "invalid"
