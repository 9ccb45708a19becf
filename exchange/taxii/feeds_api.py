"""Flat feeds for SOC tools over HTTP: ``GET /<api_root>/feeds/<collection>/<kind>.<format>``.

Project endpoints on the application of :func:`exchange.taxii.app.create_app`, beside
search and the auditor API: the request hook has authenticated the caller with the same
API keys (HTTP Basic password or Bearer token). What goes into a feed is decided in
:mod:`exchange.node.feeds`.

* ``GET <api_root>/feeds/``: the feeds the caller may read (JSON: per collection its
  alias, id and the URLs of every kind and format; the named feeds of collections it
  may read, with their kinds, filters and URLs);
* ``GET <api_root>/feeds/<collection id or alias>/<kind>.txt``: one value a line
  (``text/plain; charset=utf-8``), for firewalls and DNS sinkholes;
* ``GET <api_root>/feeds/<collection>/<kind>.csv``: ``text/csv; charset=utf-8;
  header=present`` with the columns of :data:`~exchange.node.feeds.CSV_COLUMNS`.

* ``GET <api_root>/feeds/<name>.txt`` and ``.csv``: a named feed of the node's
  ``flat_feeds`` file (:mod:`exchange.node.feeddefs`): a collection's values of the
  kinds it names, less what its filters leave out, in the formats it lists;

* ``GET <api_root>/feeds/<collection>/misp/manifest.json``, ``.../misp/hashes.csv`` and
  ``.../misp/<event uuid>.json``: the collection's MISP feed for the caller
  (:mod:`exchange.node.mispfeed`), for a MISP "Feed" of source format "MISP Feed".

Kinds: :data:`~exchange.node.feeds.FEED_KINDS`. Any ``Accept`` that admits the answer's
media type is accepted (none at all too, as many fetchers send none); errors are TAXII
error messages in JSON, like every error of the server.

Conditional GET (RFC 9110 section 13): each answer carries a strong ``ETag`` (the digest
of the body) and ``Last-Modified`` (the second this server process first built that
body), and ``Cache-Control: private, no-cache``. ``If-None-Match`` with the current tag
(or ``*``) is answered 304 without a body; without ``If-None-Match``, so is
``If-Modified-Since`` at or after ``Last-Modified``. Prefer the tag: a date has a
one-second resolution, and another server process may first have built the same body at
another second (the worst case is one needless download).

Every 200 to a GET is a disclosure in the audit ledger (channel ``feed``: each indicator
version whose values the body lists, with the rule that let it through), durable before
the body leaves; a ledger that cannot be written makes the answer a 503 with no feed. A
304 discloses nothing the caller did not already receive and is not recorded; a HEAD
sends no values and is not recorded either. Each 200 is also counted per feed, format
and account (the last one's ETag and number of values) for ``exchange sync status``
(revision 0012): a flat feed by its name or ``<collection>/<kind>`` and format, a MISP
feed's files as ``<collection>/misp`` with format ``manifest.json``, ``hashes.csv`` or
``event`` (the number of indicator versions the file discloses); a failure to count is
logged, the download still served.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Final

from flask import Flask, Response, g, request

from exchange.errors import NotFound
from exchange.model.objects import Principal
from exchange.node.base import ReadResult
from exchange.node.feeddefs import FlatFeed, load_flat_feeds
from exchange.node.feeds import FEED_CHANNEL, FEED_FORMATS, FEED_KINDS, Feed
from exchange.node.read import Listing
from exchange.node.service import Exchange
from exchange.taxii.http import dumps

__all__ = ["MEDIA_TYPES", "feed_accept_ok", "is_feed_path", "register_feeds_api"]

#: The media type of each format.
MEDIA_TYPES: Final = {"txt": "text/plain; charset=utf-8",
                      "csv": "text/csv; charset=utf-8; header=present",
                      "json": "application/json",
                      "hashes": "text/csv; charset=utf-8; header=absent"}
_CACHE_CONTROL: Final = "private, no-cache"
_ACCEPTED: Final = frozenset({"*/*", "text/*", "text/plain", "text/csv"})
_ACCEPTED_MISP: Final = _ACCEPTED | {"application/*", "application/json"}


def is_feed_path(path: str, api_root: str) -> bool:
    """Whether a request path is a feed of ``api_root`` (not the JSON index of feeds)."""
    prefix = f"/{api_root}/feeds/"
    return path.startswith(prefix) and len(path) > len(prefix)


def feed_accept_ok(header: str | None, *, misp: bool = False) -> bool:
    """Whether an ``Accept`` header admits a feed (none at all does); a MISP feed's files
    are JSON or CSV (``misp``), a flat feed's text or CSV."""
    accepted = _ACCEPTED_MISP if misp else _ACCEPTED
    if not header or not header.strip():
        return True
    for part in header.split(","):
        media, _, params = part.strip().partition(";")
        if re.search(r"(?:^|;)\s*q\s*=\s*0(?:\.0{0,3})?\s*(?:;|$)", params):
            continue
        if media.strip().lower() in accepted:
            return True
    return False


def _not_modified(feed: Feed | tuple[str, int]) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match first; If-Modified-Since only without it.

    ``feed`` is a flat feed or a MISP feed file's (ETag, Last-Modified seconds)."""
    etag, last_modified = (feed.etag, feed.last_modified) if isinstance(feed, Feed) else feed
    tags = request.headers.get("If-None-Match")
    if tags is not None:
        wanted = {t.strip().removeprefix("W/") for t in tags.split(",")}
        return "*" in wanted or etag in wanted
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (section 13.1.3)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return last_modified <= int(when.timestamp())


def _headers(feed: Feed | tuple[str, int], fmt: str) -> dict[str, str]:
    etag, last_modified = (feed.etag, feed.last_modified) if isinstance(feed, Feed) else feed
    return {"ETag": etag, "Cache-Control": _CACHE_CONTROL,
            "Last-Modified": format_datetime(datetime.fromtimestamp(last_modified, UTC),
                                             usegmt=True),
            "Content-Type": MEDIA_TYPES[fmt]}


def _answer(principal: Principal, exchange: Exchange, body: bytes, result: ReadResult | Listing,
            headers: dict[str, str], conditional: Feed | tuple[str, int],
            counted: tuple[str, str, int] | None = None) -> Response:
    """304 when the caller holds this body; else the body, disclosed before it leaves,
    and ``counted`` as a download of (feed name, format, values) for ``exchange sync
    status``."""
    if _not_modified(conditional):
        response = Response(status=304)
        for header in ("ETag", "Cache-Control", "Last-Modified"):
            response.headers[header] = headers[header]
        return response
    if request.method == "GET":
        # Recorded and durable before the body leaves; a StorageError here is a 503
        # through the application's error handler, with no feed.
        exchange.disclose(principal, result, FEED_CHANNEL)
        if counted is not None:
            etag = conditional.etag if isinstance(conditional, Feed) else conditional[0]
            exchange.record_download(principal, *counted, etag)
    response = Response(body, status=200)
    for header, value in headers.items():
        response.headers[header] = value
    return response


def _described(feed: FlatFeed, base: str) -> dict[str, object]:
    """A named feed as the feed index lists it."""
    f = feed.filters
    return {"name": feed.name, "description": feed.description,
            "collection": feed.collection, "kinds": list(feed.kinds),
            "filters": {"tlp_ceiling": f.tlp_ceiling.value,
                        "labels_include": list(f.labels_include),
                        "labels_exclude": list(f.labels_exclude),
                        "min_confidence": f.min_confidence, "max_age_days": f.max_age_days},
            "urls": {fmt: f"{base}{feed.name}.{fmt}" for fmt in feed.formats}}


def register_feeds_api(app: Flask, exchange: Exchange) -> None:
    """Add the flat-feed endpoints to ``app`` (see the module docstring).

    The named feeds file (setting ``flat_feeds``) is read here, once: a broken file stops
    the application from starting; a changed one takes effect when the server restarts.

    Args:
        app: The application of :func:`exchange.taxii.app.create_app`.
        exchange: The node's service.

    Raises:
        ConfigError: The named feeds file cannot be read or is invalid.
    """
    api_root_name = exchange.settings.api_root
    path = exchange.settings.flat_feeds_path
    named = {f.name: f for f in load_flat_feeds(path)} if path is not None else {}

    def readable(api_root: str) -> list[tuple[str, str]]:
        return [(c.alias or c.id, c.id) for c, access
                in exchange.visible_collections(g.cx_principal, api_root) if access.can_read]

    @app.get("/<string:api_root>/feeds/")
    def _feed_index(api_root: str) -> Response:
        """Project endpoint: the flat feeds the caller may read."""
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        base = f"{request.host_url}{api_root}/feeds/"
        collections = readable(api_root)
        names = {name for pair in collections for name in pair}
        body = {"kinds": list(FEED_KINDS), "formats": list(FEED_FORMATS),
                "collections": [
                    {"alias": alias, "id": cid,
                     "feeds": {f"{kind}.{fmt}": f"{base}{alias}/{kind}.{fmt}"
                               for kind in FEED_KINDS for fmt in FEED_FORMATS},
                     "misp": f"{base}{alias}/misp/"}
                    for alias, cid in collections],
                "named": [_described(feed, base) for feed in named.values()
                          if feed.collection in names]}
        return Response(dumps(body), status=200, mimetype="application/json")

    @app.get("/<string:api_root>/feeds/<string:file>")
    def _named_feed(api_root: str, file: str) -> Response:
        """Project endpoint: a named flat feed (module docstring)."""
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        name, dot, fmt = file.rpartition(".")
        definition = named.get(name) if dot else None
        if definition is None:
            shown = file if len(file) <= 60 else file[:60] + "..."
            listed = ", ".join(f"{f.name}.{fmt}" for f in named.values()
                               for fmt in f.formats) or "none"
            raise NotFound(f"no feed {shown!r}: the named feeds are {listed}; a"
                           " collection's feeds are <collection>/<kind>.<format>")
        principal = g.cx_principal
        try:
            feed = exchange.named_feed(principal, api_root, definition, fmt)
        except NotFound as e:
            if fmt not in definition.formats:
                raise
            raise NotFound(f"feed {name!r} reads a collection you may not read") from e
        return _answer(principal, exchange, feed.body, feed.result, _headers(feed, fmt),
                       feed, (name, fmt, feed.values))

    @app.get("/<string:api_root>/feeds/<string:collection>/<string:name>")
    def _feed(api_root: str, collection: str, name: str) -> Response:
        """Project endpoint: one flat feed (module docstring)."""
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        kind, dot, fmt = name.rpartition(".")
        if not dot or kind not in FEED_KINDS or fmt not in FEED_FORMATS:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise NotFound(f"no feed {shown!r}: a feed is <kind>.<format>, kind one of"
                           f" {', '.join(FEED_KINDS)}, format one of"
                           f" {', '.join(FEED_FORMATS)}")
        principal = g.cx_principal
        try:
            feed = exchange.feed(principal, api_root, collection, kind, fmt)
        except NotFound:
            names = ", ".join(alias for alias, _ in readable(api_root)) or "none"
            shown = collection if len(collection) <= 64 else collection[:64] + "..."
            raise NotFound(f"no collection {shown!r} you may read; your feeds are in:"
                           f" {names}") from None
        shown = feed.result.collection.alias or feed.result.collection.id
        return _answer(principal, exchange, feed.body, feed.result, _headers(feed, fmt),
                       feed, (f"{shown}/{kind}", fmt, feed.values))

    @app.get("/<string:api_root>/feeds/<string:collection>/misp/<string:name>")
    def _misp_feed(api_root: str, collection: str, name: str) -> Response:
        """Project endpoint: a file of the collection's MISP feed (module docstring)."""
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        principal = g.cx_principal
        try:
            feed = exchange.misp_feed(principal, api_root, collection)
        except NotFound:
            names = ", ".join(alias for alias, _ in readable(api_root)) or "none"
            shown = collection if len(collection) <= 64 else collection[:64] + "..."
            raise NotFound(f"no collection {shown!r} you may read; your feeds are in:"
                           f" {names}") from None
        if name == "manifest.json":
            file, fmt = feed.manifest, "json"
        elif name == "hashes.csv":
            file, fmt = feed.hashes, "hashes"
        elif name.endswith(".json") and name[:-5] in feed.events:
            file, fmt = feed.events[name[:-5]], "json"
        else:
            shown = name if len(name) <= 60 else name[:60] + "..."
            raise NotFound(f"no file {shown!r} in this MISP feed: it has manifest.json,"
                           " hashes.csv and <event uuid>.json for the events the manifest"
                           " lists")
        conditional = (file.etag, feed.last_modified)
        shown = file.result.collection.alias or file.result.collection.id
        kind = name if name in ("manifest.json", "hashes.csv") else "event"
        return _answer(principal, exchange, file.body, file.result,
                       _headers(conditional, fmt), conditional,
                       (f"{shown}/misp", kind, len(file.result.page.rows)))
