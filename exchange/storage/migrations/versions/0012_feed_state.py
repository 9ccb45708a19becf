"""Flat feed downloads: who fetched which feed, how often, and what they got last.

Issue 20 (items 4 and 5): ``exchange sync status`` lists every flat feed with its
downloads. One table, written by the feed endpoints (:mod:`exchange.taxii.feeds_api`)
after each download's disclosure is recorded:

* ``feed_downloads``: per feed (a named feed, or ``<collection>/<kind>``), format and
  account: the account's organisation, how many full downloads (200) it made, the first
  and the last, and the ETag and number of values of the last. Conditional requests
  answered 304 are not counted (they must stay one index lookup); the audit ledger holds
  every download's disclosure in full.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``feed_downloads``."""
    op.create_table(
        "feed_downloads",
        sa.Column("feed", sa.String(160), primary_key=True),
        sa.Column("format", sa.String(8), primary_key=True),
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("org", sa.String(128), nullable=False),
        sa.Column("downloads", sa.BigInteger, nullable=False),
        sa.Column("first_download", sa.BigInteger, nullable=False),
        sa.Column("last_download", sa.BigInteger, nullable=False),
        sa.Column("last_etag", sa.String(64), nullable=False),
        sa.Column("last_values", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    """Drop ``feed_downloads``."""
    op.drop_table("feed_downloads")
