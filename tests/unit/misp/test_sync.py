"""One sync run and the state it records (exchange.misp.sync.run_target), with stand-in
push and pull functions over a real node on SQLite; MISP itself is never reached here
(tests/integration/test_misp_faults.py runs the real client against real MISP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.errors import AuthError, ConfigError, NotFound, RemoteError
from exchange.misp.report import MAX_ITEMS, Outcome
from exchange.misp.sync import (
    directions_for,
    load_node_targets,
    open_node,
    run_target,
    runner_for,
    target_named,
)
from exchange.misp.targets import MispTarget
from exchange.node.service import Exchange
from tests.unit.misp.synchome import KEY_ENV, fake_run, make_home, targets_yaml

KEY = "k3y-that-must-never-show-0123456789abcdef"
T0 = 1_780_000_000_000_000


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    monkeypatch.setenv(KEY_ENV, KEY)
    settings = make_home(tmp_path / "home")
    with open_node(settings) as ex:
        yield ex


def pk(node: Exchange) -> MispTarget:
    return target_named(load_node_targets(node.settings, node), "pk-cert-misp")


def test_an_ok_run_records_cursor_counts_and_reasons(node: Exchange) -> None:
    report = run_target(node, pk(node), "push", now=T0,
                        runners={"push": fake_run({"created": 2, "unchanged": 0},
                                                  skipped=2, cursor="100")})
    assert report.outcome is Outcome.OK
    state = node.store.misp_state("pk-cert-misp", "push")
    assert state is not None
    assert (state.outcome, state.cursor, state.failures) == ("ok", "100", 0)
    assert state.counts == {"created": 2, "skipped": 2}
    assert state.message == "created 2, skipped 2"
    assert [r["rule"] for r in state.reasons] == ["tlp-ceiling", "tlp-ceiling"]
    assert state.reasons[0]["kind"] == "skipped"
    assert (state.last_started, state.last_finished) == (T0, T0)
    assert node.store.misp_state("pk-cert-misp", "pull") is None


def test_a_dry_run_writes_nothing(node: Exchange) -> None:
    calls: list[str] = []
    report = run_target(node, pk(node), "push", dry_run=True,
                        runners={"push": fake_run({"created": 1}, plan=["add event e1"],
                                                  calls=calls)})
    assert calls == ["pk-cert-misp dry_run=True"]
    assert report.plan == ["add event e1"]
    assert node.store.misp_state("pk-cert-misp", "push") is None


def test_a_failed_run_keeps_the_cursor_and_counts_failures(node: Exchange) -> None:
    target = pk(node)
    run_target(node, target, "pull", runners={"pull": fake_run(cursor="7", direction="pull")})
    down = fake_run(error=RemoteError("MISP target 'pk-cert-misp': reading events timed out"))
    for expected in (1, 2, 3):
        report = run_target(node, target, "pull", runners={"pull": down})
        assert report.outcome is Outcome.FAILED
        state = node.store.misp_state("pk-cert-misp", "pull")
        assert state is not None
        assert (state.cursor, state.failures, state.outcome) == ("7", expected, "failed")
        assert "timed out" in state.message
    run_target(node, target, "pull", runners={"pull": fake_run(cursor="9", direction="pull")})
    state = node.store.misp_state("pk-cert-misp", "pull")
    assert state is not None
    assert (state.cursor, state.failures, state.outcome) == ("9", 0, "ok")


def test_a_partial_run_stores_its_cursor_and_counts_as_a_failure(node: Exchange) -> None:
    run_target(node, pk(node), "push", runners={"push": fake_run(failed=1, cursor="50")})
    state = node.store.misp_state("pk-cert-misp", "push")
    assert state is not None
    assert (state.outcome, state.cursor, state.failures) == ("partial", "50", 1)
    assert state.reasons[0]["kind"] == "failed"


def test_auth_failure_and_a_missing_key_stop_the_job(node: Exchange,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    refused = fake_run(error=AuthError("MISP target 'pk-cert-misp': MISP refused the API key"))
    report = run_target(node, pk(node), "push", runners={"push": refused})
    assert report.outcome is Outcome.AUTH_FAILED
    assert "stops until the key or the targets file changes" in report.message
    monkeypatch.delenv(KEY_ENV)
    report = run_target(node, pk(node), "push", runners={"push": fake_run()})
    assert report.outcome is Outcome.AUTH_FAILED
    assert f"no API key in environment variable {KEY_ENV}" in report.message
    state = node.store.misp_state("pk-cert-misp", "push")
    assert state is not None
    assert (state.outcome, state.failures) == ("auth-failed", 2)


def test_the_key_never_reaches_the_state(node: Exchange) -> None:
    leaky = fake_run(error=RemoteError(f"MISP said: bad key {KEY}"))
    report = run_target(node, pk(node), "push", runners={"push": leaky})
    state = node.store.misp_state("pk-cert-misp", "push")
    assert state is not None
    assert KEY not in report.message
    assert KEY not in repr(state)
    assert "bad key ***" in state.message


def test_reasons_are_capped_but_counts_cover_all(node: Exchange) -> None:
    run_target(node, pk(node), "push",
               runners={"push": fake_run(skipped=MAX_ITEMS + 5)})
    state = node.store.misp_state("pk-cert-misp", "push")
    assert state is not None
    assert len(state.reasons) == MAX_ITEMS
    assert state.counts["skipped"] == MAX_ITEMS + 5


def test_an_unexpected_error_fails_the_run_not_the_caller(node: Exchange) -> None:
    report = run_target(node, pk(node), "push", runners={"push": fake_run(
        error=KeyError("Attribute"))})
    assert report.outcome is Outcome.FAILED
    assert report.message == "internal error (KeyError); see the log"


def test_a_missing_push_module_is_a_clear_failure(node: Exchange) -> None:
    report = run_target(node, pk(node), "push",
                        runners={"push": "exchange.misp.not_here:run_push"})
    assert report.outcome is Outcome.FAILED
    assert report.message == ("MISP push is not available in this installation"
                              " (exchange.misp.not_here is missing)")
    with pytest.raises(ConfigError, match="unknown sync direction 'sideways'"):
        runner_for("sideways")


def test_directions_follow_the_target(node: Exchange) -> None:
    targets = load_node_targets(node.settings, node)
    uz = target_named(targets, "uz-cert-misp")
    assert directions_for(pk(node)) == ["push", "pull"]
    assert directions_for(uz, "both") == ["push"]
    with pytest.raises(ConfigError, match="'uz-cert-misp' is set up for push, not pull"):
        run_target(node, uz, "pull", runners={"pull": fake_run()})
    with pytest.raises(NotFound, match=r"no MISP target 'nope' \(configured: pk-cert-misp,"
                                       r" uz-cert-misp\)"):
        target_named(targets, "nope")


def test_targets_are_checked_against_the_policy(tmp_path: Path) -> None:
    settings = make_home(tmp_path / "h", targets=targets_yaml().replace(
        "owner: PK-CERT", "owner: ACME-CERT"))
    with pytest.raises(ConfigError, match="'ACME-CERT' is not a member of community"):
        load_node_targets(settings)


def test_no_targets_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_home(tmp_path / "h")
    (tmp_path / "h" / "exchange.toml").write_text("")
    from exchange.config import load_settings  # noqa: PLC0415

    with pytest.raises(ConfigError, match="no MISP targets: set misp_targets"):
        load_node_targets(load_settings(settings.home, env={}))
