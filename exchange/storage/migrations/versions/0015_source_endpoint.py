"""TAXII sources: the collection each source's cursor belongs to.

Issue 20. A source's cursor (``added_after``) is a position in one collection of one
server. When the operator points a source at another collection or server in the
sources file and keeps its name, that cursor means nothing there, and reading from it
would skip every object the new collection recorded before it. The state now records
where its cursor was read (``endpoint``: the configured API root or discovery URL and
collection), and a run that finds another starts from the beginning
(:mod:`exchange.feeds.ingest`). NULL for states saved before this revision: taken as
the source as configured.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the endpoint column."""
    with op.batch_alter_table("taxii_source_state") as batch:
        batch.add_column(sa.Column("endpoint", sa.String(4200), nullable=True))


def downgrade() -> None:
    """Drop the endpoint column."""
    with op.batch_alter_table("taxii_source_state") as batch:
        batch.drop_column("endpoint")
