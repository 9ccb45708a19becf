"""API keys: 256-bit random tokens, stored only as HMAC-SHA256 under the server secret.

A token looks like ``cx_<key id>_<secret>``: the key id (public, 12 hex digits) finds the
record, the secret (32 random bytes, base64url) is checked by comparing
``HMAC-SHA256(server_secret, secret)`` with the stored digest in constant time. A slow
password hash would be the wrong tool for 256-bit random secrets (research/security.md
3.2): HMAC costs microseconds and still makes a stolen database useless without the
server secret. Clients send the token as the HTTP Basic password (RFC 7617), which every
TAXII client supports, or as ``Authorization: Bearer``.

Pure functions; the token is only ever returned once, to the command that created it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from exchange.errors import AuthError

_TOKEN_RE = re.compile(r"cx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly minted key: show ``token`` once, store ``key_id`` and ``digest``."""

    key_id: str
    token: str
    digest: bytes

    def __repr__(self) -> str:
        return f"NewToken(key_id={self.key_id!r}, token='********')"


def digest(server_secret: bytes, secret_part: str) -> bytes:
    """HMAC-SHA256 of a token's secret part under the server secret."""
    return hmac.new(server_secret, secret_part.encode("ascii"), hashlib.sha256).digest()


def mint(server_secret: bytes) -> NewToken:
    """Create a new random token and its stored digest."""
    key_id = secrets.token_hex(6)
    secret_part = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    token = f"cx_{key_id}_{secret_part}"
    return NewToken(key_id=key_id, token=token, digest=digest(server_secret, secret_part))


def split(token: str) -> tuple[str, str]:
    """Split a token into (key id, secret part).

    Raises:
        AuthError: The token is not in the ``cx_<id>_<secret>`` form.
    """
    m = _TOKEN_RE.fullmatch(token.strip())
    if m is None:
        raise AuthError("the API key is malformed")
    return m.group(1), m.group(2)


def matches(server_secret: bytes, secret_part: str, stored: bytes) -> bool:
    """Constant-time check of a presented secret against the stored digest."""
    return hmac.compare_digest(digest(server_secret, secret_part), stored)
