"""Indicator facts for flat feeds: validity, author, labels and confidence per version.

Issue 20, item 4 (a flat feed of 100,000 values in at most a second): a feed lists each
value with its indicator's ``valid_from``, ``valid_until`` and ``created_by_ref``, and
named feeds filter by ``labels`` and ``confidence``. Reading them from the bodies costs
a parse of every body per build (inside the database or in Python), growing with the
bodies' size; this table holds them per indicator version, written in the transaction
that stores the version (:func:`exchange.storage.envelopes.indicator_facts`), so a feed
is one indexed query over the observable index and this table. This revision fills it
for every indicator version stored before it, in batches by ``date_added``, with the
same function.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exchange.storage.envelopes import indicator_facts

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Versions read per statement while filling the table.
BATCH = 5000


def upgrade() -> None:
    """Create ``indicator_facts`` and fill it for every stored indicator version."""
    op.create_table(
        "indicator_facts",
        sa.Column("date_added", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=False),
        sa.Column("valid_from", sa.String(40), nullable=True),
        sa.Column("valid_until", sa.String(40), nullable=True),
        sa.Column("author", sa.String(128), nullable=True),
        sa.Column("labels", sa.Text, nullable=True),
        sa.Column("confidence", sa.Integer, nullable=True),
    )
    conn = op.get_bind()
    versions = sa.table("object_versions", sa.column("date_added", sa.BigInteger),
                        sa.column("type", sa.String), sa.column("body", sa.LargeBinary))
    facts = sa.table("indicator_facts", *(sa.column(name) for name in (
        "date_added", "valid_from", "valid_until", "author", "labels", "confidence")))
    after = -1
    while True:  # ends: date_added strictly grows and the table is finite
        rows = conn.execute(
            sa.select(versions.c.date_added, versions.c.body)
            .where(versions.c.date_added > after, versions.c.type == "indicator")
            .order_by(versions.c.date_added).limit(BATCH)).all()
        if not rows:
            break
        entries = []
        for row in rows:
            try:
                obj = json.loads(bytes(row.body))
            except ValueError:
                continue  # stored bodies are canonical JSON
            if isinstance(obj, dict):
                entries.append(indicator_facts(obj, row.date_added))
        if entries:
            conn.execute(facts.insert(), entries)
        after = rows[-1].date_added


def downgrade() -> None:
    """Drop ``indicator_facts``."""
    op.drop_table("indicator_facts")
