"""Refusals as an analyst reads them: one line per distinct reason, not per object.

A STIX 2.0 playbook refused object by object gave 2,858 identical lines; grouped, it is
one line with a count and the first few ids. ``exchange publish --verbose`` (or
``--json``) still gives every object's own line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RefusalGroup", "format_refusals", "group_refusals"]

#: How many ids a grouped line shows.
SHOWN_IDS = 3


@dataclass
class RefusalGroup:
    """Objects refused for the same reason.

    Attributes:
        reason: The reason, without the object id the server put in front of it.
        ids: The refused objects' ids, in the order they were sent.
    """

    reason: str
    ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """``{"reason", "count", "ids"}`` for ``--json``."""
        return {"reason": self.reason, "count": len(self.ids), "ids": self.ids}


def _reason(identifier: str, message: str) -> str:
    return message.removeprefix(f"{identifier}: ") if identifier else message


def group_refusals(failures: Sequence[tuple[str, str]]) -> list[RefusalGroup]:
    """Group ``(id, message)`` refusals by reason, the most frequent first.

    Args:
        failures: Each refused object's id and the server's message.

    Returns:
        The groups, by descending count, then in the order first seen.
    """
    groups: dict[str, RefusalGroup] = {}
    for identifier, message in failures:
        reason = _reason(identifier, message)
        groups.setdefault(reason, RefusalGroup(reason)).ids.append(identifier)
    return sorted(groups.values(), key=lambda group: -len(group.ids))


def format_refusals(failures: Sequence[tuple[str, str]], *, verbose: bool) -> list[str]:
    """The refusal lines ``exchange publish`` prints.

    Args:
        failures: Each refused object's id and the server's message.
        verbose: One line per object (``refused <id>: <message>``) instead of per reason.

    Returns:
        The lines, indented by two spaces.
    """
    if verbose:
        return [f"  refused {identifier}: {_reason(identifier, message)}"
                for identifier, message in failures]
    lines = []
    for group in group_refusals(failures):
        shown = ", ".join(group.ids[:SHOWN_IDS])
        more = f", ... {len(group.ids) - SHOWN_IDS} more" if len(group.ids) > SHOWN_IDS else ""
        lines.append(f"  refused {len(group.ids)}: {group.reason} ({shown}{more})")
    if len(lines) < len(failures):
        lines.append("  (one line per reason; --verbose or --json lists every object)")
    return lines
