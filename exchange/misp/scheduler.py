"""The scheduled MISP sync: APScheduler 3.x jobs, run by exactly one scheduler at a time.

One job per target and direction (``misp-push:uz-cert-misp``), on the target's interval
or cron schedule (UTC, with jitter), in a persistent job store in the exchange's own
database (table :data:`JOB_TABLE`, SQLite or PostgreSQL), with ``max_instances=1``,
``coalesce`` (runs missed while the scheduler was down become one) and a misfire grace
time. Each run is :func:`exchange.misp.sync.run_target`.

A job does not run when its target should rest (:func:`skip_reason`):

* **backoff**: after ``n`` consecutive failed runs, until ``last_finished +
  base * 2 ** (n - 1)`` (capped); a successful run resets it;
* **auth failure**: after MISP refused the key (or the key could not be read), until
  the key file or the targets file changes (their modification time is later than the
  failed run).

The push and the pull of one target never run at the same time (a lock per target);
different targets run side by side.

Leadership: several nodes may run ``exchange scheduler`` (or ``exchange serve``) on one
database; exactly one runs the jobs. On PostgreSQL the leader holds a session-level
``pg_try_advisory_lock`` (one per database schema) on a connection of its own (named
``cx-scheduler <pid>`` in ``pg_stat_activity``); the others try again every ``poll``
seconds and take over within seconds when the leader stops or dies, since PostgreSQL
releases the lock with the session. On SQLite an ``fcntl`` lock on
``<database>.scheduler-lock`` does the same for the processes of one machine.

The leader also re-reads the targets file when it changes (a broken file is refused with
its message and the jobs stay as they were) and writes each job's next run into the
sync state for ``exchange sync status``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import Any, Final, Protocol

import sqlalchemy as sa
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from exchange.config import Settings
from exchange.errors import ConfigError, ExchangeError
from exchange.misp.sync import Runner, directions_for, load_node_targets, open_node, run_target
from exchange.misp.targets import MispTarget
from exchange.node import jobs
from exchange.node.base import now_micros
from exchange.node.jobs import Backoff, JobFamily, crontab_weekdays, schedule_trigger
from exchange.node.service import Exchange
from exchange.storage.base import MispSyncState
from exchange.storage.engines import WRITE_OPTION, SqliteOptions, create_engine

__all__ = [
    "JOB_TABLE",
    "Backoff",
    "Leadership",
    "SchedulerOptions",
    "SyncScheduler",
    "crontab_weekdays",
    "job_id",
    "leadership_for",
    "run_job",
    "skip_reason",
    "trigger_for",
]

log = logging.getLogger(__name__)

#: The job store's table in the exchange database (created by APScheduler on first use).
JOB_TABLE: Final = "cx_scheduler_jobs"
#: The PostgreSQL advisory lock of the scheduler leader: a hash of this name and the
#: schema, so exchanges in separate schemas of one database do not share a leader.
_LOCK_KEY_SQL: Final = sa.text(
    "SELECT hashtextextended('cert-exchange misp scheduler leader ' || current_schema(), 0)")
_JOB_PREFIX: Final = "misp-"


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """How the scheduler runs its jobs.

    Attributes:
        backoff: The rest after failed runs.
        misfire_grace: Seconds a run may start late (a scheduler that was busy or down
            runs it if it comes back within this; coalescing makes several one).
        max_jitter: The most seconds a run is moved at random (an interval's tenth if
            less), so targets scheduled alike do not all start in the same second.
        poll: Seconds between a follower's attempts to become the leader, and between
            the leader's checks of its lock and of the targets file.
        workers: Jobs that may run at once (different targets or directions).
    """

    backoff: Backoff = field(default_factory=Backoff)
    misfire_grace: int = 300
    max_jitter: int = 30
    poll: float = 5.0
    workers: int = 4


def job_id(target: str, direction: str) -> str:
    """The job of a target and direction: ``misp-push:uz-cert-misp``."""
    return f"{_JOB_PREFIX}{direction}:{target}"


def trigger_for(target: MispTarget, options: SchedulerOptions) -> BaseTrigger:
    """The APScheduler trigger of a target's schedule, in UTC, with jitter.

    A cron schedule's day of week is read as crontab reads it (0 and 7 are Sunday), not
    as APScheduler 3 does (0 is Monday): :func:`exchange.node.jobs.crontab_weekdays`.
    """
    return schedule_trigger(target.schedule.interval, target.schedule.cron,
                            options.max_jitter)


def skip_reason(state: MispSyncState | None, now: int, backoff: Backoff,
                changed_at: int | None = None) -> str | None:
    """Why a scheduled run of a target should not happen now, or None if it should.

    Args:
        state: The target's sync state in the job's direction.
        now: The time, µs since the epoch.
        backoff: The rest after failures.
        changed_at: When (µs) the key file or the targets file last changed.
    """
    return jobs.skip_reason(
        state, now, backoff, changed_at,
        stopped="stopped: the last run could not authenticate to MISP; fix the API key or"
                " the targets file and the job resumes")


def changed_at(target: MispTarget, targets_file: Path | None) -> int | None:
    """When (µs) the target's key file or the targets file last changed, if known."""
    return jobs.last_changed((target.api_key_file, targets_file))


# -- the jobs ------------------------------------------------------------------------
@dataclass
class _Runtime:
    """What the jobs of the running leader use (APScheduler's persistent jobs name a
    module-level function and plain arguments, so the process's node lives here)."""

    node: Exchange
    targets: dict[str, MispTarget]
    targets_file: Path | None
    options: SchedulerOptions
    runners: Mapping[str, str | Runner] | None


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()
#: One lock per target: its push and its pull never run at the same time, so a push
#: never reads what a pull is importing from the same target before the pull has
#: recorded where it came from (the push's ``echo-from-target`` rule reads that).
_target_locks: dict[str, threading.Lock] = {}


def run_job(target_name: str, direction: str) -> None:
    """The job function: one scheduled run of a target in a direction (unless resting)."""
    with _runtime_lock:
        runtime = _runtime
    if runtime is None:
        log.warning("job %s ran outside a scheduler; ignored", job_id(target_name, direction))
        return
    target = runtime.targets.get(target_name)
    if target is None:
        log.warning("job %s names no configured target; ignored",
                    job_id(target_name, direction))
        return
    with _runtime_lock:
        target_lock = _target_locks.setdefault(target_name, threading.Lock())
    with target_lock:
        state = runtime.node.store.misp_state(target_name, direction)
        why = skip_reason(state, now_micros(), runtime.options.backoff,
                          changed_at(target, runtime.targets_file))
        if why is not None:
            log.info("MISP %s of %s skipped: %s", direction, target_name, why)
            return
        run_target(runtime.node, target, direction, runners=runtime.runners)


# -- leadership ----------------------------------------------------------------------
class Leadership(Protocol):
    """The right to run the jobs, held by one scheduler at a time."""

    def try_acquire(self) -> bool:
        """Take it if nobody holds it; True if this process holds it now."""

    def still_held(self) -> bool:
        """Whether this process still holds it (False: stop running jobs)."""

    def release(self) -> None:
        """Give it up (also when not held)."""


class PostgresLeadership:
    """A session-level advisory lock on a connection of its own."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(url, SqliteOptions()).execution_options(
            isolation_level="AUTOCOMMIT")
        self._conn: sa.Connection | None = None
        self._key = 0

    def try_acquire(self) -> bool:
        """Take the lock if it is free."""
        if self._conn is not None:
            return self.still_held()
        try:
            conn = self._engine.connect()
        except sa.exc.SQLAlchemyError as e:
            log.warning("scheduler: the database is unavailable (%s)", type(e).__name__)
            return False
        try:
            conn.execute(sa.text("SELECT set_config('application_name', :name, false)"),
                         {"name": f"cx-scheduler {os.getpid()}"})
            self._key = int(conn.execute(_LOCK_KEY_SQL).scalar_one())
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(self._key))).scalar()
        except sa.exc.SQLAlchemyError as e:
            log.warning("scheduler: cannot ask for the leader lock (%s)", type(e).__name__)
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """Whether the lock's connection is alive (its session holds the lock)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                pass
            self._conn = None

    def release(self) -> None:
        """Unlock and close the connection."""
        if self._conn is not None:
            try:
                self._conn.execute(sa.select(sa.func.pg_advisory_unlock(self._key)))
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                self._drop()
            self._conn = None
        self._engine.dispose()


class FileLeadership:
    """An exclusive ``fcntl`` lock on a file beside the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """Always, once taken (the lock lives as long as the open file)."""
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close the file."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def leadership_for(url: str) -> Leadership:
    """The leadership of a database: an advisory lock (PostgreSQL) or a lock file (SQLite).

    Raises:
        ConfigError: An in-memory SQLite database (no other process can share it).
    """
    if url.startswith("postgres"):
        return PostgresLeadership(url)
    database = sa.engine.make_url(url).database
    if database in (None, "", ":memory:"):
        raise ConfigError("the scheduler needs a database file or PostgreSQL, not an"
                          " in-memory SQLite database")
    return FileLeadership(Path(f"{database}.scheduler-lock"))


# -- the scheduler -------------------------------------------------------------------
class SyncScheduler:
    """Runs the MISP jobs of one node while it leads; follows otherwise.

    Constructing it does nothing; :meth:`run` blocks until ``stop`` is set.
    """

    def __init__(self, settings: Settings, *, options: SchedulerOptions | None = None,
                 runners: Mapping[str, str | Runner] | None = None,
                 keep_going: Callable[[], bool] = lambda: True,
                 families: Sequence[JobFamily] = ()) -> None:
        """Prepare a scheduler.

        Args:
            settings: The node's settings (database, policy, targets file).
            options: How the jobs run (default :class:`SchedulerOptions`).
            runners: Overrides of :data:`exchange.misp.sync.RUNNERS`.
            keep_going: Checked every ``poll`` seconds; False stops the scheduler (the
                server that started it is gone).
            families: Other doors' jobs to run beside the MISP jobs (TAXII sources).
                With families, a node without a MISP targets file runs only them.
        """
        self.settings = settings
        self.options = options or SchedulerOptions()
        self.runners = runners
        self.keep_going = keep_going
        self.families = tuple(families)
        self._scheduler: BackgroundScheduler | None = None
        self._node: Exchange | None = None

    def run(self, stop: threading.Event) -> None:
        """Follow, lead when the leadership is free, until ``stop`` is set.

        Raises:
            ConfigError: The targets file, the policy or the database is not usable.
        """
        self._targets()  # refuse to start on a broken file
        leadership = leadership_for(self.settings.effective_database_url)
        announced = False
        try:
            while not stop.is_set() and self.keep_going():
                if leadership.try_acquire():
                    log.info("scheduler %d: leading: running the MISP sync jobs",
                                os.getpid())
                    try:
                        self._lead(leadership, stop)
                    except ExchangeError as e:
                        log.error("scheduler: cannot run the jobs (%s); trying again in"
                                  " %g s", e.reason, self.options.poll)
                        stop.wait(self.options.poll)
                    finally:
                        leadership.release()
                    log.info("scheduler %d: no longer leading", os.getpid())
                    announced = False
                    continue
                if not announced:
                    log.info("scheduler %d: following: another scheduler runs the jobs;"
                                " taking over when it stops", os.getpid())
                    announced = True
                stop.wait(self.options.poll)
        finally:
            leadership.release()

    def _targets(self, node: Exchange | None = None) -> tuple[MispTarget, ...]:
        """The MISP targets; none when only other families' jobs are configured."""
        if self.families and self.settings.misp_targets_path is None:
            return ()
        return load_node_targets(self.settings, node)

    def _lead(self, leadership: Leadership, stop: threading.Event) -> None:
        global _runtime  # noqa: PLW0603 - see _Runtime
        settings = self.settings
        with open_node(settings) as node:
            targets = self._targets(node)
            targets_file = settings.misp_targets_path
            seen = _fingerprint(targets_file)
            family_seen = [[_fingerprint(p) for p in f.watched()] for f in self.families]
            for family in self.families:
                family.start(node)
            runtime = _Runtime(node, {t.name: t for t in targets}, targets_file,
                               self.options, self.runners)
            engine = create_engine(settings.effective_database_url, SqliteOptions())
            if engine.dialect.name == "sqlite":
                engine = engine.execution_options(**{WRITE_OPTION: True})
            scheduler = BackgroundScheduler(
                jobstores={"default": SQLAlchemyJobStore(engine=engine,
                                                         tablename=JOB_TABLE)},
                executors={"default": ThreadPoolExecutor(self.options.workers)},
                job_defaults={"coalesce": True, "max_instances": 1,
                              "misfire_grace_time": self.options.misfire_grace},
                timezone=UTC)
            with _runtime_lock:
                _runtime = runtime
            self._scheduler, self._node = scheduler, node
            try:
                scheduler.start(paused=True)
                sync_jobs(scheduler, targets, self.options)
                for family in self.families:
                    family.sync(scheduler)
                self._record_next_runs()
                scheduler.add_listener(self._after_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
                                       | EVENT_JOB_MISSED)
                scheduler.resume()
                while not stop.wait(self.options.poll):
                    if not self.keep_going():
                        log.warning("scheduler: the process that started it is gone;"
                                    " stopping")
                        stop.set()
                        break
                    if not leadership.still_held():
                        log.error("scheduler: lost the leader lock (database connection"
                                  " gone); stopping the jobs")
                        break
                    now_seen = _fingerprint(targets_file)
                    if now_seen != seen:
                        seen = now_seen
                        self._reload(runtime, node)
                    for at, family in enumerate(self.families):
                        prints = [_fingerprint(p) for p in family.watched()]
                        if prints != family_seen[at]:
                            family_seen[at] = prints
                            if family.reload():
                                family.sync(scheduler)
                                self._record_next_runs()
            finally:
                scheduler.shutdown(wait=True)
                for family in self.families:
                    family.stop()
                with _runtime_lock:
                    _runtime = None
                self._scheduler = self._node = None
                engine.dispose()

    def _reload(self, runtime: _Runtime, node: Exchange) -> None:
        try:
            targets = self._targets(node)
        except ExchangeError as e:
            log.error("scheduler: the changed targets file is refused, the jobs stay as"
                      " they were: %s", e.reason)
            return
        runtime.targets = {t.name: t for t in targets}
        if self._scheduler is not None:
            sync_jobs(self._scheduler, targets, self.options)
            self._record_next_runs()
        log.info("scheduler: targets file re-read: %d target(s)", len(targets))

    def _after_run(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            log.error("job %s failed: %s", event.job_id, type(event.exception).__name__)
        self._record_next_runs(only=event.job_id)

    def _record_next_runs(self, only: str | None = None) -> None:
        """Write each job's next run into its sync state (for ``sync status``)."""
        scheduler, node = self._scheduler, self._node
        if scheduler is None or node is None:
            return
        try:
            for job in scheduler.get_jobs():
                if only is not None and job.id != only:
                    continue
                when = job.next_run_time
                next_run = int(when.timestamp() * 1_000_000) if when is not None else None
                for family in self.families:
                    if job.id.startswith(family.prefix):
                        family.record_next_run(job.id, next_run)
                if not job.id.startswith(_JOB_PREFIX):
                    continue
                target_name, direction = job.args
                state = (node.store.misp_state(target_name, direction)
                         or MispSyncState(target_name, direction))
                when = job.next_run_time
                next_run = int(when.timestamp() * 1_000_000) if when is not None else None
                if state.next_run != next_run:
                    node.store.save_misp_state(replace(state, next_run=next_run))
        except ExchangeError as e:
            log.warning("scheduler: cannot record the next runs: %s", e.reason)


def sync_jobs(scheduler: BackgroundScheduler, targets: tuple[MispTarget, ...],
              options: SchedulerOptions) -> dict[str, str]:
    """Make the job store hold exactly one job per target and direction.

    A new job runs at once; a job whose schedule changed is rescheduled; an unchanged
    one keeps its next run (from the job store, across restarts); a job of a target no
    longer configured is removed.

    Returns:
        What was done, by job id: ``added``, ``rescheduled``, ``kept`` or ``removed``.
    """
    wanted = []
    for target in targets:
        for direction in directions_for(target):
            trigger = trigger_for(target, options)
            name = (f"MISP {direction} {target.name} ({target.schedule.describe()},"
                    f" jitter {_jitter(trigger)} s)")
            wanted.append(jobs.JobSpec(job_id(target.name, direction), run_job,
                                       (target.name, direction), trigger, name))
    return jobs.sync_job_store(scheduler, wanted, _JOB_PREFIX)


def _jitter(trigger: BaseTrigger) -> int:
    jitter: Any = getattr(trigger, "jitter", None)
    return int(jitter or 0)


def _fingerprint(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
