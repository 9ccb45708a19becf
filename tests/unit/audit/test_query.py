"""The auditor's filters (exchange.audit.query) on SQLite and PostgreSQL: SQL narrows,
the parsed record confirms, and the answer equals a plain filter over every record."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from exchange.audit import ledger, query
from exchange.audit.query import RecordFilter
from exchange.audit.records import Disclosure, Kind, PolicyReload, Publish, Record
from exchange.errors import InvalidInput
from tests.unit.audit.helpers import DIGEST, OTHER_DIGEST, T0, disclosed, disclosure, one_of_each


def _records() -> list[Record]:
    records: list[Record] = []
    for i in range(30):
        base = disclosure(i * 10, recipient="org-pk" if i % 2 else "org-kz", count=3)
        if i % 3 == 0:  # a batch mixing producers: no single producer column
            base = dataclasses.replace(base, objects=(
                disclosed(i * 10, producer="org-uz"), disclosed(i * 10 + 1, producer="org-kg")))
        if i % 5 == 0:
            base = dataclasses.replace(base, policy_digest=OTHER_DIGEST)
        records.append(base)
    return records + one_of_each(7)


def _plain(records: list[Record], f: RecordFilter) -> list[int]:
    """The seqs a filter should return, worked out in Python only."""
    out = []
    for seq, r in enumerate(records):
        if f.kinds and r.KIND not in f.kinds:
            continue
        if f.recipient_org and getattr(r, "recipient_org", None) != f.recipient_org:
            continue
        if f.since is not None and r.time < f.since:
            continue
        if f.until is not None and r.time >= f.until:
            continue
        if f.policy_digest and f.policy_digest not in (
                getattr(r, "policy_digest", None), getattr(r, "new_digest", None),
                getattr(r, "old_digest", None)):
            continue
        if f.producer_org or f.object_id:
            if isinstance(r, Disclosure):
                entries = [(e.producer_org, e.object_id) for e in r.objects]
            elif isinstance(r, Publish):
                entries = [(r.org, e.object_id) for e in r.objects]
            else:
                continue
            if not any((f.producer_org in (None, p)) and (f.object_id in (None, o))
                       for p, o in entries):
                continue
        out.append(seq)
    return out


@pytest.mark.parametrize("where", [
    {"recipient_org": "org-pk"},
    {"producer_org": "org-kg"},
    {"producer_org": "org-uz", "recipient_org": "org-kz"},
    {"object_id": disclosed(31).object_id},
    {"object_id": "indicator--x"},
    {"policy_digest": OTHER_DIGEST},
    {"policy_digest": DIGEST, "kinds": (Kind.POLICY_RELOAD,)},
    {"kinds": (Kind.DENIAL, Kind.ADMIN)},
    {"since": T0 + 100_000, "until": T0 + 200_000},
])
def test_filters_equal_a_plain_filter(engine: Engine, where: dict[str, Any]) -> None:
    records = _records()
    with engine.connect() as conn, conn.begin():
        ledger.append(conn, records)
    f = RecordFilter(**where)
    expected = _plain(records, f)
    assert expected, "the case must select something"
    with engine.connect() as conn, conn.begin():
        pages = []
        after = -1
        for _ in range(100):  # bounded paging
            found, cursor = query.find(conn, f, after=after, limit=4)
            pages += [e.seq for e in found]
            if cursor is None:
                break
            after = cursor
    assert pages == expected
    if f.producer_org is not None:  # a mixed batch is narrowed to the producer's entries
        with engine.connect() as conn, conn.begin():
            for entry in query.iter_matching(conn, f):
                kept = query.matching_entries(entry.record, f)
                assert kept
                assert all(getattr(e, "producer_org", f.producer_org) == f.producer_org
                           for e in kept)


def test_a_reload_is_found_by_either_digest(engine: Engine) -> None:
    reload = PolicyReload(time=T0, actor="a", old_digest=DIGEST, new_digest=OTHER_DIGEST,
                          request_id=None)
    with engine.connect() as conn, conn.begin():
        ledger.append(conn, [reload])
        for digest in (DIGEST, OTHER_DIGEST):
            found, _ = query.find(conn, RecordFilter(policy_digest=digest))
            assert [e.record for e in found] == [reload]


@pytest.mark.parametrize(("where", "message"), [
    ({"producer_org": 'a"b'}, "quotes"),
    ({"object_id": ""}, "1 to 512"),
    ({"since": T0 + 5, "until": T0}, "after"),
])
def test_bad_filters_are_refused(where: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        RecordFilter(**where)
