"""The SHA-256 of every stored object version, kept from ingest.

Audit disclosures name the SHA-256 of the bytes each reader received; for a version served
as stored those are its body, so the digest is computed once when it is stored instead of
on every read (about a third of the ledger's cost per object served). This revision adds
the column and fills it for every version stored before it, in batches by ``date_added``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Versions read and updated per statement while filling the column.
BATCH = 5000


def upgrade() -> None:
    """Add object_versions.body_sha256 and fill it for every stored version."""
    op.add_column("object_versions", sa.Column("body_sha256", sa.LargeBinary(32), nullable=True))
    conn = op.get_bind()
    versions = sa.table("object_versions", sa.column("date_added", sa.BigInteger),
                        sa.column("body", sa.LargeBinary),
                        sa.column("body_sha256", sa.LargeBinary))
    fill = (versions.update().where(versions.c.date_added == sa.bindparam("b_date_added"))
            .values(body_sha256=sa.bindparam("b_digest")))
    after = -1
    while True:  # ends: date_added strictly grows and the table is finite
        rows = conn.execute(
            sa.select(versions.c.date_added, versions.c.body)
            .where(versions.c.date_added > after).order_by(versions.c.date_added)
            .limit(BATCH)).all()
        if not rows:
            break
        conn.execute(fill, [{"b_date_added": row.date_added,
                             "b_digest": hashlib.sha256(bytes(row.body)).digest()}
                            for row in rows])
        after = rows[-1].date_added


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("object_versions") as batch:
        batch.drop_column("body_sha256")
