"""The MISP scheduler (exchange.misp.scheduler): backoff, when a job rests, triggers, the
jobs kept in the exchange database (SQLite and PostgreSQL), leadership, and a whole
scheduler running stand-in runs over a real node."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exchange.errors import AuthError, ConfigError
from exchange.misp import scheduler as sched
from exchange.misp.scheduler import (
    JOB_TABLE,
    Backoff,
    FileLeadership,
    PostgresLeadership,
    SchedulerOptions,
    SyncScheduler,
    crontab_weekdays,
    skip_reason,
    sync_jobs,
    trigger_for,
)
from exchange.misp.sync import open_node
from exchange.misp.targets import MispTarget, parse_targets
from exchange.storage.base import MispSyncState
from tests.unit.misp.synchome import KEY_ENV, fake_run, make_home, targets_yaml
from tests.unit.storage.conftest import pg_schema

MINUTE = 60_000_000
T0 = 1_780_000_000_000_000


def targets(text: str | None = None) -> tuple[MispTarget, ...]:
    return parse_targets("misp-targets.yaml", (text or targets_yaml()).encode())


# -- backoff and resting ------------------------------------------------------------
@pytest.mark.parametrize(("failures", "seconds"), [
    (0, 0.0), (1, 60.0), (2, 120.0), (3, 240.0), (8, 7680.0), (9, 15360.0), (10, 6 * 3600.0),
    (500, 6 * 3600.0)])
def test_backoff_doubles_from_the_base_up_to_the_cap(failures: int, seconds: float) -> None:
    assert Backoff().delay(failures) == seconds


def test_a_failing_target_rests_then_runs_again() -> None:
    state = MispSyncState("pk", "push", outcome="failed", failures=3, last_finished=T0)
    backoff = Backoff(base=60, cap=3600)
    assert backoff.resume_at(state) == T0 + 4 * MINUTE
    why = skip_reason(state, T0 + 4 * MINUTE - 1, backoff)
    assert why == "backing off after 3 failed run(s) until 2026-05-28T20:30:40+00:00"
    assert skip_reason(state, T0 + 4 * MINUTE, backoff) is None
    assert skip_reason(MispSyncState("pk", "push", outcome="ok", last_finished=T0), T0,
                       backoff) is None
    assert skip_reason(None, T0, backoff) is None


def test_an_auth_failure_stops_the_job_until_the_key_or_file_changes() -> None:
    state = MispSyncState("pk", "push", outcome="auth-failed", failures=1, last_finished=T0)
    later = T0 + 10 * 24 * 60 * MINUTE
    why = skip_reason(state, later, Backoff(), changed_at=T0 - MINUTE)
    assert why is not None
    assert why.startswith("stopped: the last run could not authenticate to MISP")
    assert skip_reason(state, later, Backoff(), changed_at=None) == why
    assert skip_reason(state, later, Backoff(), changed_at=T0 + MINUTE) is None


# -- triggers -----------------------------------------------------------------------
@pytest.mark.parametrize(("field", "days"), [
    ("*", "*"), ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"),
    ("5-7", "sun,fri,sat"), ("*/2", "sun,tue,thu,sat"), ("sat,sun", "sun,sat"),
    ("mon-wed", "mon,tue,wed"), ("1,3", "mon,wed")])
def test_cron_weekdays_are_read_as_crontab_reads_them(field: str, days: str) -> None:
    assert crontab_weekdays(field) == days


@pytest.mark.parametrize("field", ["8", "funday", "1-", "mon-xyz"])
def test_bad_cron_weekdays_are_refused(field: str) -> None:
    with pytest.raises(ConfigError, match="cron day of week"):
        crontab_weekdays(field)


def test_triggers_follow_the_schedule_in_utc_with_jitter() -> None:
    pk, uz = targets()
    interval = trigger_for(pk, SchedulerOptions())
    assert isinstance(interval, IntervalTrigger)
    assert interval.interval == timedelta(seconds=900)
    assert interval.jitter == 30
    short = targets(targets_yaml(pk_schedule="interval: 60"))[0]
    assert trigger_for(short, SchedulerOptions()).jitter == 6  # type: ignore[attr-defined]
    cron = trigger_for(uz, SchedulerOptions(max_jitter=0))  # */15 on weekdays (crontab 1-5)
    saturday = datetime(2026, 6, 6, 10, 0, tzinfo=UTC)
    assert cron.get_next_fire_time(None, saturday) == datetime(2026, 6, 8, 0, 0, tzinfo=UTC)
    friday = datetime(2026, 6, 5, 10, 1, tzinfo=UTC)
    assert cron.get_next_fire_time(None, friday) == datetime(2026, 6, 5, 10, 15, tzinfo=UTC)


# -- the job store in the exchange database -----------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exchange.db'}"
        return
    with pg_schema() as (_, url):
        yield url


def _scheduler(url: str) -> BackgroundScheduler:
    from exchange.storage.engines import SqliteOptions, create_engine  # noqa: PLC0415

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=create_engine(url, SqliteOptions()),
                                                 tablename=JOB_TABLE)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=UTC)
    scheduler.start(paused=True)
    return scheduler


def _stored_ids(url: str) -> list[str]:
    from exchange.storage.engines import SqliteOptions, create_engine  # noqa: PLC0415

    engine = create_engine(url, SqliteOptions())
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.text(f"SELECT id FROM {JOB_TABLE}")).scalars())
    finally:
        engine.dispose()


def test_one_job_per_target_and_direction_kept_in_the_database(db_url: str) -> None:
    first = _scheduler(db_url)
    try:
        done = sync_jobs(first, targets(), SchedulerOptions())
        assert done == {"misp-push:pk-cert-misp": "added", "misp-pull:pk-cert-misp": "added",
                        "misp-push:uz-cert-misp": "added"}
        job = first.get_job("misp-pull:pk-cert-misp")
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 300)
        assert job.args == ("pk-cert-misp", "pull")
        assert job.func is sched.run_job
    finally:
        first.shutdown()
    assert _stored_ids(db_url) == sorted(done)

    again = _scheduler(db_url)  # a restart: the same jobs, their next runs kept
    try:
        due = {j.id: j.next_run_time for j in again.get_jobs()}
        assert len(due) == 3
        assert set(sync_jobs(again, targets(), SchedulerOptions()).values()) == {"kept"}
        assert {j.id: j.next_run_time for j in again.get_jobs()} == due
        changed = targets(targets_yaml(pk_schedule="interval: 1800"))[:1]  # uz removed
        assert sync_jobs(again, changed, SchedulerOptions()) == {
            "misp-push:pk-cert-misp": "rescheduled", "misp-pull:pk-cert-misp": "rescheduled",
            "misp-push:uz-cert-misp": "removed"}
        trigger = again.get_job("misp-push:pk-cert-misp").trigger
        assert trigger.interval == timedelta(seconds=1800)
    finally:
        again.shutdown()
    assert _stored_ids(db_url) == ["misp-pull:pk-cert-misp", "misp-push:pk-cert-misp"]


# -- leadership ---------------------------------------------------------------------
def test_a_lock_file_lets_one_scheduler_lead(tmp_path: Path) -> None:
    first, second = (FileLeadership(tmp_path / "exchange.db.scheduler-lock")
                     for _ in range(2))
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.still_held()
    first.release()
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()


@pytest.mark.postgres
def test_an_advisory_lock_lets_one_scheduler_lead() -> None:
    with pg_schema() as (_, url):
        _one_leads(url)


def _one_leads(url: str) -> None:
    first, second = PostgresLeadership(url), PostgresLeadership(url)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.still_held()
        first.release()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


# -- the jobs, run ------------------------------------------------------------------
def test_a_job_rests_while_backing_off_or_stopped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * 40)
    settings = make_home(tmp_path / "home")
    calls: list[str] = []
    with open_node(settings) as node:
        pk = targets()[0]
        monkeypatch.setattr(sched, "_runtime", sched._Runtime(
            node, {"pk-cert-misp": pk}, settings.misp_targets_path, SchedulerOptions(),
            {"push": fake_run(calls=calls)}))
        now = int(time.time() * 1e6)
        node.store.save_misp_state(MispSyncState("pk-cert-misp", "push", outcome="failed",
                                                 failures=2, last_finished=now))
        sched.run_job("pk-cert-misp", "push")
        assert calls == []
        node.store.save_misp_state(MispSyncState("pk-cert-misp", "push", outcome="failed",
                                                 failures=2, last_finished=now - 3 * MINUTE))
        sched.run_job("pk-cert-misp", "push")
        assert calls == ["pk-cert-misp dry_run=False"]
        node.store.save_misp_state(MispSyncState("pk-cert-misp", "push",
                                                 outcome="auth-failed", failures=1,
                                                 last_finished=now - 2 * MINUTE))
        path = settings.misp_targets_path
        assert path is not None
        before = (now - 3 * MINUTE) / 1e6
        os.utime(path, (before, before))
        sched.run_job("pk-cert-misp", "push")
        assert len(calls) == 1  # stopped: nothing changed since
        os.utime(path)  # the operator fixed the targets file
        sched.run_job("pk-cert-misp", "push")
        assert len(calls) == 2


def test_a_targets_push_and_pull_never_overlap(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * 40)
    settings = make_home(tmp_path / "home")
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    entered = threading.Event()

    def slow(direction: str) -> Any:
        inner = fake_run(direction=direction)

        def run(*args: Any, **kwargs: Any) -> Any:
            inside.append(direction)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            entered.set()
            time.sleep(0.3)
            inside.remove(direction)
            return inner(*args, **kwargs)
        return run

    with open_node(settings) as node:
        pk = targets()[0]
        monkeypatch.setattr(sched, "_runtime", sched._Runtime(
            node, {"pk-cert-misp": pk}, settings.misp_targets_path, SchedulerOptions(),
            {"push": slow("push"), "pull": slow("pull")}))
        push = threading.Thread(target=sched.run_job, args=("pk-cert-misp", "push"))
        push.start()
        assert entered.wait(5)
        sched.run_job("pk-cert-misp", "pull")  # waits for the push to finish
        push.join(5)
        assert not push.is_alive()
    assert overlaps == []


def test_the_scheduler_runs_every_job_and_records_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * 40)
    settings = make_home(tmp_path / "home")
    runners = {"push": fake_run({"created": 1}, cursor="5"),
               "pull": fake_run(error=AuthError("MISP refused the API key"),
                                direction="pull")}
    stop = threading.Event()
    scheduler = SyncScheduler(settings, options=SchedulerOptions(poll=0.1), runners=runners)
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    wanted = {("pk-cert-misp", "push"), ("pk-cert-misp", "pull"), ("uz-cert-misp", "push")}
    # A run saves its outcome before the scheduler's listener records the next run, so
    # the wait is for the recorded next run too (the first one, recorded at start, is now).
    later = int(time.time() * 1e6) + 60 * 1_000_000
    try:
        with open_node(settings) as node:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = {(s.target, s.direction): s for s in node.store.misp_states()}
                if set(states) == wanted and all(
                        s.outcome not in ("never", "running") and s.next_run
                        and (s.direction != "push" or s.next_run > later)
                        for s in states.values()):
                    break
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert {k: s.outcome for k, s in states.items()} == {
        ("pk-cert-misp", "push"): "ok", ("pk-cert-misp", "pull"): "auth-failed",
        ("uz-cert-misp", "push"): "ok"}
    soon = int(time.time() * 1e6) + 899 * 1_000_000
    assert states["pk-cert-misp", "push"].next_run is not None
    assert states["pk-cert-misp", "push"].next_run >= soon - 60 * 1_000_000
    assert states["pk-cert-misp", "push"].cursor == "5"
    assert _stored_ids(settings.effective_database_url) == sorted(
        f"misp-{d}:{t}" for t, d in wanted)
