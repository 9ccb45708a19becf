"""Every TAXII read shape is an index range scan on SQLite, whatever the table size.

Without ``sqlite_stat1`` (the store never runs ANALYZE) SQLite's planner works from fixed
estimates, so the plan chosen for an empty table is the plan for a table of a million
rows; a wrong index choice here means reading a whole collection per request there.
(PostgreSQL plans from statistics: its plans were checked on a 1M-row table by hand.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from exchange.storage.base import ObjectQuery, VersionMatch
from exchange.storage.queries import id_in, in_collection_by_id, one_object, ov, page_statement
from exchange.storage.sql import SqlStore

VISIBLE = {"visible_tlps": frozenset({"clear", "green", "amber"}), "own_org": "org-b"}
LAST, ALL, FIRST = VersionMatch(last=True), VersionMatch(all=True), VersionMatch(first=True)

SHAPES = [
    ("type-page", ObjectQuery("c", added_after=5, types=("indicator",), **VISIBLE), LAST,
     "USING INDEX ix_object_versions_type (collection_id=? AND type=? AND is_latest=? AND "
     "date_added>?)"),
    ("first-type-page", ObjectQuery("c", types=("indicator",), **VISIBLE), LAST,
     "USING INDEX ix_object_versions_type (collection_id=? AND type=? AND is_latest=?)"),
    ("added-after", ObjectQuery("c", added_after=5, **VISIBLE), LAST,
     "USING INDEX ix_object_versions_latest (collection_id=? AND is_latest=? AND date_added>?)"),
    ("manifest", ObjectQuery("c", cursor=5, include_body=False, limit=1000, **VISIBLE), LAST,
     "USING INDEX ix_object_versions_latest (collection_id=? AND is_latest=? AND date_added>?)"),
    ("all-versions", ObjectQuery("c", added_after=5, **VISIBLE), ALL,
     "USING INDEX ix_object_versions_collection (collection_id=? AND date_added>?)"),
    ("first-versions", ObjectQuery("c", added_after=5, **VISIBLE), FIRST,
     "USING INDEX ix_object_versions_collection (collection_id=? AND date_added>?)"),
    ("by-id", ObjectQuery("c", ids=("indicator--1",), **VISIBLE), LAST,
     "USING INDEX sqlite_autoindex_object_versions_1 (id=?)"),
    ("versions-of-id", ObjectQuery("c", ids=("indicator--1",), added_after=5), ALL,
     "USING INDEX sqlite_autoindex_object_versions_1 (id=?)"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    path: Path = tmp_path_factory.mktemp("plans") / "plans.db"
    store = SqlStore(f"sqlite:///{path}")
    store.open()
    store.upgrade()
    return store._require_engine()


def plan(engine: sa.Engine, statement: sa.Executable) -> list[str]:
    sql = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        return [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]


@pytest.mark.parametrize(("query", "versions", "expected"),
                         [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_read_is_an_index_range_scan(engine: sa.Engine, query: ObjectQuery,
                                     versions: VersionMatch, expected: str) -> None:
    steps = plan(engine, page_statement(query, versions))
    assert steps[0] == f"SEARCH object_versions {expected}"
    if not query.ids:  # the index yields date_added order: no sort, stop after limit+1
        assert steps == steps[:1]


def test_envelope_existence_checks_use_the_id_index(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        condition = id_in(conn, [f"indicator--{i}" for i in range(500)])
    statement = sa.select(ov.c.collection_id, ov.c.id, ov.c.version, ov.c.date_added,
                          ov.c.producer_org, ov.c.is_latest, ov.c.is_first).where(condition)
    assert plan(engine, statement)[0].startswith(
        "SEARCH object_versions USING INDEX sqlite_autoindex_object_versions_1 (id=?)"
    )
    bodies = sa.select(ov.c.id, ov.c.version, ov.c.body).where(
        condition, in_collection_by_id("c"))
    assert plan(engine, bodies)[0].startswith(
        "SEARCH object_versions USING INDEX sqlite_autoindex_object_versions_1 (id=?)"
    )


def test_delete_finds_the_versions_by_id(engine: sa.Engine) -> None:
    statement = ov.delete().where(*one_object("c", "indicator--1"),
                                  ov.c.is_latest == sa.true())
    assert plan(engine, statement) == [
        "SEARCH object_versions USING INDEX sqlite_autoindex_object_versions_1 (id=?)"
    ]


@pytest.mark.parametrize(("value", "subdomains"), [("203.0.113.7", False),
                                                   ("evil.example", True)],
                         ids=["address-with-networks", "domain-with-subdomains"])
def test_a_search_starts_from_the_observables_found(engine: sa.Engine, value: str,
                                                    subdomains: bool) -> None:
    """Never a walk of a collection probing the found set (a full scan at 1M rows)."""
    from exchange.model.observables import search_terms  # noqa: PLC0415
    from exchange.storage.base import ObservableSearch  # noqa: PLC0415
    from exchange.storage.queries import search_statement  # noqa: PLC0415

    term = search_terms(value, subdomains=subdomains)
    scopes = (ObjectQuery("c", red_identity="identity--x", revoked_needs_prior=True,
                          **VISIBLE), ObjectQuery("d", **VISIBLE))
    statement = search_statement(ObservableSearch(
        kinds=term.kinds, keys=term.keys, prefix=term.prefix, scopes=scopes, after=5))
    assert statement is not None
    steps = plan(engine, statement)
    assert steps[0] == "SEARCH object_versions USING INTEGER PRIMARY KEY (rowid=?)"
    assert any(s.startswith("SEARCH observables USING PRIMARY KEY (key=? AND kind=?)")
               for s in steps)
    assert not any("object_versions USING INDEX" in s for s in steps)
    assert not any(s.startswith("SCAN") for s in steps)


def test_a_flat_feed_walks_the_collections_latest_indicators_once(engine: sa.Engine) -> None:
    """One range of the type index, each version's index rows by date_added (covering)
    and its facts by primary key: no scan of a table, no sort (the type index yields
    date_added order)."""
    from exchange.storage.queries import feed_statement  # noqa: PLC0415

    steps = plan(engine, feed_statement(ObjectQuery("c", red_identity="identity--x",
                                                    **VISIBLE), ("ipv4",)))
    assert steps[0] == ("SEARCH object_versions USING INDEX ix_object_versions_type"
                        " (collection_id=? AND type=? AND is_latest=?)")
    assert any(s.startswith("SEARCH observables USING COVERING INDEX"
                            " ix_observables_date_added (date_added=?)") for s in steps)
    assert any(s.startswith("SEARCH indicator_facts USING INTEGER PRIMARY KEY") or
               s.startswith("SEARCH indicator_facts USING PRIMARY KEY") for s in steps)
    assert not any(s.startswith("SCAN") or "TEMP B-TREE" in s for s in steps)
