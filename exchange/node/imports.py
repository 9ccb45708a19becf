"""What the node does for every door that imports another system's content (the MISP
pull, TAXII sources): the account an import is recorded under, and one page or event of
imported versions stored in one transaction with its publish records in the ledger.

Both doors check, convert and sign before they get here; this module only stores and
records. Pure node code over the Store.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from exchange.audit.records import Publish, Published
from exchange.errors import ConfigError, NotFound
from exchange.node.auditing import chunks
from exchange.node.base import now_micros
from exchange.node.service import Exchange
from exchange.storage.base import (
    Account,
    AddOutcome,
    AddResult,
    Collection,
    NewVersion,
    Organisation,
    Status,
)

__all__ = ["import_account", "store_import"]


def import_account(node: Exchange, name: str, owner: Organisation, *, what: str
                   ) -> Account:
    """The publisher account an import is recorded under, created on first use with no
    API key (nobody logs in with it).

    Args:
        name: The account's name (``misp-sync-<target>``, ``taxii-source-<source>``).
        owner: The organisation the imported content is contributed by.
        what: How an error names the import (``target 'x'``, ``source 'x'``).

    Raises:
        ConfigError: The name is taken by an account of another organisation.
    """
    try:
        account = node.store.find_account(name)
    except NotFound:
        return node.add_account(name, org=owner.name, role="publisher")
    if account.org_id != owner.id:
        raise ConfigError(f"{what}: account {name} belongs to another organisation than"
                          f" {owner.name}")
    return account


def store_import(node: Exchange, *, collection: Collection, owner: Organisation,
                 account: Account, channel: str, request: str, now: int,
                 versions: list[NewVersion], kid: str | None
                 ) -> list[tuple[AddResult, NewVersion]]:
    """Store imported versions in one transaction, each added one a publish record.

    Args:
        channel: The ledger channel of the publish records (``misp:pull``, ``taxii:pull``).
        request: The request id the records carry (cut to 200 characters).
        now: The import's time (µs), the status resource's request timestamp.
        kid: The node key that attested every version, or None when each version keeps
            its own verified signature (``NewVersion.signed_kid``).

    Returns:
        Each version with the store's result, in the order given.
    """
    status = Status(
        id=str(uuid.uuid4()), api_root=node.settings.api_root, collection_id=collection.id,
        account_id=account.id, org_id=owner.id, request_timestamp=now, status="complete",
        total_count=len(versions), success_count=0, failure_count=0, pending_count=0)
    by_id = {v.id: v for v in versions}

    def publish_records(results: Sequence[AddResult], final: Status) -> list[Publish]:
        added = []
        for r in results:
            if r.outcome is AddOutcome.ADDED:
                signed = kid or by_id[r.id].signed_kid
                added.append(Published(
                    object_id=r.id, object_version=r.version or r.date_added or 0,
                    date_added=r.date_added or 0, signed_kid=signed,
                    signature="verified" if signed else "unsigned"))
        return [Publish(time=now_micros(), channel=channel, account=account.name,
                        org=owner.name, collection=collection.id,
                        policy_digest=node.policy_digest(), request_id=request[:200],
                        objects=tuple(part)) for part in chunks(added)]

    results, _ = node.store.add_objects(collection.id, versions, status,
                                        audit=publish_records)
    return list(zip(results, versions, strict=True))
