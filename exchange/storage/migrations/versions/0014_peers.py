"""Peer exchange nodes this node trusts: the pinned node keys and the last registry.

Issue 20 (DESIGN.md decision 9). One table, written only by ``exchange peer trust`` /
``untrust`` and by the peer verifier (:mod:`exchange.feeds.peers`):

* ``peer_trust``: per peer name, the node keys the operator pinned (key id and public
  key, JSON), where its signed registry is fetched (URL, and the file holding the API
  key this node presents there, never the key itself), and the last signed registry that
  verified against the pins, with when it was fetched.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the peer trust table."""
    op.create_table(
        "peer_trust",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("pins", sa.Text, nullable=False),
        sa.Column("registry_url", sa.String(2048), nullable=True),
        sa.Column("api_key_file", sa.String(4096), nullable=True),
        sa.Column("registry", sa.LargeBinary, nullable=True),
        sa.Column("fetched_at", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop the peer trust table."""
    op.drop_table("peer_trust")
