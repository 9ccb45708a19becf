"""The search endpoint: ``GET /<api_root>/cx/search/``, "is this value in the exchange,
and who said so?".

A project endpoint beside the auditor API (:mod:`exchange.taxii.audit_api`), on the
application of :func:`exchange.taxii.app.create_app`, whose request hook has
authenticated the caller and checked the media types. Any account may search; it finds
only what it may receive (:mod:`exchange.node.search`), and every hit is a disclosure in
the audit ledger. Query parameters:

* ``value``: an IP address or network (an address also finds the networks that contain
  it), a domain, a URL, an e-mail address, or an MD5/SHA-1/SHA-256/SHA-512 hash; or
* ``id``: a STIX id instead, for the newest version of that object the caller may
  receive (with the object itself);
* ``subdomains``: ``true`` to find a domain's subdomains too (default ``false``);
* ``objects``: ``true`` to include each object as the caller receives it;
* ``limit``: hits per page, 1 to 1000 (default 100); ``next``: the previous page's
  ``next``.

Answers ``application/json``: ``{"query", "hits": [{"id", "type", "collection",
"contributor", "created_by_ref", "tlp", "version", "revoked", "signed_kid", "matched",
"valid_from", "valid_until" (indicators), "object" (when asked)}], "more", "next"}``.
A malformed parameter is a 400 TAXII error naming it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from flask import Flask, Response, g, request

from exchange.errors import InvalidInput, NotFound
from exchange.node.search import MAX_HITS
from exchange.node.service import Exchange
from exchange.taxii.http import dumps

__all__ = ["SEARCH_PARAMETERS", "register_search_api"]

#: The query parameters ``search/`` accepts.
SEARCH_PARAMETERS: Final = ("value", "id", "subdomains", "objects", "limit", "next")
#: Hits per page when the caller gives no ``limit``.
DEFAULT_HITS: Final = 100

_DIGITS = re.compile(r"[0-9]{1,16}", re.ASCII)
_STIX_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,250}--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}"
                      r"-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_BOOLEANS: Final = {"true": True, "false": False}


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:64] + "...")


def _single(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise InvalidInput(f"give the {name} parameter at most once")
    return values[0] if values else None


def _flag(name: str) -> bool:
    text = _single(name)
    if text is None:
        return False
    if text not in _BOOLEANS:
        raise InvalidInput(f"{name} must be true or false, not {_shown(text)}")
    return _BOOLEANS[text]


def _number(name: str, default: int | None, maximum: int) -> int | None:
    text = _single(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= maximum:
        raise InvalidInput(f"{name} must be a whole number from 1 to {maximum},"
                           f" not {_shown(text)}")
    return int(text)


def _check_parameters() -> None:
    unknown = sorted(name for name in request.args if name not in SEARCH_PARAMETERS)
    if unknown:
        raise InvalidInput(f"unknown query parameter {', '.join(_shown(n) for n in unknown)}:"
                           f" it takes {', '.join(SEARCH_PARAMETERS)}")


def register_search_api(app: Flask, exchange: Exchange) -> None:
    """Add ``GET /<api_root>/cx/search/`` to ``app`` (see the module docstring).

    Args:
        app: The application of :func:`exchange.taxii.app.create_app`.
        exchange: The node's service.
    """
    api_root_name = exchange.settings.api_root

    @app.get("/<string:api_root>/cx/search/")
    def _search(api_root: str) -> Response:
        """Project endpoint: find the objects naming a value, or one object by id."""
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        _check_parameters()
        value, object_id = _single("value"), _single("id")
        if (value is None) == (object_id is None):
            raise InvalidInput("give value=<an IP, network, domain, URL, e-mail address or"
                               " hash> or id=<a STIX id>, one of the two")
        with_objects = _flag("objects")
        body: dict[str, Any]
        if object_id is not None:
            if not _STIX_ID.fullmatch(object_id):
                raise InvalidInput(f"id must be a STIX id such as indicator--<uuid>,"
                                   f" not {_shown(object_id)}")
            hits = exchange.lookup(g.cx_principal, api_root, object_id)
            body = {"query": object_id,
                    "hits": [hit.as_dict(with_object=True) for hit in hits],
                    "more": False}
            return Response(dumps(body), status=200, mimetype="application/json")
        assert value is not None
        limit = _number("limit", DEFAULT_HITS, MAX_HITS) or DEFAULT_HITS
        after = _number("next", None, 2**53 - 1)
        result = exchange.search(g.cx_principal, api_root, value,
                                 subdomains=_flag("subdomains"), limit=limit, after=after,
                                 with_objects=with_objects)
        body = {"query": result.query,
                "hits": [hit.as_dict(with_object=with_objects) for hit in result.hits],
                "more": result.next is not None}
        if result.next is not None:
            body["next"] = str(result.next)
        return Response(dumps(body), status=200, mimetype="application/json")
