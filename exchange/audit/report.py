"""Disclosure reports: what one recipient received, from whom, under which policy.

An auditor's question is usually narrow: "what exactly did PK-CERT receive from UZ-CERT
last quarter, and under which version of the sharing agreement?". The ledger answers it
with :class:`~exchange.audit.records.Disclosure` records, each holding the disclosures of
one response. This module turns such records into a :class:`DisclosureReport`, one
:class:`ReportRow` per disclosure (one object version to one recipient), with totals per
TLP level, per producer and per policy digest and rule, and writes it in three forms:

* :func:`render_json`: a deterministic JSON document (``"format": "cx-audit-report v1"``)
  for tools;
* :func:`render_csv`: one line per disclosure for spreadsheets, with cells that a
  spreadsheet would run as a formula neutralised (the values come from member input);
* :func:`render_html`: one standalone, printable page for people (inline CSS, no script,
  no external resource, every value escaped).

The totals are always computed from the rows (:class:`DisclosureReport` takes no totals),
so a report cannot claim more or fewer disclosures than it lists. A report records the
checkpoint it was checked against, or says plainly that it was not: this module does no
verification itself. The caller (``exchange audit report``) verifies the checkpoint's
signature and the records against its tree, then passes the checkpoint here; ``covered``
then says whether every row lies inside the part of the log that checkpoint signs.

Pure code: no I/O, no database, no HTTP; the caller reads the records
(:func:`exchange.audit.query.iter_matching`) and writes the text where it belongs.

Errors: :class:`~exchange.errors.InvalidInput` when the same record (``seq``) is given
twice, which would count its disclosures twice.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from exchange.audit.checkpoint import Checkpoint
from exchange.audit.query import RecordFilter, matching_entries
from exchange.audit.records import Disclosed, Disclosure, Entry, Kind
from exchange.errors import InvalidInput
from exchange.model.objects import Tlp
from exchange.storage.timestamps import from_micros

__all__ = [
    "CSV_COLUMNS",
    "REPORT_FORMAT",
    "UNKNOWN_PRODUCER",
    "DisclosureReport",
    "ReportRow",
    "build_report",
    "render_csv",
    "render_html",
    "render_json",
]

#: The ``format`` member of :func:`render_json`'s document.
REPORT_FORMAT: Final = "cx-audit-report v1"

#: The name counted in ``by_producer`` for disclosures whose producer is not known.
UNKNOWN_PRODUCER: Final = "(unknown)"

#: The columns of :func:`render_csv`, in order.
CSV_COLUMNS: Final = (
    "seq",
    "time",
    "channel",
    "recipient_org",
    "recipient_account",
    "collection",
    "object_id",
    "object_version",
    "object_digest",
    "producer_org",
    "tlp",
    "policy_digest",
    "rule",
    "request_id",
)

#: TLP levels from least to most restrictive: the order of ``by_tlp``.
_TLP_LEVELS: Final = tuple(level.value for level in Tlp)

#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRow:
    """One disclosure: one object version made available to one recipient.

    Attributes:
        seq: The position of the audit record holding it (its leaf number).
        time: When the response was committed (microseconds since the epoch).
        channel: The path out (``taxii:get_objects``, ``misp:push``...).
        recipient_org: The receiving organisation.
        recipient_account: The receiving account.
        collection: The collection it was read from.
        object_id: The STIX id served.
        object_version: The version served (``modified``, microseconds).
        object_digest: ``sha256:`` of the exact bytes served, or None for metadata only.
        producer_org: The organisation that produced the object, if known.
        tlp: Its effective TLP level.
        policy_digest: The digest of the sharing policy that allowed it.
        rule: The rule of that policy that allowed it.
        request_id: The request it answered.
    """

    seq: int
    time: int
    channel: str
    recipient_org: str
    recipient_account: str
    collection: str
    object_id: str
    object_version: int
    object_digest: str | None
    producer_org: str | None
    tlp: str
    policy_digest: str
    rule: str
    request_id: str

    @classmethod
    def of(cls, seq: int, record: Disclosure, item: Disclosed) -> ReportRow:
        """The row of one entry of a disclosure record.

        Args:
            seq: The record's position in the log.
            record: The disclosure record.
            item: One of its entries.

        Returns:
            The row.
        """
        return cls(
            seq=seq,
            time=record.time,
            channel=record.channel,
            recipient_org=record.recipient_org,
            recipient_account=record.recipient_account,
            collection=record.collection,
            object_id=item.object_id,
            object_version=item.object_version,
            object_digest=item.object_digest,
            producer_org=item.producer_org,
            tlp=item.tlp,
            policy_digest=record.policy_digest,
            rule=item.rule,
            request_id=record.request_id,
        )


def _read_only(counts: Mapping[Any, int]) -> Mapping[Any, int]:
    return MappingProxyType(dict(counts))


@dataclass(frozen=True, kw_only=True)
class DisclosureReport:
    """The disclosures matching an auditor's filter, with totals computed from them.

    Only the fields before ``covered`` are given; the rest are derived from ``rows`` and
    ``checkpoint`` when the report is built, so they always agree with the rows.

    Attributes:
        recipient: The recipient organisation asked about, or None for all recipients.
        since: The start of the period (microseconds, inclusive), or None.
        until: The end of the period (microseconds, exclusive), or None.
        generated_at: When the report was made (microseconds).
        checkpoint: The verified checkpoint the rows were checked against, or None when
            they were not verified.
        rows: The disclosures, in log order (``seq``, then order within the record).
        covered: Whether a checkpoint is given and every row's record lies inside it
            (``seq < checkpoint.size``).
        total: The number of disclosures (``len(rows)``).
        by_tlp: Disclosures per TLP level, every level from ``clear`` to ``red``.
        by_producer: Disclosures per producer, by name (``"(unknown)"`` when not known).
        by_rule: Disclosures per ``(policy_digest, rule)``, in that order.
        records: The number of distinct audit records the rows come from.
        first_seq: The lowest ``seq`` of a row, or None when there are no rows.
        last_seq: The highest ``seq`` of a row, or None when there are no rows.
    """

    recipient: str | None
    since: int | None
    until: int | None
    generated_at: int
    checkpoint: Checkpoint | None
    rows: tuple[ReportRow, ...]
    covered: bool = field(init=False, compare=False)
    total: int = field(init=False, compare=False)
    by_tlp: Mapping[str, int] = field(init=False, compare=False, repr=False)
    by_producer: Mapping[str, int] = field(init=False, compare=False, repr=False)
    by_rule: Mapping[tuple[str, str], int] = field(init=False, compare=False, repr=False)
    records: int = field(init=False, compare=False)
    first_seq: int | None = field(init=False, compare=False)
    last_seq: int | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        rows = tuple(self.rows)
        seqs = {row.seq for row in rows}
        tlps = Counter(row.tlp for row in rows)
        producers = Counter(row.producer_org or UNKNOWN_PRODUCER for row in rows)
        rules = Counter((row.policy_digest, row.rule) for row in rows)
        levels = {level: tlps.get(level, 0) for level in _TLP_LEVELS}
        # Records only hold the five levels; anything else is kept visible, not dropped.
        levels.update(sorted((level, n) for level, n in tlps.items() if level not in levels))
        covered = self.checkpoint is not None and all(
            seq < self.checkpoint.size for seq in seqs
        )
        values: dict[str, object] = {
            "rows": rows,
            "covered": covered,
            "total": len(rows),
            "by_tlp": _read_only(levels),
            "by_producer": _read_only(dict(sorted(producers.items()))),
            "by_rule": _read_only(dict(sorted(rules.items()))),
            "records": len(seqs),
            "first_seq": min(seqs) if seqs else None,
            "last_seq": max(seqs) if seqs else None,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)


def _record_selected(entry: Entry, f: RecordFilter) -> Disclosure | None:
    """The entry's record when it is a disclosure that ``f`` selects as a whole."""
    record = entry.record
    if not isinstance(record, Disclosure):
        return None
    if f.kinds and Kind.DISCLOSURE not in f.kinds:
        return None
    if f.recipient_org is not None and record.recipient_org != f.recipient_org:
        return None
    if f.policy_digest is not None and record.policy_digest != f.policy_digest:
        return None
    if f.since is not None and record.time < f.since:
        return None
    if f.until is not None and record.time >= f.until:
        return None
    return record


def build_report(
    entries: Iterable[Entry],
    f: RecordFilter,
    *,
    checkpoint: Checkpoint | None,
    generated_at: int,
) -> DisclosureReport:
    """The report of the disclosures among ``entries`` that ``f`` selects.

    Records of other kinds are skipped. The record-level parts of the filter (recipient,
    policy digest, period, kinds) are applied again here, so the report is right even for
    entries that were not read through the same filter; the producer and object parts
    select entries within each record (:func:`~exchange.audit.query.matching_entries`),
    so a batch that mixes producers contributes only the producer asked for.

    Args:
        entries: Audit records at their place in the log, in any order.
        f: The auditor's filter; its recipient and period become the report's.
        checkpoint: The checkpoint the caller verified these records against, or None.
        generated_at: When the report is made (microseconds since the epoch).

    Returns:
        The report, rows ordered by ``seq`` and then by their order within the record.

    Raises:
        InvalidInput: The same ``seq`` occurs twice among ``entries``.
    """
    seen: set[int] = set()
    rows: list[ReportRow] = []
    for entry in entries:
        if entry.seq in seen:
            raise InvalidInput(f"audit report: record {entry.seq} was given twice")
        seen.add(entry.seq)
        record = _record_selected(entry, f)
        if record is None:
            continue
        rows.extend(
            ReportRow.of(entry.seq, record, item)
            for item in matching_entries(record, f)
            if isinstance(item, Disclosed)
        )
    rows.sort(key=lambda row: row.seq)  # stable: the order within a record is kept
    return DisclosureReport(
        recipient=f.recipient_org,
        since=f.since,
        until=f.until,
        generated_at=generated_at,
        checkpoint=checkpoint,
        rows=tuple(rows),
    )


# -- JSON ------------------------------------------------------------------------------


def _time_or_none(us: int | None) -> str | None:
    return None if us is None else from_micros(us)


def _row_json(row: ReportRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "time": from_micros(row.time),
        "channel": row.channel,
        "recipient_org": row.recipient_org,
        "recipient_account": row.recipient_account,
        "collection": row.collection,
        "object_id": row.object_id,
        "object_version": from_micros(row.object_version),
        "object_digest": row.object_digest,
        "producer_org": row.producer_org,
        "tlp": row.tlp,
        "policy_digest": row.policy_digest,
        "rule": row.rule,
        "request_id": row.request_id,
    }


def _checkpoint_json(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": base64.b64encode(checkpoint.root).decode("ascii"),
    }


def render_json(report: DisclosureReport) -> str:
    """The report as a JSON document (sorted members, two-space indent, final newline).

    Times are STIX timestamps; the checkpoint root is base64. ``totals`` also carries
    ``first_seq`` and ``last_seq``, the range of records an auditor would ask inclusion
    proofs for.

    Args:
        report: The report.

    Returns:
        The document; the same report always gives the same text.
    """
    document = {
        "format": REPORT_FORMAT,
        "recipient": report.recipient,
        "since": _time_or_none(report.since),
        "until": _time_or_none(report.until),
        "generated_at": from_micros(report.generated_at),
        "checkpoint": _checkpoint_json(report.checkpoint),
        "covered": report.covered,
        "totals": {
            "disclosures": report.total,
            "records": report.records,
            "first_seq": report.first_seq,
            "last_seq": report.last_seq,
            "by_tlp": dict(report.by_tlp),
            "by_producer": dict(report.by_producer),
            "by_rule": [
                {"policy_digest": digest, "rule": rule, "count": count}
                for (digest, rule), count in report.by_rule.items()
            ],
        },
        "disclosures": [_row_json(row) for row in report.rows],
    }
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# -- CSV -------------------------------------------------------------------------------


def _csv_cell(value: str | int | None) -> str:
    """A cell's text, with a quote before anything a spreadsheet would run as a formula."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def render_csv(report: DisclosureReport) -> str:
    """The report's disclosures as CSV: a header line, then one line per disclosure.

    Columns are :data:`CSV_COLUMNS`; times are STIX timestamps, an unknown digest or
    producer is an empty cell. Lines end with ``\\n``. A cell starting with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so that a spreadsheet
    shows it as text instead of evaluating it (producer names, rule ids and object ids
    come from members).

    Args:
        report: The report.

    Returns:
        The CSV text.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        values = _row_json(row)
        writer.writerow([_csv_cell(values[column]) for column in CSV_COLUMNS])
    return out.getvalue()


# -- HTML ------------------------------------------------------------------------------

_CSS: Final = """
@page { size: A4 landscape; margin: 12mm; }
* { box-sizing: border-box; }
body { font-family: "Helvetica Neue", Arial, sans-serif; font-size: 10pt; color: #111;
       background: #fff; margin: 1.5em auto; max-width: 120em; padding: 0 1em;
       line-height: 1.35; }
h1 { font-size: 16pt; margin: 0 0 .2em; }
h2 { font-size: 12pt; margin: 1.4em 0 .4em; border-bottom: 1px solid #999;
     page-break-after: avoid; break-after: avoid; }
p.period { margin: 0 0 1em; color: #333; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .2em 1.2em;
           margin: 0; }
dl.facts dt { font-weight: bold; }
dl.facts dd { margin: 0; }
code, .mono { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 9pt;
              word-break: break-all; }
table { border-collapse: collapse; margin: .3em 0 1em; }
table.rows { width: 100%; font-size: 8.5pt; }
th, td { border: 1px solid #888; padding: .2em .4em; text-align: left;
         vertical-align: top; }
th { background: #eee; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr { page-break-inside: avoid; break-inside: avoid; }
thead { display: table-header-group; }
tfoot td { font-weight: bold; }
.warning { border: 3px solid #c00; color: #c00; background: #fff0f0; padding: .5em .8em;
           margin: .5em 0; font-weight: bold; }
.ok { border: 1px solid #2a7a2a; padding: .5em .8em; margin: .5em 0; }
.tlp { display: inline-block; padding: 0 .3em; border: 1px solid #111; font-weight: bold;
       white-space: nowrap; }
.tlp-clear { background: #fff; }
.tlp-green { background: #33ff00; }
.tlp-amber, .tlp-amber-strict { background: #ffc000; }
.tlp-red { background: #ff2b2b; }
footer { margin-top: 2em; font-size: 8.5pt; color: #444; }
@media print {
  body { margin: 0; max-width: none; padding: 0; }
  .warning, .tlp { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(value: object) -> str:
    """``value`` as escaped HTML text (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _period(since: int | None, until: int | None) -> str:
    if since is not None and until is not None:
        return f"from {from_micros(since)} to {from_micros(until)} (exclusive)"
    if since is not None:
        return f"from {from_micros(since)} on"
    if until is not None:
        return f"before {from_micros(until)}"
    return "the whole log"


def _tlp_badge(level: str) -> str:
    css = "tlp-" + "".join(ch if ch.isalnum() else "-" for ch in level)
    return f'<span class="tlp {_e(css)}">TLP:{_e(level.upper())}</span>'


def _count_table(headers: tuple[str, ...], rows: list[tuple[str, ...]], counts: list[int],
                 total: int) -> str:
    """A table of labelled counts with a total line; the label cells are HTML already."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + f'<td class="n">{n}</td></tr>'
        for cells, n in zip(rows, counts, strict=True)
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers) + 1}">None.</td></tr>'
    return (
        f'<table><thead><tr>{head}<th class="n">Disclosures</th></tr></thead>'
        f"<tbody>{body}</tbody>"
        f'<tfoot><tr><td colspan="{len(headers)}">Total</td>'
        f'<td class="n">{total}</td></tr></tfoot></table>'
    )


def _verification_html(report: DisclosureReport) -> str:
    checkpoint = report.checkpoint
    if checkpoint is None:
        return (
            '<p class="warning" role="alert">WARNING: NOT verified against a checkpoint. '
            "These disclosures were read from the ledger without checking them against a "
            "signed checkpoint; the report is not evidence that the log holds them "
            "unaltered.</p>"
        )
    root = base64.b64encode(checkpoint.root).decode("ascii")
    parts = [
        '<p class="ok">Verified against this signed checkpoint of the audit log:</p>',
        '<dl class="facts">',
        f"<dt>Origin</dt><dd><code>{_e(checkpoint.origin)}</code></dd>",
        f"<dt>Size</dt><dd>{checkpoint.size} records</dd>",
        f"<dt>Root (base64)</dt><dd><code>{_e(root)}</code></dd>",
        "</dl>",
    ]
    if report.covered:
        parts.append(
            f"<p>Every disclosure listed is in a record below {checkpoint.size}, inside the "
            "part of the log the checkpoint signs.</p>"
        )
    else:
        outside = sum(1 for row in report.rows if row.seq >= checkpoint.size)
        parts.append(
            '<p class="warning" role="alert">WARNING: not covered by the checkpoint. '
            f"{outside} of the {report.total} disclosures are in records at or after "
            f"{checkpoint.size}, newer than the checkpoint; they are not verified.</p>"
        )
    return "\n".join(parts)


def _disclosures_html(rows: tuple[ReportRow, ...]) -> str:
    if not rows:
        return "<p>No disclosure matches.</p>"
    head = (
        '<tr><th class="n">Seq</th><th>Time</th><th>Recipient (org / account)</th>'
        "<th>Channel</th><th>Collection</th><th>Object (id / version)</th>"
        "<th>Object digest</th><th>Producer</th><th>TLP</th>"
        "<th>Policy digest / rule</th><th>Request</th></tr>"
    )
    lines = []
    for row in rows:
        digest = "(metadata only)" if row.object_digest is None else row.object_digest
        producer = UNKNOWN_PRODUCER if row.producer_org is None else row.producer_org
        lines.append(
            "<tr>"
            f'<td class="n">{row.seq}</td>'
            f'<td class="mono">{_e(from_micros(row.time))}</td>'
            f"<td>{_e(row.recipient_org)}<br>{_e(row.recipient_account)}</td>"
            f'<td class="mono">{_e(row.channel)}</td>'
            f'<td class="mono">{_e(row.collection)}</td>'
            f'<td class="mono">{_e(row.object_id)}<br>{_e(from_micros(row.object_version))}</td>'
            f'<td class="mono">{_e(digest)}</td>'
            f"<td>{_e(producer)}</td>"
            f"<td>{_tlp_badge(row.tlp)}</td>"
            f'<td><span class="mono">{_e(row.policy_digest)}</span><br>{_e(row.rule)}</td>'
            f'<td class="mono">{_e(row.request_id)}</td>'
            "</tr>"
        )
    return (
        f'<table class="rows"><thead>{head}</thead><tbody>\n'
        + "\n".join(lines)
        + "\n</tbody></table>"
    )


def render_html(report: DisclosureReport) -> str:
    """The report as one standalone HTML5 page, readable on screen and on paper.

    The page has inline CSS only (no script, no external resource; its Content Security
    Policy forbids both) and escapes every value with :func:`html.escape`. It shows the
    summary, the checkpoint the report was verified against (or a warning that it was
    not, or that some rows are newer than it), the totals per TLP level, per producer and
    per policy digest and rule, then every disclosure.

    Args:
        report: The report.

    Returns:
        The page.
    """
    recipient = report.recipient if report.recipient is not None else "all recipients"
    period = _period(report.since, report.until)
    title = f"Disclosures to {recipient}, {period}"
    if report.first_seq is None:
        span = "none"
    else:
        span = f"{report.records} (seq {report.first_seq} to {report.last_seq})"
    summary = (
        '<dl class="facts">'
        f"<dt>Recipient</dt><dd>{_e(recipient)}</dd>"
        f"<dt>Period</dt><dd>{_e(period)}</dd>"
        f"<dt>Disclosures</dt><dd>{report.total}</dd>"
        f"<dt>Audit records</dt><dd>{_e(span)}</dd>"
        f"<dt>Generated at</dt><dd>{_e(from_micros(report.generated_at))}</dd>"
        "</dl>"
    )
    tlp_table = _count_table(
        ("TLP level",),
        [(_tlp_badge(level),) for level in report.by_tlp],
        list(report.by_tlp.values()),
        report.total,
    )
    producer_table = _count_table(
        ("Producer",),
        [(_e(name),) for name in report.by_producer],
        list(report.by_producer.values()),
        report.total,
    )
    rule_table = _count_table(
        ("Policy digest", "Rule"),
        [(f"<code>{_e(digest)}</code>", _e(rule)) for digest, rule in report.by_rule],
        list(report.by_rule.values()),
        report.total,
    )
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>Disclosures to {_e(recipient)}</h1>",
        f'<p class="period">{_e(period)}</p>',
        "</header>",
        "<section><h2>Summary</h2>",
        summary,
        "</section>",
        "<section><h2>Verification</h2>",
        _verification_html(report),
        "</section>",
        "<section><h2>Disclosures per TLP level</h2>",
        tlp_table,
        "</section>",
        "<section><h2>Disclosures per producer</h2>",
        producer_table,
        "</section>",
        "<section><h2>Disclosures per policy and rule</h2>",
        rule_table,
        "</section>",
        "<section><h2>Disclosures</h2>",
        _disclosures_html(report.rows),
        "</section>",
        f"<footer>{_e(REPORT_FORMAT)}; times are UTC; a disclosure is one object version "
        "made available to one recipient.</footer>",
        "</body>",
        "</html>",
        "",
    ])
