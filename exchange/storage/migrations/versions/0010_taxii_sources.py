"""TAXII source state: per source, the ingestion cursor, paging mode and last outcome.

Issue 20 (DESIGN.md decision 9). One table, written only by the ingestion of TAXII
sources (:mod:`exchange.feeds.ingest`):

* ``taxii_source_state``: per source (feeds/sources.yaml), the cursor (the last
  ``X-TAXII-Date-Added-Last`` or ``date_added`` fully stored), the paging mode detected
  (``next``, ``more`` or ``offset``), the last run's start, end, outcome and message, its
  counts (created, duplicate, refused) and the reasons for every object refused,
  consecutive failures (the scheduler's backoff) and the next run.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the TAXII source state table."""
    op.create_table(
        "taxii_source_state",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.String(64), nullable=True),
        sa.Column("paging", sa.String(16), nullable=True),
        sa.Column("last_started", sa.BigInteger, nullable=True),
        sa.Column("last_finished", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_run", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    """Drop the TAXII source state table."""
    op.drop_table("taxii_source_state")
