"""Grouped refusal output of ``exchange publish`` (exchange.cli.refusals)."""

from __future__ import annotations

from exchange.cli.refusals import format_refusals, group_refusals

SPEC = "spec_version is missing; this exchange accepts STIX 2.1 only"
AUTHOR = "created_by_ref identity--x is not your organisation's identity"
FAILURES = [(f"indicator--{i}", f"indicator--{i}: {SPEC}") for i in range(5)] + [
    ("attack-pattern--1", AUTHOR), ("attack-pattern--2", AUTHOR)]


def test_one_line_per_reason_most_frequent_first() -> None:
    assert format_refusals(FAILURES, verbose=False) == [
        f"  refused 5: {SPEC} (indicator--0, indicator--1, indicator--2, ... 2 more)",
        f"  refused 2: {AUTHOR} (attack-pattern--1, attack-pattern--2)",
        "  (one line per reason; --verbose or --json lists every object)",
    ]


def test_verbose_gives_every_object() -> None:
    lines = format_refusals(FAILURES, verbose=True)
    assert len(lines) == 7
    assert lines[0] == f"  refused indicator--0: {SPEC}"


def test_no_hint_when_nothing_was_folded() -> None:
    assert format_refusals(FAILURES[-1:], verbose=False) == [
        f"  refused 1: {AUTHOR} (attack-pattern--2)"]


def test_groups_for_json() -> None:
    groups = [g.as_json() for g in group_refusals(FAILURES)]
    assert groups[0] == {"reason": SPEC, "count": 5, "ids": [f"indicator--{i}" for i in range(5)]}
    assert groups[1]["count"] == 2
