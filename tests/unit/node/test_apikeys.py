"""API keys: random, stored as HMAC only, checked in constant time."""

from __future__ import annotations

import pytest

from exchange.errors import AuthError
from exchange.node import apikeys

SECRET = b"server-secret-for-tests"


def test_a_minted_token_matches_only_its_own_digest() -> None:
    a, b = apikeys.mint(SECRET), apikeys.mint(SECRET)
    assert a.token != b.token
    key_id, secret_part = apikeys.split(a.token)
    assert key_id == a.key_id
    assert apikeys.matches(SECRET, secret_part, a.digest)
    assert not apikeys.matches(SECRET, secret_part, b.digest)
    assert not apikeys.matches(b"another-server", secret_part, a.digest)
    assert a.token not in repr(a)
    assert a.digest != secret_part.encode()


@pytest.mark.parametrize("token", [
    pytest.param("", id="empty"),
    pytest.param("cx_123_abc", id="short"),
    pytest.param("bearer cx_0123456789ab_" + "A" * 43, id="prefixed"),
    pytest.param("cx_0123456789AB_" + "A" * 43, id="upper-case-id"),
    pytest.param("cx_0123456789ab_" + "A" * 42 + "!", id="bad-alphabet"),
])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthError):
        apikeys.split(token)
