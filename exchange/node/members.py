"""Members of a node: organisations, accounts, API keys, authentication, collections.

Every change is an admin record in the audit ledger, written in the same transaction as
the change. Authentication checks an API key (HTTP Basic password or Bearer token)
against its HMAC in the store and never says which part was wrong.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence

import rfc8785

from exchange.errors import AuthError, InvalidInput
from exchange.model.objects import AccountId, CollectionId, OrgId, Principal, Role, StixId
from exchange.model.tlp import parse_level
from exchange.node import apikeys
from exchange.node.base import NodeBase, now_micros
from exchange.node.identity import make_identity
from exchange.storage.base import Account, ApiKey, Collection, Grant, Organisation

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid name for an organisation, account or peer.

    Raises:
        InvalidInput: It is not.
    """
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{kind} name {name!r} is invalid: use 1-64 letters, digits, spaces, '.', '_',"
            " '@' or '-', starting with a letter or digit"
        )
    return name


class Members(NodeBase):
    """Organisations, accounts, API keys, authentication and collections."""

    def add_org(
        self,
        name: str,
        *,
        identity_id: str | None = None,
        parent: str | None = None,
        sector: str | None = None,
    ) -> Organisation:
        """Register an organisation and its STIX identity.

        Args:
            name: Unique organisation name (e.g. ``UZ-CERT``).
            identity_id: Reuse this identity id instead of deriving one from the name.
            parent: Name of the member organisation this one is a constituent of.
            sector: Optional STIX industry sector for the identity object.

        Raises:
            InvalidInput: The name or identity id is malformed.
            Conflict: The name or identity is already registered.
            NotFound: The parent organisation does not exist.
        """
        check_name("organisation", name)
        parent_id = self.store.find_org(parent).id if parent else None
        identity = make_identity(name, identity_id=identity_id, sector=sector)
        org = Organisation(
            id=OrgId(str(uuid.uuid4())),
            name=name,
            identity_id=StixId(identity["id"]),
            identity_json=rfc8785.dumps(identity),
            created_at=now_micros(),
            parent_id=parent_id,
        )
        with self.store.audited([self._admin("org.create", org.id, {
                "name": name, "identity": org.identity_id,
                "parent": parent, "sector": sector})]):
            self.store.add_org(org)
        log.info("organisation %s added (%s)", name, org.identity_id)
        return org

    def add_account(self, name: str, *, org: str, role: str) -> Account:
        """Create an account of an organisation with one role.

        Raises:
            InvalidInput: Bad name or unknown role.
            NotFound: The organisation does not exist.
            Conflict: The account name is taken.
        """
        check_name("account", name)
        try:
            role_value = Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidInput(f"unknown role {role!r}; use one of {roles}") from None
        organisation = self.store.find_org(org)
        account = Account(
            id=AccountId(str(uuid.uuid4())),
            name=name,
            org_id=organisation.id,
            role=role_value,
            created_at=now_micros(),
        )
        with self.store.audited([self._admin("account.create", account.id, {
                "name": name, "org": organisation.name, "role": role_value.value})]):
            self.store.add_account(account)
        log.info("account %s (%s) added to %s", name, role_value.value, organisation.name)
        return account

    def create_api_key(self, account: str, *, label: str = "") -> tuple[ApiKey, str]:
        """Mint an API key for an account. The token is returned once and never stored.

        Raises:
            NotFound: No such account.
            ConfigError: The server secret is missing.
        """
        acct = self.store.find_account(account)
        new = apikeys.mint(self.settings.secret_bytes())
        key = ApiKey(key_id=new.key_id, account_id=acct.id, created_at=now_micros(),
                     label=label)
        with self.store.audited([self._admin("apikey.create", new.key_id, {
                "account": acct.name, "label": label or None})]):
            self.store.add_api_key(key, new.digest)
        log.info("API key %s created for account %s", new.key_id, acct.name)
        return key, new.token

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key at once. Raises NotFound."""
        with self.store.audited([self._admin("apikey.revoke", key_id, {})]):
            key = self.store.revoke_api_key(key_id, now_micros())
        log.info("API key %s revoked", key_id)
        return key

    # -- authentication ------------------------------------------------------------------
    def authenticate(self, username: str | None, token: str) -> Principal:
        """Establish who presents ``token`` (and, when given, check the account name).

        Raises:
            AuthError: Unknown, revoked or wrong key, disabled account, name mismatch.
                The reason never says which of these it was.
        """
        failure = AuthError("invalid credentials")
        try:
            key_id, secret_part = apikeys.split(token)
        except AuthError:
            raise failure from None
        check = apikeys.digest(self.settings.secret_bytes(), secret_part)
        cached = self._auth_cache.get((username or "", key_id, check))
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        found = self.store.lookup_api_key(key_id)
        if found is None:
            raise failure
        key, stored, account, org = found
        if not apikeys.matches(self.settings.secret_bytes(), secret_part, stored):
            raise failure
        if key.revoked_at is not None or account.disabled:
            raise failure
        if username and username not in (account.name, key_id):
            raise failure
        principal = Principal(
            account_id=account.id,
            account_name=account.name,
            org_id=org.id,
            org_name=org.name,
            identity_id=org.identity_id,
            role=account.role,
            parent_org_id=org.parent_id,
        )
        if self.settings.cache_seconds > 0:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[(username or "", key_id, check)] = (
                principal, time.monotonic() + self.settings.cache_seconds)
        return principal

    # -- collections ---------------------------------------------------------------------
    def add_collection(
        self,
        title: str,
        *,
        readers: Sequence[str] = (),
        writers: Sequence[str] = (),
        description: str = "",
        alias: str | None = None,
        default_tlp: str | None = None,
        api_root: str | None = None,
        require_signatures: bool = False,
    ) -> tuple[Collection, list[Grant]]:
        """Create a collection and grant organisations read and/or write.

        Raises:
            InvalidInput: Empty title, bad alias or TLP level.
            NotFound: A named organisation does not exist.
            Conflict: The alias is taken.
        """
        if not title.strip():
            raise InvalidInput("a collection needs a title")
        if alias is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", alias):
            raise InvalidInput(f"alias {alias!r} is invalid: use lower-case letters, digits, '-'")
        tlp = parse_level(default_tlp or self.settings.default_tlp)
        collection = Collection(
            id=CollectionId(str(uuid.uuid4())),
            api_root=api_root or self.settings.api_root,
            title=title.strip(),
            description=description,
            alias=alias,
            default_tlp=tlp.value,
            require_signatures=require_signatures,
        )
        rights: dict[OrgId, list[bool]] = {}
        for name in readers:
            rights.setdefault(self.store.find_org(name).id, [False, False])[0] = True
        for name in writers:
            rights.setdefault(self.store.find_org(name).id, [False, False])[1] = True
        grants = [
            Grant(collection_id=collection.id, org_id=org_id, can_read=r, can_write=w)
            for org_id, (r, w) in rights.items()
        ]
        details: dict[str, str | int | bool | None] = {
            "title": collection.title[:512], "alias": alias, "default_tlp": tlp.value,
            "require_signatures": require_signatures,
            "readers": ",".join(sorted(readers))[:1024] or None,
            "writers": ",".join(sorted(writers))[:1024] or None,
        }
        with self.store.audited([self._admin("collection.create", collection.id, details)]):
            self.store.add_collection(collection, grants)
        log.info("collection %s added (%s)", collection.title, collection.id)
        return collection, grants
