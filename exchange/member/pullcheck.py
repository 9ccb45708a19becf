"""``exchange pull --verify``: check every pulled object against the published registry.

A consumer cannot see when the exchange recorded an object, which is what decides
whether a rotated or revoked key was still good (:mod:`exchange.member.verification`). A TAXII
page tells it within bounds: every object of a page was recorded between the page's
``X-TAXII-Date-Added-First`` and ``X-TAXII-Date-Added-Last``. :class:`PullVerifier`
checks each object against those bounds as it arrives; when they straddle a change of
the key's validity (a rotation or compromise inside the page), :meth:`PullVerifier.finish`
asks the collection's manifest for the exact ``date_added`` and checks again. It runs
after the pull, so the pull's cursor is never read from a manifest response.

What it leaves to others: writing the objects and the cursor (:func:`exchange.member.client.pull`),
and the verdicts themselves (:func:`exchange.member.verification.check_object`).
"""

from __future__ import annotations

import time
from typing import Any, Final

import requests
from taxii2client.exceptions import TAXIIServiceException

from exchange.errors import InvalidInput
from exchange.member.client import Connection, remote_error
from exchange.member.verification import Verdict, check_object
from exchange.signing.published import TrustedKeys
from exchange.storage.timestamps import to_micros

__all__ = ["PullVerifier"]

#: Objects whose exact recording time one manifest request asks for.
_LOOKUP_BATCH: Final = 50


class PullVerifier:
    """Checks objects as :func:`exchange.member.client.pull` receives them.

    Args:
        trusted: The published registry.
        conn: The pull's connection; its last response's headers give the page bounds.
        collection_url: The collection pulled.
    """

    def __init__(self, trusted: TrustedKeys, conn: Connection, collection_url: str) -> None:
        self._trusted = trusted
        self._conn = conn
        self._url = collection_url
        self._now = time.time_ns() // 1000
        self.verdicts: list[Verdict] = []
        self._pending: list[tuple[int, dict[str, Any]]] = []

    def __repr__(self) -> str:
        return f"PullVerifier({len(self.verdicts)} objects checked)"

    def _bounds(self) -> tuple[int, int] | None:
        headers = {name.lower(): value for name, value in self._conn.last_headers.items()}
        first = headers.get("x-taxii-date-added-first")
        last = headers.get("x-taxii-date-added-last")
        if not (first and last):
            return None
        try:
            return to_micros(first), to_micros(last)
        except InvalidInput:
            return None

    def on_object(self, obj: dict[str, Any]) -> None:
        """Check one received object (the ``on_object`` hook of ``client.pull``)."""
        verdict = check_object(self._trusted, obj, recorded_between=self._bounds(),
                               now=self._now)
        if verdict.needs_recording_time:
            self._pending.append((len(self.verdicts), obj))
        self.verdicts.append(verdict)

    def finish(self) -> list[Verdict]:
        """Check again, with the exact recording time, the objects that need it.

        Returns:
            One verdict per object received, in order.

        Raises:
            RemoteError: A manifest request failed.
        """
        collection = self._conn.collection(self._url)
        for start in range(0, len(self._pending), _LOOKUP_BATCH):
            chunk = self._pending[start:start + _LOOKUP_BATCH]
            ids = sorted({str(obj.get("id")) for _, obj in chunk})
            versions = sorted({_version(obj) for _, obj in chunk} - {""})
            try:
                manifest = collection.get_manifest(id=ids, version=versions or "all",
                                                   limit=1000)
            except (requests.RequestException, TAXIIServiceException) as e:
                raise remote_error(e, "manifest lookup failed") from e
            recorded = _recording_times(manifest)
            for index, obj in chunk:
                at = recorded.get((str(obj.get("id")), _micros_or_none(_version(obj))))
                if at is not None:
                    self.verdicts[index] = check_object(
                        self._trusted, obj, recorded_between=(at, at), now=self._now)
        self._pending = []
        return self.verdicts


def _version(obj: dict[str, Any]) -> str:
    stamp = obj.get("modified") or obj.get("created")
    return stamp if isinstance(stamp, str) else ""


def _micros_or_none(stamp: str) -> int | None:
    try:
        return to_micros(stamp)
    except InvalidInput:
        return None


def _recording_times(manifest: Any) -> dict[tuple[str, int | None], int]:
    """(id, version µs) -> date_added µs, from a TAXII manifest resource."""
    found: dict[tuple[str, int | None], int] = {}
    entries = manifest.get("objects", []) if isinstance(manifest, dict) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        identifier, version, added = entry.get("id"), entry.get("version"), entry.get("date_added")
        if not (isinstance(identifier, str) and isinstance(added, str)):
            continue
        at = _micros_or_none(added)
        if at is not None:
            stamp = _micros_or_none(version) if isinstance(version, str) else None
            found[(identifier, stamp)] = at
    return found
