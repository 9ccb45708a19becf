"""An index of the audit ledger by record kind, for queries of one kind (the newest policy
reload, the denials) that would otherwise scan the disclosures.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index audit_records by (kind, seq)."""
    op.create_index("ix_audit_records_kind", "audit_records", ["kind", "seq"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_audit_records_kind", table_name="audit_records")
