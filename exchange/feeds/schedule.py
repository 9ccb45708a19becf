"""The scheduled TAXII sources: one APScheduler job per source, run by the leader.

:class:`SourceJobs` is the :class:`~exchange.node.jobs.JobFamily` of the TAXII sources
(``feeds/sources.yaml``): one job ``taxii-source:<name>`` per source on its interval or
cron schedule (UTC, with jitter), in the scheduler's persistent job store, with
``max_instances=1`` and ``coalesce`` as every job there. Each run is
:func:`exchange.feeds.run.run_source`, unless the source should rest
(:func:`skip_reason`): after ``n`` consecutive failed runs, until ``last_finished +
base * 2 ** (n - 1)`` (capped); after a refused login, until the sources file or the
password file changes.

APScheduler's persistent jobs name a module-level function and plain arguments, so the
leader's node and sources live in this module while it leads (:data:`_runtime`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from exchange.config import Settings
from exchange.errors import ExchangeError
from exchange.feeds.ingest import VerifierFor
from exchange.feeds.run import default_verifier_for, load_node_sources, run_source
from exchange.feeds.sources import TaxiiSource
from exchange.node import jobs
from exchange.node.base import now_micros
from exchange.node.jobs import schedule_trigger
from exchange.node.service import Exchange
from exchange.storage.base import SourceState

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

__all__ = ["PREFIX", "SourceJobs", "run_source_job", "skip_reason"]

log = logging.getLogger(__name__)

PREFIX: Final = "taxii-source:"
#: Seconds of rest after the first failed run, and the longest rest.
BACKOFF_BASE: Final = 60.0
BACKOFF_CAP: Final = 6 * 3600.0


def skip_reason(state: SourceState | None, now: int, changed_at: int | None = None,
                *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> str | None:
    """Why a scheduled run of a source should not happen now, or None if it should.

    Args:
        state: The source's state.
        now: The time, µs since the epoch.
        changed_at: When (µs) the sources file or the password file last changed.
        base: Seconds of rest after the first failure (doubling after each further one).
        cap: The longest rest, in seconds.
    """
    return jobs.skip_reason(
        state, now, jobs.Backoff(base, cap), changed_at,
        stopped="stopped: the server refused the login; fix the password or the sources"
                " file and the job resumes")


def changed_at(source: TaxiiSource, sources_file: Path | None) -> int | None:
    """When (µs) the source's password file or the sources file last changed, if known."""
    return jobs.last_changed((source.password_file, sources_file))


@dataclass
class _Runtime:
    node: Exchange
    sources: dict[str, TaxiiSource]
    sources_file: Path | None
    verifier_for: VerifierFor | None


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def run_source_job(name: str) -> None:
    """The job function: one scheduled run of a source (unless it should rest)."""
    with _runtime_lock:
        runtime = _runtime
    if runtime is None:
        log.warning("job %s%s ran outside a scheduler; ignored", PREFIX, name)
        return
    source = runtime.sources.get(name)
    if source is None:
        log.warning("job %s%s names no configured source; ignored", PREFIX, name)
        return
    state = runtime.node.store.source_state(name)
    why = skip_reason(state, now_micros(), changed_at(source, runtime.sources_file))
    if why is not None:
        log.info("TAXII source %s skipped: %s", name, why)
        return
    run_source(runtime.node, source, verifier_for=runtime.verifier_for)


class SourceJobs:
    """The TAXII sources' jobs (:class:`~exchange.node.jobs.JobFamily`).

    Constructing it does nothing; the leading scheduler calls the rest.
    """

    prefix = PREFIX

    def __init__(self, settings: Settings, *, max_jitter: int = 30,
                 verifier_for: VerifierFor | None = None) -> None:
        self.settings = settings
        self.max_jitter = max_jitter
        self.verifier_for = verifier_for
        self._sources: tuple[TaxiiSource, ...] = ()

    def watched(self) -> Sequence[Path]:
        """The sources file."""
        path = self.settings.taxii_sources_path
        return [path] if path is not None else []

    def check(self) -> None:
        """Read the sources file (a broken one raises ConfigError)."""
        load_node_sources(self.settings)

    def start(self, node: Exchange) -> None:
        """Read the sources and keep the node for the jobs.

        Raises:
            ConfigError: The sources file is missing or broken.
        """
        global _runtime  # noqa: PLW0603 - see the module docstring
        self._sources = load_node_sources(self.settings)
        verifier_for = self.verifier_for or default_verifier_for()
        with _runtime_lock:
            _runtime = _Runtime(node, {s.name: s for s in self._sources},
                                self.settings.taxii_sources_path, verifier_for)

    def reload(self) -> bool:
        """Read the sources file again; a broken one is refused and the jobs stay."""
        try:
            sources = load_node_sources(self.settings)
        except ExchangeError as e:
            log.error("scheduler: the changed sources file is refused, the jobs stay as"
                      " they were: %s", e.reason)
            return False
        self._sources = sources
        with _runtime_lock:
            if _runtime is not None:
                _runtime.sources = {s.name: s for s in sources}
        log.info("scheduler: sources file re-read: %d source(s)", len(sources))
        return True

    def sync(self, scheduler: BaseScheduler) -> dict[str, str]:
        """One job per source: a new one runs at once, a changed schedule is rescheduled,
        an unchanged one keeps its next run, a source no longer configured loses its job.
        """
        wanted = [
            jobs.JobSpec(f"{PREFIX}{source.name}", run_source_job, (source.name,),
                         schedule_trigger(source.schedule.interval, source.schedule.cron,
                                          self.max_jitter),
                         f"TAXII source {source.name} ({source.schedule.describe()})")
            for source in self._sources]
        return jobs.sync_job_store(scheduler, wanted, PREFIX)

    def record_next_run(self, job_id: str, next_run: int | None) -> None:
        """Keep a source's next run in its state."""
        with _runtime_lock:
            runtime = _runtime
        if runtime is None:
            return
        name = job_id.removeprefix(PREFIX)
        state = runtime.node.store.source_state(name) or SourceState(name)
        if state.next_run != next_run:
            runtime.node.store.save_source_state(replace(state, next_run=next_run))

    def stop(self) -> None:
        """Forget the node."""
        global _runtime  # noqa: PLW0603 - see the module docstring
        with _runtime_lock:
            _runtime = None
