"""Contract: the MISP sync state (revision 0009), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from exchange.storage.base import MispPushed, MispSyncState
from exchange.storage.sql import SqlStore

IND = "indicator--5f9a3f0e-6b5f-4a57-9f0e-3c1d7a2b9e10"


def test_a_state_is_absent_until_saved_then_replaced_whole(store: SqlStore) -> None:
    assert store.misp_state("uz-cert-misp", "push") is None
    first = MispSyncState("uz-cert-misp", "push", cursor="17", last_started=1,
                          last_finished=2, outcome="partial", message="1 failed",
                          counts={"created": 3, "failed": 1},
                          reasons=[{"id": IND, "rule": "filter-tags", "reason": "tag test"}],
                          failures=1, next_run=99)
    store.save_misp_state(first)
    assert store.misp_state("uz-cert-misp", "push") == first
    assert store.misp_state("uz-cert-misp", "pull") is None
    second = replace(first, cursor="40", outcome="ok", counts={}, reasons=[], failures=0)
    store.save_misp_state(second)
    store.save_misp_state(MispSyncState("a-misp", "pull"))
    assert store.misp_state("uz-cert-misp", "push") == second
    assert [(s.target, s.direction) for s in store.misp_states()] == [
        ("a-misp", "pull"), ("uz-cert-misp", "push")]


def test_pushed_entries_are_kept_per_target_and_replaced_by_newer(store: SqlStore) -> None:
    entry = MispPushed("pk", IND, "2026-01-01T00:00:00.000Z", "e1", ("a1", "a2"), False, 5)
    store.record_misp_pushed([entry, replace(entry, target="uz", event_uuid="e2")])
    assert store.misp_pushed("pk") == {IND: entry}
    newer = replace(entry, version="2026-02-01T00:00:00.000Z", deleted=True,
                    attribute_uuids=("a1",))
    store.record_misp_pushed([newer])
    assert store.misp_pushed("pk", [IND, "indicator--nothing"]) == {IND: newer}
    assert store.misp_pushed_events("pk", ["e1", "e2", "e3"]) == {"e1"}
    assert store.misp_pushed_events("uz", ["e1", "e2"]) == {"e2"}
    store.record_misp_pushed([])


def test_sharing_groups_and_pulled_events_are_remembered(store: SqlStore) -> None:
    assert store.misp_sharing_groups("pk") == {}
    store.save_misp_sharing_group("pk", "uz-pk-jwg-2026", 7, "u-7")
    assert store.misp_sharing_groups("pk") == {"uz-pk-jwg-2026": (7, "u-7")}
    assert store.misp_sharing_groups("uz") == {}
    store.record_misp_pulled("pk", {"ev1": 100, "ev2": 200}, at=1)
    store.record_misp_pulled("pk", {"ev1": 150}, at=2)
    assert store.misp_pulled("pk", ["ev1", "ev2", "ev3"]) == {"ev1": 150, "ev2": 200}
    assert store.misp_pulled("uz", ["ev1"]) == {}
