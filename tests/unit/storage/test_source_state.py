"""Contract: the TAXII source state (revisions 0010 and 0015), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from exchange.storage.base import SourceState
from exchange.storage.sql import SqlStore


def test_a_source_state_is_absent_until_saved_then_replaced_whole(store: SqlStore) -> None:
    assert store.source_state("pk-node") is None
    first = SourceState("pk-node", cursor="2026-12-05T10:00:00.123456Z", paging="next",
                        last_started=1, last_finished=2, outcome="partial",
                        message="3 refused", counts={"created": 5, "refused": 3},
                        reasons=[{"id": "indicator--x", "rule": "signature",
                                  "reason": "no pinned key"}],
                        failures=1, next_run=99,
                        endpoint="https://pk.example/cx/ collection pk into jwg")
    store.save_source_state(first)
    assert store.source_state("pk-node") == first
    second = replace(first, cursor="2026-12-05T11:00:00Z", paging="more", outcome="ok",
                     counts={"duplicate": 2}, reasons=[], failures=0, next_run=None,
                     endpoint="https://pk.example/cx/ collection jwg into jwg")
    store.save_source_state(second)
    store.save_source_state(SourceState("a-vendor"))
    assert store.source_state("pk-node") == second
    assert [s.source for s in store.source_states()] == ["a-vendor", "pk-node"]
    assert store.source_state("a-vendor") == SourceState("a-vendor")
