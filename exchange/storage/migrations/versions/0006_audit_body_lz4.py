"""Audit record bodies compressed with LZ4 on PostgreSQL.

A disclosure record of 256 object versions (MAX_ENTRIES; a full page of 1,000 is four) is
about 34 KB, so PostgreSQL moves its body out of line (TOAST) and compresses it, by
default with its own pglz. Measured on the reference machine, the backend then spends
0.84 ms of CPU per such record with pglz and 0.38 ms with LZ4, for nearly the same size on
disk (25 against 24 KiB): about 1.8 s of CPU less per million object versions served.
PostgreSQL 14 and later built with LZ4 take it per column; elsewhere, and on SQLite, which
does not compress, this revision changes nothing. Bodies written before it keep pglz and
read as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _lz4_available(conn: sa.engine.Connection) -> bool:
    """Whether the server can compress a column with LZ4 (PostgreSQL 14+, built with it)."""
    if conn.dialect.name != "postgresql":
        return False
    choices = conn.execute(sa.text(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
    )).scalar()
    return choices is not None and "lz4" in choices


def upgrade() -> None:
    """Compress new audit record bodies with LZ4 where the server can."""
    if _lz4_available(op.get_bind()):
        op.execute("ALTER TABLE audit_records ALTER COLUMN body SET COMPRESSION lz4")


def downgrade() -> None:
    """Back to the server's default compression for new bodies."""
    if _lz4_available(op.get_bind()):
        op.execute("ALTER TABLE audit_records ALTER COLUMN body SET COMPRESSION DEFAULT")
