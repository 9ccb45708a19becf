"""``exchange revoke``: withdraw objects a member published, as signed revoked versions.

For each id: fetch the newest version the collection holds (TAXII 2.1 section 5.6),
make its revoked version (:func:`exchange.signing.revocation.revoked_version`: ``revoked``
true, ``modified`` strictly later, the reason in a ``cert-exchange-revocation`` external
reference), sign it with the member's key when one is given, and post every revocation
in envelopes (section 5.4). The node accepts a new version only from the organisation
that contributed the id, so nobody can revoke another member's object.

Also here: reading the ids to revoke from a file (one per line, or a STIX bundle's
versionable objects) for ``exchange publish --revoke``.

What it leaves to others: the signing (:func:`exchange.member.signer.sign_all`), the
HTTP (:mod:`exchange.member.client`), printing (:mod:`exchange.cli.revoke`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests
from taxii2client.exceptions import TAXIIServiceException

from exchange.errors import ExchangeError, InvalidInput, RemoteError
from exchange.member import client
from exchange.member.signer import sign_all
from exchange.model.stixkinds import IDENTIFIER
from exchange.signing.keys import SigningKey
from exchange.signing.revocation import revoked_version

__all__ = ["Outcome", "read_ids", "revoke"]

#: Largest ids file read (bytes).
_MAX_IDS_FILE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one id.

    Attributes:
        id: The object id.
        status: ``revoked`` (the node stored the revoked version), ``refused`` (it could
            not be made, signed or stored) or ``skipped`` (already revoked).
        detail: The new ``modified`` when revoked, else the reason.
    """

    id: str
    status: Literal["revoked", "refused", "skipped"]
    detail: str


def _fetch_newest(collection: Any, object_id: str) -> dict[str, Any]:
    try:
        envelope = collection.get_object(object_id)
    except requests.HTTPError as e:
        if e.response is not None and e.response.status_code == 404:
            raise InvalidInput("not in this collection, or not visible to you") from e
        raise client.remote_error(e, "fetch failed") from e
    except (requests.RequestException, TAXIIServiceException) as e:
        raise client.remote_error(e, "fetch failed") from e
    versions = [o for o in envelope.get("objects", []) if isinstance(o, dict)
                and o.get("id") == object_id]
    if not versions:
        raise InvalidInput("not in this collection, or not visible to you")
    return max(versions, key=lambda o: str(o.get("modified") or o.get("created") or ""))


def revoke(conn: client.Connection, collection_url: str, ids: Sequence[str], reason: str, *,
           key: SigningKey | None, batch_size: int = 100) -> list[Outcome]:
    """Revoke objects of a collection; one outcome per id, in order.

    Args:
        conn: The member's connection.
        collection_url: The collection holding the objects.
        ids: The object ids (duplicates are revoked once).
        reason: Why; recorded in each revoked version.
        key: The member's signing key (None: the revocations go unsigned, which a
            collection that requires signatures refuses).
        batch_size: Objects per envelope.

    Returns:
        The outcomes.

    Raises:
        RemoteError: The server could not be reached or refused a whole envelope.
    """
    collection = conn.collection(collection_url)
    outcomes: dict[str, Outcome] = {}
    ready: list[dict[str, Any]] = []
    for object_id in dict.fromkeys(ids):
        if IDENTIFIER.fullmatch(object_id) is None:
            outcomes[object_id] = Outcome(object_id, "refused", "not a STIX id (type--UUID)")
            continue
        try:
            newest = _fetch_newest(collection, object_id)
            if newest.get("revoked") is True:
                outcomes[object_id] = Outcome(object_id, "skipped", "already revoked")
                continue
            revoked = revoked_version(newest, reason)
            if key is not None:
                signed = sign_all([revoked], key, normalise=True)
                if signed.refused:
                    raise InvalidInput(f"cannot sign it: {signed.refused[0][1]}")
                revoked = signed.objects[0]
        except RemoteError:
            raise
        except ExchangeError as e:
            outcomes[object_id] = Outcome(object_id, "refused",
                                          e.reason.removeprefix(f"{object_id}: "))
            continue
        ready.append(revoked)
        outcomes[object_id] = Outcome(object_id, "revoked", str(revoked["modified"]))
    if ready:
        report = client.publish(conn, collection_url, ready, batch_size=batch_size)
        for object_id, message in report.failures:
            if object_id in outcomes:
                outcomes[object_id] = Outcome(object_id, "refused", message)
    return [outcomes[i] for i in dict.fromkeys(ids)]


def read_ids(path: Path) -> list[str]:
    """The ids to revoke, from a file: a STIX bundle (the ids of its versionable objects:
    those with ``modified``) or text with one id per line (blank lines and ``#``
    comments ignored).

    Raises:
        InvalidInput: The file cannot be read, is not a bundle or id list, holds a line
            that is not a STIX id, or names no id.
    """
    try:
        if path.stat().st_size > _MAX_IDS_FILE:
            raise InvalidInput(f"{path} is larger than {_MAX_IDS_FILE} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        raise InvalidInput(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    ids: list[str] = []
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as e:
            raise InvalidInput(f"{path} is not valid JSON: {e}") from e
        objects = document.get("objects") if isinstance(document, dict) else None
        if not isinstance(objects, list):
            raise InvalidInput(f"{path} is JSON but not a STIX bundle (no 'objects' list)")
        ids = [o["id"] for o in objects if isinstance(o, dict) and isinstance(o.get("id"), str)
               and "modified" in o]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if IDENTIFIER.fullmatch(entry) is None:
                raise InvalidInput(f"{path} line {number}: {entry[:80]!r} is not a STIX id")
            ids.append(entry)
    if not ids:
        raise InvalidInput(f"{path} names no object that can be revoked")
    return list(dict.fromkeys(ids))
