"""``exchange pull --verify``: check every pulled object against the published registry.

A consumer cannot see when the exchange recorded an object, which is what decides
whether a rotated or revoked key was still good (:mod:`exchange.member.verification`). A TAXII
page tells it within bounds: every object of a page was recorded between the page's
``X-TAXII-Date-Added-First`` and ``X-TAXII-Date-Added-Last``. :meth:`PullVerifier.screen`
checks each page against those bounds before any of it is written; when they straddle a
change of a key's validity (a rotation or compromise inside the page), it asks the
collection's manifest for the exact ``date_added`` and checks again, so a page is judged
whole and an invalid object never reaches the feed file (``client.pull`` reads the
page's cursor before the manifest request).

What it leaves to others: writing the feed, the quarantine file and the cursor
(:func:`exchange.member.client.pull`), and the verdicts themselves
(:func:`exchange.member.verification.check_object`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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

    def screen(self, objects: Sequence[dict[str, Any]]) -> list[str | None]:
        """Judge one page (the ``screen`` of ``client.pull``): per object, None to keep it,
        or why it is invalid.

        Each object is checked against the page's bounds; objects whose bounds straddle a
        change of their key's validity are checked again with the exact recording time
        from the collection's manifest before the page is judged, so nothing ambiguous is
        ever kept.

        Raises:
            RemoteError: A manifest request failed (nothing of the page is written).
        """
        bounds = self._bounds()
        verdicts = [check_object(self._trusted, obj, recorded_between=bounds, now=self._now)
                    for obj in objects]
        pending = [i for i, v in enumerate(verdicts) if v.needs_recording_time]
        for start in range(0, len(pending), _LOOKUP_BATCH):
            chunk = pending[start:start + _LOOKUP_BATCH]
            recorded = self._recorded([objects[i] for i in chunk])
            for index in chunk:
                obj = objects[index]
                at = recorded.get((str(obj.get("id")), _micros_or_none(_version(obj))))
                if at is not None:
                    verdicts[index] = check_object(self._trusted, obj,
                                                   recorded_between=(at, at), now=self._now)
        self.verdicts.extend(verdicts)
        return [(v.reason or "invalid") if v.status == "invalid" else None for v in verdicts]

    def _recorded(self, objects: Sequence[dict[str, Any]]) -> dict[tuple[str, int | None], int]:
        ids = sorted({str(obj.get("id")) for obj in objects})
        versions = sorted({_version(obj) for obj in objects} - {""})
        collection = self._conn.collection(self._url)
        try:
            manifest = collection.get_manifest(id=ids, version=versions or "all", limit=1000)
        except (requests.RequestException, TAXIIServiceException) as e:
            raise remote_error(e, "manifest lookup failed") from e
        return _recording_times(manifest)


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
