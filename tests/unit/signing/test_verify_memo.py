"""The memo of verified signatures never turns a failure into a success."""

from __future__ import annotations

import copy

import pytest

from exchange.errors import SignatureError
from exchange.signing import cxsig
from exchange.signing.cxsig import sign_object, verify_object
from tests.unit.signing.helpers import fixed_key, indicator, resolver

KEY, OTHER_KEY = fixed_key("Ed25519", 1), fixed_key("Ed25519", 2)


def test_a_second_check_of_the_same_value_is_remembered_and_gives_the_same_answer() -> None:
    signed = sign_object(indicator(), KEY)
    first = verify_object(signed, resolver(KEY))
    remembered = len(cxsig._VERIFIED)
    again = verify_object(copy.deepcopy(signed), resolver(KEY))
    assert again == first
    assert len(cxsig._VERIFIED) == remembered


@pytest.mark.parametrize("change", ["name", "pattern"])
def test_a_changed_value_after_a_success_still_fails(change: str) -> None:
    signed = sign_object(indicator(), KEY)
    verify_object(signed, resolver(KEY))
    changed = {**signed, change: signed[change] + " "}
    with pytest.raises(SignatureError, match="does not verify"):
        verify_object(changed, resolver(KEY))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_object(changed, resolver(KEY))  # and again: failures are not remembered


def test_the_same_signature_under_another_key_is_not_a_hit() -> None:
    signed = sign_object(indicator(), KEY)
    verify_object(signed, resolver(KEY))
    with pytest.raises(SignatureError):
        verify_object(signed, resolver(OTHER_KEY))
