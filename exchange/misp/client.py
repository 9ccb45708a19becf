"""A thin, checked wrapper over the real PyMISP client, for one MISP target.

PyMISP has two habits this module exists to tame (DESIGN.md decision 7, research/misp.md):

* Its constructor talks to the server (recommended version, MISP version, the current
  user, the type table). :class:`MispClient` builds it lazily, on the first call, so
  creating a client never touches the network and a failure surfaces where a call is made.
* It returns 4xx answers as dicts (``{"errors": (status, body)}``) instead of raising.
  Every result here is checked: 401 becomes :class:`~exchange.errors.AuthError`, 403
  :class:`~exchange.errors.PermissionDenied`, 404 :class:`~exchange.errors.NotFound`,
  any other refusal :class:`MispRefused`; 5xx answers, timeouts, refused and reset
  connections become :class:`~exchange.errors.RemoteError` saying what failed. Messages
  name the target and the operation, never the API key.

What the push needs: :meth:`MispClient.get_event` (by UUID, soft-deleted attributes
included), :meth:`MispClient.push_event` (add or update by UUID, idempotent: an event
that already holds the same content gets no write request at all, and MISP's 403 "not
newer than the local copy" counts as up to date) and :meth:`MispClient.delete_attribute`
(MISP's soft delete; an attribute already deleted is left alone).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import requests
from pymisp import PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError

from exchange.errors import (
    AuthError,
    ConfigError,
    ExchangeError,
    NotFound,
    PermissionDenied,
    RemoteError,
)
from exchange.misp.mapping import MispEvent
from exchange.misp.targets import MispTarget

__all__ = ["MispClient", "MispRefused", "PushResult", "read_api_key"]

#: Event fields the exchange sets and compares (MISP's numbers as strings).
_EVENT_FIELDS: Final = ("info", "date", "distribution", "sharing_group_id",
                        "threat_level_id", "analysis")
#: Attribute fields the exchange sets and compares.
_ATTRIBUTE_FIELDS: Final = ("type", "category", "value", "to_ids", "distribution",
                            "sharing_group_id", "comment", "deleted", "first_seen",
                            "last_seen")
_TIME_FIELDS: Final = frozenset({"first_seen", "last_seen"})
_NOT_NEWER: Final = "not newer than the local copy"
#: Longest piece of MISP's answer quoted in a message.
_MAX_QUOTE: Final = 300


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

    __slots__ = ("_api", "_factory", "_key", "target")

    def __init__(self, target: MispTarget, api_key: str,
                 factory: Callable[..., PyMISP] = PyMISP) -> None:
        """Prepare a client; no network call is made until the first operation.

        Args:
            target: The target (URL, CA file, timeout).
            api_key: Its API key (see :func:`read_api_key`).
            factory: What builds the PyMISP client (PyMISP itself).

        Raises:
            ConfigError: The key is empty.
        """
        if not api_key.strip():
            raise ConfigError(f"target {target.name!r}: empty API key")
        self.target = target
        self._key = api_key.strip()
        self._factory = factory
        self._api: PyMISP | None = None

    def __repr__(self) -> str:
        return f"MispClient({self.target.name!r}, {self.target.url!r})"

    def _where(self, doing: str) -> str:
        return f"MISP target {self.target.name!r} ({self.target.url}): {doing}"

    def _connect(self) -> PyMISP:
        if self._api is None:
            ssl: bool | str = self.target.ca_file if self.target.ca_file else True
            self._api = self._call("connecting", lambda: self._factory(
                self.target.url, self._key, ssl=ssl, timeout=self.target.timeout,
                tool="cert-exchange"))
        return self._api

    def _call(self, doing: str, action: Callable[[], Any]) -> Any:
        """Run one PyMISP call and turn every failure into an ExchangeError."""
        try:
            return action()
        except requests.Timeout:
            raise RemoteError(self._where(f"{doing} timed out after"
                                          f" {self.target.timeout:g} s")) from None
        except requests.ConnectionError as e:
            kind = type(e).__name__
            raise RemoteError(self._where(f"{doing} failed: connection refused, reset or"
                                          f" not verified ({kind})")) from None
        except requests.RequestException as e:
            raise RemoteError(self._where(f"{doing} failed ({type(e).__name__})")) from None
        except MISPServerError as e:
            first = str(e).split("\n", 1)[0]
            raise RemoteError(self._where(f"{doing} failed: MISP answered with a server"
                                          f" error ({_quote(first)})")) from None
        except PyMISPError as e:
            text = str(e).replace(self._key, "***")
            if text.startswith("Unable to connect"):
                # The constructor's wrapping of a refused, reset or timed-out connection.
                raise RemoteError(self._where(
                    f"{doing} failed: MISP could not be reached (connection refused, reset,"
                    " timed out or TLS not verified)")) from None
            if "user settings" in text or "authorization" in text.lower():
                raise AuthError(self._where(f"{doing}: MISP refused the API key")) from None
            raise RemoteError(self._where(f"{doing} failed: {_quote(text)}")) from None

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
            event: A mapped event (:mod:`exchange.misp.mapping`). An incomplete one
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
            doing = f"adding event {event.uuid}"
            # PyMISP sends a flat dict as it is (its annotation names only MISPEvent); the
            # mapping's JSON goes to MISP unchanged, without a MISPEvent round trip.
            answer = self._checked(doing, self._call(
                doing, lambda: api.add_event(body)))  # type: ignore[arg-type]
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

    def delete_attribute(self, attribute_uuid: str, event_uuid: str) -> bool:
        """Soft-delete an attribute (MISP keeps it, marked deleted).

        Args:
            attribute_uuid: The attribute.
            event_uuid: The event holding it (to tell "already deleted" from "absent").

        Returns:
            True if it was deleted now, False if it was already deleted.

        Raises:
            NotFound: Neither the attribute nor a deleted copy is in the event.
            AuthError: MISP refused the API key.
            PermissionDenied: The key may not delete it.
            MispRefused: Another refusal.
            RemoteError: MISP failed, timed out or could not be reached.
        """
        api = self._connect()
        doing = f"soft-deleting attribute {attribute_uuid}"
        try:
            self._checked(doing, self._call(
                doing, lambda: api.delete_attribute(attribute_uuid, hard=False)))
            return True
        except NotFound:
            existing = self.get_event(event_uuid)
            for attribute in (existing or {}).get("Attribute", []):
                if attribute.get("uuid") == attribute_uuid and attribute.get("deleted"):
                    return False
            raise NotFound(self._where(f"attribute {attribute_uuid} is not in event"
                                       f" {event_uuid}")) from None


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
        if have is None or not _tag_names(attribute) <= _tag_names(have):
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

