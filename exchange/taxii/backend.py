"""medallion ``Backend`` subclass that serves every TAXII call from our store.

medallion never tells a backend who is asking; :mod:`exchange.taxii.app` authenticates
each request before medallion's view runs and leaves the principal in ``flask.g``.
Every method here starts by taking it from there and refuses to serve without one.

Filters are read from ``request.args`` directly (medallion passes a ``to_dict()`` copy
that drops repeated parameters). Object bytes are spliced into envelopes unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import g, has_request_context, request
from medallion.backends.base import Backend
from medallion.exceptions import ProcessingError

from exchange.audit.spool import Durable
from exchange.errors import AuthError, InvalidInput, NotFound
from exchange.model.objects import CollectionId, Principal
from exchange.model.stixkinds import case_reason, non_canonical_case
from exchange.node.base import ReadResult
from exchange.node.service import Exchange
from exchange.storage.base import ObjectQuery, Page, Status, StatusDetail, VersionMatch
from exchange.storage.timestamps import from_micros, to_micros
from exchange.taxii.http import (
    MEDIA_TYPE_STIX,
    MEDIA_TYPE_TAXII,
    NextTokens,
    RawJSON,
    token_scope,
)

#: medallion's endpoint serving one collection resource (TAXII 2.1 section 5.2).
_COLLECTION_ENDPOINT = "collections.get_collection"


def current_principal() -> Principal:
    """The principal our authentication hook placed in request scope.

    Raises:
        AuthError: There is none (the backend never serves anonymously).
    """
    principal = g.get("cx_principal")
    if not isinstance(principal, Principal):
        raise AuthError("authentication required")
    return principal


def _values(name: str) -> list[str]:
    out: list[str] = []
    for raw in request.args.getlist(name):
        out.extend(v.strip() for v in raw.split(",") if v.strip())
    return out


def _timestamp(name: str, text: str) -> int:
    try:
        return to_micros(text)
    except (ValueError, InvalidInput):
        raise InvalidInput(
            f"{name} value {text!r} is not a timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)"
        ) from None


def _canonical_id(object_id: str) -> str:
    """An object id from a URL or ``match[id]``, refused when spelt in upper case.

    Stored ids are always lower-case (ingest refuses any other spelling), so an
    upper-case id names nothing here: the reader is told the spelling to use, the same
    answer whether or not such an object exists.

    Raises:
        InvalidInput: ``object_id`` is a STIX id with upper-case letters.
    """
    if non_canonical_case(object_id):
        raise InvalidInput(f"object id {case_reason(object_id)}")
    return object_id


def _version_match(default: VersionMatch) -> VersionMatch:
    values = _values("match[version]")
    if not values:
        return default
    first = last = all_ = False
    exact: list[int] = []
    for v in values:
        if v == "first":
            first = True
        elif v == "last":
            last = True
        elif v == "all":
            all_ = True
        else:
            exact.append(_timestamp("match[version]", v))
    return VersionMatch(first=first, last=last, all=all_, exact=tuple(exact))


def _date_headers(page: Page) -> dict[str, str]:
    if not page.rows:
        return {}
    return {
        "X-TAXII-Date-Added-First": from_micros(page.rows[0].date_added),
        "X-TAXII-Date-Added-Last": from_micros(page.rows[-1].date_added),
    }


def _status_details(details: tuple[StatusDetail, ...]) -> list[dict[str, str]]:
    out = []
    for d in details:
        item = {"id": d.id, "version": d.version}
        if d.message:
            item["message"] = d.message
        out.append(item)
    return out


def status_resource(status: Status) -> dict[str, Any]:
    """A TAXII 2.1 status resource (section 4.3.1) as a JSON-able dict."""
    body: dict[str, Any] = {
        "id": status.id,
        "status": status.status,
        "request_timestamp": from_micros(status.request_timestamp),
        "total_count": status.total_count,
        "success_count": status.success_count,
        "failure_count": status.failure_count,
        "pending_count": status.pending_count,
    }
    for name, details in (("successes", status.successes), ("failures", status.failures),
                          ("pendings", status.pendings)):
        if details:
            body[name] = _status_details(details)
    return body


def wait_before_sending(durable: Durable) -> None:
    """Have the response wait for ``durable`` before it leaves: the app's after-request
    hook (:func:`exchange.taxii.app.create_app`) calls it once the view has built the
    response, and answers 503 instead when the records could not be made durable.
    Outside a request it waits now."""
    if has_request_context():
        g.setdefault("cx_durable", []).append(durable)
    else:
        durable()


class ExchangeBackend(Backend):  # type: ignore[misc]
    """Serves medallion's views from :class:`~exchange.node.service.Exchange`."""

    def __init__(self, exchange: Exchange, tokens: NextTokens) -> None:
        self.exchange = exchange
        self.settings = exchange.settings
        self.tokens = tokens

    # -- server information -------------------------------------------------------------
    def server_discovery(self) -> dict[str, Any]:
        current_principal()
        # TAXII 2.1 section 4.1.1: API root URLs are absolute https:// URLs or relative
        # ones beginning with a single "/". A relative URL holds behind any TLS proxy
        # and never echoes the request's Host header back to the client.
        root = f"/{self.settings.api_root}/"
        body: dict[str, Any] = {
            "title": self.settings.title,
            "description": self.settings.description,
            "default": root,
            "api_roots": [root],
        }
        if self.settings.contact:
            body["contact"] = self.settings.contact
        return body

    def get_api_root_information(self, api_root: str) -> dict[str, Any] | None:
        current_principal()
        if api_root != self.settings.api_root:
            return None
        return {
            "title": self.settings.title,
            "description": self.settings.description,
            "versions": [MEDIA_TYPE_TAXII],
            "max_content_length": self.settings.max_content_length,
        }

    def get_status(self, api_root: str, status_id: str) -> dict[str, Any] | None:
        principal = current_principal()
        try:
            status = self.exchange.status(principal, api_root, status_id)
        except NotFound:
            return None
        return status_resource(status)

    # -- collections ------------------------------------------------------------------
    def _collection_resource(self, principal: Principal, api_root: str,
                             collection_id: str) -> dict[str, Any] | None:
        try:
            collection, access = self.exchange.collection_for(principal, api_root,
                                                              collection_id)
        except NotFound:
            return None
        body: dict[str, Any] = {"id": collection.id, "title": collection.title}
        if collection.description:
            body["description"] = collection.description
        if collection.alias:
            body["alias"] = collection.alias
        body.update(can_read=access.can_read, can_write=access.can_write,
                    media_types=[MEDIA_TYPE_STIX])
        return body

    def get_collections(self, api_root: str) -> dict[str, Any]:
        principal = current_principal()
        items = []
        for collection, _ in self.exchange.visible_collections(principal, api_root):
            item = self._collection_resource(principal, api_root, collection.id)
            if item is not None:
                items.append(item)
        return {"collections": items} if items else {}

    def get_collection(self, api_root: str, collection_id: str) -> dict[str, Any] | None:
        resource = self._collection_resource(current_principal(), api_root, collection_id)
        if (resource is not None and request.method == "GET"
                and request.endpoint != _COLLECTION_ENDPOINT):
            # medallion asks for the resource before a read only to refuse it itself when
            # can_read is false, and then our code never runs: the refusal would leave no
            # denial in the ledger. The node decides instead (Exchange.read records the
            # denial and raises PermissionDenied); the resource a client receives from the
            # collection endpoint still says what the caller may do.
            resource = {**resource, "can_read": True}
        return resource

    # -- reads -----------------------------------------------------------------------------
    def _scope(self, principal: Principal, api_root: str, collection_ref: str,
               endpoint: str) -> str:
        """What this request's ``next`` tokens are bound to: the collection (by id,
        whichever way the URL names it), the endpoint and every filter but ``limit``.

        Raises:
            NotFound: The collection is not visible to the principal (a denial).
        """
        collection, _ = self.exchange.collection_for(principal, api_root, collection_ref)
        filters = [(name, _values(name)) for name in dict.fromkeys(request.args)
                   if name not in ("next", "limit")]
        return token_scope(collection.id, endpoint, filters)

    def _query(self, principal: Principal, limit: int, scope: str, *,
               versions: VersionMatch, with_id_type: bool,
               include_body: bool = True) -> ObjectQuery:
        added_after = request.args.get("added_after")
        token = request.args.get("next")
        return ObjectQuery(
            collection_id=CollectionId(""),
            added_after=_timestamp("added_after", added_after) if added_after else None,
            ids=tuple(_canonical_id(v) for v in _values("match[id]")) if with_id_type else (),
            types=tuple(_values("match[type]")) if with_id_type else (),
            spec_versions=tuple(_values("match[spec_version]")),
            versions=versions,
            limit=limit,
            cursor=self.tokens.open(token, principal.account_id, scope) if token else None,
            include_body=include_body,
        )

    def _envelope(self, principal: Principal, result: ReadResult, channel: str, scope: str
                  ) -> tuple[dict[str, Any], dict[str, str]]:
        page = result.page
        if not page.rows:
            return {"more": page.more}, _date_headers(page)
        delivery = self.exchange.deliver(result)
        served = delivery.bodies
        # Recorded before the response exists; a ledger failure serves nothing (503). A
        # large batch is synced while the envelope is put together and serialised (a small
        # one before disclose returns: SpoolWriter.append), and is durable before the
        # response leaves (the app's after-request hook waits). Paging follows the rows
        # read, withheld copies included, so a page of withheld copies still moves on.
        durable = self.exchange.disclose(principal, delivery.result, channel, served,
                                         wait=False)
        body: dict[str, Any] = {"more": page.more}
        if page.more:
            body["next"] = self.tokens.mint(page.rows[-1].date_added, principal.account_id,
                                            scope)
        if served:
            body["objects"] = [RawJSON(raw.decode("utf-8")) for raw in served]
        wait_before_sending(durable)
        return body, _date_headers(page)

    def get_objects(self, api_root: str, collection_id: str, filter_args: Any,
                    allowed_filters: Any, limit: int) -> tuple[dict[str, Any],
                                                               dict[str, str]]:
        principal = current_principal()
        scope = self._scope(principal, api_root, collection_id, "objects")
        query = self._query(principal, limit, scope,
                            versions=_version_match(VersionMatch.latest()), with_id_type=True)
        result = self.exchange.read(principal, api_root, collection_id, query)
        return self._envelope(principal, result, "taxii:get_objects", scope)

    def get_object(self, api_root: str, collection_id: str, object_id: str,
                   filter_args: Any, allowed_filters: Any, limit: int
                   ) -> tuple[dict[str, Any], dict[str, str]]:
        principal = current_principal()
        _canonical_id(object_id)
        scope = self._scope(principal, api_root, collection_id, f"object:{object_id}")
        query = self._query(principal, limit, scope,
                            versions=_version_match(VersionMatch.latest()), with_id_type=False)
        result = self.exchange.read(principal, api_root, collection_id,
                                    _with_id(query, object_id))
        if not result.page.rows and not self.exchange.object_visible(
                principal, result.collection, object_id):
            raise ProcessingError(f"Object '{object_id}' not found", 404)
        return self._envelope(principal, result, "taxii:get_object", scope)

    def get_object_versions(self, api_root: str, collection_id: str, object_id: str,
                            filter_args: Any, allowed_filters: Any, limit: int
                            ) -> tuple[dict[str, Any], dict[str, str]]:
        principal = current_principal()
        _canonical_id(object_id)
        scope = self._scope(principal, api_root, collection_id, f"versions:{object_id}")
        query = self._query(principal, limit, scope, versions=VersionMatch(all=True),
                            with_id_type=False, include_body=False)
        result = self.exchange.read(principal, api_root, collection_id, query,
                                    versions_of=object_id)
        page = result.page
        if not page.rows and not self.exchange.object_visible(principal, result.collection,
                                                              object_id):
            raise ProcessingError(f"Object '{object_id}' not found", 404)
        body: dict[str, Any] = {"more": page.more}
        if page.more and page.rows:
            body["next"] = self.tokens.mint(page.rows[-1].date_added, principal.account_id,
                                            scope)
        served = self._listed(result)
        if served.page.rows:
            self.exchange.disclose(principal, served, "taxii:get_versions")
            body["versions"] = [from_micros(row.version) for row in served.page.rows]
        return body, _date_headers(page)

    def get_object_manifest(self, api_root: str, collection_id: str, filter_args: Any,
                            allowed_filters: Any, limit: int
                            ) -> tuple[dict[str, Any], dict[str, str]]:
        principal = current_principal()
        scope = self._scope(principal, api_root, collection_id, "manifest")
        query = self._query(principal, limit, scope,
                            versions=_version_match(VersionMatch.latest()), with_id_type=True,
                            include_body=False)
        result = self.exchange.read(principal, api_root, collection_id, query)
        page = result.page
        body: dict[str, Any] = {"more": page.more}
        if page.more and page.rows:
            body["next"] = self.tokens.mint(page.rows[-1].date_added, principal.account_id,
                                            scope)
        served = self._listed(result)
        if served.page.rows:
            self.exchange.disclose(principal, served, "taxii:get_manifest")
            body["objects"] = [
                {
                    "id": self.exchange.shown_id(served, row),
                    "date_added": from_micros(row.date_added),
                    "version": from_micros(row.version),
                    "media_type": MEDIA_TYPE_STIX,
                }
                for row in served.page.rows
            ]
        return body, _date_headers(page)

    def _listed(self, result: ReadResult) -> ReadResult:
        """The rows a manifest or versions list names: a reader that receives copies is
        not told of a copy it could not fetch (one withheld for a lost required
        reference)."""
        if not result.transforms or not result.page.rows:
            return result
        return self.exchange.deliver(result).result

    # -- writes ----------------------------------------------------------------------------
    def add_objects(self, api_root: str, collection_id: str, objs: Any,
                    request_time: Any) -> dict[str, Any]:
        principal = current_principal()
        status = self.exchange.publish(principal, api_root, collection_id,
                                       request.get_data(cache=True))
        return status_resource(status)

    def delete_object(self, api_root: str, collection_id: str, object_id: str,
                      filter_args: Any, allowed_filters: Any) -> None:
        """Withdraw an object (admins only; :mod:`exchange.taxii.delete` routes DELETE
        here past medallion's own permission check)."""
        principal = current_principal()
        _canonical_id(object_id)
        query = ObjectQuery(
            collection_id=CollectionId(""),
            spec_versions=tuple(_values("match[spec_version]")),
            versions=_version_match(VersionMatch(all=True)),
        )
        self.exchange.delete_object(principal, api_root, collection_id, object_id, query)


def _with_id(query: ObjectQuery, object_id: str) -> ObjectQuery:
    return replace(query, ids=(object_id,))
