"""Peer exchange nodes this node trusts: pinned node keys and their signed registries.

Issue 20 (DESIGN.md decision 9). A peer's objects keep their authors' and contributors'
cx-sig signatures; this node checks them against the peer's published registry, and
accepts that registry only when it is signed by a node key of the peer's that the
operator pinned (:mod:`exchange.signing.signed_registry`). What this module keeps, per
peer name (table ``peer_trust``): the pins (key id and public key), where the registry is
fetched, the file holding the API key presented there, and the last registry that
verified. Trusting and untrusting are admin records in the audit ledger, written with
the change.

Fetching over HTTP is left to the door (:mod:`exchange.feeds.peers`): the methods here
take the envelope's bytes. The serving side (a peer node's account, role ``peer``) is in
:mod:`exchange.node.base` (channel and no loop-back) and :mod:`exchange.node.read`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from exchange.errors import InvalidInput, NotFound, SignatureError
from exchange.node.base import NodeBase, now_micros
from exchange.node.members import check_name
from exchange.signing.keys import KeyId, load_public_pem
from exchange.signing.published import TrustedKeys
from exchange.signing.signed_registry import open_signed_registry, pin_key
from exchange.storage.base import PeerTrust

log = logging.getLogger(__name__)


class Peers(NodeBase):
    """Trusting peer nodes and keeping their registries."""

    def trust_peer(self, name: str, envelope: bytes, fingerprints: Sequence[str], *,
                   registry_url: str | None = None, api_key_file: str | None = None
                   ) -> tuple[PeerTrust, TrustedKeys]:
        """Pin a peer's node key(s) and keep the signed registry that verified with them.

        Trusting a name again replaces its pins and location (re-pinning after the
        peer rotated its node key).

        Args:
            name: The operator's name for the peer.
            envelope: The peer's signed registry, as fetched or read from a file.
            fingerprints: The node key ids confirmed out of band; the registry must be
                signed by one of them, and each must be a node key it publishes.
            registry_url: Where to fetch the registry again (unknown signing keys).
            api_key_file: The file holding the API key presented at ``registry_url``.

        Returns:
            The trust record and the registry's keys.

        Raises:
            InvalidInput: Bad name, or no fingerprint.
            SignatureError: The registry is not signed by a confirmed key, or a
                fingerprint names no node key of the registry; nothing is stored.
            StorageError: The database failed.
        """
        check_name("peer", name)
        if not fingerprints:
            raise InvalidInput("give the fingerprint (key id) of the peer's node key, as"
                               " its operator read it out to you (--fingerprint sha256:...)")
        pins: dict[str, str] = {}
        trusted: TrustedKeys | None = None
        signed_by: list[str] = []
        for fingerprint in dict.fromkeys(fingerprints):
            try:
                kid, pem, keys = pin_key(envelope, fingerprint, limits=self.limits)
            except SignatureError as e:
                if "is signed by" not in e.reason:
                    raise
                signed_by.append(fingerprint)
                continue
            pins[kid], trusted = pem, keys
        if trusted is None:
            raise SignatureError(f"the registry of {name} is not signed by any of the"
                                 f" fingerprints given ({', '.join(fingerprints)[:300]})")
        for fingerprint in signed_by:
            # a second pinned key (the peer's next node key): published as a node key
            if fingerprint not in trusted.node_kids:
                raise SignatureError(f"the registry of {name} publishes no node key"
                                     f" {fingerprint[:80]}")
            pem = trusted.registry.record(KeyId(fingerprint)).public_pem
            if load_public_pem(pem).kid != fingerprint:
                raise SignatureError(f"the published key does not hash to {fingerprint[:80]}")
            pins[fingerprint] = pem
        existing = self.store.peer_trust(name)
        now = now_micros()
        trust = PeerTrust(name=name, pins=tuple(sorted(pins.items())),
                          registry_url=registry_url, api_key_file=api_key_file,
                          registry=envelope, fetched_at=now,
                          created_at=existing.created_at if existing else now)
        with self.store.audited([self._admin("peer.trust", name, {
                "pins": " ".join(kid for kid, _ in trust.pins),
                "registry_url": registry_url, "replaced": existing is not None})]):
            self.store.save_peer_trust(trust)
        log.info("peer %s trusted with node key(s) %s", name,
                 ", ".join(kid for kid, _ in trust.pins))
        return trust, trusted

    def untrust_peer(self, name: str) -> None:
        """Forget a peer's pins and registry: its objects no longer verify here.

        Raises:
            NotFound: No peer by that name is trusted.
            StorageError: The database failed.
        """
        if self.store.peer_trust(name) is None:
            raise NotFound(f"no trusted peer {name!r}")
        with self.store.audited([self._admin("peer.untrust", name, {})]):
            self.store.delete_peer_trust(name)
        log.info("peer %s no longer trusted", name)

    def peer(self, name: str) -> PeerTrust:
        """A trusted peer by name.

        Raises:
            NotFound: No peer by that name is trusted.
            StorageError: The database failed.
        """
        trust = self.store.peer_trust(name)
        if trust is None:
            raise NotFound(f"no trusted peer {name!r}; trust it first with 'exchange peer"
                           " trust'")
        return trust

    def peer_registry(self, trust: PeerTrust) -> TrustedKeys:
        """The keys of a peer's last kept registry, checked against its pins again.

        Raises:
            SignatureError: The kept registry no longer verifies against the pins, or
                none was kept.
        """
        if trust.registry is None:
            raise SignatureError(f"no registry of peer {trust.name} is kept")
        return open_signed_registry(trust.registry, dict(trust.pins), limits=self.limits)

    def refresh_peer_registry(self, trust: PeerTrust, envelope: bytes
                              ) -> tuple[PeerTrust, TrustedKeys]:
        """Keep a newly fetched registry of a peer, if it verifies against the pins.

        Raises:
            SignatureError: It does not; the previous registry stays.
            NotFound: The peer was untrusted or pinned again meanwhile (nothing kept).
            StorageError: The database failed.
        """
        keys = open_signed_registry(envelope, dict(trust.pins), limits=self.limits)
        current = self.store.peer_trust(trust.name)
        if current is None or current.pins != trust.pins:
            raise NotFound(f"peer {trust.name} was untrusted or pinned again meanwhile")
        fresh = PeerTrust(name=trust.name, pins=trust.pins, registry_url=trust.registry_url,
                          api_key_file=trust.api_key_file, registry=envelope,
                          fetched_at=now_micros(), created_at=trust.created_at)
        self.store.save_peer_trust(fresh)
        return fresh, keys
