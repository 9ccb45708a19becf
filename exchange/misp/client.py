"""A thin, checked wrapper over the real PyMISP client, for one MISP target.

PyMISP has two habits this module exists to tame (DESIGN.md decision 7, research/misp.md):

* Its constructor talks to the server (recommended version, MISP version, the current
  user, the type table). :class:`MispClient` builds it lazily, on the first call, so
  creating a client never touches the network and a failure surfaces where a call is made;
  a caller with local work to do first may start it on a worker thread
  (:meth:`MispClient.connect_ahead`), its failure still raised by the first call.
* It returns 4xx answers as dicts (``{"errors": (status, body)}``) instead of raising.
  Every result here is checked: 401 becomes :class:`~exchange.errors.AuthError`, 403
  :class:`~exchange.errors.PermissionDenied`, 404 :class:`~exchange.errors.NotFound`,
  any other refusal :class:`MispRefused`; 5xx answers, timeouts, refused and reset
  connections become :class:`~exchange.errors.RemoteError` saying what failed. Messages
  name the target and the operation, never the API key.

Transient failures are retried (:class:`Retry`): a 5xx answer, a timeout, a refused or
reset connection, a response cut off mid-way, up to ``attempts`` tries in all with
exponential backoff and jitter between them. A 4xx answer is never retried (it will not
change by asking again), nor is a TLS verification failure. Adding an event is retried
only when the request surely never reached MISP (connection refused or not established
in time): after a 5xx, a read timeout or a reset the event may exist, and the next run
finds it and brings it up to date instead of adding it twice.

PyMISP logs request headers and MISP's answers at DEBUG level; a filter on its logger takes
the API keys out of those records (``exchange -v`` must not print a key).

What the push needs: :meth:`MispClient.get_event` (by UUID, soft-deleted attributes
included), :meth:`MispClient.push_event` (add or update by UUID, idempotent: an event
that already holds the same content gets no write request at all, and MISP's 403 "not
newer than the local copy" counts as up to date) and :meth:`MispClient.delete_attribute`
(MISP's soft delete; an attribute already deleted is left alone).
"""

from __future__ import annotations

import enum
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import requests
from pymisp import PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from exchange.errors import (
    AuthError,
    ConfigError,
    ExchangeError,
    NotFound,
    PermissionDenied,
    RemoteError,
)
from exchange.misp.targets import MispTarget
from exchange.node.mispmap import MispEvent

__all__ = ["MispClient", "MispRefused", "PushResult", "Retry", "read_api_key"]

log = logging.getLogger(__name__)

#: Event fields the exchange sets and compares (MISP's numbers as strings).
_EVENT_FIELDS: Final = ("info", "date", "distribution", "sharing_group_id",
                        "threat_level_id", "analysis")
#: Attribute fields the exchange sets and compares.
_ATTRIBUTE_FIELDS: Final = ("type", "category", "value", "to_ids", "distribution",
                            "sharing_group_id", "comment", "deleted", "first_seen",
                            "last_seen")
_TIME_FIELDS: Final = frozenset({"first_seen", "last_seen"})
#: A new event of at least ``push_parts`` times this many attributes is added in parts,
#: side by side: the event first (unpublished, without attributes), then its attributes
#: in the target's ``push_parts`` requests at once (MISP answers each in a worker process
#: of its own, so the parts use the machine's cores where one request uses one), then
#: published.
_PART_MIN: Final = 200
_NOT_NEWER: Final = "not newer than the local copy"
#: Attribute UUIDs looked up per search: a push of N new indicators asks N UUIDs, and
#: one search of 1,000 takes MISP about a third of the time of five of 200 (17 ms
#: against 55 ms on loopback; the UUIDs travel in the POST body).
_LOCATE_BATCH: Final = 1000
#: Longest piece of MISP's answer quoted in a message.
_MAX_QUOTE: Final = 300
#: PyMISP's message for a 5xx answer (it says 500 whatever the status was).
_SERVER_ERROR = re.compile(r"Error code 5[0-9][0-9]\b")


@dataclass(frozen=True, slots=True)
class Retry:
    """How transient failures are retried: exponential backoff with jitter.

    The wait before try ``n + 1`` is ``min(cap, base * 2 ** (n - 1))`` seconds, of which
    the fraction ``jitter`` is random (so clients that failed together do not come back
    together).

    Attributes:
        attempts: Tries in all (1: never retry).
        base: The first wait, in seconds.
        cap: The longest wait, in seconds.
        jitter: The random fraction of each wait, 0 to 1.
    """

    attempts: int = 4
    base: float = 1.0
    cap: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ConfigError("retry: attempts must be at least 1, base and cap not"
                              " negative, jitter between 0 and 1")

    def delay(self, tried: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``tried`` failed tries (1 for the first failure)."""
        full = min(self.cap, self.base * float(2 ** max(tried - 1, 0)))
        return full * (1 - self.jitter) + full * self.jitter * draw()


class _KeyRedactor(logging.Filter):
    """Takes the API keys out of PyMISP's log records.

    At DEBUG level PyMISP logs every request's headers (``Authorization`` among them)
    and MISP's answers (a user's ``authkey`` among them); ``exchange -v`` turns DEBUG on.
    """

    _FIELD = re.compile(r"""(?i)(['"](?:authorization|x-misp-auth|authkey)['"]\s*:\s*)"""
                        r"""(['"])[^'"]*\2""")

    def __init__(self) -> None:
        super().__init__("pymisp")
        self.keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = self._FIELD.sub(r"\1'***'", text)
        for key in tuple(self.keys):
            redacted = redacted.replace(key, "***")
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


_REDACTOR: Final = _KeyRedactor()


def _hide_in_pymisp_logs(key: str) -> None:
    _REDACTOR.keys.add(key)
    pymisp_log = logging.getLogger("pymisp")
    if _REDACTOR not in pymisp_log.filters:
        pymisp_log.addFilter(_REDACTOR)


class _Retryable(enum.Enum):
    """Whether a failed request may be tried again."""

    NO = "no"
    UNSENT = "unsent"  # it never reached MISP: safe to repeat anything
    UNCERTAIN = "uncertain"  # it may have reached MISP: repeat only what is idempotent


class MispRefused(ExchangeError):
    """MISP refused a request (a 4xx answer other than 401, 403 and 404)."""

    http_status = 502
    title = "Refused by MISP"


class PushResult(enum.StrEnum):
    """What :meth:`MispClient.push_event` did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def read_api_key(target: MispTarget, environ: Mapping[str, str] | None = None) -> str:
    """Read a target's API key from its file or environment variable.

    Args:
        target: The target.
        environ: The environment (default ``os.environ``).

    Returns:
        The key, stripped.

    Raises:
        ConfigError: The file cannot be read, the variable is unset, or the key is empty
            (the message names the file or variable, never the key).
    """
    if target.api_key_file is not None:
        try:
            key = Path(target.api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not UTF-8"
            raise ConfigError(f"target {target.name!r}: cannot read the API key file"
                              f" {target.api_key_file} ({why})") from None
        where = f"file {target.api_key_file}"
    else:
        env = os.environ if environ is None else environ
        key = env.get(str(target.api_key_env), "").strip()
        where = f"environment variable {target.api_key_env}"
    if not key:
        raise ConfigError(f"target {target.name!r}: no API key in {where}")
    return key


def _quote(answer: object) -> str:
    text = answer if isinstance(answer, str) else repr(answer)
    return text if len(text) <= _MAX_QUOTE else text[:_MAX_QUOTE] + "..."


class MispClient:
    """One MISP target, through PyMISP, with every result checked.

    The API key is held privately and appears in no message or repr.
    """

    __slots__ = ("_api", "_factory", "_key", "_pending", "_sleep", "_workers", "retry",
                 "target")

    def __init__(self, target: MispTarget, api_key: str,
                 factory: Callable[..., PyMISP] = PyMISP, *, retry: Retry | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Prepare a client; no network call is made until the first operation.

        Args:
            target: The target (URL, CA file, timeout).
            api_key: Its API key (see :func:`read_api_key`).
            factory: What builds the PyMISP client (PyMISP itself).
            retry: How transient failures are retried (default :class:`Retry`'s).
            sleep: How to wait between tries.

        Raises:
            ConfigError: The key is empty.
        """
        if not api_key.strip():
            raise ConfigError(f"target {target.name!r}: empty API key")
        self.target = target
        self._key = api_key.strip()
        _hide_in_pymisp_logs(self._key)
        self._factory = factory
        self._api: PyMISP | None = None
        self._pending: Future[PyMISP] | None = None
        #: One PyMISP client per part beyond the first (PyMISP's session is not shared
        #: between threads), made by the part's own thread when first needed.
        self._workers: dict[int, PyMISP] = {}
        self.retry = retry or Retry()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"MispClient({self.target.name!r}, {self.target.url!r})"

    def _where(self, doing: str) -> str:
        return f"MISP target {self.target.name!r} ({self.target.url}): {doing}"

    def _build(self) -> PyMISP:
        ssl: bool | str = self.target.ca_file if self.target.ca_file else True
        api: PyMISP = self._call("connecting", lambda: self._factory(
            self.target.url, self._key, ssl=ssl, timeout=self.target.timeout,
            tool="cert-exchange"))
        return api

    def _connect(self) -> PyMISP:
        if self._api is None:
            pending, self._pending = self._pending, None
            self._api = pending.result() if pending is not None else self._build()
        return self._api

    def connect_ahead(self) -> None:
        """Start connecting on a worker thread; the first operation waits for it.

        PyMISP's constructor makes four requests (versions, the user and its role); a
        run that has local work to do first (the push reads and maps its store) calls
        this so that they overlap. A failure (with its retries) is raised by the first
        operation, exactly as if it had connected then. Does nothing once connected or
        connecting.
        """
        if self._api is not None or self._pending is not None:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="misp-connect")
        self._pending = pool.submit(self._build)
        pool.shutdown(wait=False)  # the worker ends once it has connected (or failed)

    def _call(self, doing: str, action: Callable[[], Any], *, idempotent: bool = True
              ) -> Any:
        """Run one PyMISP call, retrying transient failures, and turn every failure into an
        ExchangeError.

        Args:
            doing: What the call does, for messages ("reading event ...").
            action: The call.
            idempotent: Whether repeating a call that may have reached MISP is harmless.
        """
        tried = 0
        while True:
            tried += 1
            try:
                return action()
            except (requests.RequestException, PyMISPError) as e:
                kind, message, retryable = self._failure(doing, e)
            allowed = (retryable is _Retryable.UNSENT
                       or (retryable is _Retryable.UNCERTAIN and idempotent))
            if not allowed or tried >= self.retry.attempts:
                attempts = f" (after {tried} attempts)" if tried > 1 else ""
                raise kind(self._where(message + attempts)) from None
            wait = self.retry.delay(tried)
            log.warning("%s; trying again in %.1f s (attempt %d of %d)",
                        self._where(message), wait, tried + 1, self.retry.attempts)
            self._sleep(wait)

    def _failure(self, doing: str, e: BaseException
                 ) -> tuple[type[ExchangeError], str, _Retryable]:
        """What a failed PyMISP call becomes (error class and message without the
        target), and whether it may be tried again."""
        if isinstance(e, requests.exceptions.SSLError):
            return (RemoteError, f"{doing} failed: the TLS connection could not be verified",
                    _Retryable.NO)
        if isinstance(e, requests.Timeout):
            unsent = isinstance(e, requests.ConnectTimeout)
            return (RemoteError, f"{doing} timed out after {self.target.timeout:g} s",
                    _Retryable.UNSENT if unsent else _Retryable.UNCERTAIN)
        if isinstance(e, requests.ConnectionError):
            unsent = _never_connected(e)
            what = "connection refused" if unsent else "connection reset or closed"
            return (RemoteError, f"{doing} failed: {what} ({type(e).__name__})",
                    _Retryable.UNSENT if unsent else _Retryable.UNCERTAIN)
        if isinstance(e, requests.exceptions.ChunkedEncodingError):
            return (RemoteError, f"{doing} failed: the connection broke off in the middle of"
                    " MISP's answer", _Retryable.UNCERTAIN)
        if isinstance(e, requests.RequestException):
            return RemoteError, f"{doing} failed ({type(e).__name__})", _Retryable.NO
        if isinstance(e, MISPServerError):
            first = str(e).split("\n", 1)[0]
            retry = _Retryable.UNCERTAIN if _SERVER_ERROR.match(first) else _Retryable.NO
            return (RemoteError, f"{doing} failed: MISP answered with a server error"
                    f" ({_quote(first)})", retry)
        text = str(e).replace(self._key, "***")
        if text.startswith("Unable to connect"):
            # The constructor's wrapping of a refused, reset or timed-out connection; the
            # requests exception it wraps says which.
            cause = e.__cause__ or e.__context__
            retry = (self._failure(doing, cause)[2]
                     if isinstance(cause, requests.RequestException) else _Retryable.NO)
            return (RemoteError, f"{doing} failed: MISP could not be reached (connection"
                    " refused, reset, timed out or TLS not verified)", retry)
        if "user settings" in text or "authorization" in text.lower():
            return AuthError, f"{doing}: MISP refused the API key", _Retryable.NO
        return RemoteError, f"{doing} failed: {_quote(text)}", _Retryable.NO

    def _checked(self, doing: str, result: Any) -> Any:
        """Raise for PyMISP's error dicts; return anything else unchanged."""
        if isinstance(result, dict) and "errors" in result:
            errors = result["errors"]
            status, body = (errors if isinstance(errors, tuple | list) and len(errors) == 2
                            and isinstance(errors[0], int) else (0, errors))
            message = body
            if isinstance(body, dict):
                message = body.get("errors") or body.get("message") or body.get("name")
            text = _quote(str(message).replace(self._key, "***"))
            where = self._where(f"{doing}: MISP answered {status or 'an error'}: {text}")
            if status == 401:
                raise AuthError(where)
            if status == 403:
                raise PermissionDenied(where)
            if status == 404:
                raise NotFound(where)
            raise MispRefused(where)
        return result

    def get_event(self, event_uuid: str) -> dict[str, Any] | None:
        """The event with this UUID, soft-deleted attributes included, or None.

        Raises:
            AuthError: MISP refused the API key.
            PermissionDenied: The key may not read the event.
            MispRefused: Another refusal.
            RemoteError: MISP failed, timed out or could not be reached.
        """
        api = self._connect()
        doing = f"reading event {event_uuid}"
        try:
            result = self._checked(doing, self._call(
                doing, lambda: api.get_event(event_uuid, deleted=True)))
        except NotFound:
            return None
        event = result.get("Event") if isinstance(result, dict) else None
        if not isinstance(event, dict):
            raise RemoteError(self._where(f"{doing}: MISP answered without an event"))
        return event

    def push_event(self, event: MispEvent) -> PushResult:
        """Add the event, or bring the existing event with its UUID up to date.

        An existing event whose fields, tags and attributes already match gets no write
        request. Attributes MISP holds that ``event`` does not name are left alone, and
        so is an attribute soft-deleted on MISP (its owner's decision, which MISP's edit
        cannot undo anyway).

        Args:
            event: A mapped event (:mod:`exchange.node.mispmap`). An incomplete one
                (``complete`` false) adds to an event the target already holds.

        Returns:
            Whether the event was created, updated or already up to date (MISP's 403
            "not newer than the local copy" counts as up to date).

        Raises:
            NotFound: ``event`` is incomplete and the target does not hold its event.
            AuthError: MISP refused the API key.
            PermissionDenied: MISP refused the write (other than "not newer").
            MispRefused: Another refusal, or MISP saved the event without some of its
                attributes (it drops values it finds invalid without an error).
            RemoteError: MISP failed, timed out or could not be reached.
        """
        existing = self.get_event(event.uuid)
        api = self._connect()
        body = dict(event.body)
        if existing is None:
            if not event.complete:
                raise NotFound(self._where(f"event {event.uuid} is not on the target, so"
                                           " attributes cannot be added to it"))
            parts = self.target.push_parts
            if parts > 1 and len(body.get("Attribute") or ()) >= parts * _PART_MIN:
                self._add_in_parts(event.uuid, body)
                return PushResult.CREATED
            doing = f"adding event {event.uuid}"
            # PyMISP sends a flat dict as it is (its annotation names only MISPEvent); the
            # mapping's JSON goes to MISP unchanged, without a MISPEvent round trip.
            answer = self._checked(doing, self._call(
                doing, lambda: api.add_event(body),  # type: ignore[arg-type]
                idempotent=False))
            self._check_kept(doing, body, answer)
            return PushResult.CREATED
        if _up_to_date(body, existing):
            return PushResult.UNCHANGED
        if not event.complete:
            body = {**{k: existing[k] for k in _EVENT_FIELDS if k in existing}, **body}
        doing = f"updating event {event.uuid}"
        try:
            answer = self._checked(doing, self._call(
                doing, lambda: api.update_event(
                    body, event_id=event.uuid)))  # type: ignore[arg-type]
        except PermissionDenied as e:
            if _NOT_NEWER in e.reason:
                return PushResult.UNCHANGED
            raise
        self._check_kept(doing, body, answer)
        return PushResult.UPDATED

    def _add_in_parts(self, event_uuid: str, body: Mapping[str, Any]) -> None:
        """Add a new event with many attributes in parts (:data:`_PART_MIN`).

        The event is added unpublished and without attributes; all its attributes but
        the last go in the target's ``push_parts`` requests at once, each checked for
        what MISP kept; the last goes in one edit of the event that publishes it (when
        ``body`` says so). MISP publishes on an edit only when the edit changes the event
        (then it stamps ``publish_timestamp``, which "published since" searches and feeds
        go by, and runs its sync), hence the attribute kept for it. MISP's users and its
        sync see the event only whole. A part that fails leaves an unpublished event
        holding some of the attributes; the error is raised, the run does not move its
        cursor past the event, and the next run brings the event up to date with one edit
        (as any event the target holds: :meth:`push_event`).
        """
        attributes = list(body.get("Attribute") or ())
        head, last = attributes[:-1], attributes[-1:]
        shell = {k: v for k, v in body.items() if k != "Attribute"}
        shell["published"] = False
        api = self._connect()
        doing = f"adding event {event_uuid} (its {len(attributes)} attributes in parts)"
        answer = self._checked(doing, self._call(
            doing, lambda: api.add_event(shell),  # type: ignore[arg-type]
            idempotent=False))
        event = answer.get("Event") if isinstance(answer, dict) else None
        if not isinstance(event, dict) or not str(event.get("id", "")).isdigit():
            raise RemoteError(self._where(f"{doing}: MISP answered without the event"))
        event_id = int(event["id"])
        size = -(-len(head) // self.target.push_parts)
        parts = [head[i:i + size] for i in range(0, len(head), size)]

        def add(index: int) -> None:
            part = parts[index]
            client = api if index == 0 else self._worker(index - 1)
            what = (f"adding attributes {index * size + 1}-{index * size + len(part)} of"
                    f" {len(attributes)} to event {event_uuid}")
            kept = self._checked(what, self._call(
                what, lambda: client.add_attribute(event_id, part), idempotent=False))
            self._check_kept(what, {"Attribute": part}, {"Event": {"Attribute": (
                kept.get("Attribute") if isinstance(kept, dict) else kept) or []}})

        with ThreadPoolExecutor(max_workers=len(parts),
                                thread_name_prefix="misp-push-part") as pool:
            for done in [pool.submit(add, i) for i in range(len(parts))]:
                done.result()  # the first part's failure, in order, after all ended
        final = {**shell, "published": bool(body.get("published")), "Attribute": last}
        what = (f"adding attribute {len(attributes)} of {len(attributes)} to event"
                f" {event_uuid}" + (" and publishing it" if final["published"] else ""))
        held = self._edit_event(what, event_uuid, final)
        self._check_kept(what, body, {"Event": held})  # MISP's answer holds the whole event

    def _worker(self, index: int) -> PyMISP:
        """The PyMISP client of a part beyond the first (made on first use, by the one
        thread that adds that part)."""
        api = self._workers.get(index)
        if api is None:
            api = self._workers[index] = self._build()
        return api

    def _check_kept(self, doing: str, body: Mapping[str, Any], answer: Any) -> None:
        """MISP saves an event but silently drops attributes it finds invalid: say so."""
        event = answer.get("Event") if isinstance(answer, dict) else None
        if not isinstance(event, dict):
            raise RemoteError(self._where(f"{doing}: MISP answered without the event"))
        kept = {a.get("uuid") for a in event.get("Attribute") or ()}
        dropped = sorted(str(a.get("uuid")) for a in body.get("Attribute") or ()
                         if a.get("uuid") not in kept)
        if dropped:
            raise MispRefused(self._where(
                f"{doing}: MISP saved the event but dropped {len(dropped)} attribute(s) it"
                f" found invalid: {', '.join(dropped[:5])}"))

    def delete_attributes(self, event_uuid: str, attribute_uuids: Sequence[str], *,
                          publish: bool) -> int:
        """Soft-delete attributes of an event in one edit, which also publishes it (or
        leaves it unpublished when ``publish`` is false).

        One edit that marks the attributes ``deleted`` is a change MISP publishes on as
        its own sync does (it stamps ``publish_timestamp`` and pushes the event to its
        sync partners, so the deletion travels on), which soft deletes one by one and a
        publish by an edit that changes nothing would not make it do for a sync user whose
        events keep their contributor as ``Orgc``. Attributes the event does not hold, or
        holds deleted already, are left out; with none left no request is made.

        Returns:
            How many attributes were deleted now.

        Raises:
            NotFound: The target does not hold the event.
            AuthError, PermissionDenied, MispRefused, RemoteError: MISP refused or failed,
                or kept an attribute or the event not as asked.
        """
        existing = self.get_event(event_uuid)
        if existing is None:
            raise NotFound(self._where(f"event {event_uuid} is not on the target"))
        held = {a.get("uuid"): a for a in existing.get("Attribute") or ()}
        todo = [u for u in dict.fromkeys(attribute_uuids)
                if u in held and not held[u].get("deleted")]
        if not todo:
            return 0
        body: dict[str, Any] = {k: existing[k] for k in _EVENT_FIELDS if k in existing}
        body.update(uuid=event_uuid, published=publish,
                    Attribute=[{"uuid": u, "deleted": True} for u in todo])
        doing = (f"soft-deleting {len(todo)} attribute(s) of event {event_uuid}"
                 + (" and publishing it" if publish else ""))
        event = self._edit_event(doing, event_uuid, body)
        live = [a.get("uuid") for a in event.get("Attribute") or ()
                if a.get("uuid") in todo and not a.get("deleted")]
        if live:
            raise MispRefused(self._where(f"{doing}: MISP kept {len(live)} of them"
                                          f" undeleted: {', '.join(map(str, live[:5]))}"))
        return len(todo)

    def _edit_event(self, doing: str, event_uuid: str, body: Mapping[str, Any]
                    ) -> dict[str, Any]:
        """Edit an event with ``body`` (retried: an edit by UUID is idempotent) and return
        the event MISP answers with.

        Raises:
            RemoteError: MISP answered without the event.
            MispRefused: ``body`` publishes the event and MISP kept it unpublished.
            AuthError, PermissionDenied, NotFound: MISP refused the edit.
        """
        api = self._connect()
        answer = self._checked(doing, self._call(doing, lambda: api.update_event(
            body, event_id=event_uuid)))  # type: ignore[arg-type]
        event = answer.get("Event") if isinstance(answer, dict) else None
        if not isinstance(event, dict):
            raise RemoteError(self._where(f"{doing}: MISP answered without the event"))
        if body.get("published") and event.get("published") not in (True, 1, "1"):
            raise MispRefused(self._where(f"{doing}: MISP kept the event unpublished"))
        return event

    # -- what the push run needs besides events (exchange.misp.push) ----------------------

    def locate_attributes(self, attribute_uuids: Sequence[str]) -> dict[str, str]:
        """Where the target already holds attributes: attribute UUID -> event UUID.

        MISP keeps an attribute UUID in one event only; an attribute the target holds
        (pushed by an earlier node or home, or grouped differently then) must be
        updated where it is, or MISP drops it from any other event. Soft-deleted
        attributes count. Reads only, in batches of :data:`_LOCATE_BATCH`.

        Raises:
            AuthError, PermissionDenied, MispRefused, RemoteError: MISP refused or failed.
        """
        api = self._connect()
        wanted = sorted(set(attribute_uuids))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), _LOCATE_BATCH):
            chunk = wanted[start:start + _LOCATE_BATCH]
            doing = f"looking up {len(chunk)} attribute UUID(s)"

            def search(chunk: list[str] = chunk) -> Any:
                return api.search(controller="attributes", uuid=chunk,  # type: ignore[arg-type]
                                  deleted=[0, 1],
                                  limit=len(chunk) + 1, page=1, pythonify=False)

            answer = self._checked(doing, self._call(doing, search))
            rows = answer.get("Attribute", []) if isinstance(answer, dict) else []
            for row in rows if isinstance(rows, list) else []:
                event = row.get("Event") if isinstance(row, dict) else None
                if isinstance(event, dict) and isinstance(event.get("uuid"), str) \
                        and row.get("uuid") in chunk:
                    found[str(row["uuid"])] = event["uuid"]
        return found

    def would_push(self, event: MispEvent) -> PushResult:
        """What :meth:`push_event` would do with ``event``; reads only, writes nothing.

        Raises:
            NotFound: ``event`` is incomplete and the target does not hold its event.
            AuthError, PermissionDenied, MispRefused, RemoteError: As for reading it.
        """
        existing = self.get_event(event.uuid)
        if existing is None:
            if not event.complete:
                raise NotFound(self._where(f"event {event.uuid} is not on the target, so"
                                           " attributes cannot be added to it"))
            return PushResult.CREATED
        return PushResult.UNCHANGED if _up_to_date(event.body, existing) else \
            PushResult.UPDATED

    def _role_allows(self, *permissions: str) -> bool:
        role = getattr(self._connect(), "_current_role", None)
        return any(bool(getattr(role, name, False)) for name in permissions)

    def is_sync_user(self) -> bool:
        """Whether the account's role has ``perm_sync`` (it may set an event's Orgc).

        Raises:
            AuthError, RemoteError: Connecting failed.
        """
        return self._role_allows("perm_sync")

    def may_create_sharing_groups(self) -> bool:
        """Whether the account's role has ``perm_sharing_group`` (or is site admin).

        Raises:
            AuthError, RemoteError: Connecting failed.
        """
        return self._role_allows("perm_sharing_group", "perm_site_admin")

    def own_organisation(self) -> tuple[str, str]:
        """The account's own organisation on the target: (name, UUID).

        Raises:
            AuthError, PermissionDenied, MispRefused, RemoteError: MISP refused or failed.
        """
        api = self._connect()
        org_id = getattr(getattr(api, "_current_user", None), "org_id", None)
        doing = "reading the account's organisation"
        if org_id is None:
            raise RemoteError(self._where(f"{doing}: MISP did not say which it is"))
        answer = self._checked(doing, self._call(
            doing, lambda: api.get_organisation(org_id)))
        org = answer.get("Organisation") if isinstance(answer, dict) else None
        if not isinstance(org, dict) or not org.get("uuid"):
            raise RemoteError(self._where(f"{doing}: MISP answered without an organisation"))
        return str(org.get("name", "")), str(org["uuid"])

    def find_organisation(self, name: str) -> str | None:
        """The UUID of the organisation named exactly ``name`` on the target, or None.

        Raises:
            AuthError, PermissionDenied, MispRefused, RemoteError: MISP refused or failed.
        """
        api = self._connect()
        doing = f"looking up organisation {name!r}"
        answer = self._checked(doing, self._call(
            doing, lambda: api.organisations(scope="all", search=name)))
        for item in answer if isinstance(answer, list) else ():
            org = item.get("Organisation", item) if isinstance(item, dict) else None
            if isinstance(org, dict) and org.get("name") == name and org.get("uuid"):
                return str(org["uuid"])
        return None

    def ensure_sharing_group(self, group_uuid: str, name: str, description: str,
                             organisations: Sequence[tuple[str, str]]) -> int:
        """The id of the sharing group with this UUID, created when the target lacks it.

        The group holds ``organisations`` (name, UUID; MISP creates the organisations
        it lacks, as it does for synced data) and the account's own organisation, so the
        account may use it; it is local to the target (not roaming). A group the target
        already holds is used as it is.

        Returns:
            The sharing group's id on the target.

        Raises:
            PermissionDenied: The account may not create sharing groups.
            AuthError, MispRefused, RemoteError: MISP refused or failed.
        """
        api = self._connect()
        doing = f"reading sharing group {group_uuid}"
        try:
            found = self._checked(doing, self._call(
                doing, lambda: api.get_sharing_group(group_uuid)))
        except (NotFound, PermissionDenied, MispRefused):
            found = None
        group = found.get("SharingGroup") if isinstance(found, dict) else None
        if isinstance(group, dict) and group.get("id"):
            return int(group["id"])
        doing = f"creating sharing group {name!r}"
        if not self.may_create_sharing_groups():
            raise PermissionDenied(self._where(f"{doing}: the account's role lacks"
                                               " perm_sharing_group"))
        own_name, own_uuid = self.own_organisation()
        members = [(own_name, own_uuid), *((n, u) for n, u in organisations
                                           if u != own_uuid)]
        body = {
            "uuid": group_uuid, "name": name, "description": description,
            "releasability": "the parties of a cert-exchange agreement",
            "active": True, "roaming": False,
            "SharingGroupOrg": [{"extend": False, "Organisation": {"name": n, "uuid": u}}
                                for n, u in members],
        }
        # Not retried blindly: a create that reached MISP is found by UUID next run.
        answer = self._checked(doing, self._call(
            doing, lambda: api.add_sharing_group(body),  # type: ignore[arg-type]
            idempotent=False))
        group = answer.get("SharingGroup", answer) if isinstance(answer, dict) else None
        if not isinstance(group, dict) or not group.get("id"):
            raise MispRefused(self._where(f"{doing}: MISP did not create it"
                                          f" ({_quote(answer)})"))
        return int(group["id"])

    def publish_event(self, event_uuid: str, *, if_needed: bool = False) -> bool:
        """Publish an event (MISP syncs only published events), without alert e-mails.

        Args:
            event_uuid: The event.
            if_needed: Read the event first and publish only if it is not published.

        Returns:
            Whether a publish request was made.

        Raises:
            NotFound: The target does not hold the event.
            AuthError, PermissionDenied, MispRefused, RemoteError: MISP refused or failed.
        """
        if if_needed:
            existing = self.get_event(event_uuid)
            if existing is None:
                raise NotFound(self._where(f"event {event_uuid} is not on the target"))
            if existing.get("published") in (True, 1, "1"):
                return False
        api = self._connect()
        doing = f"publishing event {event_uuid}"
        try:
            self._checked(doing, self._call(
                doing, lambda: api.publish(event_uuid, alert=False)))
        except (PermissionDenied, MispRefused):
            # MISP lets only the creator organisation use its publish action; a sync
            # user that kept the contributor as Orgc publishes by editing the event
            # with ``published`` true, as MISP's own push does.
            if not self.is_sync_user():
                raise
            self._publish_by_edit(event_uuid)
        return True

    def _publish_by_edit(self, event_uuid: str) -> None:
        existing = self.get_event(event_uuid)
        if existing is None:
            raise NotFound(self._where(f"event {event_uuid} is not on the target"))
        body: dict[str, Any] = {k: existing[k] for k in _EVENT_FIELDS if k in existing}
        body.update(uuid=event_uuid, published=True)
        # MISP publishes on an edit (publish_timestamp, its sync to its own partners) only
        # when the edit changes something; one that changes nothing only sets the flag. An
        # attribute sent by its UUID alone, without a timestamp, is kept as it is with a
        # new timestamp: a change MISP counts, and nothing the exchange compares.
        live = [a["uuid"] for a in existing.get("Attribute") or ()
                if isinstance(a, dict) and not a.get("deleted")
                and isinstance(a.get("uuid"), str)]
        if live:
            body["Attribute"] = [{"uuid": live[0]}]
        self._edit_event(f"publishing event {event_uuid} (by edit, as a sync user)",
                         event_uuid, body)

    def search_index(self, since: str | None, *, page: int = 1, limit: int = 500,
                     tags: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One page of published events whose timestamp is at or after ``since``.

        MISP's filter is inclusive (research/misp.md 4.4), so the caller de-duplicates
        on (uuid, timestamp). Rows are sorted by timestamp, oldest first, and carry at
        least ``uuid`` and ``timestamp`` (MISP's clock, epoch seconds as text).

        Args:
            since: The cursor (epoch seconds as text), or None for every event.
            page: The 1-based page.
            limit: Rows per page.
            tags: Only events carrying one of these tags (none: every event).

        Raises:
            AuthError: MISP refused the API key.
            PermissionDenied: The key may not list events.
            MispRefused: Another refusal.
            RemoteError: MISP failed, timed out, could not be reached, or answered
                something other than a list.
        """
        api = self._connect()
        doing = f"listing published events since {since or 'the beginning'} (page {page})"
        answer = self._checked(doing, self._call(doing, lambda: api.search_index(
            published=True, minimal=True, timestamp=since, sort="timestamp", desc=False,
            limit=limit, page=page,
            tags=list(tags) or None)))  # type: ignore[type-var]  # PyMISP: str lists are fine
        if not isinstance(answer, list):
            raise RemoteError(self._where(f"{doing}: MISP answered without an event list"))
        rows = [row for row in answer if isinstance(row, dict)
                and isinstance(row.get("uuid"), str)
                and str(row.get("timestamp", "")).isdigit()]
        return sorted(rows, key=lambda r: (int(r["timestamp"]), r["uuid"]))


def _never_connected(e: requests.ConnectionError) -> bool:
    """Whether a connection error happened before the request was sent (refused)."""
    seen: set[int] = set()
    cause: object = e
    while isinstance(cause, BaseException) and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NewConnectionError | ConnectTimeoutError):
            return True
        nested = getattr(cause, "reason", None)
        if nested is None and cause.args and isinstance(cause.args[0], BaseException):
            nested = cause.args[0]
        cause = nested
    return False


def _same(field: str, wanted: object, held: object) -> bool:
    if field in _TIME_FIELDS and wanted is not None and held is not None:
        try:
            return (datetime.fromisoformat(str(wanted).replace("Z", "+00:00"))
                    == datetime.fromisoformat(str(held).replace("Z", "+00:00")))
        except ValueError:
            return False
    if isinstance(wanted, bool) or isinstance(held, bool):
        return bool(wanted) == bool(held)
    return str(wanted) == str(held)


def _tag_names(item: Mapping[str, Any]) -> set[str]:
    return {str(t.get("name")) for t in item.get("Tag") or () if isinstance(t, Mapping)}


def _up_to_date(body: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Whether MISP's event already holds everything ``body`` says."""
    for name in _EVENT_FIELDS:
        if name in body and not _same(name, body[name], existing.get(name)):
            return False
    if not _tag_names(body) <= _tag_names(existing):
        return False
    held = {a.get("uuid"): a for a in existing.get("Attribute") or ()}
    for attribute in body.get("Attribute") or ():
        have = held.get(attribute.get("uuid"))
        # The event's tags apply to its attributes (exchange.node.mispmap).
        if have is None or not _tag_names(attribute) <= (_tag_names(have)
                                                         | _tag_names(existing)):
            return False
        if have.get("deleted") and not attribute.get("deleted"):
            # Deleted on MISP (by its owner): MISP's edit cannot restore it, and the push
            # does not undo its owner's decision, so there is nothing to write.
            continue
        wanted = {"deleted": False, **attribute}
        for name in _ATTRIBUTE_FIELDS:
            if name in wanted and not _same(name, wanted[name], have.get(name)):
                return False
    return True
