"""Persistence: the :class:`~exchange.storage.base.Store` contract and its SQL implementation.

:mod:`.base` defines the interface and its records, :mod:`.sql` implements it on SQLite and
PostgreSQL, :mod:`.schema` holds the table definitions, :mod:`.timestamps` converts STIX
timestamps to the integer microseconds the store keeps, and ``migrations/`` is the Alembic
environment that creates and upgrades the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exchange.config import Settings
    from exchange.storage.base import Store


def open_store(settings: Settings) -> Store:
    """The node's store for ``settings.effective_database_url``, opened (no schema change).

    Raises:
        ConfigError: The database URL is malformed or names an unsupported database.
    """
    from exchange.storage.sql import SqlStore  # noqa: PLC0415 - keep `import exchange.storage` light

    store = SqlStore(settings.effective_database_url)
    store.open()
    return store
