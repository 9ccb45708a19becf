"""The observable index: the values each stored version names, for search.

Adds ``observables`` (see :mod:`exchange.storage.schema`) and fills it for every version
stored before this revision, in batches by ``date_added``, with the same extraction
(:func:`exchange.model.observables.observables_of`) that ingest uses from now on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from exchange.model.observables import observables_of

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Versions read per statement while filling the index.
BATCH = 5000


def upgrade() -> None:
    """Create the observable index and fill it for every stored version."""
    op.create_table(
        "observables",
        sa.Column("key", sa.String(512).with_variant(
            postgresql.VARCHAR(512, collation="C"), "postgresql"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("date_added", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", "kind", "date_added", name="pk_observables"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_observables_date_added", "observables", ["date_added"])
    conn = op.get_bind()
    versions = sa.table("object_versions", sa.column("date_added", sa.BigInteger),
                        sa.column("body", sa.LargeBinary))
    index = sa.table("observables", sa.column("key", sa.String),
                     sa.column("kind", sa.String), sa.column("date_added", sa.BigInteger))
    after = -1
    while True:  # ends: date_added strictly grows and the table is finite
        rows = conn.execute(
            sa.select(versions.c.date_added, versions.c.body)
            .where(versions.c.date_added > after).order_by(versions.c.date_added)
            .limit(BATCH)).all()
        if not rows:
            break
        entries: list[dict[str, object]] = []
        for row in rows:
            try:
                obj = json.loads(bytes(row.body))
            except ValueError:
                continue  # stored bodies are canonical JSON; nothing to index otherwise
            if isinstance(obj, dict):
                entries.extend({"key": o.key, "kind": o.kind, "date_added": row.date_added}
                               for o in observables_of(obj))
        if entries:
            conn.execute(index.insert(), entries)
        after = rows[-1].date_added


def downgrade() -> None:
    """Drop the observable index."""
    op.drop_index("ix_observables_date_added", table_name="observables")
    op.drop_table("observables")
