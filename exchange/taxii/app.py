"""The TAXII 2.1 application factory: medallion's views on an app we build and own.

``create_app(settings)`` makes a fresh Flask app (never medallion's import-time global),
registers medallion's blueprints on it, installs our
:class:`~exchange.taxii.backend.ExchangeBackend`, and wraps every request:

1. a request id (``X-Request-ID``) for logs and error bodies;
2. authentication from the HTTP Basic password or a Bearer token (an API key) before
   any view runs; the principal goes into ``flask.g`` for the backend;
3. spec-correct media-type checks (406/415), after which the headers are normalised so
   medallion's stricter checks agree;
4. TAXII error messages in JSON for every error, including Werkzeug's own (404, 405,
   413) and unexpected exceptions (500 with only the request id).

medallion's Flask-HTTPAuth object is process-global; we point its password callback at
the principal our hook already established, so its decorator can never admit anyone the
hook did not.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from typing import Any

import medallion
from flask import Flask, Response, g, request
from flask.json.provider import JSONProvider
from flask.wrappers import Request
from medallion.exceptions import MedallionError
from werkzeug.exceptions import HTTPException

from exchange.config import Settings
from exchange.errors import (
    AuthError,
    ExchangeError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StorageError,
)
from exchange.model.objects import Role
from exchange.node.base import (
    begin_request_scope,
    end_request_scope,
    reset_request_id,
    set_request_id,
)
from exchange.node.keyring import export_registry
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange
from exchange.policy import CHANNELS
from exchange.signing.definition import extension_definition_json
from exchange.signing.signed_registry import sign_registry
from exchange.storage import open_store
from exchange.taxii.add import register_add
from exchange.taxii.audit_api import register_audit_api
from exchange.taxii.backend import ExchangeBackend
from exchange.taxii.delete import register_delete
from exchange.taxii.feeds_api import feed_accept_ok, is_feed_path, register_feeds_api
from exchange.taxii.http import (
    MEDIA_TYPE_TAXII,
    NextTokens,
    accept_ok,
    content_type_ok,
    dumps,
    error_body,
)
from exchange.taxii.search_api import register_search_api

log = logging.getLogger(__name__)

REALM = 'Basic realm="cert-exchange", charset="UTF-8"'
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_DEFERRED = object()


class _RawProvider(JSONProvider):
    """JSON for medallion's ``json.dumps`` calls, splicing stored object bytes verbatim."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        # never reached for request bodies (see _DeferredJSONRequest); test clients
        # use it to read responses
        return json.loads(s)


class _DeferredJSONRequest(Request):
    """medallion calls ``get_json(force=True)`` before our backend sees the body.

    Parsing here would use the permissive stdlib parser and parse twice; instead the
    backend reads ``get_data()`` and parses it once under the strict profile.
    """

    def get_json(self, force: bool = False, silent: bool = False,
                 cache: bool = True) -> Any:
        return _DEFERRED


#: What a 503 asks the client to wait: about two sequencer rounds and a file rotation.
RETRY_AFTER_SECONDS = 5


def _taxii_response(status: int, title: str, description: str,
                    headers: dict[str, str] | None = None) -> Response:
    body = error_body(status, title, description, g.get("cx_request_id"))
    response = Response(dumps(body), status=status, mimetype=MEDIA_TYPE_TAXII)
    for k, v in (headers or {}).items():
        response.headers[k] = v
    if status == 401:
        response.headers["WWW-Authenticate"] = REALM
    if status == 503:  # storage or the audit spool: transient (RFC 9110 section 10.2.3)
        response.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return response


def _credentials() -> tuple[str | None, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return None, value.strip()
    if scheme == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        return user, password
    return None


def create_app(settings: Settings, *, exchange: Exchange | None = None) -> Flask:
    """Build the TAXII 2.1 WSGI application for one node.

    Args:
        settings: The node's settings.
        exchange: An existing service (tests pass one); by default the store named by
            the settings is opened.

    Returns:
        The Flask application, ready for gunicorn.

    Raises:
        ConfigError: The schema is not current or the server secret is missing.
        StorageError: The database cannot be reached.
    """
    if exchange is None:
        policy = None
        if settings.policy_path is not None:
            policy = PolicySource(settings.policy_path)
            policy.load()
        store = open_store(settings)
        store.check_schema()
        exchange = Exchange(settings, store, policy=policy)
        exchange.record_policy_in_force()
    tokens = NextTokens(settings.secret_bytes())

    app = Flask("exchange.taxii")
    app.json = _RawProvider(app)
    app.request_class = _DeferredJSONRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    app.medallion_backend = ExchangeBackend(exchange, tokens)  # type: ignore[attr-defined]
    app.taxii_config = {"max_page_size": settings.max_page_size}  # type: ignore[attr-defined]
    app.users_backend = {}  # type: ignore[attr-defined]  # never used: see module doc
    app.extensions["cert_exchange"] = exchange
    medallion.register_blueprints(app)

    @app.before_request
    def _authenticate_and_check_media() -> Response | None:
        supplied = request.headers.get("X-Request-ID", "")
        g.cx_request_id = supplied if _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        g.cx_scope = begin_request_scope()
        g.cx_request_token = set_request_id(g.cx_request_id)
        creds = _credentials()
        if creds is None:
            return _taxii_response(401, "Unauthorized",
                                   "authentication required: send your API key as the "
                                   "HTTP Basic password")
        try:
            g.cx_principal = exchange.authenticate(*creds)
        except AuthError as e:
            return _taxii_response(401, "Unauthorized", e.reason)
        if is_feed_path(request.path, settings.api_root) and request.method in ("GET", "HEAD"):
            # Flat feeds answer text for SOC tools: any Accept admitting text, or none.
            if not feed_accept_ok(request.headers.get("Accept"),
                                  misp="/misp/" in request.path):
                return _taxii_response(
                    406, "Not acceptable",
                    "a feed is text/plain, text/csv or (MISP feed) application/json;"
                    " accept one of them (or */*)")
            return None
        if not accept_ok(request.headers.get("Accept")):
            return _taxii_response(
                406, "Not acceptable",
                f"this server answers only with {MEDIA_TYPE_TAXII}; set the Accept header "
                "accordingly")
        request.environ["HTTP_ACCEPT"] = MEDIA_TYPE_TAXII
        if request.method == "POST":
            if not content_type_ok(request.headers.get("Content-Type")):
                return _taxii_response(
                    415, "Unsupported media type",
                    f"send the envelope with Content-Type: {MEDIA_TYPE_TAXII}")
            request.environ["CONTENT_TYPE"] = MEDIA_TYPE_TAXII
            if request.content_length is None:
                return _taxii_response(411, "Length required",
                                       "send a Content-Length header with the envelope")
            if request.content_length == 0 and request.path.endswith("/objects/"):
                # add objects needs an envelope (TAXII 2.1 section 5.5); medallion would
                # call the empty body 413 "Content-Length not valid"
                return _taxii_response(400, "Bad request",
                                       "the request body is empty; send a TAXII envelope"
                                       ' ({"objects": [...]})')
            if request.content_length > settings.max_content_length:
                return _taxii_response(
                    413, "Request entity too large",
                    f"the envelope is {request.content_length} bytes; this API root accepts"
                    f" at most {settings.max_content_length} (max_content_length)")
        return None

    @app.get("/<string:api_root>/cx/explain/")
    def _explain(api_root: str) -> Response:
        """Project endpoint: a policy decision explained, for admins and auditors."""
        principal = g.cx_principal
        if principal.role not in (Role.ADMIN, Role.AUDITOR):
            raise PermissionDenied("only admin and auditor accounts may ask for explanations")
        if api_root != settings.api_root:
            raise NotFound(f"API root {api_root!r} not found")
        object_id = request.args.get("object", "")
        recipient = request.args.get("recipient", "")
        if not object_id or not recipient:
            raise InvalidInput("give ?object=<STIX id>&recipient=<account or organisation>")
        channel = request.args.get("channel", "taxii")
        if channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}")
        results = exchange.explain(object_id, recipient,
                                   collection_ref=request.args.get("collection") or None,
                                   channel=channel)
        return Response(dumps({"explanations": [r.as_dict() for r in results]}),
                        status=200, mimetype="application/json")

    @app.get("/<string:api_root>/cx/registry/")
    def _registry(api_root: str) -> Response:
        """Project endpoint: the member key registry, node keys included, for offline
        verification (``exchange verify --registry``, ``exchange pull --verify``)."""
        if api_root != settings.api_root:
            raise NotFound(f"API root {api_root!r} not found")
        document = export_registry(exchange.store, node_identity=exchange.node_identity)
        return Response(document, status=200, mimetype="application/json")

    @app.get("/<string:api_root>/cx/registry/signed/")
    def _signed_registry(api_root: str) -> Response:
        """Project endpoint: the same registry as a DSSE envelope signed with the node's
        own key, which peer nodes pin (``exchange peer trust``; issue 20)."""
        if api_root != settings.api_root:
            raise NotFound(f"API root {api_root!r} not found")
        document = export_registry(exchange.store, node_identity=exchange.node_identity)
        return Response(sign_registry(document, exchange.node_key()), status=200,
                        mimetype="application/json")

    @app.get("/<string:api_root>/cx/whoami/")
    def _whoami(api_root: str) -> Response:
        """Project endpoint: the authenticated account, its organisation and the
        organisation's registered STIX identity (what ``exchange publish`` names as
        author of the indicators it makes from an IOC list)."""
        if api_root != settings.api_root:
            raise NotFound(f"API root {api_root!r} not found")
        principal = g.cx_principal
        return Response(dumps({
            "account": principal.account_name, "role": principal.role.value,
            "organisation": principal.org_name, "identity": principal.identity_id,
        }), status=200, mimetype="application/json")

    @app.get("/<string:api_root>/cx/extension-definitions/cx-sig-v1/")
    def _cx_sig_definition(api_root: str) -> Response:
        """Project endpoint: the STIX extension-definition of cx-sig v1 signatures."""
        if api_root != settings.api_root:
            raise NotFound(f"API root {api_root!r} not found")
        return Response(extension_definition_json(), status=200,
                        mimetype="application/stix+json;version=2.1")

    register_audit_api(app, exchange)
    register_delete(app, settings.api_root)
    register_add(app, settings.api_root)
    register_search_api(app, exchange)
    register_feeds_api(app, exchange)

    @app.teardown_request
    def _end_scope(exc: BaseException | None) -> None:
        token = g.pop("cx_scope", None)
        if token is not None:
            end_request_scope(token)
        request_token = g.pop("cx_request_token", None)
        if request_token is not None:
            reset_request_id(request_token)

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("cx_request_id", "")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # Registered after _stamp, so it runs before it (Flask runs these in reverse order)
    # and a refusal it makes is stamped too.
    @app.after_request
    def _wait_for_the_ledger(response: Response) -> Response:
        """Nothing a disclosure record describes leaves before the record is durable
        (backend.wait_before_sending): its sync overlapped building the response."""
        try:
            for durable in g.pop("cx_durable", ()):
                durable()
        except StorageError as e:
            log.error("storage failure (request %s): %s", g.get("cx_request_id"), e.reason)
            return _taxii_response(e.http_status, e.title, e.reason)
        return response

    @app.errorhandler(ExchangeError)
    def _exchange_error(e: ExchangeError) -> Response:
        if isinstance(e, StorageError):
            log.error("storage failure (request %s): %s", g.get("cx_request_id"), e.reason)
        return _taxii_response(e.http_status, e.title, e.reason)

    @app.errorhandler(MedallionError)
    def _medallion_error(e: MedallionError) -> Response:
        titles = {400: "Bad request", 403: "Forbidden", 404: "Not found",
                  406: "Not acceptable", 413: "Request entity too large",
                  415: "Unsupported media type", 422: "Unprocessable entity"}
        status = int(e.status)
        return _taxii_response(status, titles.get(status, "Error"), str(e.message))

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        status = e.code or 500
        headers = {}
        if status == 405 and e.get_response().headers.get("Allow"):
            headers["Allow"] = e.get_response().headers["Allow"]
        description = {
            404: "no such TAXII endpoint",
            405: f"method {request.method} is not allowed here",
            413: (f"the request body is larger than {settings.max_content_length} bytes "
                  "(max_content_length)"),
        }.get(status, e.name)
        return _taxii_response(status, e.name, description, headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unexpected error (request %s)", g.get("cx_request_id"))
        return _taxii_response(500, "Internal error",
                               "the server failed to process the request; quote the "
                               "error_id to the operator")

    return app


def _principal_from_hook(username: str, password: str) -> Any:
    """medallion's decorator admits exactly whom our before-request hook admitted."""
    return g.get("cx_principal")


def _auth_error(status: int = 401) -> Response:
    return _taxii_response(status, "Unauthorized", "authentication required")


medallion.auth.verify_password(_principal_from_hook)
medallion.auth.error_handler(_auth_error)
