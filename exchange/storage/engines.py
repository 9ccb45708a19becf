"""Database URLs and SQLAlchemy engines for the two supported databases.

* **SQLite** (``sqlite:///path``): WAL journal, ``PRAGMA synchronous`` FULL by default, a
  busy timeout, foreign keys on, a larger page cache. SQLAlchemy, not the ``sqlite3``
  module, emits ``BEGIN``: a deferred ``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for
  connections marked with :data:`WRITE_OPTION`, so that writers in several processes
  queue on the database lock (waiting up to the busy timeout) instead of failing when a
  read transaction tries to become a write transaction.
* **PostgreSQL** (``postgresql://``, ``postgres://``, ``postgresql+psycopg://``): always
  psycopg 3, with pre-ping so connections dropped by a restart are replaced.

Creating an engine does no I/O; connections are made on first use.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from exchange.errors import ConfigError

log = logging.getLogger(__name__)

#: Execution option on a connection that makes its next ``BEGIN`` an ``IMMEDIATE`` one.
WRITE_OPTION = "cx_write"
SQLITE_SYNC_MODES = ("NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    """Per-connection SQLite settings.

    Attributes:
        synchronous: ``PRAGMA synchronous``: FULL (an acknowledged commit survives power
            loss), NORMAL (survives a process crash; the last commits may be lost on power
            loss), or EXTRA.
        busy_timeout_ms: How long a writer waits for the database lock.
        cache_mib: Page cache per connection.
    """

    synchronous: str = "FULL"
    busy_timeout_ms: int = 30_000
    cache_mib: int = 64

    def __post_init__(self) -> None:
        if self.synchronous not in SQLITE_SYNC_MODES:
            raise ConfigError(f"sqlite synchronous must be one of {', '.join(SQLITE_SYNC_MODES)}")


def normalise_url(url: str) -> URL:
    """Parse a database URL and pin the driver: pysqlite for SQLite, psycopg 3 for PostgreSQL.

    Args:
        url: ``sqlite:///path``, ``sqlite://`` (in memory), ``postgresql://...``,
            ``postgres://...`` or ``postgresql+psycopg://...``.

    Returns:
        The SQLAlchemy URL to create the engine from.

    Raises:
        ConfigError: The URL is malformed or names another database or driver.
    """
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise ConfigError("database_url is not a valid database URL") from None
    scheme = parsed.drivername
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///<file> or"
        " postgresql://<user>@<host>/<database> (driven by psycopg 3)"
    )


def create_engine(url: str, sqlite: SqliteOptions) -> Engine:
    """The engine for a database URL, configured as the module docstring says.

    Raises:
        ConfigError: The URL is malformed or names an unsupported database.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, sqlite)
    return sa.create_engine(
        parsed,
        hide_parameters=True,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "cert-exchange"},
    )


def _sqlite_engine(url: URL, options: SqliteOptions) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every checkout would see a new empty database.
        engine = sa.create_engine(
            url,
            hide_parameters=True,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        engine = sa.create_engine(
            url,
            hide_parameters=True,
            connect_args={
                "check_same_thread": False,
                "timeout": options.busy_timeout_ms / 1000,
            },
        )
    pragmas = [
        f"PRAGMA synchronous = {options.synchronous}",
        "PRAGMA foreign_keys = ON",
        f"PRAGMA cache_size = -{max(int(options.cache_mib), 1) * 1024}",
    ]

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the sqlite3 module from emitting BEGIN itself; on_begin does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout_ms)}")
            if not in_memory:
                _enable_wal(cursor, options.busy_timeout_ms / 1000)
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", on_begin)
    return engine


def _enable_wal(cursor: sqlite3.Cursor, timeout: float) -> None:
    """Switch the database file to WAL (a persistent setting), waiting out other writers.

    Switching needs the database to itself, and SQLite reports a busy database at once
    instead of calling the busy handler - which happens when several workers open a new
    database together. So: skip when already in WAL, else retry until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            continue
        if str(mode).lower() != "wal":
            log.warning("SQLite could not switch the database to WAL (journal mode %s);"
                        " readers will wait for writers", mode)
        return
