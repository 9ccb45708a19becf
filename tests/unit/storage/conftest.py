"""Fixtures of the storage contract suite: one store per test, on SQLite and PostgreSQL.

Every test that asks for ``store`` runs twice: on a SQLite file in ``tmp_path`` and on
PostgreSQL (``CX_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``), in
a schema of its own that is dropped afterwards. When PostgreSQL does not answer, its
half of the suite is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from exchange.model.objects import AccountId, CollectionId, OrgId, Role, StixId
from exchange.storage.base import Account, Collection, Grant, Organisation
from exchange.storage.sql import SqlStore

PG_URL = os.environ.get("CX_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_unavailable() -> str | None:
    """None when the test PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"PostgreSQL at {PG_URL} is not available ({type(e).__name__})"


def _schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema, dropped on exit: (its name, a URL that uses it).

    When PostgreSQL does not answer, the test is skipped with the reason, or fails
    under ``CI=true`` (CI must run it).
    """
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        reason = f"PostgreSQL at {PG_URL} is not available ({type(e).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    schema = f"cx_test_{uuid.uuid4().hex[:16]}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema, _schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> Iterator[str]:
    """A URL to an empty database: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exchange.db'}"
        return
    if postgres_unavailable:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{postgres_unavailable}; CI must run the PostgreSQL contract suite")
        pytest.skip(postgres_unavailable)
    with pg_schema() as (_, url):
        yield url


@pytest.fixture
def empty_store(store_url: str) -> Iterator[SqlStore]:
    """An open store on a database without the schema."""
    store = SqlStore(store_url)
    store.open()
    yield store
    store.close()


@pytest.fixture
def store(empty_store: SqlStore) -> SqlStore:
    """An open store with the newest schema and nothing in it."""
    empty_store.upgrade()
    return empty_store


ORG_A = OrgId("org-a")
ORG_B = OrgId("org-b")
ACCOUNT_A = AccountId("acct-a")
ACCOUNT_B = AccountId("acct-b")
COLL = CollectionId("91a7b528-80eb-42ed-a74d-c6fbd5a26116")
OTHER_COLL = CollectionId("52892447-4d7e-4f70-b94d-d7f22742ff63")


def org(org_id: str, name: str, parent: str | None = None) -> Organisation:
    """An organisation record with a made-up identity."""
    identity = f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    return Organisation(
        id=OrgId(org_id), name=name, identity_id=StixId(identity),
        identity_json=f'{{"id":"{identity}","name":"{name}"}}'.encode(),
        created_at=1_700_000_000_000_000, parent_id=OrgId(parent) if parent else None,
    )


@pytest.fixture
def world(store: SqlStore) -> SqlStore:
    """The store with two organisations, one publisher each, and two shared collections."""
    store.add_org(org(ORG_A, "UZ-CERT"))
    store.add_org(org(ORG_B, "PK-CERT"))
    store.add_account(Account(ACCOUNT_A, "uz-pub", ORG_A, Role.PUBLISHER, 1))
    store.add_account(Account(ACCOUNT_B, "pk-pub", ORG_B, Role.PUBLISHER, 1))
    for cid, title in ((COLL, "Indicators"), (OTHER_COLL, "Other")):
        store.add_collection(
            Collection(cid, "cx", title, alias=title.lower()),
            [Grant(cid, ORG_A, True, True), Grant(cid, ORG_B, True, True)],
        )
    return store
