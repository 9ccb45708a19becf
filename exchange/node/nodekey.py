"""The exchange's own signing key: created on first use, kept encrypted in its home.

The node signs what it makes itself (derived copies such as redacted objects, MISP
imports, receipts) with an Ed25519 key of its own (issue 4, part 4).
:func:`ensure_node_key` creates it on first use (``exchange init`` calls it) in
``<home>/node-signing.key``, encrypted under the passphrase from
``EXCHANGE_NODE_KEY_PASSPHRASE`` or, failing that, ``<home>/node-key.passphrase``
(created 0600 with a random value), and registers its public half in the member
registry with purpose ``node`` and no organisation, so it is published beside the
members' keys. A passphrase kept beside the key protects only copies of the key file
made without it (backups); set the environment variable to keep them apart.

The node's identity (:func:`node_identity`) is the one
:class:`~exchange.node.service.Exchange` gives the objects it derives (their
``created_by_ref``): derived from ``settings.title``, so every worker and every host with
the same settings agrees on it; renaming the node changes it.

What it leaves to others: using the key (the callers sign), and the registry itself
(:mod:`exchange.node.keyring`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from exchange.config import Settings
from exchange.errors import ConfigError, Conflict, NotFound, SignatureError
from exchange.node.identity import node_identity_id
from exchange.signing.keyfiles import read_private_key, write_private_key
from exchange.signing.keys import SigningKey, generate
from exchange.storage.base import MemberKey, Store

__all__ = [
    "NODE_KEY_FILE",
    "NODE_PASSPHRASE_ENV",
    "NODE_PASSPHRASE_FILE",
    "ensure_node_key",
    "node_identity",
]

log = logging.getLogger(__name__)

NODE_KEY_FILE: Final = "node-signing.key"
NODE_PASSPHRASE_FILE: Final = "node-key.passphrase"  # noqa: S105 - a file name
NODE_PASSPHRASE_ENV: Final = "EXCHANGE_NODE_KEY_PASSPHRASE"  # noqa: S105 - a variable name


def node_identity(settings: Settings) -> str:
    """The node's STIX identity id: owner of its keys, author of the objects it derives.

    The same id as :attr:`exchange.node.service.Exchange.node_identity`.
    """
    return node_identity_id(settings.title)


def _node_passphrase(home: Path, env: Mapping[str, str], *, may_create: bool) -> bytes:
    value = env.get(NODE_PASSPHRASE_ENV, "")
    if value:
        return value.encode("utf-8")
    path = home / NODE_PASSPHRASE_FILE
    if not path.exists():
        if not may_create:
            raise ConfigError(
                f"the node signing key exists but its passphrase does not: set"
                f" {NODE_PASSPHRASE_ENV} or restore {path}"
            )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        except FileExistsError:
            pass  # another process created it first; read theirs
        except OSError as e:
            raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or 'not UTF-8'}"
                          ) from None
    if not text:
        raise ConfigError(f"{path} is empty; it must hold the node key's passphrase")
    return text.encode("utf-8")


def ensure_node_key(settings: Settings, store: Store, *,
                    env: Mapping[str, str] | None = None) -> SigningKey:
    """The node's signing key: created and registered on first use, else read.

    Args:
        settings: The node settings (the key lives in ``settings.home``).
        store: The store, to register the public half (purpose ``node``, no organisation).
        env: The environment to read ``EXCHANGE_NODE_KEY_PASSPHRASE`` from (default
            ``os.environ``).

    Returns:
        The key.

    Raises:
        ConfigError: The key file or its passphrase file cannot be read or written, the
            passphrase is missing or wrong, or the key's id is registered as a member key.
        StorageError: The database failed.
    """
    environ = os.environ if env is None else env
    path = settings.home / NODE_KEY_FILE
    exists = path.exists()
    passphrase = _node_passphrase(settings.home, environ, may_create=not exists)
    if not exists:
        key = generate("Ed25519")
        try:
            write_private_key(path, key, passphrase)
            log.info("node signing key %s created in %s", key.kid, path)
        except ConfigError:
            if not path.exists():
                raise
            exists = True  # another process created it first; use theirs
    if exists:
        try:
            key = read_private_key(path, passphrase)
        except SignatureError as e:
            raise ConfigError(f"cannot open the node signing key {path}: {e.reason}") from None
    try:
        stored = store.get_member_key(key.kid)
    except NotFound:
        at = time.time_ns() // 1000
        member = MemberKey(
            kid=key.kid, org_id=None, purpose="node", alg=key.alg,
            public_pem=key.public_pem(), valid_from=at, valid_until=None, status="active",
            compromised_since=None, created_at=at,
        )
        with contextlib.suppress(Conflict):  # registered concurrently by another process
            store.add_member_key(member)
        stored = store.get_member_key(key.kid)
    if stored.purpose != "node" or stored.org_id is not None:
        raise ConfigError(f"the node signing key {key.kid} is registered as a member's key")
    return key
