"""Contract: the derived-id table (revision 0007), on SQLite and PostgreSQL."""

from __future__ import annotations

from exchange.storage.base import DerivedIdEntry
from exchange.storage.sql import SqlStore

COPY = "indicator--0d6c0f49-7f6b-5e37-9b59-5d3d3f7f0a11"
ORIGINAL = "indicator--11111111-1111-4111-8111-111111111111"


def test_a_recorded_derived_id_maps_back_to_its_original(store: SqlStore) -> None:
    assert store.original_of(COPY) is None
    entry = DerivedIdEntry(COPY, ORIGINAL, "redact(jwg-constituents)")
    store.record_derived_ids([entry])
    assert store.original_of(COPY) == entry


def test_recording_is_idempotent_in_and_across_calls(store: SqlStore) -> None:
    entries = [DerivedIdEntry(f"indicator--{n:08d}-0000-5000-8000-000000000000", ORIGINAL,
                              "anonymise_producer") for n in range(1200)]
    store.record_derived_ids(entries + entries[:10])  # duplicates within one call
    store.record_derived_ids(entries[500:])  # and ids already recorded
    assert store.original_of(entries[1199].derived_id) == entries[1199]
    store.record_derived_ids([])  # nothing to do
