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
from collections.abc import Mapping, Sequence
from typing import Final

from exchange.errors import Conflict, InvalidInput, NotFound, SignatureError
from exchange.node.base import NodeBase, now_micros
from exchange.node.members import check_name
from exchange.signing.keys import KeyId, load_public_pem
from exchange.signing.published import TrustedKeys
from exchange.signing.registry import KeyRecord, format_micros
from exchange.signing.signed_registry import open_signed_registry, pin_key
from exchange.storage.base import MemberKey, PeerTrust

log = logging.getLogger(__name__)

#: The most key changes one pull mirrors from a peer's registry (each is a write and an
#: admin record); the rest wait for the next pull.
MAX_MIRRORED_KEYS: Final = 1000


class Peers(NodeBase):
    """Trusting peer nodes and keeping their registries."""

    def trust_peer(self, name: str, envelope: bytes, fingerprints: Sequence[str], *,
                   registry_url: str | None = None, api_key_file: str | None = None,
                   ca_file: str | None = None) -> tuple[PeerTrust, TrustedKeys]:
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
            ca_file: The CA bundle ``registry_url`` is fetched with, if not the default.

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
                          created_at=existing.created_at if existing else now,
                          ca_file=ca_file)
        with self.store.audited([self._admin("peer.trust", name, {
                "pins": " ".join(kid for kid, _ in trust.pins),
                "registry_url": registry_url, "ca_file": ca_file,
                "replaced": existing is not None})]):
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
                          fetched_at=now_micros(), created_at=trust.created_at,
                          ca_file=trust.ca_file)
        self.store.save_peer_trust(fresh)
        return fresh, keys

    def mirror_peer_keys(self, peer: str, keys: TrustedKeys, org_name: str
                         ) -> list[str]:
        """Carry into this node's member registry the keys a pinned peer publishes for
        the organisation it stands for, so that what this node imported from it verifies
        here too, offline, against this node's own published registry.

        Only keys the peer's verified registry gives ``org_name`` (by its published
        name), never its node keys nor another organisation's: a peer vouches for its
        own organisation's keys only. A key not held here is registered as the peer
        publishes it (validity, retirement, revocation). A key held here for the same
        organisation follows the peer only where that narrows it: a retirement
        (``valid_until`` earlier), a revocation (``compromised_since`` earlier); nothing
        the peer publishes ever widens a key here, and a key held here for another
        organisation is left alone, with a warning. A retirement takes effect here no
        earlier than just after the last object this node recorded under the key
        (:meth:`_valid_until_here`); a revocation takes effect as the peer says. Each
        change is an admin record in the ledger, written with it (actor: this
        instance's).

        Args:
            peer: The trusted peer's name (recorded with each change).
            keys: Its registry, verified against the pins.
            org_name: The local organisation the peer stands for.

        Returns:
            One line per change made, for the run's report (at most
            :data:`MAX_MIRRORED_KEYS` changes a call, then a line saying the rest wait).

        Raises:
            NotFound: ``org_name`` is not registered here.
            StorageError: The database failed.
        """
        org = self.store.find_org(org_name)
        changes: list[str] = []
        for record in keys.registry:
            if record.kid in keys.node_kids \
                    or keys.owner_names.get(record.owner_identity) != org.name:
                continue
            if len(changes) >= MAX_MIRRORED_KEYS:
                changes.append(f"more keys than {MAX_MIRRORED_KEYS} changed; the rest at the"
                               " next pull")
                break
            try:
                held = self.store.get_member_key(record.kid)
            except NotFound:
                held = None
            details: dict[str, str | int | bool | None] = {
                "org": org.name, "peer": peer, "status": record.status}
            if held is None:
                key = MemberKey(
                    kid=record.kid, org_id=org.id, purpose="object", alg=record.alg,
                    public_pem=record.public_pem, valid_from=record.valid_from,
                    valid_until=self._valid_until_here(record), status=record.status,
                    compromised_since=record.compromised_since, created_at=now_micros())
                with self.store.audited([self._admin("key.register", record.kid, details)]):
                    try:
                        self.store.add_member_key(key)
                    except Conflict:  # registered meanwhile: the next run compares
                        continue
                changes.append(f"registered {record.kid} ({record.status})")
                continue
            if held.org_id != org.id:
                log.warning("peer %s publishes key %s for %s, but it is registered here"
                            " for another organisation; not mirrored", peer, record.kid,
                            org.name)
                continue
            change = _narrowing(held, record.status, self._valid_until_here(record),
                                record.compromised_since)
            if change is None:
                continue
            status, until, since = change
            action = "key.revoke" if status == "revoked" else "key.retire"
            with self.store.audited([self._admin(action, record.kid, details)]):
                self.store.update_member_key(record.kid, status=status, valid_until=until,
                                             compromised_since=since)
            changes.append(f"{'revoked' if status == 'revoked' else 'retired'}"
                           f" {record.kid} as at the peer")
        if changes:
            self.registry_cache.invalidate()
            log.info("peer %s: %s's keys mirrored: %s", peer, org.name, "; ".join(changes))
        return changes

    def _valid_until_here(self, record: KeyRecord) -> int | None:
        """The ``valid_until`` a peer's key gets here.

        A retired key stays valid here for the objects this node recorded under it
        before the retirement reached it (imported from the peer, whose registry vouched
        for each when it recorded it, or published here while the key was active here):
        until just after the last of them, when that is later than the peer's own
        ``valid_until``. So a node that first pulls a peer's history after a routine
        rotation verifies it, while no object recorded here afterwards can use the key.
        A revoked key's validity is left as the peer publishes it: a compromise is never
        widened.
        """
        if record.status != "retired" or record.valid_until is None:
            return record.valid_until
        last = self.store.last_signed_by(record.kid)
        return record.valid_until if last is None or last < record.valid_until else last + 1

    def cover_peer_imports(self, peer: str, org_name: str, last: Mapping[str, int]
                           ) -> list[str]:
        """Keep each retired key of the peer's organisation valid here for the objects
        this node has just imported from the peer under it (``last``: key id -> the
        latest recording time here, µs): its ``valid_until`` moves to just after that
        time when it was earlier (:meth:`_valid_until_here`). The peer's verifier accepted
        each of them by the peer's own recording time; nothing recorded here later can
        use the key. Each change is an admin record (``key.retire``, naming the peer).

        Returns:
            One line per key changed.

        Raises:
            NotFound: ``org_name`` is not registered here.
            StorageError: The database failed.
        """
        org = self.store.find_org(org_name)
        changes: list[str] = []
        for kid, when in sorted(last.items()):
            try:
                held = self.store.get_member_key(kid)
            except NotFound:
                continue
            if held.org_id != org.id or held.status != "retired" \
                    or held.valid_until is None or held.valid_until > when:
                continue
            until = when + 1
            with self.store.audited([self._admin("key.retire", kid, {
                    "org": org.name, "peer": peer, "status": "retired",
                    "valid_until": format_micros(until),
                    "covers": "objects imported from the peer under the key"})]):
                self.store.update_member_key(kid, valid_until=until)
            changes.append(f"retired {kid} from {format_micros(until)}, after the objects"
                           " imported under it")
        if changes:
            self.registry_cache.invalidate()
        return changes


def _narrowing(held: MemberKey, status: str, valid_until: int | None,
               compromised_since: int | None) -> tuple[str, int | None, int | None] | None:
    """(status, valid_until, compromised_since) for a held key that the peer's record
    narrows, or None when it narrows nothing. A revoked key stays revoked; a retirement
    or revocation may only come earlier."""
    new_status = held.status
    if status == "revoked" or held.status == "revoked":
        new_status = "revoked"
    elif status == "retired":
        new_status = "retired"
    until = held.valid_until
    if valid_until is not None and (until is None or valid_until < until):
        until = valid_until
    since = held.compromised_since
    if compromised_since is not None and (since is None or compromised_since < since):
        since = compromised_since
    if (new_status, until, since) == (held.status, held.valid_until, held.compromised_since):
        return None
    return new_status, until, since
