"""The TAXII source jobs: one per source, kept, rescheduled and removed with the sources
file; a failing source rests (doubling backoff) and a refused login stops its job until
the files change."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from exchange.config import load_settings
from exchange.feeds.schedule import PREFIX, SourceJobs, skip_reason
from exchange.storage.base import SourceState

SOURCES = """\
sources:
  one:
    kind: vendor
    api_root: http://127.0.0.1:9/api1/
    collection: c1
    org: ExampleVendor
    into: jwg
    schedule: {interval: 900}
  two:
    kind: vendor
    api_root: http://127.0.0.1:9/api1/
    collection: c2
    org: ExampleVendor
    into: jwg
    schedule: {cron: "*/15 * * * 1-5"}
"""
SECOND = 1_000_000


def test_jobs_follow_the_sources_file(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(SOURCES)
    (tmp_path / "exchange.toml").write_text('taxii_sources = "sources.yaml"\n')
    jobs = SourceJobs(load_settings(tmp_path, env={}))
    assert jobs.reload()
    scheduler = BackgroundScheduler()
    scheduler.start(paused=True)
    try:
        assert jobs.sync(scheduler) == {f"{PREFIX}one": "added", f"{PREFIX}two": "added"}
        assert jobs.sync(scheduler) == {f"{PREFIX}one": "kept", f"{PREFIX}two": "kept"}
        text = SOURCES.replace("interval: 900", "interval: 600").split("  two:")[0]
        (tmp_path / "sources.yaml").write_text(text)
        assert jobs.reload()
        assert jobs.sync(scheduler) == {f"{PREFIX}one": "rescheduled",
                                        f"{PREFIX}two": "removed"}
        assert [j.id for j in scheduler.get_jobs()] == [f"{PREFIX}one"]
        (tmp_path / "sources.yaml").write_text("sources: {broken")
        assert not jobs.reload()  # refused: the jobs stay
        assert jobs.sync(scheduler) == {f"{PREFIX}one": "kept"}
    finally:
        scheduler.shutdown(wait=False)


def test_a_failing_source_rests_and_a_refused_login_waits_for_a_change() -> None:
    ok = SourceState("s", outcome="ok", last_finished=100 * SECOND)
    assert skip_reason(ok, 101 * SECOND) is None
    assert skip_reason(None, 0) is None
    failed = replace(ok, outcome="failed", failures=3)  # rests 60 * 2**2 = 240 s
    assert skip_reason(failed, 339 * SECOND) == (
        "backing off after 3 failed run(s) until 1970-01-01T00:05:40+00:00")
    assert skip_reason(failed, 341 * SECOND) is None
    refused = replace(ok, outcome="auth-failed", failures=1)
    assert skip_reason(refused, 10_000 * SECOND, changed_at=50 * SECOND) is not None
    assert skip_reason(refused, 10_000 * SECOND, changed_at=150 * SECOND) is None
