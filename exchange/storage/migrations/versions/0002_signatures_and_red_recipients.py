"""Signatures and RED recipients: member keys, the key that signed each version, the
collections that require signatures, and the identities named as RED recipients.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add member_keys and object_red_recipients; signed_kid and require_signatures."""
    op.create_table(
        "member_keys",
        sa.Column("kid", sa.String(80), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=True),  # NULL: a key of this node
        sa.Column("purpose", sa.String(16), nullable=False),  # "object" or "node"
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("compromised_since", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name="pk_member_keys"),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"],
                                name="fk_member_keys_org_id_organisations"),
    )
    op.create_index("ix_member_keys_org_id", "member_keys", ["org_id"])
    with op.batch_alter_table("object_versions") as batch:
        batch.add_column(sa.Column("signed_kid", sa.String(80), nullable=True))
    op.create_index("ix_object_versions_signed_kid", "object_versions",
                    ["signed_kid", "date_added"])
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("require_signatures", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "object_red_recipients",
        sa.Column("date_added", sa.BigInteger(), nullable=False),
        sa.Column("identity_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("date_added", "identity_id",
                                name="pk_object_red_recipients"),
    )
    op.create_index("ix_object_red_recipients_identity", "object_red_recipients",
                    ["identity_id", "date_added"])


def downgrade() -> None:
    """Remove what upgrade added."""
    op.drop_table("object_red_recipients")
    op.drop_index("ix_object_versions_signed_kid", "object_versions")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("require_signatures")
    with op.batch_alter_table("object_versions") as batch:
        batch.drop_column("signed_kid")
    op.drop_index("ix_member_keys_org_id", "member_keys")
    op.drop_table("member_keys")
