"""The auditor's HTTP API over the node's tamper-evident audit ledger.

The ledger (:mod:`exchange.audit`, reached through :class:`~exchange.node.auditing.AuditTrail`)
is an RFC 9162 Merkle log whose heads are signed as C2SP checkpoints. This module adds its
project endpoints under ``/<api_root>/cx/audit/`` to the TAXII application built by
:func:`exchange.taxii.app.create_app`:

* ``GET records/``: filtered records (admins and auditors);
* ``GET checkpoint/``: the newest signed checkpoint (witnesses: see below);
* ``POST checkpoint/``: sign a checkpoint now (admins and auditors);
* ``GET proof/<seq>/``: a record's inclusion proof (admins and auditors);
* ``GET consistency/?from=M[&to=N]``: a consistency proof between two checkpoints
  (witnesses).

Records name recipients, producers and objects, so only admins and auditors read them,
and only they prove a record's inclusion (the proof carries the record). A checkpoint
reveals nothing but a size and a root, so every member organisation may fetch one and keep
it, and may later ask for a consistency proof that the log only grew since: that is how
members act as witnesses of the node's log. Witnesses are the accounts of member
organisations (the community's members under the policy in force; without a policy, the
organisations that are no other organisation's constituent) and every admin and auditor.
Constituents (a SOC's tools) and organisations outside the community are refused: the
log's size over time tells how much is being shared, which is the community's business,
and they have no part in holding the node to account.

The application's ``before_request`` hook has already authenticated the caller (the
principal is in ``flask.g.cx_principal``) and checked the media types: every request sends
``Accept: application/taxii+json;version=2.1``, and a POST also sends that
``Content-Type`` and a ``Content-Length``. Answers are JSON (``application/json``); errors
are raised as :class:`~exchange.errors.ExchangeError` subclasses, which the application's
error handler turns into TAXII error messages: :class:`~exchange.errors.InvalidInput`
(400) for a bad or unknown query parameter, always naming it and what it accepts;
:class:`~exchange.errors.PermissionDenied` (403) for a role that may not ask;
:class:`~exchange.errors.NotFound` (404) for another API root or a missing record or
checkpoint. Integers in paths and parameters are decimal, from 0 to 2**53 - 1.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection
from typing import Any, Final

from flask import Flask, Response, g, request

from exchange.audit.ledger import StoredCheckpoint
from exchange.audit.query import MAX_PAGE, RecordFilter
from exchange.audit.records import Kind, record_bytes
from exchange.errors import InvalidInput, NotFound, PermissionDenied
from exchange.model.objects import Principal, Role
from exchange.node.service import Exchange
from exchange.storage.timestamps import from_micros, to_micros
from exchange.taxii.http import dumps

__all__ = ["DEFAULT_PAGE", "RECORD_PARAMETERS", "register_audit_api"]

#: Records per page of ``records/`` when the caller gives no ``limit``.
DEFAULT_PAGE: Final = 100

#: The query parameters ``records/`` accepts.
RECORD_PARAMETERS: Final = ("recipient", "producer", "object", "policy", "since", "until",
                            "kind", "after", "limit")

_MAX_INT: Final = 2**53 - 1
_MAX_NAME: Final = 512
_DIGITS = re.compile(r"[0-9]{1,16}", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
# What a name filter may not hold: a record field never contains a control character,
# and the ledger's byte search refuses quotes and backslashes.
_UNSAFE_NAME = re.compile(r'["\\\x00-\x1f\x7f]')
_KINDS: Final = {kind.value: kind for kind in Kind}
_AUDIT_ROLES: Final = frozenset({Role.ADMIN, Role.AUDITOR})


# -- reading the request -----------------------------------------------------------------


def _shown(text: str) -> str:
    """A caller's value quoted for an error message, cut short if long."""
    return repr(text if len(text) <= 64 else text[:64] + "...")


def _only_parameters(allowed: Collection[str]) -> None:
    """Refuse query parameters the endpoint does not know (a typo must not widen a query).

    Raises:
        InvalidInput: A parameter is not in ``allowed``.
    """
    unknown = sorted(name for name in request.args if name not in allowed)
    if unknown:
        takes = (f"it takes {', '.join(allowed)}" if allowed
                 else "it takes no query parameters")
        raise InvalidInput(
            f"unknown query parameter {', '.join(_shown(n) for n in unknown)}: {takes}")


def _single(name: str) -> str | None:
    """The value of a parameter that may appear at most once (None when absent).

    Raises:
        InvalidInput: It appears more than once.
    """
    values = request.args.getlist(name)
    if len(values) > 1:
        raise InvalidInput(f"give the {name} parameter at most once")
    return values[0] if values else None


def _integer(name: str, text: str, *, minimum: int = 0, maximum: int = _MAX_INT) -> int:
    """A decimal integer parameter within bounds.

    Raises:
        InvalidInput: ``text`` is not decimal digits or is out of bounds.
    """
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise InvalidInput(
            f"{name} must be a whole number from {minimum} to {maximum}, not {_shown(text)}")
    return int(text)


def _optional_integer(name: str, *, minimum: int = 0, maximum: int = _MAX_INT
                      ) -> int | None:
    text = _single(name)
    return None if text is None else _integer(name, text, minimum=minimum, maximum=maximum)


def _name(parameter: str, what: str) -> str | None:
    """An organisation name or object id to filter on.

    Raises:
        InvalidInput: Empty, longer than 512 characters, or holding a quote, a backslash
            or a control character.
    """
    value = _single(parameter)
    if value is None:
        return None
    if not 0 < len(value) <= _MAX_NAME or _UNSAFE_NAME.search(value):
        raise InvalidInput(
            f"{parameter} must be {what}: 1 to {_MAX_NAME} characters without quotes,"
            f" backslashes or control characters, not {_shown(value)}")
    return value


def _time(parameter: str) -> int | None:
    """A STIX timestamp parameter, in microseconds.

    Raises:
        InvalidInput: It is not a STIX timestamp.
    """
    value = _single(parameter)
    if value is None:
        return None
    try:
        return to_micros(value)
    except InvalidInput:
        raise InvalidInput(
            f"{parameter} must be a STIX timestamp YYYY-MM-DDTHH:MM:SS[.s]Z in UTC,"
            f" not {_shown(value)}") from None


def _kinds() -> tuple[Kind, ...]:
    """The ``kind`` parameter: repeated, comma-separated, or both; duplicates dropped.

    Raises:
        InvalidInput: A kind is not one of the record kinds.
    """
    kinds: list[Kind] = []
    for value in request.args.getlist("kind"):
        for part in value.split(","):
            kind = _KINDS.get(part.strip())
            if kind is None:
                raise InvalidInput(
                    f"kind must be one of {', '.join(_KINDS)} (repeat the parameter or"
                    f" separate kinds with commas), not {_shown(part.strip())}")
            if kind not in kinds:
                kinds.append(kind)
    return tuple(kinds)


def _record_filter() -> RecordFilter:
    """The filter the query parameters of ``records/`` describe.

    Raises:
        InvalidInput: A parameter is malformed (the message names it).
    """
    policy = _single("policy")
    if policy is not None and not _DIGEST.fullmatch(policy):
        raise InvalidInput(
            f"policy must be a policy digest sha256:<64 lowercase hex digits>,"
            f" not {_shown(policy)}")
    since, until = _time("since"), _time("until")
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be later than since (since is inclusive, until"
                           " exclusive)")
    return RecordFilter(
        kinds=_kinds(),
        recipient_org=_name("recipient", "a recipient organisation's name"),
        producer_org=_name("producer", "a producer organisation's name"),
        object_id=_name("object", "a STIX object id"),
        policy_digest=policy,
        since=since,
        until=until,
    )


# -- answers --------------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _checkpoint_body(exchange: Exchange, stored: StoredCheckpoint) -> dict[str, Any]:
    """A checkpoint as the API shows it, with the keys that verify it."""
    trusted = exchange.audit.keys()  # a method, not a mapping's keys
    return {
        "origin": exchange.audit.origin,
        "size": stored.size,
        "root": _b64(stored.root),
        "note": stored.note,
        "created": from_micros(stored.created_at),
        "verifier_keys": [key.verifier() for key in trusted],
    }


def register_audit_api(app: Flask, exchange: Exchange) -> None:
    """Add the ``/<api_root>/cx/audit/...`` endpoints to ``app``.

    ``GET records/``
        Admins and auditors: one page of records, oldest first. Filters (all optional,
        combined with AND): ``recipient`` (organisation name), ``producer`` (organisation
        name; a publish's producer is its organisation), ``object`` (STIX id), ``policy``
        (``sha256:...`` of the policy in force; a policy reload by its old or new digest),
        ``since`` and ``until`` (STIX timestamps; ``until`` exclusive), ``kind`` (publish,
        disclosure, denial, admin, policy-reload; repeated or comma-separated). Paging:
        ``limit`` (1 to :data:`~exchange.audit.query.MAX_PAGE`, default
        :data:`DEFAULT_PAGE`) and ``after`` (a cursor: the ``next`` of the previous page).
        Answers ``{"records": [{"seq", "record"}], "more", "next", "tree_size"}``, where
        ``record`` is the record's canonical JSON as an object and ``next`` is present
        only when ``more`` is true. ``more`` means the page filled up: the following
        page may still turn out empty. ``tree_size`` is the size of the log when the
        page was read.

    ``GET checkpoint/``
        Witnesses (member organisations' accounts, admins, auditors): the newest
        checkpoint, ``{"origin", "size", "root" (base64),
        "note" (the signed note), "created" (STIX timestamp), "verifier_keys"}``; 404
        before the first one.

    ``POST checkpoint/``
        Admins and auditors: sign the current tree head now. The request carries no
        body, but the application's request hook still requires
        ``Content-Type: application/taxii+json;version=2.1`` and a ``Content-Length``
        on every POST, so send that content type with ``Content-Length: 0``; a
        non-empty body is refused. Answers 201 with the new checkpoint (same shape as
        the GET), or 200 with the newest one when the log has not grown since.

    ``GET key/``
        Any account: the log's checkpoint verifier keys, ``{"origin",
        "verifier_keys"}`` (C2SP signed-note verifier keys, what ``exchange audit
        verify --key`` takes). Compare them with the hub's operator out of band before
        trusting them: a key fetched from the hub proves only what the hub says.

    ``GET proof/<seq>/``
        Admins and auditors: the inclusion proof of record ``seq`` in the newest
        checkpoint, or with ``?size=N`` in the checkpoint of that size
        (:meth:`~exchange.node.auditing.InclusionProof.as_dict`); 404 for a record newer
        than the checkpoint or a size no checkpoint has.

    ``GET consistency/?from=M[&to=N]``
        Witnesses: the proof that the checkpoint of size ``N`` (default: the newest)
        extends the one of size ``M``: ``{"from", "to", "proof" (base64 hashes),
        "old_checkpoint", "new_checkpoint"}`` (both signed notes); 404 when either
        checkpoint does not exist.

    Args:
        app: The application of :func:`exchange.taxii.app.create_app`, whose request
            hook sets ``g.cx_principal`` and whose error handler renders
            :class:`~exchange.errors.ExchangeError`.
        exchange: The node's service; its ``audit`` trail answers every request.
    """
    trail = exchange.audit
    api_root_name = exchange.settings.api_root

    def check_root(api_root: str) -> None:
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")

    def require_witness(action: str) -> None:
        principal: Principal = g.cx_principal
        if principal.role in _AUDIT_ROLES:
            return
        if exchange.policy is not None:
            member = principal.org_name in exchange.policy.current().community.members
        else:
            member = principal.parent_org_id is None
        if not member:
            raise PermissionDenied(
                f"only member organisations, admins and auditors may {action}; account"
                f" {principal.account_name!r} belongs to {principal.org_name!r}, which is"
                " not a member organisation")

    def require_auditor(action: str) -> None:
        principal: Principal = g.cx_principal
        if principal.role not in _AUDIT_ROLES:
            raise PermissionDenied(
                f"only admin and auditor accounts may {action}; account"
                f" {principal.account_name!r} has the {principal.role.value} role")

    @app.get("/<string:api_root>/cx/audit/records/")
    def _audit_records(api_root: str) -> Response:
        """Project endpoint: filtered audit records, for admins and auditors."""
        check_root(api_root)
        require_auditor("read audit records")
        _only_parameters(RECORD_PARAMETERS)
        record_filter = _record_filter()
        after = _optional_integer("after")
        limit = _optional_integer("limit", minimum=1, maximum=MAX_PAGE)
        entries, cursor = trail.find(record_filter, after=-1 if after is None else after,
                                     limit=DEFAULT_PAGE if limit is None else limit)
        body: dict[str, Any] = {
            "records": [{"seq": e.seq, "record": json.loads(record_bytes(e.record, e.seq))}
                        for e in entries],
            "more": cursor is not None,
        }
        if cursor is not None:
            body["next"] = str(cursor)
        body["tree_size"] = trail.size()
        return _json(body)

    @app.get("/<string:api_root>/cx/audit/checkpoint/")
    def _audit_checkpoint(api_root: str) -> Response:
        """Project endpoint: the newest signed checkpoint, for witnesses."""
        check_root(api_root)
        require_witness("fetch audit checkpoints")
        _only_parameters(())
        return _json(_checkpoint_body(exchange, trail.latest_checkpoint()))

    @app.get("/<string:api_root>/cx/audit/key/")
    def _audit_key(api_root: str) -> Response:
        """Project endpoint: the checkpoint verifier keys, for every member."""
        check_root(api_root)
        _only_parameters(())
        return _json({"origin": trail.origin,
                      "verifier_keys": [k.verifier() for k in trail.keys()]})  # noqa: SIM118 - a method

    @app.post("/<string:api_root>/cx/audit/checkpoint/")
    def _audit_make_checkpoint(api_root: str) -> Response:
        """Project endpoint: sign a checkpoint now, for admins and auditors."""
        check_root(api_root)
        require_auditor("sign audit checkpoints")
        _only_parameters(())
        if request.content_length:
            raise InvalidInput("this request takes no body: send Content-Length: 0")
        try:
            previous: int | None = trail.latest_checkpoint().size
        except NotFound:
            previous = None
        stored = trail.checkpoint()
        return _json(_checkpoint_body(exchange, stored),
                     200 if stored.size == previous else 201)

    @app.get("/<string:api_root>/cx/audit/proof/<int:seq>/")
    def _audit_inclusion(api_root: str, seq: int) -> Response:
        """Project endpoint: a record's inclusion proof, for admins and auditors."""
        check_root(api_root)
        require_auditor("ask for inclusion proofs (they carry the record)")
        _only_parameters(("size",))
        if seq > _MAX_INT:
            raise NotFound(f"there is no audit record {seq}")
        size = _optional_integer("size", minimum=1)
        try:
            proof = trail.inclusion(seq, size)
        except ValueError as e:
            raise InvalidInput(f"size: {e}") from None
        return _json(proof.as_dict())

    @app.get("/<string:api_root>/cx/audit/consistency/")
    def _audit_consistency(api_root: str) -> Response:
        """Project endpoint: a consistency proof between two checkpoints, for every
        witness."""
        check_root(api_root)
        require_witness("ask for consistency proofs")
        _only_parameters(("from", "to"))
        old_size = _optional_integer("from")
        if old_size is None:
            raise InvalidInput("give from=<size of the checkpoint you hold>, and optionally"
                               " to=<size of a later checkpoint> (default: the newest)")
        new_size = _optional_integer("to")
        try:
            proof, old, new = trail.consistency(old_size, new_size)
        except ValueError as e:
            raise InvalidInput(f"from and to: {e}") from None
        return _json({
            "from": old.size,
            "to": new.size,
            "proof": [_b64(h) for h in proof],
            "old_checkpoint": old.note,
            "new_checkpoint": new.note,
        })
