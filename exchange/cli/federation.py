"""A federated pull for the demo and the benchmark, until the ingestion engine runs it.

Issue 20. This is the smallest honest pull from a peer node: page through a peer's
collection with taxii2-client as the peer account this node was given there, verify every
object with the peer's :class:`~exchange.feeds.peers.PeerVerifier` (refused objects are
reported with their reason and never stored), and publish the verified ones, unchanged,
into a local collection as a contribution of the peer's organisation, through the node's
own publish path (strict validation, policy, signature check against the local registry,
one transaction per envelope, publish records in the ledger with channel ``peer:pull``).
The peer's member keys of that organisation are registered locally first
(:func:`adopt_peer_keys`), taken only from the registry that verified against the pins,
so the local check and the local registry agree with the peer's.

The scheduled, resumable pull (cursor, state, retries) is the ingestion engine's
(:mod:`exchange.feeds.ingest`); the demo and the benchmark switch to it when it lands.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from taxii2client.v21 import as_pages

from exchange.errors import RemoteError
from exchange.feeds.peers import PeerVerifier
from exchange.member.client import Connection
from exchange.model.objects import Principal
from exchange.node.keyring import list_keys, register_key
from exchange.node.service import Exchange
from exchange.signing.published import TrustedKeys
from exchange.storage.envelopes import MSG_EXISTS

log = logging.getLogger(__name__)

#: Objects per TAXII page asked of the peer, and per envelope published locally.
PAGE: Final = 1000
#: Pages at most per pull (a bound on the loop; 10 million objects).
MAX_PAGES: Final = 10_000
#: The longest wait for one page (the client's own timeout is shorter).
_FETCH_TIMEOUT: Final = 300.0


@dataclass
class PullReport:
    """What one federated pull did.

    Attributes:
        received: Objects received from the peer.
        imported: Versions stored locally.
        unchanged: Versions already held.
        refused: Object id -> why it was refused (verification or local ingest).
        last_added: The ``date_added`` of the last page's last object at the peer
            (``X-TAXII-Date-Added-Last``), where the next pull resumes.
    """

    received: int = 0
    imported: int = 0
    unchanged: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    last_added: str | None = None


def adopt_peer_keys(node: Exchange, keys: TrustedKeys, org: str) -> int:
    """Register locally the member keys the peer's verified registry gives ``org``
    (active ones not yet registered here). Returns how many were registered.

    Raises:
        NotFound: ``org`` is not registered here.
        StorageError: The database failed.
    """
    held = {k.record.kid for k in list_keys(node.store)}
    added = 0
    for record in keys.registry:
        if record.kid in keys.node_kids or record.kid in held or record.status != "active":
            continue
        if keys.owner_names.get(record.owner_identity) != org:
            continue
        register_key(node.store, org, record.public_pem)
        added += 1
    if added:
        node.registry_cache.invalidate()
    return added


def _fetch(url: str, user: str, api_key: str, added_after: str | None
           ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    connection = Connection(user, api_key)
    collection = connection.collection(url)
    filters: dict[str, Any] = {"added_after": added_after} if added_after else {}
    for n, envelope in enumerate(as_pages(collection.get_objects, per_request=PAGE,
                                          **filters)):
        if n >= MAX_PAGES:
            raise RemoteError(f"more than {MAX_PAGES} pages from {url}")
        yield list(envelope.get("objects", [])), connection.last_headers.get(
            "X-TAXII-Date-Added-Last")


def _pages(url: str, user: str, api_key: str, added_after: str | None
           ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """The peer's pages, the next one fetched while the caller works on this one (the
    peer's CPU and ours overlap); a failure of the fetch is raised here, in order."""
    pages: queue.Queue[tuple[list[dict[str, Any]], str | None] | BaseException | None] = (
        queue.Queue(maxsize=1))
    stop = threading.Event()

    def put(item: tuple[list[dict[str, Any]], str | None] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.5)
            except queue.Full:
                continue
            return True
        return False

    def run() -> None:
        try:
            for page in _fetch(url, user, api_key, added_after):
                if not put(page):
                    return
        except Exception as e:  # noqa: BLE001 (handed to the caller, raised there)
            put(e)
            return
        put(None)

    fetcher = threading.Thread(target=run, name="peer-pull-fetch", daemon=True)
    fetcher.start()
    try:
        while True:
            item = pages.get(timeout=_FETCH_TIMEOUT)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    except queue.Empty:
        raise RemoteError(f"no page from {url} within {_FETCH_TIMEOUT:.0f} s") from None
    finally:
        stop.set()
        fetcher.join(timeout=_FETCH_TIMEOUT)


def pull_from_peer(node: Exchange, verifier: PeerVerifier, *, url: str, user: str,
                   api_key: str, importer: Principal, into: str,
                   added_after: str | None = None) -> PullReport:
    """Pull a peer's collection, verify every object, publish the verified ones locally.

    Args:
        node: This node.
        verifier: The peer's verifier (:func:`exchange.feeds.peers.verifier_for`).
        url: The peer collection's URL.
        user: The peer account this node was given there.
        api_key: Its API key.
        importer: The local publisher account of the peer's organisation.
        into: The local collection (id or alias).
        added_after: Resume after this ``date_added`` at the peer.

    Raises:
        RemoteError, InvalidInput: The peer cannot be reached or refuses the account.
        StorageError: The local database failed (what was stored stays stored).
    """
    report = PullReport()
    api_root = node.settings.api_root
    for objects, last in _pages(url, user, api_key, added_after):
        report.received += len(objects)
        good = []
        for obj in objects:
            reason = verifier.verify(obj)
            if reason is None:
                good.append(obj)
            else:
                report.refused[str(obj.get("id", "object"))[:120]] = reason
                log.warning("refused %s from peer %s: %s", obj.get("id"), verifier.peer,
                            reason)
        if good:
            body = json.dumps({"objects": good}).encode("utf-8")
            status = node.publish(importer, api_root, into, body, channel="peer:pull")
            held = sum(d.message == MSG_EXISTS for d in status.successes)
            report.unchanged += held
            report.imported += status.success_count - held
            for detail in status.failures:
                report.refused[detail.id] = detail.message
        if last:
            report.last_added = last
    return report
