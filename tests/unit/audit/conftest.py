"""Fixtures of the audit tests: a migrated database per test on SQLite and PostgreSQL.

``engine`` runs every test that asks for it twice, like the storage contract suite (whose
``store_url`` fixture it reuses): on a SQLite file and in a PostgreSQL schema of its own,
skipped with the reason when PostgreSQL does not answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from exchange.storage.engines import SqliteOptions, create_engine
from exchange.storage.sql import SqlStore
from tests.unit.storage.conftest import postgres_unavailable, store_url

__all__ = ["engine", "postgres_unavailable", "store_url"]


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An engine on an empty database at the newest schema revision."""
    store = SqlStore(store_url)
    store.open()
    store.upgrade()
    store.close()
    engine = create_engine(store_url, SqliteOptions(synchronous="NORMAL"))
    yield engine
    engine.dispose()
