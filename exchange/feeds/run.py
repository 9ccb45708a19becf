"""One run of one TAXII source, and the state it leaves behind.

:func:`run_source` is what ``exchange sync run`` and the scheduler's jobs call: it runs
:func:`exchange.feeds.ingest.ingest` and records the run as the source's
:class:`~exchange.storage.base.SourceState` (the cursor reached, the paging mode
detected, the outcome, counts and the reason for every object refused, consecutive
failures for the scheduler's backoff). Errors of the run are caught and recorded: a
refused login or an unreadable password is ``auth-failed``, anything else ``failed``,
and the cursor stays at the last page committed.

:func:`load_node_sources` reads the node's ``taxii_sources`` file and checks each
source's organisation and local collection against the node.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import replace

from exchange.config import Settings
from exchange.errors import AuthError, ConfigError, ExchangeError, NotFound
from exchange.feeds.ingest import (
    IngestReport,
    Outcome,
    TaxiiReader,
    VerifierFor,
    ingest,
)
from exchange.feeds.sources import TaxiiSource, load_sources
from exchange.node.base import now_micros
from exchange.node.service import Exchange
from exchange.storage.base import SourceState

__all__ = ["MAX_REASONS", "PEERS_MODULE", "default_verifier_for", "load_node_sources",
           "run_source", "source_named"]

log = logging.getLogger(__name__)

#: Refusals kept in the stored state per run (the counts always cover all of them).
MAX_REASONS = 1000
#: Where the pinned-peer verifier lives (``verifier_for(node, trust_name)``), when this
#: installation has federation.
PEERS_MODULE = "exchange.feeds.peers"


def default_verifier_for() -> VerifierFor | None:
    """The pinned-peer verifier of :data:`PEERS_MODULE`, or None when it is not there (a
    peer source then refuses to run, saying why)."""
    try:
        module = importlib.import_module(PEERS_MODULE)
    except ModuleNotFoundError as e:
        if e.name != PEERS_MODULE:
            raise
        return None
    found: VerifierFor | None = getattr(module, "verifier_for", None)
    return found


def load_node_sources(settings: Settings) -> tuple[TaxiiSource, ...]:
    """The TAXII sources of a node: its ``taxii_sources`` file.

    Raises:
        ConfigError: No sources file is configured, or it is broken.
    """
    path = settings.taxii_sources_path
    if path is None:
        raise ConfigError("no TAXII sources: set taxii_sources in exchange.toml (or"
                          " EXCHANGE_TAXII_SOURCES) to the sources file, e.g."
                          " feeds/sources.yaml")
    return load_sources(path)


def source_named(sources: Sequence[TaxiiSource], name: str) -> TaxiiSource:
    """The source called ``name``.

    Raises:
        NotFound: No such source (the message lists the configured ones).
    """
    for source in sources:
        if source.name == name:
            return source
    known = ", ".join(s.name for s in sources) or "none"
    raise NotFound(f"no TAXII source {name!r} (configured: {known})")


def run_source(node: Exchange, source: TaxiiSource, *,
               verifier_for: VerifierFor | None = None, reader: TaxiiReader | None = None,
               now: int | None = None, workers: int | None = None) -> IngestReport:
    """Run one source and record how it went.

    Args:
        node: The node, with its policy in force.
        source: The source.
        verifier_for: Gives a peer source's verifier (required for peers).
        reader: The reader to use (default: one built from the source).
        now: The time of the run in µs since the epoch (default: the clock).
        workers: Processes that sign a vendor source's objects (default: the source's
            ``sign_workers``; 0: sign in this process).

    Returns:
        The run's report.

    Raises:
        StorageError: The state could not be read or saved.
    """
    started = now if now is not None else now_micros()
    store = node.store
    previous = store.source_state(source.name) or SourceState(source.name)
    store.save_source_state(replace(previous, outcome=Outcome.RUNNING.value,
                                    last_started=started, message="running"))
    report = IngestReport(source.name, cursor_before=previous.cursor,
                          cursor_after=previous.cursor)
    try:
        report = ingest(node, source, reader=reader, verifier_for=verifier_for, now=now,
                        workers=workers)
    except AuthError as e:
        report.outcome, report.message = Outcome.AUTH_FAILED, e.reason
    except ConfigError as e:
        report.outcome = Outcome.AUTH_FAILED if "password" in e.reason else Outcome.FAILED
        report.message = e.reason
    except ExchangeError as e:
        report.outcome, report.message = Outcome.FAILED, e.reason
    except Exception as e:  # a run never takes its scheduler down
        log.exception("TAXII source %s failed unexpectedly", source.name)
        report.outcome = Outcome.FAILED
        report.message = f"internal error ({type(e).__name__}); see the log"
    log.info("TAXII source %s: %s: %s", source.name, report.outcome, report.message)
    finished = now_micros() if now is None else now
    current = store.source_state(source.name) or previous
    failed = report.outcome in (Outcome.FAILED, Outcome.AUTH_FAILED)
    store.save_source_state(SourceState(
        source=source.name, cursor=current.cursor,
        paging=report.paging.value if report.paging is not None else current.paging,
        last_started=started, last_finished=finished, outcome=report.outcome.value,
        message=report.message, counts={k: v for k, v in report.counts.items() if v},
        reasons=[r.as_dict() for r in report.refusals[:MAX_REASONS]],
        failures=previous.failures + 1 if failed else 0, next_run=previous.next_run,
        endpoint=current.endpoint))
    return report
