"""The audit ledger: records (the Merkle log's leaves), stored subtree hashes, the tree's
right edge, and signed checkpoints; the log tables are append-only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Triggers refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE) on audit_records,
audit_nodes and audit_checkpoints, so a bug or a stray statement cannot rewrite history.
They do not stop a database owner, who can drop them: the Merkle tree and the signed
checkpoints are what make such tampering evident (``exchange audit verify``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite makes a primary key the rowid only when its type is spelled exactly INTEGER.
_ROWID_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = ("audit_records", "audit_nodes", "audit_checkpoints")
_MESSAGE = "the audit ledger is append-only"


def upgrade() -> None:
    """Create the ledger tables, the empty tree's right edge, and the append-only triggers."""
    op.create_table(
        "audit_records",
        sa.Column("seq", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("recipient_org", sa.String(128), nullable=True),
        sa.Column("producer_org", sa.String(128), nullable=True),
        sa.Column("object_id", sa.String(128), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
    )
    op.create_index("ix_audit_records_recipient", "audit_records", ["recipient_org", "time"])
    op.create_index("ix_audit_records_object", "audit_records", ["object_id", "seq"])
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_nodes"),
    )
    frontier = op.create_table(
        "audit_frontier",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_frontier"),
        sa.CheckConstraint("id = 1", name="ck_audit_frontier_single_row"),
    )
    op.bulk_insert(frontier, [{"id": 1, "size": 0, "hashes": b""}])
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoints"),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN RAISE EXCEPTION '{_MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME; END $$"
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
            )
    else:
        for table in _APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table}"
                    f" BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
                )


def downgrade() -> None:
    """Drop the ledger tables (with their triggers) and the trigger function."""
    for table in ("audit_checkpoints", "audit_frontier", "audit_nodes"):
        op.drop_table(table)
    op.drop_index("ix_audit_records_object", "audit_records")
    op.drop_index("ix_audit_records_recipient", "audit_records")
    op.drop_table("audit_records")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_append_only()")
