"""Peer exchange nodes: fetching their signed registry and verifying their objects.

Issue 20 (DESIGN.md decision 9). A peer's objects keep their authors' and contributors'
cx-sig v1 signatures; they are verified here against the peer's published registry,
which is accepted only when signed by a node key of the peer's that the operator pinned
(:mod:`exchange.node.peers`, :mod:`exchange.signing.signed_registry`).

* :func:`fetch_registry` gets a peer's signed registry over HTTP (the node's
  ``/<api_root>/cx/registry/signed/``), with a timeout and a size limit, presenting the
  API key from a file as a Bearer token.
* :func:`trust` pins a peer (``exchange peer trust``): from a URL or a file.
* :func:`verifier_for` gives the ingestion engine (:mod:`exchange.feeds.ingest`) its
  :class:`~exchange.feeds.ingest.ObjectVerifier` for a peer source: ``verify(obj)`` is
  None for an object whose signature holds (signed by the author, attested by a
  contributor or by the peer node), else the reason to refuse it. A signature by a key
  the kept registry does not know fetches the registry again, at most once per
  :data:`REFRESH_SECONDS`; a kept registry older than :data:`REGISTRY_MAX_AGE` is fetched
  again when the verifier is made (so a key the peer revoked is learnt at the next pull).
  Only a registry that verifies against the pins replaces the kept one. Its ``keys``
  (the registry as last verified) are what the ingestion mirrors into this node's own
  registry for the source's organisation
  (:meth:`exchange.node.peers.Peers.mirror_peer_keys`), so that the imports verify here
  as they do at the peer.

Which recording time decides key validity: the time the peer recorded the object (its
TAXII ``date_added``), as at the peer itself. A retired key still verifies. For a key the
peer revoked as compromised, the ingestion asks the peer's manifest when it recorded the
objects that key signed (:meth:`exchange.feeds.ingest.TaxiiReader.recorded`): one the
peer recorded before ``compromised_since`` verifies, as it does at the peer; one recorded
at or after it, or whose recording time the peer does not give, is refused. The peer's
``date_added`` is trusted as its registry is: it comes from the pinned peer over the
authenticated connection, not from whoever holds the compromised key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from exchange.errors import (
    ExchangeError,
    InvalidInput,
    InvalidObject,
    RemoteError,
    SignatureError,
)
from exchange.feeds.ingest import tls_reason
from exchange.model.tlp import is_standard_tlp_definition
from exchange.node.base import now_micros
from exchange.node.peers import Peers
from exchange.signing.cxsig import signature_of, verify_object
from exchange.signing.published import TrustedKeys
from exchange.signing.registry import format_micros
from exchange.storage.base import PeerTrust

__all__ = [
    "REFRESH_SECONDS",
    "REGISTRY_MAX_AGE",
    "PeerVerifier",
    "check_registry_url",
    "fetch_registry",
    "read_key_file",
    "trust",
    "verifier_for",
]

log = logging.getLogger(__name__)

#: The least time between two fetches of a peer's registry for unknown keys.
REFRESH_SECONDS: Final = 30.0
#: A kept registry older than this is fetched again when a verifier is made.
REGISTRY_MAX_AGE: Final = 300.0
#: A signed registry larger than this is refused unread.
_MAX_REGISTRY_BYTES: Final = 4 * 1024 * 1024
_TIMEOUT: Final = 10.0
_MAX_KEY_FILE_BYTES: Final = 4096


def read_key_file(path: str) -> str:
    """The API key held in a file (its only content).

    Raises:
        InvalidInput: The file cannot be read, is too large or empty.
    """
    try:
        with Path(path).open("rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read API key file {path}: {e.strerror}") from e
    key = data.decode("utf-8", "replace").strip()
    if not key or len(data) > _MAX_KEY_FILE_BYTES:
        raise InvalidInput(f"API key file {path} must hold one API key")
    return key


def check_registry_url(url: str) -> str:
    """``url`` if it may carry this node's API key: https, or plain http only to a
    loopback address; no credentials, query or fragment in it.

    Raises:
        InvalidInput: It may not.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise InvalidInput(f"{url[:200]!r} is not a URL ({e})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidInput(f"{url[:200]!r} is not an https URL with a host")
    if parts.username is not None or parts.password is not None or parts.query \
            or parts.fragment:
        raise InvalidInput("the registry URL carries no credentials, query or fragment")
    loopback = host.lower() == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme == "http" and not loopback:
        raise InvalidInput(f"{url[:200]!r} must use https (plain http only to a loopback"
                           " address)")
    return url


def fetch_registry(url: str, *, api_key: str | None, timeout: float = _TIMEOUT,
                   ca_file: str | None = None) -> bytes:
    """A peer's signed registry, as received (not yet verified); over https, its
    certificate is checked against ``ca_file`` when given (a peer serving from a private
    PKI), else against the default bundle.

    Raises:
        InvalidInput: The URL may not carry the API key (:func:`check_registry_url`).
        RemoteError: The peer did not answer, answered other than 200, or with more
            than 4 MiB. The reason never holds the API key.
    """
    check_registry_url(url)
    # the node answers below its API root in the TAXII media type only
    headers = {"Accept": "application/taxii+json;version=2.1"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        with requests.get(url, headers=headers, timeout=timeout, stream=True,
                          verify=ca_file if ca_file is not None else True) as response:
            if response.status_code != 200:
                raise RemoteError(f"the peer answered {response.status_code} for its signed"
                                  f" registry at {url}")
            body = response.raw.read(_MAX_REGISTRY_BYTES + 1, decode_content=True)
    except requests.exceptions.SSLError as e:
        raise RemoteError(f"cannot fetch the signed registry at {url}: TLS failed"
                          f" ({tls_reason(e)}); give the CA file of the peer's certificate"
                          " (--ca-file) if it is not a public one") from None
    except requests.RequestException as e:
        raise RemoteError(f"cannot fetch the signed registry at {url}:"
                          f" {type(e).__name__}") from None
    if len(body) > _MAX_REGISTRY_BYTES:
        raise RemoteError(f"the signed registry at {url} is larger than"
                          f" {_MAX_REGISTRY_BYTES} bytes")
    return bytes(body)


def trust(node: Peers, name: str, fingerprints: Sequence[str], *,
          registry_url: str | None = None, registry_file: str | None = None,
          api_key_file: str | None = None, ca_file: str | None = None
          ) -> tuple[PeerTrust, TrustedKeys]:
    """Pin a peer: fetch (or read) its signed registry and check it against the
    fingerprints the operator confirmed (:meth:`exchange.node.peers.Peers.trust_peer`).

    Raises:
        InvalidInput: Neither or both of ``registry_url`` and ``registry_file``; an
            unreadable file.
        RemoteError: The registry could not be fetched.
        SignatureError: It is not signed by a confirmed key; nothing is stored.
    """
    if (registry_url is None) == (registry_file is None):
        raise InvalidInput("give the peer's signed registry as --registry-url or"
                           " --registry-file (one of them)")
    if registry_file is not None:
        try:
            envelope = Path(registry_file).read_bytes()
        except OSError as e:
            raise InvalidInput(f"cannot read {registry_file}: {e.strerror}") from e
    else:
        assert registry_url is not None
        check_registry_url(registry_url)
        key = read_key_file(api_key_file) if api_key_file else None
        envelope = fetch_registry(registry_url, api_key=key, ca_file=ca_file)
    return node.trust_peer(name, envelope, fingerprints, registry_url=registry_url,
                           api_key_file=api_key_file, ca_file=ca_file)


class PeerVerifier:
    """Verifies a peer's objects against its pinned, signed registry (module docstring).

    Constructing it does no I/O: the caller passes the peer's kept registry. Thread-safe:
    the ingestion verifies a page's objects on several threads (Ed25519 verification
    releases the interpreter lock); the registry is replaced whole, under a lock.
    """

    def __init__(self, node: Peers, peer: PeerTrust, keys: TrustedKeys, *,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        self._node = node
        self._peer = peer
        self._keys = keys
        self._refresh_seconds = refresh_seconds
        self._next_refresh = 0.0
        self._owner_cache: tuple[TrustedKeys, frozenset[str]] | None = None
        self._refreshing = threading.Lock()
        #: Registry fetches made (for reports and tests).
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"PeerVerifier({self._peer.name!r}, {len(self._keys.registry)} keys)"

    @property
    def peer(self) -> str:
        """The trusted peer's name."""
        return self._peer.name

    @property
    def keys(self) -> TrustedKeys:
        """The peer's registry as last verified against the pins (a new object after
        each fetch that was kept)."""
        return self._keys

    def verify(self, obj: Mapping[str, Any], recorded: int | None = None) -> str | None:
        """None when ``obj``'s signature holds against the peer's registry, else why not.

        A standard TLP marking-definition needs no signature; any other unsigned object is
        refused. ``recorded`` is when the peer recorded the object (µs: the ``date_added``
        its TAXII manifest gives), which decides whether a key the peer revoked as
        compromised still vouches for it (module docstring). Never raises for a bad
        object.
        """
        if is_standard_tlp_definition(obj.get("type"), obj.get("id")):
            return None
        keys = self._keys
        try:
            self._check(obj, recorded, keys)
        except (SignatureError, InvalidObject) as e:
            if not self._unknown_key(obj, keys) or not self.refresh(seen=keys):
                return e.reason
        else:
            return None
        try:  # the registry fetched again knows more keys: once more
            self._check(obj, recorded)
        except (SignatureError, InvalidObject) as e:
            return e.reason
        return None

    def compromised_since(self, obj: Mapping[str, Any]) -> int | None:
        """When the key named by ``obj``'s cx-sig entry was compromised, if the kept
        registry says it was (None for an unsigned object or an unknown key)."""
        try:
            entry = signature_of(obj)
            return None if entry is None else \
                self._keys.registry.record(entry.kid).compromised_since
        except SignatureError:  # a malformed entry, or a key the registry does not know
            return None

    @staticmethod
    def _unknown_key(obj: Mapping[str, Any], keys: TrustedKeys) -> bool:
        """Whether ``obj`` is signed by a key ``keys`` does not hold (the registry fetched
        again may know it)."""
        try:
            entry = signature_of(obj)
        except SignatureError:  # a malformed entry: no registry would help
            return False
        if entry is None:
            return False
        try:
            keys.registry.record(entry.kid)
        except SignatureError:
            return True
        return False

    def _check(self, obj: Mapping[str, Any], recorded: int | None = None,
               keys: TrustedKeys | None = None) -> None:
        """Signature, owner binding and key validity (the consumer's checks of
        ``exchange verify``, DESIGN.md decision 8), against the peer's registry.

        Raises:
            SignatureError: Unknown key, bad signature, another member's name, a key
                not yet valid, or a key revoked as compromised before ``recorded`` (or
                revoked, with ``recorded`` unknown).
            InvalidObject: The object cannot be canonicalised.
        """
        keys = self._keys if keys is None else keys
        verified = verify_object(obj, keys.registry.resolve)
        record = keys.registry.record(verified.kid)
        signer = record.owner_identity
        creator = obj.get("created_by_ref")
        if verified.kid not in keys.node_kids and isinstance(creator, str) \
                and creator != signer and creator in self._owners:
            raise SignatureError(
                f"key {verified.kid} belongs to {keys.owner_of(verified.kid)}, not to the"
                f" object's created_by_ref {keys.owner_names.get(creator, creator[:80])},"
                " another member: no member may publish in another member's name")
        now = now_micros()
        if record.valid_from > now:
            raise SignatureError(f"key {verified.kid} is valid only from"
                                 f" {format_micros(record.valid_from)}")
        since = record.compromised_since
        if since is not None and (recorded is None or recorded >= since):
            when = ("the time the peer recorded this object is not known here"
                    if recorded is None else
                    f"the peer recorded this object at {format_micros(recorded)}")
            raise SignatureError(f"key {verified.kid} was revoked (compromised since"
                                 f" {format_micros(since)}) and {when}")

    @property
    def _owners(self) -> frozenset[str]:
        owners = self._owner_cache
        if owners is None or owners[0] is not self._keys:
            owners = (self._keys, frozenset(r.owner_identity for r in self._keys.registry))
            self._owner_cache = owners
        return owners[1]

    def refresh(self, seen: TrustedKeys | None = None) -> bool:
        """Fetch the peer's registry again, at most once per ``refresh_seconds``; keep it
        only if it verifies against the pins (otherwise log why and keep the old one).
        True when a new registry was kept, or when one newer than ``seen`` (the registry
        a caller checked against) was kept meanwhile by another thread."""
        with self._refreshing:
            if seen is not None and self._keys is not seen:
                return True
            return self._refresh()

    def _refresh(self) -> bool:
        url = self._peer.registry_url
        if url is None or time.monotonic() < self._next_refresh:
            return False
        self._next_refresh = time.monotonic() + self._refresh_seconds
        self.refreshes += 1
        try:
            key = read_key_file(self._peer.api_key_file) if self._peer.api_key_file else None
            envelope = fetch_registry(url, api_key=key, ca_file=self._peer.ca_file)
            self._peer, self._keys = self._node.refresh_peer_registry(self._peer, envelope)
        except ExchangeError as e:
            log.warning("peer %s: the registry fetched again was not kept: %s",
                        self._peer.name, e.reason)
            return False
        log.info("peer %s: registry fetched again (%d keys)", self._peer.name,
                 len(self._keys.registry))
        return True


def verifier_for(node: Peers, trust_name: str) -> PeerVerifier:
    """The verifier of a trusted peer's objects, from its kept registry.

    Raises:
        NotFound: No peer by that name is trusted.
        SignatureError: Its kept registry no longer verifies against the pins.
        StorageError: The database failed.
    """
    peer = node.peer(trust_name)
    verifier = PeerVerifier(node, peer, node.peer_registry(peer))
    if peer.fetched_at is None or now_micros() - peer.fetched_at > REGISTRY_MAX_AGE * 1e6:
        # a key the peer revoked or retired since: learnt at the start of each pull
        verifier.refresh()
    return verifier
