"""Shared test data of the audit tests: TEST-ONLY checkpoint keys, records, tampering."""

from __future__ import annotations

import hashlib

from sqlalchemy.engine import Connection

from exchange.audit.checkpoint import NoteKey
from exchange.audit.records import (
    Admin,
    Denial,
    Disclosed,
    Disclosure,
    PolicyReload,
    Publish,
    Published,
    Record,
)
from exchange.signing.keys import SigningKey, load_raw_private_key

ORIGIN = "audit.test.example/log1"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
LOG_TABLES = ("audit_records", "audit_nodes", "audit_checkpoints")


def checkpoint_key(number: int = 1) -> SigningKey:
    """A reproducible TEST-ONLY Ed25519 checkpoint key."""
    seed = hashlib.sha256(f"cx-audit TEST-ONLY checkpoint key #{number}".encode()).digest()
    return load_raw_private_key("Ed25519", seed)


def note_key(number: int = 1, name: str = ORIGIN) -> NoteKey:
    """The note key of :func:`checkpoint_key`."""
    return NoteKey.of(name, checkpoint_key(number))


def disclosed(i: int, *, producer: str | None = "org-uz", tlp: str = "green") -> Disclosed:
    """The i-th made-up disclosed object version."""
    return Disclosed(
        object_id=f"indicator--{i:08d}-0000-4000-8000-000000000000",
        object_version=T0 - 5_000_000 + i,
        date_added=T0 - 1_000_000 + i,
        object_digest="sha256:" + hashlib.sha256(b"object %d" % i).hexdigest(),
        producer_org=producer,
        tlp=tlp,
        rule=f"tlp-{tlp}-community",
    )


def disclosure(
    i: int, *, recipient: str = "org-pk", producer: str | None = "org-uz", count: int = 1
) -> Disclosure:
    """The i-th made-up disclosure record: ``count`` object versions from ``i`` on."""
    return Disclosure(
        time=T0 + i * 1_000,
        channel="taxii:get_objects",
        recipient_account="acct-pk-soc",
        recipient_org=recipient,
        collection="91a7b528-80eb-42ed-a74d-c6fbd5a26116",
        policy_digest=DIGEST,
        request_id=f"req-{i // 10}",
        objects=tuple(disclosed(i + k, producer=producer) for k in range(count)),
    )


def one_of_each(i: int = 0) -> list[Record]:
    """One record of every kind."""
    return [
        Publish(
            time=T0 + i, channel="taxii:add_objects", account="acct-uz-pub", org="org-uz",
            collection="coll", policy_digest=DIGEST, request_id="req-p",
            objects=(
                Published(object_id="indicator--x", object_version=T0, date_added=T0 + 1,
                          signed_kid="sha256:abc", signature="verified"),
            ),
        ),
        disclosure(i),
        Denial(
            time=T0 + i, channel="taxii:get_objects", recipient_account="acct-kz",
            recipient_org="org-kz", collection="coll", rule="deny-no-grant",
            reason="no grant on this collection", policy_digest=DIGEST, request_id="req-d",
        ),
        Admin(
            time=T0 + i, actor="acct-admin", action="apikey.revoke", target="ak_7Hx2",
            details={"account": "acct-pk-soc", "count": 1, "reissued": False, "note": None},
            request_id=None,
        ),
        PolicyReload(
            time=T0 + i, actor="cli:root", old_digest=DIGEST, new_digest=OTHER_DIGEST,
            request_id=None,
        ),
    ]


def drop_guards(conn: Connection) -> None:
    """Remove the append-only triggers, as a database owner bent on tampering could."""
    for table in LOG_TABLES:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for event in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{event}")
