"""Alembic environment of the exchange, run only through :mod:`exchange.storage.sql`.

The store runs Alembic programmatically (no ``alembic.ini``): it opens a connection,
starts the write transaction, and hands the connection over in
``config.attributes["connection"]``. Every revision therefore runs inside the caller's
transaction and commits, or rolls back, with it.

Offline mode (``--sql``, for a DBA who wants the DDL as a script) is supported when the
configuration carries ``sqlalchemy.url``; the URL only selects the SQL dialect.
"""

from __future__ import annotations

from alembic import context

from exchange.storage.schema import metadata

config = context.config


def run_offline() -> None:
    """Emit the migration DDL as SQL text for the dialect of ``sqlalchemy.url``."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the live connection the store passed in."""
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the exchange migrations run through SqlStore.upgrade(), which passes a connection"
        )
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
