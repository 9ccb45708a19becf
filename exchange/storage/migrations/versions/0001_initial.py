"""The initial schema: members, accounts, keys, collections, object versions, statuses.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Spelled out with ``op`` calls on purpose: this file records the schema as of revision
0001 and must not change when :mod:`exchange.storage.schema` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite makes a primary key the rowid only when its type is spelled exactly INTEGER.
_ROWID_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table and index of the exchange, and the clock row."""
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("identity_id", sa.String(128), nullable=False),
        sa.Column("identity_json", sa.LargeBinary(), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_organisations"),
        sa.UniqueConstraint("name", name="uq_organisations_name"),
        sa.UniqueConstraint("identity_id", name="uq_organisations_identity_id"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["organisations.id"],
            name="fk_organisations_parent_id_organisations",
        ),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name="fk_accounts_org_id_organisations"
        ),
    )
    op.create_index("ix_accounts_org_id", "accounts", ["org_id"])
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_api_keys_account_id_accounts"
        ),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_table(
        "collections",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("api_root", sa.String(64), nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("alias", sa.String(128), nullable=True),
        sa.Column("default_tlp", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collections"),
        sa.UniqueConstraint("api_root", "alias", name="uq_collections_api_root_alias"),
    )
    op.create_table(
        "grants",
        sa.Column("collection_id", sa.String(64), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("can_read", sa.Boolean(), nullable=False),
        sa.Column("can_write", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "org_id", name="pk_grants"),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_grants_collection_id_collections"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name="fk_grants_org_id_organisations"
        ),
    )
    op.create_index("ix_grants_org_id", "grants", ["org_id"])
    op.create_table(
        "object_versions",
        sa.Column("date_added", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("collection_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("spec_version", sa.String(8), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("producer_org", sa.String(64), nullable=True),
        sa.Column("tlp", sa.String(16), nullable=True),
        sa.Column("effective_tlp", sa.String(16), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("is_first", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("date_added", name="pk_object_versions"),
        sa.UniqueConstraint(
            "id", "collection_id", "version", name="uq_object_versions_id_collection_id_version"
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"],
            name="fk_object_versions_collection_id_collections",
        ),
        sa.ForeignKeyConstraint(
            ["producer_org"], ["organisations.id"],
            name="fk_object_versions_producer_org_organisations",
        ),
    )
    op.create_index(
        "ix_object_versions_collection", "object_versions", ["collection_id", "date_added"]
    )
    op.create_index(
        "ix_object_versions_latest",
        "object_versions",
        ["collection_id", "is_latest", "date_added"],
    )
    op.create_index(
        "ix_object_versions_type",
        "object_versions",
        ["collection_id", "type", "is_latest", "date_added"],
    )
    op.create_table(
        "statuses",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("api_root", sa.String(64), nullable=False),
        sa.Column("collection_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("request_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("pending_count", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_statuses"),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_statuses_collection_id_collections"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_statuses_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name="fk_statuses_org_id_organisations"
        ),
    )
    clock = op.create_table(
        "clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_date_added", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clock"),
        sa.CheckConstraint("id = 1", name="ck_clock_single_row"),
    )
    op.bulk_insert(clock, [{"id": 1, "last_date_added": 0}])


def downgrade() -> None:
    """Drop everything :func:`upgrade` created."""
    for table in (
        "clock", "statuses", "object_versions", "grants", "collections", "api_keys",
        "accounts", "organisations",
    ):
        op.drop_table(table)
