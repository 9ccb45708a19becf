"""The one exception tree of cert-exchange.

Every refusal the exchange makes is an :class:`ExchangeError`; adapters turn it into a
TAXII error message (HTTP) or one readable line and an exit code (CLI). Foreign
exceptions are wrapped with ``raise ... from e`` at the point where they enter.

::

    ExchangeError
    ├── ConfigError                 configuration file, environment or home is wrong
    ├── InvalidInput                untrusted bytes refused at the edge
    │   ├── MalformedJSON           not JSON, duplicate keys, NaN/Infinity, lone surrogates
    │   ├── LimitExceeded           body, object, envelope, depth or pattern limits
    │   └── InvalidObject           JSON but not a valid STIX 2.1 object
    ├── AuthError                   who is asking could not be established (HTTP 401)
    ├── PermissionDenied            the caller is known but may not do this (HTTP 403)
    │   └── PolicyDenied            a sharing policy refuses it
    ├── NotFound                    no such API root, collection, object, status, account
    ├── Conflict                    the request contradicts stored state (e.g. duplicate name)
    ├── SignatureError              a signature is missing, unknown, or does not verify
    ├── StorageError                the database failed; the operation was rolled back
    └── RemoteError                 a peer (TAXII server, MISP) answered wrongly or not at all

Each error carries a ``reason`` meant for the person or program that made the request;
it never contains secrets, stack traces or internal exception text.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base of every error the exchange raises on purpose.

    Attributes:
        reason: A one-line, user-facing explanation of what was wrong.
        http_status: The HTTP status an adapter should answer with.
    """

    http_status: int = 500
    title: str = "Internal error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ConfigError(ExchangeError):
    """The configuration (file, environment, home directory) is invalid."""

    title = "Configuration error"


class InvalidInput(ExchangeError):
    """Untrusted input was refused."""

    http_status = 400
    title = "Bad request"


class MalformedJSON(InvalidInput):
    """The bytes are not acceptable JSON under the strict profile."""

    title = "Malformed JSON"


class LimitExceeded(InvalidInput):
    """An input limit (size, count, depth, pattern length) was exceeded."""

    title = "Limit exceeded"

    def __init__(self, reason: str, *, http_status: int = 413) -> None:
        super().__init__(reason)
        self.http_status = http_status


class InvalidObject(InvalidInput):
    """The JSON is well formed but is not a valid STIX 2.1 object."""

    http_status = 422
    title = "Invalid STIX object"


class AuthError(ExchangeError):
    """Authentication is missing or wrong."""

    http_status = 401
    title = "Unauthorized"


class PermissionDenied(ExchangeError):
    """The authenticated principal may not perform this operation."""

    http_status = 403
    title = "Forbidden"


class PolicyDenied(PermissionDenied):
    """A sharing policy refuses the operation."""

    title = "Denied by policy"


class NotFound(ExchangeError):
    """The named resource does not exist (or is not visible to the caller)."""

    http_status = 404
    title = "Not found"


class Conflict(ExchangeError):
    """The request contradicts what is already stored."""

    http_status = 409
    title = "Conflict"


class SignatureError(ExchangeError):
    """A signature is missing, unknown or invalid."""

    http_status = 422
    title = "Signature error"


class StorageError(ExchangeError):
    """The database failed; nothing was committed."""

    http_status = 503
    title = "Storage unavailable"


class RemoteError(ExchangeError):
    """A remote peer failed or answered with something unusable."""

    http_status = 502
    title = "Remote error"
