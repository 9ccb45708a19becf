"""What one sync run did, for ``exchange sync run``/``status`` and the scheduler.

A run (push or pull, one target) returns a :class:`RunReport`: counts by kind, one
:class:`Item` per object skipped or failed with a stable rule id and a sentence for
people, the plan of a dry run, and the cursor before and after. The sync records it as
the target's :class:`~exchange.storage.base.MispSyncState`; ``sync status`` shows it.

Counts use these keys (absent means zero): ``created``, ``updated``, ``unchanged``
(events), ``deleted`` (attributes soft-deleted), ``pushed`` (object versions disclosed),
``imported``, ``revoked`` (pulled), ``skipped`` and ``failed`` (objects or events).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MAX_ITEMS", "Item", "Outcome", "RunReport"]

#: Items kept in the stored state per run (the counts always cover all of them).
MAX_ITEMS: Final = 1000


class Outcome(enum.StrEnum):
    """How a run ended."""

    OK = "ok"
    PARTIAL = "partial"  # some items failed; the cursor stopped before the first of them
    FAILED = "failed"  # nothing could be done (MISP down, 5xx after retries, timeout)
    AUTH_FAILED = "auth-failed"  # MISP refused the key: the job stops until fixed
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Item:
    """One object or event skipped or failed, and why.

    Attributes:
        id: A STIX id (push) or MISP event/attribute UUID (pull).
        rule: A stable id (a policy rule, ``filter-tags``, ``misp-refused``...).
        reason: One sentence for people; never a secret.
        failed: True for a failure (retried next run), False for a deliberate skip.
    """

    id: str
    rule: str
    reason: str
    failed: bool = False

    def as_dict(self) -> dict[str, str]:
        """The stored form (``MispSyncState.reasons``)."""
        return {"id": self.id, "rule": self.rule, "reason": self.reason,
                "kind": "failed" if self.failed else "skipped"}


@dataclass(slots=True)
class RunReport:
    """What one push or pull of one target did (or, with ``dry_run``, would do).

    Attributes:
        target: The target's name.
        direction: ``push`` or ``pull``.
        dry_run: Nothing was written, here or on MISP.
        counts: See the module docstring.
        items: Every object skipped or failed, with its reason.
        plan: For a dry run, one line per thing that would be written and why.
        cursor_before: The cursor the run started from (None: from the beginning).
        cursor_after: The cursor to store (only past what succeeded, in order).
        outcome: How it ended.
        message: One sentence on the outcome.
    """

    target: str
    direction: str
    dry_run: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    items: list[Item] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    cursor_before: str | None = None
    cursor_after: str | None = None
    outcome: Outcome = Outcome.OK
    message: str = ""

    def skip(self, item_id: str, rule: str, reason: str) -> None:
        """Count and keep one deliberate skip."""
        self.counts["skipped"] += 1
        self.items.append(Item(item_id, rule, reason))

    def fail(self, item_id: str, rule: str, reason: str) -> None:
        """Count and keep one failure (the run becomes partial)."""
        self.counts["failed"] += 1
        self.items.append(Item(item_id, rule, reason, failed=True))
        if self.outcome is Outcome.OK:
            self.outcome = Outcome.PARTIAL
