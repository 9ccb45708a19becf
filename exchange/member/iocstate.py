"""What a member has already published from IOC lists, so an unchanged IOC is sent unchanged.

An indicator made from an IOC has a deterministic id (uuid5 over the author's identity,
the IOC's kind and its value, :func:`exchange.member.iocs.indicator_id`), but its
timestamps are the time of the run: re-publishing an unchanged list would otherwise make
a new version of every indicator. This module keeps, per indicator id, the object as it
was last sent, and decides for each newly generated indicator:

* **unchanged** (same content apart from the run's timestamps, same ``--valid-days``,
  signed by the same key or unsigned as before): the earlier object is sent again byte
  for byte. The exchange answers an identical re-post with success and stores nothing
  (and a second collection receives the same version);
* **changed** (description, labels, TLP, validity, signing key): a new version of the
  same object: ``created`` and ``valid_from`` stay those of the first version,
  ``modified`` is now (and always later than the last version's);
* **new**: sent as generated.

Only what the server accepted is remembered (:meth:`IocState.remember`). The state is a
SQLite file (standard library; one row per indicator) with mode 0600; by default
``<home>/published-iocs.sqlite``. Without it (another machine, a deleted file), the
next run makes new versions, which is correct STIX, only noisier.

What it leaves to others: generating indicators (:mod:`exchange.member.iocs`), signing
(:mod:`exchange.member.signer`) and sending (:mod:`exchange.member.client`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import rfc8785

from exchange.errors import ConfigError
from exchange.member.iocs import stix_timestamp

__all__ = ["STATE_FILE", "IocState", "Settled", "content_digest"]

#: The state's file name in the exchange home.
STATE_FILE: Final = "published-iocs.sqlite"

# Timestamps that change with every run; the content digest leaves them out.
_RUN_TIMES: Final = ("created", "modified", "valid_from", "valid_until")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS published (
    id TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    kid TEXT NOT NULL,
    body TEXT NOT NULL
)
"""


def content_digest(indicator: Mapping[str, Any], valid_days: int | None) -> str:
    """SHA-256 (hex) over what an analyst controls: the indicator without its run-time
    timestamps or signature, and the validity asked for.

    Args:
        indicator: A generated, unsigned indicator.
        valid_days: The ``--valid-days`` of the run.
    """
    kept = {k: v for k, v in indicator.items() if k not in _RUN_TIMES and k != "extensions"}
    document = {"indicator": kept, "valid_days": valid_days}
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def _later(stamp: str, now: datetime) -> str:
    """``now`` as a STIX timestamp, or one millisecond after ``stamp`` if that is later."""
    try:
        previous = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return stix_timestamp(now)
    return stix_timestamp(max(now, previous + timedelta(milliseconds=1)))


@dataclass
class Settled:
    """What :meth:`IocState.settle` made of a run's indicators.

    Attributes:
        objects: The indicators to send, in input order.
        unchanged: Ids sent again exactly as before (already signed when they were).
        new_versions: Ids whose content changed: a new version of an earlier object.
        digests: The content digest of every indicator, for :meth:`IocState.remember`.
    """

    objects: list[dict[str, Any]] = field(default_factory=list)
    unchanged: set[str] = field(default_factory=set)
    new_versions: set[str] = field(default_factory=set)
    digests: dict[str, str] = field(default_factory=dict)


class IocState:
    """The published-IOC state in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not self.path.exists():
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
                db = sqlite3.connect(self.path, timeout=30)
                db.execute(_SCHEMA)
                db.commit()
            except (OSError, sqlite3.Error) as e:
                raise ConfigError(f"cannot open the IOC state {self.path}: {e}") from e
            self._db = db
        return self._db

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def _stored(self, ids: Sequence[str]) -> dict[str, tuple[str, str, dict[str, Any]]]:
        found: dict[str, tuple[str, str, dict[str, Any]]] = {}
        db = self._conn()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                query = f"SELECT id, content, kid, body FROM published WHERE id IN ({marks})"
                rows = db.execute(query, chunk).fetchall()
            except sqlite3.Error as e:
                raise ConfigError(f"cannot read the IOC state {self.path}: {e}") from e
            for identifier, content, kid, body in rows:
                found[identifier] = (content, kid, json.loads(body))
        return found

    def settle(self, indicators: Sequence[Mapping[str, Any]], *, valid_days: int | None,
               kid: str | None, now: datetime | None = None) -> Settled:
        """Decide, per indicator, whether it is unchanged, a new version or new.

        Args:
            indicators: Freshly generated, unsigned indicators (from an IOC list).
            valid_days: The run's ``--valid-days``.
            kid: The key id the run signs with, or None when it does not sign.
            now: The time of a new version (default: now).

        Raises:
            ConfigError: The state file cannot be opened or read.
        """
        moment = now if now is not None else datetime.now(UTC)
        signer = kid or ""
        stored = self._stored([str(i["id"]) for i in indicators])
        out = Settled()
        for indicator in indicators:
            identifier = str(indicator["id"])
            digest = content_digest(indicator, valid_days)
            out.digests[identifier] = digest
            earlier = stored.get(identifier)
            if earlier is None:
                out.objects.append(dict(indicator))
                continue
            content, earlier_kid, body = earlier
            if content == digest and earlier_kid == signer:
                out.objects.append(body)
                out.unchanged.add(identifier)
                continue
            version = dict(indicator)
            version["created"] = body.get("created", version["created"])
            version["valid_from"] = body.get("valid_from", version["valid_from"])
            version["modified"] = _later(str(body.get("modified", "")), moment)
            out.objects.append(version)
            out.new_versions.add(identifier)
        return out

    def remember(self, sent: Iterable[Mapping[str, Any]], digests: Mapping[str, str], *,
                 kid: str | None, refused: Iterable[str] = ()) -> int:
        """Keep what the server accepted, as it was sent.

        Args:
            sent: The objects sent (signed, when the run signs).
            digests: :attr:`Settled.digests`.
            kid: As for :meth:`settle`.
            refused: Ids the server refused; they are not remembered.

        Returns:
            How many objects were remembered.

        Raises:
            ConfigError: The state file cannot be written.
        """
        skip = set(refused)
        rows = [(str(o["id"]), digests[str(o["id"])], kid or "",
                 json.dumps(o, ensure_ascii=False, separators=(",", ":")))
                for o in sent if str(o.get("id")) in digests and str(o["id"]) not in skip]
        db = self._conn()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO published (id, content, kid, body)"
                               " VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as e:
            raise ConfigError(f"cannot write the IOC state {self.path}: {e}") from e
        return len(rows)
