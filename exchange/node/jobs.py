"""The node's scheduled jobs: schedules as APScheduler triggers, and families of jobs.

The scheduler process (:class:`exchange.misp.scheduler.SyncScheduler`, run by
``exchange scheduler`` and ``exchange serve``) leads one cluster's jobs. Its MISP jobs
are its own; every other door adds its jobs as a :class:`JobFamily` the command line
passes in (TAXII sources: :class:`exchange.feeds.schedule.SourceJobs`), so doors never
import each other: both import this module. Here too: the reading of a five-field
crontab schedule as an APScheduler 3 trigger (:func:`schedule_trigger`,
:func:`crontab_weekdays`), and when a job should rest instead of running
(:func:`skip_reason`): after failed runs it backs off (:class:`Backoff`); after a refused
login it waits until the files holding the login or the definitions change
(:func:`last_changed`); and making the job store hold exactly a family's jobs
(:func:`sync_job_store`). No I/O but reading files' modification times.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exchange.errors import ConfigError

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from exchange.node.service import Exchange

__all__ = [
    "AUTH_FAILED",
    "Backoff",
    "JobFamily",
    "JobSpec",
    "RunState",
    "crontab_weekdays",
    "last_changed",
    "schedule_trigger",
    "skip_reason",
    "sync_job_store",
]

#: The outcome of a run the other side refused to log in to (each door's ``Outcome``).
AUTH_FAILED: Final = "auth-failed"

_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_ITEM = re.compile(r"(\*|[0-7a-z]+)(?:-([0-7a-z]+))?(?:/([0-9]+))?")


class JobFamily(Protocol):
    """The jobs of one door, run by the leading scheduler beside the MISP jobs.

    The leader calls :meth:`start` once it leads (the node is open), :meth:`sync` to make
    the job store hold exactly the family's jobs (ids starting with :attr:`prefix`),
    :meth:`reload` when one of :meth:`watched` changed, :meth:`record_next_run` after a
    job of the family ran, and :meth:`stop` when it no longer leads.
    """

    prefix: str

    def watched(self) -> Sequence[Path]:
        """Files whose change makes the leader call :meth:`reload`."""

    def start(self, node: Exchange) -> None:
        """Read the configuration and keep the node for the jobs.

        Raises:
            ConfigError: The configuration is broken (the leader does not start).
        """

    def reload(self) -> bool:
        """Read the configuration again; False (and the jobs stay) when it is broken."""

    def sync(self, scheduler: BaseScheduler) -> dict[str, str]:
        """Add, reschedule and remove jobs; what was done, by job id."""

    def record_next_run(self, job_id: str, next_run: int | None) -> None:
        """Keep a job's next run (µs since the epoch) for ``exchange sync status``."""

    def stop(self) -> None:
        """Forget the node (the leader stopped)."""


class RunState(Protocol):
    """What :func:`skip_reason` reads of a job's saved state (a source's or a target's)."""

    @property
    def outcome(self) -> str:
        """The last run's outcome (``ok``, ``failed``, ``auth-failed``, ...)."""

    @property
    def last_finished(self) -> int | None:
        """When (µs) the last run finished."""

    @property
    def failures(self) -> int:
        """Consecutive failed runs."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a job rests after failed runs: ``base * 2 ** (failures - 1)``, capped.

    Attributes:
        base: Seconds after the first failure.
        cap: The longest rest, in seconds.
    """

    base: float = 60.0
    cap: float = 6 * 3600.0

    def delay(self, failures: int) -> float:
        """Seconds to rest after ``failures`` consecutive failed runs (0 for none)."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * float(2 ** min(failures - 1, 62)))

    def resume_at(self, state: RunState) -> int | None:
        """When (µs) the job may run again, or None if it need not rest."""
        if state.failures <= 0 or state.last_finished is None:
            return None
        return state.last_finished + int(self.delay(state.failures) * 1_000_000)


def skip_reason(state: RunState | None, now: int, backoff: Backoff,
                changed_at: int | None, *, stopped: str) -> str | None:
    """Why a scheduled run should not happen now, or None if it should.

    Args:
        state: The job's saved state, or None before its first run.
        now: The time, µs since the epoch.
        backoff: The rest after failures.
        changed_at: When (µs) the files holding the login or the definitions last
            changed (:func:`last_changed`), or None if unknown.
        stopped: The reason given while a refused login waits for such a change.
    """
    if state is None:
        return None
    if state.outcome == AUTH_FAILED and (
            changed_at is None or state.last_finished is None
            or changed_at <= state.last_finished):
        return stopped
    resume = backoff.resume_at(state)
    if resume is not None and now < resume:
        when = datetime.fromtimestamp(resume / 1e6, UTC).isoformat(timespec="seconds")
        return f"backing off after {state.failures} failed run(s) until {when}"
    return None


def last_changed(paths: Iterable[str | Path | None]) -> int | None:
    """When (µs) the latest of these files changed; None for none that can be read."""
    times = []
    for path in paths:
        if path is None:
            continue
        try:
            times.append(os.stat(path).st_mtime_ns // 1000)
        except OSError:
            continue
    return max(times) if times else None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job a family wants in the job store.

    Attributes:
        id: The job's id (starting with the family's prefix).
        func: The module-level function it runs (persistent jobs name it).
        args: Its arguments (plain strings).
        trigger: When it runs.
        name: Its name, which describes the schedule: a changed name is a changed
            schedule.
    """

    id: str
    func: Callable[..., None]
    args: tuple[str, ...]
    trigger: BaseTrigger
    name: str


def sync_job_store(scheduler: BaseScheduler, wanted: Iterable[JobSpec], prefix: str
                   ) -> dict[str, str]:
    """Make the job store hold exactly the ``wanted`` jobs among those ids start with
    ``prefix``.

    A new job runs at once; a job whose name (schedule) changed is rescheduled; an
    unchanged one keeps its next run (from the job store, across restarts); a job with
    the prefix that is not wanted is removed.

    Returns:
        What was done, by job id: ``added``, ``rescheduled``, ``kept`` or ``removed``.
    """
    done: dict[str, str] = {}
    for spec in wanted:
        job = scheduler.get_job(spec.id)
        if job is None:
            scheduler.add_job(spec.func, spec.trigger, args=list(spec.args), id=spec.id,
                              name=spec.name, next_run_time=datetime.now(UTC))
            done[spec.id] = "added"
        elif job.name != spec.name:
            scheduler.reschedule_job(spec.id, trigger=spec.trigger)
            scheduler.modify_job(spec.id, name=spec.name)
            done[spec.id] = "rescheduled"
        else:
            done[spec.id] = "kept"
    for job in scheduler.get_jobs():
        if job.id.startswith(prefix) and job.id not in done:
            scheduler.remove_job(job.id)
            done[job.id] = "removed"
    return done


def schedule_trigger(interval: int | None, cron: str | None, max_jitter: int) -> BaseTrigger:
    """The APScheduler trigger of a schedule: every ``interval`` seconds (jitter at most a
    tenth of it), or a five-field ``cron`` in UTC (crontab's day of week)."""
    if interval is not None:
        return IntervalTrigger(seconds=interval, timezone=UTC,
                               jitter=min(max_jitter, interval // 10) or None)
    minute, hour, day, month, weekday = str(cron).split()
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=crontab_weekdays(weekday), timezone=UTC,
                       jitter=max_jitter or None)


def crontab_weekdays(text: str) -> str:
    """A crontab day-of-week field as APScheduler 3 day names (``1-5`` -> ``mon,...,fri``).

    Raises:
        ConfigError: The field is not a crontab day of week.
    """
    if text == "*":
        return "*"
    days: set[int] = set()
    for item in text.lower().split(","):
        m = _DOW_ITEM.fullmatch(item)
        if m is None:
            raise ConfigError(f"cron day of week {text!r}: cannot read {item!r}")
        first, last, step = m.group(1), m.group(2), m.group(3)
        if first == "*":
            low, high = 0, 6
        else:
            low = _weekday(first, text)
            high = _weekday(last, text) if last is not None else (6 if step else low)
            if last is not None and high == 0 and low > 0:
                high = 7  # "5-7" and "fri-sun" run to Sunday
        days.update(d % 7 for d in range(low, high + 1, int(step or 1)))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(token: str, text: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token[:3] in _WEEKDAYS and len(token) == 3:
        return _WEEKDAYS.index(token)
    raise ConfigError(f"cron day of week {text!r}: {token!r} is not 0-7 or sun-sat")
