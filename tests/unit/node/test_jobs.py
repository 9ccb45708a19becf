"""exchange.node.jobs: when a scheduled job of any door rests instead of running."""

from __future__ import annotations

import os
from pathlib import Path

from exchange.feeds.ingest import Outcome as SourceOutcome
from exchange.misp.report import Outcome as MispOutcome
from exchange.node.jobs import Backoff, last_changed, skip_reason
from exchange.storage.base import MispSyncState, SourceState

SECOND = 1_000_000
STOPPED = "stopped: fix the login"


def test_a_refused_login_of_either_door_stops_its_job_until_a_file_changes() -> None:
    source = SourceState("s", outcome=SourceOutcome.AUTH_FAILED.value, failures=1,
                         last_finished=100 * SECOND)
    target = MispSyncState("t", "push", outcome=MispOutcome.AUTH_FAILED.value, failures=1,
                           last_finished=100 * SECOND)
    for state in (source, target):
        assert skip_reason(state, 10**6 * SECOND, Backoff(), 50 * SECOND,
                           stopped=STOPPED) == STOPPED
        assert skip_reason(state, 10**6 * SECOND, Backoff(), None, stopped=STOPPED) == STOPPED
        assert skip_reason(state, 10**6 * SECOND, Backoff(), 150 * SECOND,
                           stopped=STOPPED) is None


def test_failed_runs_back_off_doubling_up_to_the_cap() -> None:
    state = SourceState("s", outcome="failed", failures=20, last_finished=0)
    backoff = Backoff(base=10, cap=100)
    assert skip_reason(state, 100 * SECOND - 1, backoff, None, stopped=STOPPED) == (
        "backing off after 20 failed run(s) until 1970-01-01T00:01:40+00:00")
    assert skip_reason(state, 100 * SECOND, backoff, None, stopped=STOPPED) is None


def test_last_changed_is_the_latest_readable_file(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("a")
    new.write_text("b")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    os.utime(new, ns=(5_000_000_000, 5_000_000_000))
    assert last_changed([None, old, tmp_path / "missing", str(new)]) == 5 * SECOND
    assert last_changed([None, tmp_path / "missing"]) is None
