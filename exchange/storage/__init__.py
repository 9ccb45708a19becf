"""Persistence: the :class:`~exchange.storage.base.Store` contract and its SQL implementation.

:mod:`.base` defines the interface and its records, :mod:`.sql` implements it on SQLite and
PostgreSQL, :mod:`.schema` holds the table definitions, :mod:`.timestamps` converts STIX
timestamps to the integer microseconds the store keeps, and ``migrations/`` is the Alembic
environment that creates and upgrades the schema.

Core floor: imports only ``model``, ``config`` and ``errors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from exchange.errors import ConfigError

if TYPE_CHECKING:
    from exchange.config import Settings
    from exchange.storage.base import Store


def open_store(settings: Settings, *, create: bool = False) -> Store:
    """The node's store for ``settings.effective_database_url``, opened (no schema change).

    Args:
        settings: The node settings.
        create: Allow a new SQLite file to be created (only ``exchange init`` does), so a
            mistyped home is reported instead of silently getting an empty database.

    Raises:
        ConfigError: The database URL is malformed or names an unsupported database, or
            the SQLite file does not exist and ``create`` is False.
        StorageError: The database cannot be reached.
    """
    from exchange.storage.sql import SqlStore  # noqa: PLC0415 - keep `import exchange.storage` light

    url = settings.effective_database_url
    if url.startswith("sqlite") and not create:
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            raise ConfigError(
                f"no exchange database at {path}: run 'exchange init' (home {settings.home})"
            )
    store = SqlStore(url)
    store.open()
    return store
