"""The node's own signing key: created once, encrypted, registered, never readable by others."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.config import load_settings
from exchange.errors import ConfigError
from exchange.node import keyring, nodekey
from exchange.node.service import Exchange
from exchange.storage.sql import SqlStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'exchange.db'}")
    s.open()
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return load_settings(home, env={})


def test_node_key_is_created_once_encrypted_and_registered(settings: Any,
                                                          store: SqlStore) -> None:
    key = nodekey.ensure_node_key(settings, store, env={})
    key_file = settings.home / nodekey.NODE_KEY_FILE
    secret_file = settings.home / nodekey.NODE_PASSPHRASE_FILE
    for path in (key_file, secret_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    stored = store.get_member_key(key.kid)
    assert (stored.org_id, stored.purpose, stored.alg) == (None, "node", "Ed25519")
    again = nodekey.ensure_node_key(settings, store, env={})
    assert again.kid == key.kid
    assert len(store.list_member_keys(purpose="node")) == 1
    identity = nodekey.node_identity(settings)
    assert identity == Exchange(settings, store).node_identity  # author of derived copies
    assert keyring.registry(store, node_identity=identity).record(key.kid).owner_identity \
        == identity
    assert [r.kid for r in keyring.registry(store)] == []  # no node identity, no node keys


def test_node_key_passphrase_from_the_environment(settings: Any, store: SqlStore) -> None:
    env = {nodekey.NODE_PASSPHRASE_ENV: "a long passphrase kept elsewhere"}
    key = nodekey.ensure_node_key(settings, store, env=env)
    assert not (settings.home / nodekey.NODE_PASSPHRASE_FILE).exists()
    with pytest.raises(ConfigError, match="passphrase does not") as missing:
        nodekey.ensure_node_key(settings, store, env={})
    with pytest.raises(ConfigError, match="wrong passphrase") as wrong:
        nodekey.ensure_node_key(settings, store, env={nodekey.NODE_PASSPHRASE_ENV: "guess"})
    for caught in (missing, wrong):
        assert "kept elsewhere" not in str(caught.value)
        assert "guess" not in str(caught.value)
    assert nodekey.ensure_node_key(settings, store, env=env).kid == key.kid


def test_node_key_file_is_never_world_readable(settings: Any, store: SqlStore) -> None:
    nodekey.ensure_node_key(settings, store, env={})
    for name in os.listdir(settings.home):
        mode = stat.S_IMODE((settings.home / name).stat().st_mode)
        if name.startswith("node-"):
            assert mode & 0o077 == 0, name
