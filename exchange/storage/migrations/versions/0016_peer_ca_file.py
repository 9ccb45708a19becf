"""Peer trust: the CA bundle a peer's registry is fetched with.

Issue 20 (ADR 0004). National nodes often serve from a private PKI; the peer's signed
registry (``exchange peer trust --registry-url``) is fetched again by every pull that
meets an unknown key or holds an old registry, so the CA file the operator named when
trusting the peer (``--ca-file``) is kept with the pins. NULL: the default bundle.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the ca_file column."""
    with op.batch_alter_table("peer_trust") as batch:
        batch.add_column(sa.Column("ca_file", sa.String(4096), nullable=True))


def downgrade() -> None:
    """Drop the ca_file column."""
    with op.batch_alter_table("peer_trust") as batch:
        batch.drop_column("ca_file")
