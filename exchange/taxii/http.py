"""HTTP details of TAXII 2.1 that medallion gets wrong or leaves to us.

* Media types (TAXII 2.1 section 1.6.8): ``application/taxii+json`` with no version
  parameter means the newest version the server supports, so it is accepted; wildcards
  in ``Accept`` are satisfiable; anything else is 406 (Accept) or 415 (Content-Type).
* Error bodies (section 3.6.1): every error is a TAXII error message in JSON, with
  ``http_status`` as a string, never HTML, a stack trace or internal exception text.
* Envelopes carry stored object bytes verbatim: :class:`RawJSON` values are spliced
  into the response instead of being parsed and re-serialised.
* ``next`` tokens are opaque, bound to the account that received them and to the
  collection, endpoint and filters of the listing they continue, and authenticated with
  an HMAC so a client can neither forge a position nor reuse one elsewhere.

Pure functions over strings and bytes; the Flask wiring is in :mod:`exchange.taxii.app`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from exchange.errors import InvalidInput

MEDIA_TYPE_TAXII = "application/taxii+json;version=2.1"
MEDIA_TYPE_STIX = "application/stix+json;version=2.1"


class RawJSON:
    """Already-serialised JSON text to splice into a response unchanged."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, RawJSON):
        out.append(value.text)
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        if not any(isinstance(item, RawJSON) for item in value):
            # RawJSON only ever sits directly in a list; anything deeper would make
            # json.dumps raise TypeError, loudly, rather than emit something wrong
            out.append(json.dumps(value, ensure_ascii=False, allow_nan=False))
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=False, allow_nan=False))


def dumps(value: Any) -> str:
    """Serialise ``value`` to JSON, splicing :class:`RawJSON` parts verbatim."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def _media_ranges(header: str) -> Iterable[tuple[str, dict[str, str]]]:
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for p in pieces[1:]:
            if "=" in p:
                k, v = p.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        yield pieces[0].lower(), params


def _taxii_21(media: str, params: dict[str, str]) -> bool:
    return media == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def accept_ok(header: str | None) -> bool:
    """Whether an ``Accept`` header can be satisfied with TAXII 2.1 JSON."""
    if not header:
        return False
    for media, params in _media_ranges(header):
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if _taxii_21(media, params) or media in ("*/*", "application/*"):
            return True
    return False


def content_type_ok(header: str | None) -> bool:
    """Whether a request ``Content-Type`` is TAXII 2.1 JSON."""
    if not header:
        return False
    ranges = list(_media_ranges(header))
    return len(ranges) == 1 and _taxii_21(*ranges[0])


def error_body(status: int, title: str, description: str, error_id: str | None = None
               ) -> dict[str, Any]:
    """A TAXII 2.1 error message (section 3.6.1)."""
    body: dict[str, Any] = {"title": title, "http_status": str(status)}
    if description:
        body["description"] = description
    if error_id:
        body["error_id"] = error_id
    return body


def token_scope(collection_id: str, endpoint: str,
                filters: Iterable[tuple[str, Iterable[str]]]) -> str:
    """The digest a ``next`` token is bound to: the collection, the endpoint and the
    filters of the request that received it.

    Filters are compared by meaning, not spelling: parameter order, repeated parameters
    and the order of comma-separated values do not matter. ``limit`` is left out by the
    caller (a client may change its page size while paging: the position stays valid).

    Args:
        collection_id: The collection's id (not the alias the URL may use).
        endpoint: Which listing (``objects``, ``manifest``, ``versions:<id>`` ...).
        filters: Each filter parameter's name and its values.

    Returns:
        32 lower-case hex digits.
    """
    canonical = sorted((name, sorted(set(values))) for name, values in filters)
    text = json.dumps([collection_id, endpoint, canonical], ensure_ascii=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


class NextTokens:
    """Mint and open ``next`` tokens (TAXII 2.1 section 3.4) bound to an account and to
    the collection, endpoint and filters of the listing they continue.

    A token is ``<cursor>:<scope>:<account id>`` and a truncated HMAC-SHA256 under a key
    derived from the server secret, base64url-encoded: a client can neither forge a
    position nor carry one over to another account, collection or set of filters.
    """

    _SCOPE_LEN = 32

    def __init__(self, server_secret: bytes) -> None:
        self._key = hmac.new(server_secret, b"cx next-token v2", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:12]

    def mint(self, cursor: int, account_id: str, scope: str) -> str:
        """A token for resuming after ``cursor`` (a ``date_added``) in ``scope``
        (:func:`token_scope`)."""
        payload = f"{cursor}:{scope}:{account_id}".encode()
        raw = payload + b"." + self._mac(payload)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def open(self, token: str, account_id: str, scope: str) -> int:
        """The cursor inside a token minted for this account and scope.

        Raises:
            InvalidInput: The token is malformed, forged, or was issued to someone else;
                or it continues another collection, endpoint or set of filters.
        """
        bad = InvalidInput("the 'next' parameter is not a token this server issued to you")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise bad from None
        # the MAC is binary and may itself contain b".", so split at a fixed offset
        payload, sep, mac = raw[:-13], raw[-13:-12], raw[-12:]
        if sep != b"." or not hmac.compare_digest(mac, self._mac(payload)):
            raise bad
        cursor_text, _, rest = payload.decode("ascii", "replace").partition(":")
        bound, sep_text, owner = (rest[:self._SCOPE_LEN], rest[self._SCOPE_LEN:][:1],
                                  rest[self._SCOPE_LEN + 1:])
        if sep_text != ":" or owner != account_id or not cursor_text.isdigit():
            raise bad
        if not hmac.compare_digest(bound, scope):
            raise InvalidInput(
                "the 'next' token continues another listing: it was issued for another"
                " collection, endpoint or set of filters (added_after, match[...]); repeat"
                " the request that returned it with only 'next' (and 'limit') changed, or"
                " start again without 'next'")
        return int(cursor_text)
