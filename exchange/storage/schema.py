"""SQLAlchemy Core table definitions of the exchange's database.

These tables are what :mod:`exchange.storage.sql` queries. They are never created from
here: the schema is created and upgraded only by the Alembic revisions in
``migrations/versions/``, which spell the same tables out explicitly. A contract test
compares the two.

All times are ``BIGINT`` microseconds since the Unix epoch (UTC). ``object_versions`` is
keyed by ``date_added``: the store assigns it from the one-row ``clock`` table, strictly
increasing across the node, so it is unique by construction, orders every TAXII read,
and on SQLite is the rowid, so the table itself is stored in ``date_added`` order.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import postgresql

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: BIGINT everywhere, except that SQLite needs the exact type name INTEGER for a
#: primary key to become the rowid.
ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")

organisations = Table(
    "organisations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("identity_id", String(128), nullable=False, unique=True),
    Column("identity_json", LargeBinary, nullable=False),
    Column("parent_id", String(64), ForeignKey("organisations.id"), nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("org_id", String(64), ForeignKey("organisations.id"), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("digest", LargeBinary(32), nullable=False),
    Column("label", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

collections = Table(
    "collections",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("api_root", String(64), nullable=False),
    Column("title", String(256), nullable=False),
    Column("description", Text, nullable=False),
    Column("alias", String(128), nullable=True),
    Column("default_tlp", String(16), nullable=False),
    Column("require_signatures", Boolean, nullable=False, server_default=false()),  # 0002
    # NULL aliases never collide: both SQLite and PostgreSQL treat NULLs as distinct.
    UniqueConstraint("api_root", "alias"),
)

grants = Table(
    "grants",
    metadata,
    Column("collection_id", String(64), ForeignKey("collections.id"), primary_key=True),
    Column("org_id", String(64), ForeignKey("organisations.id"), primary_key=True, index=True),
    Column("can_read", Boolean, nullable=False),
    Column("can_write", Boolean, nullable=False),
)

object_versions = Table(
    "object_versions",
    metadata,
    Column("date_added", ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("id", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("spec_version", String(8), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("producer_org", String(64), ForeignKey("organisations.id"), nullable=True),
    Column("tlp", String(16), nullable=True),
    Column("effective_tlp", String(16), nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("is_latest", Boolean, nullable=False),
    Column("is_first", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("signed_kid", String(80), nullable=True),  # revision 0002; NULL = unsigned
    # Revision 0005: the SHA-256 of body, which audit disclosures name for every version
    # served as stored (computed once at ingest, not on every read). Nullable only
    # because SQLite cannot add a NOT NULL column to a filled table; the migration
    # fills every older row, and every insert sets it.
    Column("body_sha256", LargeBinary(32), nullable=True),
    # One index by id serves the creator check (an id in its collection), the
    # per-envelope existence check and match[id] reads (id and collection_id), and
    # match[version]=<exact>. Leading with id rather than collection_id lets it replace a
    # second index on id alone: ids are random UUIDs, so each such index costs a random
    # b-tree insert per row, the dominant write cost once the table is large.
    UniqueConstraint("id", "collection_id", "version"),
)
# Every TAXII read is "WHERE collection_id = ? AND <filters> AND date_added > ?
# ORDER BY date_added LIMIT n"; each index below lets one shape of it be a range scan
# that stops after n rows.
Index("ix_object_versions_collection", object_versions.c.collection_id,
      object_versions.c.date_added)
Index("ix_object_versions_latest", object_versions.c.collection_id,
      object_versions.c.is_latest, object_versions.c.date_added)
Index("ix_object_versions_type", object_versions.c.collection_id, object_versions.c.type,
      object_versions.c.is_latest, object_versions.c.date_added)
Index("ix_object_versions_signed_kid", object_versions.c.signed_kid,
      object_versions.c.date_added)

# Revision 0002: the identities a producer named as RED recipients of a version
# (exchange.policy.tlp.red_recipients_of), so RED filtering happens in the query.
object_red_recipients = Table(
    "object_red_recipients",
    metadata,
    Column("date_added", BigInteger, primary_key=True),
    Column("identity_id", String(128), primary_key=True),
)
Index("ix_object_red_recipients_identity", object_red_recipients.c.identity_id,
      object_red_recipients.c.date_added)

# Revision 0002: signing keys of members (org_id set, purpose "object") and of this node
# (org_id NULL, purpose "node"). Public halves only; private keys never enter the database.
member_keys = Table(
    "member_keys",
    metadata,
    Column("kid", String(80), primary_key=True),
    Column("org_id", String(64), ForeignKey("organisations.id"), nullable=True, index=True),
    Column("purpose", String(16), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("public_pem", Text, nullable=False),
    Column("valid_from", BigInteger, nullable=False),
    Column("valid_until", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("compromised_since", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

statuses = Table(
    "statuses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("api_root", String(64), nullable=False),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("org_id", String(64), ForeignKey("organisations.id"), nullable=False),
    Column("request_timestamp", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("total_count", Integer, nullable=False),
    Column("success_count", Integer, nullable=False),
    Column("failure_count", Integer, nullable=False),
    Column("pending_count", Integer, nullable=False),
    # JSON text: {"successes": [...], "failures": [...], "pendings": [...]}, each entry
    # {"id": ..., "version": ..., "message": ...}.
    Column("details", Text, nullable=False),
)

clock = Table(
    "clock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_date_added", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# Revision 0003: the audit ledger (exchange.audit.ledger), an RFC 9162 Merkle log.
# audit_records holds the leaves: seq is the leaf index (gapless, from 0; the rowid on
# SQLite), body the canonical record bytes exactly as hashed (never JSON/JSONB, which
# re-serialise), leaf_hash SHA-256(0x00 || body). recipient_org, producer_org and
# object_id are copies from the body for the auditor's queries. Append-only: revision
# 0003 installs triggers that refuse UPDATE and DELETE on the three log tables.
# Revision 0006: on PostgreSQL 14+ with LZ4, bodies are compressed with LZ4, not pglz.
audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("recipient_org", String(128), nullable=True),
    Column("producer_org", String(128), nullable=True),
    Column("object_id", String(128), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)
Index("ix_audit_records_recipient", audit_records.c.recipient_org, audit_records.c.time)
Index("ix_audit_records_object", audit_records.c.object_id, audit_records.c.seq)
# Revision 0004: by kind, for one-kind queries (the newest policy reload, denials).
Index("ix_audit_records_kind", audit_records.c.kind, audit_records.c.seq)

# Hashes of the complete subtrees of 256**k leaves (levels 8, 16, 24, ...: the bottom
# rows of C2SP tlog-tiles), so a proof reads at most 128 hashes per subtree it needs.
audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# The tree's right edge (exchange.audit.tree.Frontier): size and the concatenated hashes
# of its complete subtrees, largest first. One row, updated with every append.
audit_frontier = Table(
    "audit_frontier",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("hashes", LargeBinary, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# Signed checkpoints (C2SP signed notes), one per tree size.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Revision 0004: how far the sequencer has moved each disclosure spool file into the log
# (exchange.audit.spool); updated in the same transaction as the records it moves.
audit_spool_offsets = Table(
    "audit_spool_offsets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("consumed", BigInteger, nullable=False),
)

# Revision 0007: the ids of derived copies (redacted or anonymised objects the node serves
# in place of an original, exchange.node.derive), so a copy can be fetched and explained
# by its own id. Filled when a read derives a copy or references one; a derived id is a
# uuid5 of the original id and the transforms, so each row is written once.
derived_ids = Table(
    "derived_ids",
    metadata,
    Column("derived_id", String(128), primary_key=True),
    Column("original_id", String(128), nullable=False),
    Column("transforms", String(512), nullable=False),
)

#: The index key's type: byte-order comparison on PostgreSQL too (collation "C"), so that
#: a domain's subdomains are one key range whatever the database's default collation.
KEY_TEXT = String(512).with_variant(postgresql.VARCHAR(512, collation="C"), "postgresql")

# Revision 0008: the observable values each stored version names
# (exchange.model.observables), written in the transaction that stores the version.
# One row per (version, kind, key); the key is the normalised value (a domain with its
# labels reversed, so subdomains share a prefix). Searches look keys up exactly (an
# address together with every network that could contain it) or, for subdomains, as
# one key range; the primary key is that lookup's index, and on SQLite the table is
# stored in it (WITHOUT ROWID). ix_observables_date_added finds a version's rows when
# it is deleted.
observables = Table(
    "observables",
    metadata,
    Column("key", KEY_TEXT, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("date_added", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)
Index("ix_observables_date_added", observables.c.date_added)

# Revision 0009: the MISP sync's state (exchange.misp; issue 19). Per target and
# direction: cursor, last outcome, counts, reasons (JSON), consecutive failures, next run.
misp_sync_state = Table(
    "misp_sync_state",
    metadata,
    Column("target", String(64), primary_key=True),
    Column("direction", String(8), primary_key=True),
    Column("cursor", String(64), nullable=True),
    Column("last_started", BigInteger, nullable=True),
    Column("last_finished", BigInteger, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("counts", Text, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("next_run", BigInteger, nullable=True),
)
# Per target and STIX object: the version last pushed, its event and attributes (JSON).
misp_pushed = Table(
    "misp_pushed",
    metadata,
    Column("target", String(64), primary_key=True),
    Column("object_id", String(128), primary_key=True),
    Column("version", String(40), nullable=False),
    Column("event_uuid", String(36), nullable=False),
    Column("attribute_uuids", Text, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("pushed_at", BigInteger, nullable=False),
)
Index("ix_misp_pushed_event", misp_pushed.c.target, misp_pushed.c.event_uuid)
# Per target and agreement: the sharing group the sync created for it (once).
misp_sharing_groups = Table(
    "misp_sharing_groups",
    metadata,
    Column("target", String(64), primary_key=True),
    Column("agreement", String(128), primary_key=True),
    Column("sharing_group_id", Integer, nullable=False),
    Column("sharing_group_uuid", String(36), nullable=False),
)
# Per target and MISP event: the event timestamp last imported by a pull.
misp_pulled = Table(
    "misp_pulled",
    metadata,
    Column("target", String(64), primary_key=True),
    Column("event_uuid", String(36), primary_key=True),
    Column("event_timestamp", BigInteger, nullable=False),
    Column("imported_at", BigInteger, nullable=False),
)

# Revision 0014: the peers whose node keys the operator pinned (exchange.node.peers;
# issue 20, ADR 0004).
peer_trust = Table(
    "peer_trust",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("pins", Text, nullable=False),
    Column("registry_url", String(2048), nullable=True),
    Column("api_key_file", String(4096), nullable=True),
    Column("registry", LargeBinary, nullable=True),
    # revision 0016: the CA bundle the registry is fetched with; NULL: the default
    Column("ca_file", String(4096), nullable=True),
    Column("fetched_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# Revision 0010: TAXII sources (exchange.feeds; issue 20). Per source: cursor, paging mode
# detected, last outcome, counts and reasons (JSON), consecutive failures, next run.
taxii_source_state = Table(
    "taxii_source_state",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("cursor", String(64), nullable=True),
    Column("paging", String(16), nullable=True),
    Column("last_started", BigInteger, nullable=True),
    Column("last_finished", BigInteger, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("counts", Text, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("next_run", BigInteger, nullable=True),
    # revision 0015: the configured API root (or discovery URL) and collection the cursor
    # belongs to; NULL before it
    Column("endpoint", String(4200), nullable=True),
)

# Revision 0012: flat feed downloads (exchange.taxii.feeds_api; issue 20): per feed,
# format and account, the full downloads (200s; 304s are not counted), the first and the
# last, and the last one's ETag and number of values, for `exchange sync status`.
feed_downloads = Table(
    "feed_downloads",
    metadata,
    Column("feed", String(160), primary_key=True),
    Column("format", String(8), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("org", String(128), nullable=False),
    Column("downloads", BigInteger, nullable=False),
    Column("first_download", BigInteger, nullable=False),
    Column("last_download", BigInteger, nullable=False),
    Column("last_etag", String(64), nullable=False),
    Column("last_values", Integer, nullable=False),
)

# Revision 0013: per indicator version, what a flat feed lists and filters by besides its
# values (exchange.storage.envelopes.indicator_facts), written in the transaction that
# stores the version, so a feed is one query that reads no body: valid_from, valid_until
# and created_by_ref as written, the string labels (JSON text), the integer confidence.
indicator_facts = Table(
    "indicator_facts",
    metadata,
    Column("date_added", ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("valid_from", String(40), nullable=True),
    Column("valid_until", String(40), nullable=True),
    Column("author", String(128), nullable=True),
    Column("labels", Text, nullable=True),
    Column("confidence", Integer, nullable=True),
)
