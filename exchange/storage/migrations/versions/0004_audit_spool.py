"""The audit ledger's spool offsets, and an index of its records by kind.

``audit_spool_offsets`` says how far the sequencer has moved each disclosure spool file
into the log (exchange.audit.spool); it changes in the same transaction as the records
it moves, so each spooled record enters the log exactly once. The index serves queries
of one kind (the newest policy reload, the denials) that would otherwise scan the
disclosures.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create audit_spool_offsets; index audit_records by (kind, seq)."""
    op.create_table(
        "audit_spool_offsets",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_audit_records_kind", "audit_records", ["kind", "seq"])


def downgrade() -> None:
    """Drop both."""
    op.drop_index("ix_audit_records_kind", table_name="audit_records")
    op.drop_table("audit_spool_offsets")
