"""MISP sync state: cursors and outcomes, what was pushed where, sharing groups, pulls.

Issue 19 (DESIGN.md decision 7). Four tables, written only by the sync
(:mod:`exchange.misp`):

* ``misp_sync_state``: per target and direction, the cursor, the last run's outcome and
  counts, the reasons for every item skipped or failed, consecutive failures (for the
  scheduler's backoff) and the next run;
* ``misp_pushed``: per target and STIX object, the version last pushed, the event it
  went to and the attributes it became (placement, idempotence, no echo);
* ``misp_sharing_groups``: per target and agreement, the sharing group created for it
  (created once, reused);
* ``misp_pulled``: per target and MISP event, the event timestamp last imported
  (de-duplication of MISP's inclusive timestamp filter).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the four sync tables."""
    op.create_table(
        "misp_sync_state",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("direction", sa.String(8), primary_key=True),
        sa.Column("cursor", sa.String(64), nullable=True),
        sa.Column("last_started", sa.BigInteger, nullable=True),
        sa.Column("last_finished", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_run", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "misp_pushed",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("object_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("event_uuid", sa.String(36), nullable=False),
        sa.Column("attribute_uuids", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("pushed_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_misp_pushed_event", "misp_pushed", ["target", "event_uuid"])
    op.create_table(
        "misp_sharing_groups",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("agreement", sa.String(128), primary_key=True),
        sa.Column("sharing_group_id", sa.Integer, nullable=False),
        sa.Column("sharing_group_uuid", sa.String(36), nullable=False),
    )
    op.create_table(
        "misp_pulled",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("event_uuid", sa.String(36), primary_key=True),
        sa.Column("event_timestamp", sa.BigInteger, nullable=False),
        sa.Column("imported_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop the four sync tables."""
    op.drop_table("misp_pulled")
    op.drop_table("misp_sharing_groups")
    op.drop_index("ix_misp_pushed_event", table_name="misp_pushed")
    op.drop_table("misp_pushed")
    op.drop_table("misp_sync_state")
