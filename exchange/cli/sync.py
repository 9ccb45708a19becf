"""``exchange sync`` and ``exchange scheduler``: MISP targets and TAXII sources by hand,
their status, their jobs.

Thin over :mod:`exchange.misp.sync` (one run of a MISP target, and the state it records),
:mod:`exchange.feeds.run` (one run of a TAXII source, and its state) and
:mod:`exchange.misp.scheduler` (the jobs). The MISP targets are the node's
``misp_targets`` file, checked against its sharing policy; the TAXII sources its
``taxii_sources`` file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from exchange.errors import ConfigError, ExchangeError
from exchange.feeds.ingest import IngestReport
from exchange.feeds.ingest import Outcome as SourceOutcome
from exchange.feeds.run import default_verifier_for, run_source
from exchange.feeds.schedule import SourceJobs
from exchange.feeds.schedule import changed_at as source_changed_at
from exchange.feeds.schedule import skip_reason as source_skip_reason
from exchange.feeds.sources import TaxiiSource, load_sources
from exchange.misp.report import Outcome, RunReport
from exchange.misp.scheduler import SchedulerOptions, SyncScheduler, changed_at, skip_reason
from exchange.misp.sync import (
    directions_for,
    load_node_targets,
    open_node,
    run_target,
    summary,
    target_named,
)
from exchange.misp.targets import load_targets
from exchange.node.base import now_micros
from exchange.node.feeddefs import load_flat_feeds
from exchange.storage.base import FeedDownloads, MispSyncState, SourceState

#: Counts ``sync status`` always shows, even at zero.
SHOWN_COUNTS = ("created", "updated", "skipped", "failed")
#: Counts ``sync status`` always shows for a TAXII source, even at zero.
SOURCE_COUNTS = ("created", "duplicate", "refused", "pages")
#: Items the text output lists per rule; ``--json`` lists every kept item.
SHOWN_ITEMS = 10
_T = TypeVar("_T")


def _when(micros: int | None) -> str | None:
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def reason_lines(items: list[dict[str, str]], *, per_rule: int = SHOWN_ITEMS,
                 total: int | None = None) -> list[str]:
    """Skipped and failed items grouped by rule: ``skipped 3 [rule]:``, then each item
    with its reason, at most ``per_rule`` per rule (``and N more``); failures first, then
    the largest groups.

    Args:
        items: The items (``Item.as_dict``).
        per_rule: Items listed per rule.
        total: How many items the run had, when only some were kept.
    """
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for item in items:
        groups.setdefault((item["kind"], item["rule"]), []).append(item)
    lines = []
    for (kind, rule), group in sorted(groups.items(), key=lambda g: (
            g[0][0] != "failed", -len(g[1]), g[0][1])):
        lines.append(f"  {kind} {len(group)} [{rule}]:")
        lines += [f"    {item['id']}: {item['reason']}" for item in group[:per_rule]]
        if len(group) > per_rule:
            lines.append(f"    and {len(group) - per_rule} more (--json lists them all)")
    if total is not None and total > len(items):
        lines.append(f"  only the first {len(items)} of {total} skipped or failed items"
                     " are kept")
    return lines


@click.group()
def sync() -> None:
    """MISP sync: run a target by hand, show how each target stands."""


@sync.command("run")
@click.argument("target")
@click.option("--direction", type=click.Choice(["push", "pull", "both"]), default="both",
              show_default=True, help="Which way (narrowed to what the target is set up for).")
@click.option("--dry-run", is_flag=True,
              help="Say what would be pushed or pulled and why; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def sync_run(ctx_obj: Any, target: str, direction: str, dry_run: bool, as_json: bool) -> None:
    """Sync one MISP target or pull one TAXII source now (exits 1 unless it ends ok)."""
    settings = ctx_obj.settings
    source = _source_named(settings, target)
    if source is not None:
        _run_source(settings, source, dry_run=dry_run, as_json=as_json)
        return
    with open_node(settings) as node:
        chosen = target_named(load_node_targets(settings, node), target)
        reports = [run_target(node, chosen, d, dry_run=dry_run)
                   for d in directions_for(chosen, direction)]
    if as_json:
        click.echo(json.dumps([_report_json(r) for r in reports], indent=2, sort_keys=True))
    else:
        click.echo("\n".join(line for r in reports for line in _report_lines(r)))
    if any(r.outcome is not Outcome.OK for r in reports):
        sys.exit(1)


def _definitions(path: Path | None, load: Callable[[Path], tuple[_T, ...]]
                 ) -> tuple[tuple[_T, ...], str | None]:
    """What a definitions file holds (nothing when none is configured), and why a broken
    one was refused."""
    if path is None:
        return (), None
    try:
        return load(path), None
    except ExchangeError as e:
        return (), e.reason


def _sources(settings: Any) -> tuple[tuple[TaxiiSource, ...], str | None]:
    """The configured TAXII sources, and the problem of a broken sources file."""
    return _definitions(settings.taxii_sources_path, load_sources)


def _source_named(settings: Any, name: str) -> TaxiiSource | None:
    """The TAXII source called ``name``, or None (a MISP target, perhaps).

    Raises:
        ConfigError: The sources file is broken and no MISP targets file is configured.
    """
    sources, problem = _sources(settings)
    if problem is not None and settings.misp_targets_path is None:
        raise ConfigError(problem)
    return next((s for s in sources if s.name == name), None)


def _run_source(settings: Any, source: TaxiiSource, *, dry_run: bool, as_json: bool
                ) -> None:
    if dry_run:
        raise ConfigError(f"{source.name!r} is a TAXII source: it has no dry run (reading"
                          " a source stores what is new, once)")
    with open_node(settings) as node:
        report = run_source(node, source, verifier_for=default_verifier_for())
    if as_json:
        click.echo(json.dumps(_source_report_json(report), indent=2, sort_keys=True))
    else:
        click.echo("\n".join(_source_report_lines(report)))
    if report.outcome is not SourceOutcome.OK:
        sys.exit(1)


def _source_report_json(report: IngestReport) -> dict[str, Any]:
    return {"source": report.source, "outcome": report.outcome.value,
            "message": report.message, "counts": dict(report.counts),
            "paging": report.paging.value if report.paging else None,
            "refused": [r.as_dict() for r in report.refusals],
            "cursor_before": report.cursor_before, "cursor_after": report.cursor_after}


def _source_report_lines(report: IngestReport) -> list[str]:
    counts = ", ".join(f"{k} {report.counts[k]}" for k in SOURCE_COUNTS)
    lines = [f"source {report.source}: {report.outcome.value}", f"  {counts}",
             f"  {report.message}",
             f"  cursor: {report.cursor_before or '(start)'} ->"
             f" {report.cursor_after or report.cursor_before or '(start)'}"
             f" (paging: {report.paging or 'unknown'})"]
    return lines + reason_lines([r.as_dict() for r in report.refusals])


def _report_json(report: RunReport) -> dict[str, Any]:
    return {"target": report.target, "direction": report.direction,
            "dry_run": report.dry_run, "outcome": report.outcome.value,
            "message": report.message, "counts": dict(report.counts),
            "items": [i.as_dict() for i in report.items], "plan": list(report.plan),
            "cursor_before": report.cursor_before, "cursor_after": report.cursor_after}


def _report_lines(report: RunReport) -> list[str]:
    dry = " (dry run: nothing was written)" if report.dry_run else ""
    lines = [f"{report.direction} {report.target}: {report.outcome.value}{dry}",
             f"  {summary(report)}"]
    if report.message and report.message != summary(report):
        lines.append(f"  {report.message}")
    if report.cursor_after is not None or report.cursor_before is not None:
        lines.append(f"  cursor: {report.cursor_before or '(start)'} ->"
                     f" {report.cursor_after or report.cursor_before or '(start)'}")
    verb = "would" if report.dry_run else "did"
    lines += [f"  {verb}: {step}" for step in report.plan]
    lines += reason_lines([item.as_dict() for item in report.items])
    return lines


@sync.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def sync_status(ctx_obj: Any, as_json: bool) -> None:
    """Each target and direction: last run, outcome, counts, reasons, cursor, next run;
    each flat feed: its downloads per format and account (last, count, ETag, values)."""
    settings = ctx_obj.settings
    loaded, problem = _definitions(settings.misp_targets_path, load_targets)
    targets = {t.name: t for t in loaded}
    wanted = [(t.name, d) for t in targets.values() for d in directions_for(t)]
    with ctx_obj.exchange() as ex:
        states = {(s.target, s.direction): s for s in ex.store.misp_states()}
        downloads = ex.store.feed_downloads()
    feeds, feeds_problem = _feed_rows(settings, downloads)
    now = now_micros()
    rows = []
    for key in [*wanted, *sorted(k for k in states if k not in wanted)]:
        state = states.get(key) or MispSyncState(*key)
        target = targets.get(key[0])
        resting = skip_reason(state, now, SchedulerOptions().backoff,
                              changed_at(target, settings.misp_targets_path)
                              if target else None) if state.outcome != "never" else None
        rows.append(_state_json(state, configured=key in wanted, resting=resting))
    sources, source_problem = _sources(settings)
    with ctx_obj.exchange() as ex:
        source_states = {s.source: s for s in ex.store.source_states()}
    names = [s.name for s in sources]
    by_name = {s.name: s for s in sources}
    source_rows = []
    for name in [*names, *sorted(n for n in source_states if n not in names)]:
        state = source_states.get(name) or SourceState(name)
        source = by_name.get(name)
        resting = source_skip_reason(state, now, source_changed_at(
            source, settings.taxii_sources_path)) if source is not None else None
        source_rows.append(_source_json(state, configured=source is not None,
                                        resting=resting))
    if as_json:
        click.echo(json.dumps({"targets": rows, "problem": problem, "sources": source_rows,
                               "sources_problem": source_problem, "feeds": feeds,
                               "feeds_problem": feeds_problem}, indent=2, sort_keys=True))
        return
    lines = [f"targets file: {problem}"] if problem else []
    if not rows:
        lines.append("no MISP targets configured (set misp_targets in exchange.toml)")
    for row in rows:
        lines += _state_lines(row)
    if source_rows or source_problem:
        lines.append("TAXII sources:")
    if source_problem:
        lines.append(f"sources file: {source_problem}")
    for row in source_rows:
        lines += _source_lines(row)
    lines += _feed_lines(feeds, feeds_problem)
    click.echo("\n".join(lines))


def _source_json(state: SourceState, *, configured: bool, resting: str | None
                 ) -> dict[str, Any]:
    counts = dict.fromkeys(SOURCE_COUNTS, 0) | state.counts
    return {"source": state.source, "configured": configured, "outcome": state.outcome,
            "resting": resting,
            "message": state.message, "last_started": _when(state.last_started),
            "last_finished": _when(state.last_finished), "counts": counts,
            "reasons": state.reasons, "cursor": state.cursor, "paging": state.paging,
            "endpoint": state.endpoint,
            "failures": state.failures, "next_run": _when(state.next_run)}


def _source_lines(row: dict[str, Any]) -> list[str]:
    gone = "" if row["configured"] else " (no longer in the sources file)"
    return _run_lines(row, f"{row['source']} (TAXII source){gone}", SOURCE_COUNTS,
                      f"cursor: {row['cursor'] or '(start)'}"
                      f"{' in ' + row['endpoint'] if row['endpoint'] else ''},"
                      f" paging: {row['paging'] or 'unknown'}",
                      row["counts"].get("refused", 0))


def _run_lines(row: dict[str, Any], head: str, always: tuple[str, ...], cursor: str,
               reasons_total: int) -> list[str]:
    """A job's state as text: ``head``, outcome, last and next run; the counts (``always``
    even at zero, then the others); ``cursor``; the message, the failures, why it rests;
    the reasons of the items left out."""
    last = row["last_finished"] or row["last_started"] or "never"
    counts = row["counts"]
    shown = [f"{k} {counts[k]}" for k in always]
    shown += [f"{k} {v}" for k, v in sorted(counts.items()) if k not in always]
    lines = [f"{head}: {row['outcome']}, last run {last},"
             f" next run {row['next_run'] or 'not scheduled'}",
             f"  {', '.join(shown)}",
             f"  {cursor}"]
    if row["message"]:
        lines.append(f"  {row['message']}")
    if row["failures"]:
        lines.append(f"  consecutive failed runs: {row['failures']}")
    if row["resting"]:
        lines.append(f"  {row['resting']}")
    return lines + reason_lines(row["reasons"], total=reasons_total)


# -- flat feeds (issue 20, item 5) ----------------------------------------------------------


def _feed_rows(settings: Any, downloads: list[FeedDownloads]
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Every named feed of the ``flat_feeds`` file (downloaded or not) and every other
    feed downloaded, each with its downloads per format and account; and why the file
    was refused, if it was."""
    loaded, problem = _definitions(settings.flat_feeds_path, load_flat_feeds)
    named = {f.name: f for f in loaded}
    by_feed: dict[str, list[FeedDownloads]] = {}
    for d in downloads:
        by_feed.setdefault(d.feed, []).append(d)
    rows = []
    for name in [*named, *sorted(f for f in by_feed if f not in named)]:
        feed = named.get(name)
        row: dict[str, Any] = {"feed": name, "named": feed is not None,
                               "configured": feed is not None or "/" in name}
        if feed is not None:
            f = feed.filters
            row |= {"collection": feed.collection, "kinds": list(feed.kinds),
                    "formats": list(feed.formats),
                    "filters": {"tlp_ceiling": f.tlp_ceiling.value,
                                "labels_include": list(f.labels_include),
                                "labels_exclude": list(f.labels_exclude),
                                "min_confidence": f.min_confidence,
                                "max_age_days": f.max_age_days}}
        else:
            collection, _, kind = name.partition("/")
            row |= {"collection": collection, "kinds": [kind] if kind else []}
        row["downloads"] = [
            {"format": d.format, "account": d.account, "org": d.org,
             "downloads": d.downloads, "first": _when(d.first_download),
             "last": _when(d.last_download), "etag": d.last_etag, "values": d.last_values}
            for d in by_feed.get(name, [])]
        rows.append(row)
    return rows, problem


def _filters_text(filters: dict[str, Any]) -> str:
    parts = []
    if filters["tlp_ceiling"] != "red":
        parts.append(f"tlp <= {filters['tlp_ceiling']}")
    parts += [f"label {x}" for x in filters["labels_include"]]
    parts += [f"no label {x}" for x in filters["labels_exclude"]]
    if filters["min_confidence"] is not None:
        parts.append(f"confidence >= {filters['min_confidence']}")
    if filters["max_age_days"] is not None:
        parts.append(f"modified within {filters['max_age_days']} days")
    return "; ".join(parts) or "no filters"


def _feed_lines(rows: list[dict[str, Any]], problem: str | None) -> list[str]:
    lines = [f"flat feeds file: {problem}"] if problem else []
    if not rows:
        return lines  # no named feed, none downloaded: nothing to say
    lines.append("flat and MISP feeds (full downloads; answers 304 are not counted):")
    for row in rows:
        if row["named"]:
            head = (f"{row['feed']} (named: {row['collection']}, {', '.join(row['kinds'])};"
                    f" {', '.join(row['formats'])}; {_filters_text(row['filters'])})")
        elif row["kinds"] == ["misp"]:
            head = f"{row['feed']} (the MISP feed of collection {row['collection']})"
        elif row["configured"]:
            head = f"{row['feed']} (collection {row['collection']}, kind {row['kinds'][0]})"
        else:
            head = f"{row['feed']} (no longer in the flat feeds file)"
        lines.append(head)
        if not row["downloads"]:
            lines.append("  never downloaded")
        lines += [f"  {d['format']} by {d['account']} ({d['org']}): {d['downloads']}"
                  f" download{'s' if d['downloads'] != 1 else ''}, last {d['last']},"
                  f" {d['values']} value{'s' if d['values'] != 1 else ''}, ETag {d['etag']}"
                  for d in row["downloads"]]
    return lines


def _state_json(state: MispSyncState, *, configured: bool, resting: str | None
                ) -> dict[str, Any]:
    counts = dict.fromkeys(SHOWN_COUNTS, 0) | state.counts
    return {"target": state.target, "direction": state.direction,
            "configured": configured, "outcome": state.outcome, "message": state.message,
            "last_started": _when(state.last_started),
            "last_finished": _when(state.last_finished),
            "counts": counts, "reasons": state.reasons, "cursor": state.cursor,
            "failures": state.failures, "next_run": _when(state.next_run),
            "resting": resting}


def _state_lines(row: dict[str, Any]) -> list[str]:
    gone = "" if row["configured"] else " (no longer in the targets file)"
    counts = row["counts"]
    return _run_lines(row, f"{row['target']} {row['direction']}{gone}", SHOWN_COUNTS,
                      f"cursor: {row['cursor'] or '(start)'}",
                      counts.get("skipped", 0) + counts.get("failed", 0))


@click.command("scheduler")
@click.option("--poll", type=click.FloatRange(0.1, 60.0), default=5.0, show_default=True,
              help="Seconds between a follower's attempts to take over (and the leader's"
                   " checks of its lock and of the targets file).")
@click.option("--parent-pid", type=int, hidden=True,
              help="Stop when this process is gone (exchange serve starts it so).")
@click.pass_obj
def scheduler(ctx_obj: Any, poll: float, parent_pid: int | None) -> None:
    """Run the MISP sync and TAXII source jobs in the foreground until SIGTERM or SIGINT.

    Several schedulers may run on one database: one leads and runs the jobs, the others
    wait and take over within --poll seconds when it stops.
    """
    settings = ctx_obj.settings
    logging.getLogger().setLevel(min(logging.getLogger().level,
                                     logging.getLevelName(settings.log_level.upper())))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    families = [SourceJobs(settings)] if settings.taxii_sources_path is not None else []
    for family in families:
        family.check()  # refuse to start on a broken sources file
    SyncScheduler(settings, options=SchedulerOptions(poll=poll),
                  keep_going=lambda: parent_pid is None or os.getppid() == parent_pid,
                  families=families).run(stop)
    click.echo("scheduler stopped", err=True)
