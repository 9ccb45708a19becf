"""Whole HTTP/1.1 refusals, as TAXII error messages, for answers made before the app runs.

The front door (:mod:`exchange.taxii.front`) refuses some requests before a request
object exists: a head that never ends, a request line or head over its limit, a body
that does not arrive, a chunked body, one larger than the API root accepts; and
gunicorn's parser refuses malformed HTTP (a duplicate Content-Length or Content-Type, an
invalid request line). gunicorn would answer those with an HTML page; here each becomes a
TAXII 2.1 error message (section 3.6.1) with media type ``application/taxii+json;
version=2.1`` and ``Connection: close``, the same body shape the app gives.

Descriptions are fixed sentences: nothing the client sent is echoed back, and nothing of
gunicorn's internal text reaches the client.
"""

from __future__ import annotations

import re
import uuid
from http import HTTPStatus

from gunicorn.http import errors as gerrors

from exchange.taxii.http import MEDIA_TYPE_TAXII, dumps, error_body

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,40}")


def refusal(status: int, description: str, *, extra_headers: tuple[tuple[str, str], ...] = ()
            ) -> bytes:
    """A complete HTTP/1.1 response carrying a TAXII error message; it closes the
    connection (the request was not read to its end, or cannot be trusted to frame the
    next one)."""
    title = HTTPStatus(status).phrase
    request_id = uuid.uuid4().hex
    body = dumps(error_body(status, title, description, request_id)).encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {title}",
        f"Content-Type: {MEDIA_TYPE_TAXII}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        f"X-Request-ID: {request_id}",
        *(f"{k}: {v}" for k, v in extra_headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def describe_parse_error(exc: BaseException, *, line_limit: int, field_limit: int,
                         fields_limit: int) -> tuple[int, str]:
    """The status and description for an error gunicorn raised while parsing a request.

    Anything that is not one of gunicorn's request parse errors is the server's fault:
    500, with no detail.
    """
    if isinstance(exc, gerrors.InvalidResponseHeader | gerrors.InvalidResponseHeaderName):
        return 500, "the server failed to build its response; quote the error_id to the operator"
    if isinstance(exc, gerrors.LimitRequestLine):
        return 414, f"the request line is longer than {line_limit} bytes"
    if isinstance(exc, gerrors.LimitRequestHeaders):
        return 431, (f"a header field is longer than {field_limit} bytes or there are more"
                     f" than {fields_limit} header fields")
    if isinstance(exc, gerrors.InvalidHeader):
        name = getattr(exc, "hdr", "")
        shown = name.title() if isinstance(name, str) and _HEADER_NAME.fullmatch(name) else ""
        if shown:
            return 400, (f"the {shown} header is not valid or appears more than once"
                         " (RFC 9110 section 5.3)")
        return 400, "a header is not valid or appears more than once"
    if isinstance(exc, gerrors.InvalidHeaderName | gerrors.ObsoleteFolding):
        return 400, "a header name is not valid or a header is folded over lines"
    if isinstance(exc, gerrors.InvalidRequestLine | gerrors.InvalidRequestMethod
                  | gerrors.InvalidHTTPVersion):
        return 400, "the request line is not valid HTTP/1.1 (method, target, version)"
    if isinstance(exc, gerrors.UnsupportedTransferCoding):
        return 501, "this transfer coding is not supported; send a Content-Length"
    if isinstance(exc, gerrors.ExpectationFailed):
        return 417, "the only expectation this server meets is 100-continue"
    if isinstance(exc, gerrors.ForbiddenProxyRequest):
        return 403, "proxy headers are accepted only from the configured proxies"
    if isinstance(exc, gerrors.InvalidChunkSize | gerrors.ChunkMissingTerminator
                  | gerrors.InvalidChunkExtension):
        return 400, "the chunked body is malformed"
    if isinstance(exc, gerrors.ParseException):
        return 400, "the request is not valid HTTP/1.1"
    return 500, "the server failed to process the request; quote the error_id to the operator"
