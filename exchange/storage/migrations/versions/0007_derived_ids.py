"""The ids of derived copies, so a copy can be fetched and explained by its own id.

A recipient that a redaction profile or ``provider_attribution: must-not`` applies to
receives copies with ids of their own (``exchange.node.derive``): a uuid5 of the original
id and the transforms, which cannot be inverted. This table maps each derived id the node
has served or referenced back to its original and transforms; reads fill it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create derived_ids."""
    op.create_table(
        "derived_ids",
        sa.Column("derived_id", sa.String(128), primary_key=True),
        sa.Column("original_id", sa.String(128), nullable=False),
        sa.Column("transforms", sa.String(512), nullable=False),
    )


def downgrade() -> None:
    """Drop derived_ids."""
    op.drop_table("derived_ids")
