"""``exchange sync run`` and ``exchange sync status`` as an operator uses them, with
stand-in push and pull runs (tests/unit/misp/synchome.py) over a real home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import main
from exchange.errors import RemoteError
from exchange.misp import sync as sync_module
from tests.unit.misp.synchome import KEY_ENV, fake_run, make_home

KEY = "k3y-that-must-never-show-0123456789abcdef"
SKIP_LINE = ("    indicator--00000000-0000-4000-8000-000000000000: TLP:RED is above the"
             " target's ceiling amber")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    make_home(tmp_path / "home")
    return tmp_path / "home"


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args],
                                env={"EXCHANGE_SERVER_SECRET": None, KEY_ENV: KEY})
    return result.exit_code, result.stdout, result.stderr


def test_run_prints_counts_and_every_skipped_item(home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sync_module.RUNNERS, "push",
                        fake_run({"created": 2, "updated": 1}, skipped=2, cursor="100"))
    code, out, _ = cli(home, "sync", "run", "pk-cert-misp", "--direction", "push")
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["push pk-cert-misp: ok", "  created 2, skipped 2, updated 1",
                         "  cursor: (start) -> 100"]
    assert lines[3:5] == ["  skipped 2 [tlp-ceiling]:", SKIP_LINE]
    assert len(lines) == 6
    code, out, _ = cli(home, "sync", "status")
    assert code == 0
    assert "pk-cert-misp push: ok, last run 20" in out
    assert "  created 2, updated 1, skipped 2, failed 0" in out
    assert "  cursor: 100" in out
    assert SKIP_LINE in out


def test_a_dry_run_says_what_would_be_done_and_writes_nothing(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sync_module.RUNNERS, "push", fake_run(
        {"created": 1}, skipped=1, plan=["add event 5e1c... (3 attributes): new since the"
                                         " cursor, TLP:GREEN -> distribution 1"]))
    code, out, _ = cli(home, "sync", "run", "pk-cert-misp", "--direction", "push",
                       "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == "push pk-cert-misp: ok (dry run: nothing was written)"
    assert ("  would: add event 5e1c... (3 attributes): new since the cursor, TLP:GREEN ->"
            " distribution 1") in out
    assert SKIP_LINE in out
    _, status, _ = cli(home, "sync", "status", "--json")
    rows = json.loads(status)["targets"]
    assert {r["outcome"] for r in rows} == {"never"}


def test_both_directions_run_and_a_failure_exits_1(home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sync_module.RUNNERS, "push", fake_run({"unchanged": 3}))
    monkeypatch.setitem(sync_module.RUNNERS, "pull", fake_run(error=RemoteError(
        "MISP target 'pk-cert-misp' (http://127.0.0.1:9): searching events failed:"
        " connection refused (ConnectionError) (after 4 attempts)"), direction="pull"))
    code, out, _ = cli(home, "sync", "run", "pk-cert-misp", "--json")
    assert code == 1
    runs = json.loads(out)
    assert [(r["direction"], r["outcome"]) for r in runs] == [("push", "ok"),
                                                              ("pull", "failed")]
    assert runs[1]["message"].endswith("connection refused (ConnectionError) (after 4"
                                       " attempts)")
    _, status, _ = cli(home, "sync", "status", "--json")
    rows = {(r["target"], r["direction"]): r for r in json.loads(status)["targets"]}
    assert list(rows) == [("pk-cert-misp", "push"), ("pk-cert-misp", "pull"),
                          ("uz-cert-misp", "push")]
    pull = rows["pk-cert-misp", "pull"]
    assert pull["outcome"] == "failed"
    assert pull["failures"] == 1
    assert pull["counts"] == {"created": 0, "updated": 0, "skipped": 0, "failed": 0}
    assert pull["resting"].startswith("backing off after 1 failed run(s) until ")
    assert rows["pk-cert-misp", "push"]["counts"]["unchanged"] == 3
    assert rows["uz-cert-misp", "push"]["outcome"] == "never"
    assert KEY not in status


def test_status_groups_many_skipped_items_by_rule_and_json_has_them_all(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sync_module.RUNNERS, "push", fake_run(skipped=25, failed=2))
    code, _, _ = cli(home, "sync", "run", "pk-cert-misp", "--direction", "push")
    assert code == 1  # partial
    code, out, _ = cli(home, "sync", "status")
    assert code == 0
    lines = out.splitlines()
    failed = lines.index("  failed 2 [misp-refused]:")
    skipped = lines.index("  skipped 25 [tlp-ceiling]:")
    assert failed < skipped  # failures first
    assert lines[failed + 1] == ("    indicator--00000000-1111-4000-8000-000000000000: MISP"
                                 " refused the attribute: value is not a valid ip-dst")
    assert lines[skipped + 1] == SKIP_LINE
    listed = lines[skipped + 1:skipped + 11]
    assert all(line.startswith("    indicator--") for line in listed)
    assert lines[skipped + 11] == "    and 15 more (--json lists them all)"
    _, status, _ = cli(home, "sync", "status", "--json")
    [push] = [r for r in json.loads(status)["targets"]
              if (r["target"], r["direction"]) == ("pk-cert-misp", "push")]
    assert len(push["reasons"]) == 27
    assert {(r["kind"], r["rule"]) for r in push["reasons"]} == {
        ("skipped", "tlp-ceiling"), ("failed", "misp-refused")}
    assert all(r["reason"] for r in push["reasons"])


def test_status_text_lists_every_target_and_direction(home: Path) -> None:
    code, out, _ = cli(home, "sync", "status")
    assert code == 0
    assert [line for line in out.splitlines() if not line.startswith(" ")] == [
        "pk-cert-misp push: never, last run never, next run not scheduled",
        "pk-cert-misp pull: never, last run never, next run not scheduled",
        "uz-cert-misp push: never, last run never, next run not scheduled"]


def test_unknown_target_or_direction_is_a_clear_error(home: Path) -> None:
    code, _, err = cli(home, "sync", "run", "nope")
    assert code == 1
    assert err.strip() == ("error: no MISP target 'nope' (configured: pk-cert-misp,"
                           " uz-cert-misp)")
    code, _, err = cli(home, "sync", "run", "uz-cert-misp", "--direction", "pull")
    assert code == 1
    assert err.strip() == "error: target 'uz-cert-misp' is set up for push, not pull"


def test_without_a_targets_file_run_explains_and_status_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_home(home)
    (home / "exchange.toml").write_text("")
    code, _, err = cli(home, "sync", "run", "pk-cert-misp")
    assert code == 1
    assert err.startswith("error: no MISP targets: set misp_targets in exchange.toml")
    code, out, _ = cli(home, "sync", "status")
    assert code == 0
    assert out.strip() == "no MISP targets configured (set misp_targets in exchange.toml)"


def test_status_names_each_broken_definitions_file_and_still_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_home(home, extra='taxii_sources = "sources.yaml"\nflat_feeds = "flat-feeds.yaml"\n')
    (home / "misp-targets.yaml").write_text("targets: {}\nextra: 1\n")
    (home / "sources.yaml").write_text("version: 2\nsources: {}\n")
    (home / "flat-feeds.yaml").write_text("")
    code, out, _ = cli(home, "sync", "status")
    assert code == 0
    assert f"targets file: {home}/misp-targets.yaml: extra: unknown key" in out
    assert f"sources file: {home}/sources.yaml: version: unsupported version 2 (use 1)" in out
    assert (f"flat feeds file: {home}/flat-feeds.yaml: top level: empty file; expected a"
            " mapping with 'feeds'") in out
    code, out, _ = cli(home, "sync", "status", "--json")
    status = json.loads(out)
    assert (status["targets"], status["sources"], status["feeds"]) == ([], [], [])
    assert "extra: unknown key" in status["problem"]
    assert "unsupported version 2" in status["sources_problem"]
    assert "empty file" in status["feeds_problem"]
