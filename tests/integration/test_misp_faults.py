"""Faults between the exchange and a real MISP 2.5.1, through the real PyMISP client.

A fault-injecting proxy of the tests' own (tests/integration/misp_proxy.py) stands between
:class:`~exchange.misp.client.MispClient` and the session's real MISP (``misp_uz``) and
answers with 5xx HTML pages, delays past the client's timeout, resets connections in the
middle of an answer, or stops listening. The operation is deliberately trivial (reading
an event this module created with PyMISP), so these tests say what the client and
:func:`~exchange.misp.sync.run_target` do with faults, whatever the push and pull do.

Shown: transient faults are retried with backoff and then succeed; too many become one
RemoteError naming the target and the operation, never the key; 4xx answers are not
retried; a wrong key makes the run ``auth-failed``, visible in ``exchange sync status``;
a failed run leaves the cursor where it was and counts the failures.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pymisp import MISPEvent, PyMISP

from exchange.cli.main import main
from exchange.errors import RemoteError
from exchange.misp.client import MispClient, PushResult, Retry
from exchange.misp.report import Outcome, RunReport
from exchange.misp.sync import load_node_targets, open_node, run_target, target_named
from exchange.misp.targets import MispTarget
from exchange.node.mispmap import MispEvent
from exchange.node.service import Exchange
from tests.integration.conftest import Misp
from tests.integration.misp_proxy import FaultProxy
from tests.unit.misp.synchome import KEY_ENV, make_home, targets_yaml

FAST = Retry(attempts=4, base=0.02, cap=0.1)
TARGET = "pk-cert-misp"


@pytest.fixture(scope="module")
def event_uuid(misp_uz: Misp) -> str:
    """An event on the real MISP, created with plain PyMISP."""
    event = MISPEvent()
    event.info = "cert-exchange fault tests"
    event.uuid = str(uuid.uuid4())
    event.add_attribute("ip-dst", "198.51.100.7")
    answer = PyMISP(misp_uz.url, misp_uz.key, timeout=20).add_event(event)
    assert isinstance(answer, dict), answer
    assert "Event" in answer, answer
    return event.uuid


@pytest.fixture
def proxy(misp_uz: Misp) -> Iterator[FaultProxy]:
    p = FaultProxy(misp_uz.url).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def node(tmp_path: Path, proxy: FaultProxy, misp_uz: Misp,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """A node whose target pk-cert-misp is the real MISP behind the proxy."""
    monkeypatch.setenv(KEY_ENV, misp_uz.key)
    home = tmp_path / "home"
    settings = make_home(home, targets=targets_yaml(pk_url=proxy.url,
                                                    uz_key_file=str(home / "uz.key")))
    with open_node(settings) as ex:
        yield ex


def target_of(node: Exchange) -> MispTarget:
    return target_named(load_node_targets(node.settings, node), TARGET)


def client_for(node: Exchange, key: str, retry: Retry = FAST) -> MispClient:
    return MispClient(target_of(node), key, retry=retry)


def reading(event: str) -> Any:
    """A pull stand-in whose only MISP call is reading one event; its cursor is the
    event's timestamp."""

    def run(node: Exchange, target: MispTarget, client: MispClient, *,
            dry_run: bool = False, now: int | None = None) -> RunReport:
        report = RunReport(target.name, "pull", dry_run=dry_run)
        held = client.get_event(event)
        assert held is not None
        report.counts["unchanged"] += 1
        report.cursor_after = str(held["timestamp"])
        return report

    return run


def test_5xx_answers_are_retried_then_the_call_succeeds(
        node: Exchange, proxy: FaultProxy, misp_uz: Misp, event_uuid: str,
        caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(node, misp_uz.key)
    assert client.get_event(event_uuid) is not None  # connected, through the proxy
    proxy.fail(2)
    forwarded = proxy.forwarded
    with caplog.at_level(logging.WARNING):
        event = client.get_event(event_uuid)
    assert event is not None
    assert event["uuid"] == event_uuid
    assert proxy.faults == 2
    assert proxy.forwarded == forwarded + 1
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(retries) == 2
    assert "attempt 3 of 4" in retries[-1]
    assert misp_uz.key not in caplog.text


def test_too_many_5xx_answers_fail_naming_the_target_not_the_key(
        node: Exchange, proxy: FaultProxy, misp_uz: Misp, event_uuid: str,
        caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(node, misp_uz.key, Retry(attempts=3, base=0.01, cap=0.02))
    caplog.set_level(logging.DEBUG)  # PyMISP logs headers and users (keys) at DEBUG
    assert client.get_event(event_uuid) is not None
    proxy.fail(50)
    with pytest.raises(RemoteError) as caught:
        client.get_event(event_uuid)
    message = caught.value.reason
    assert message.startswith(f"MISP target {TARGET!r} ({proxy.url}): reading event"
                              f" {event_uuid} failed: MISP answered with a server error")
    assert message.endswith("(after 3 attempts)")
    assert proxy.faults == 3
    assert misp_uz.key not in message
    assert "Authorization': '***'" in caplog.text
    assert misp_uz.key not in caplog.text


def test_a_4xx_answer_is_not_retried(node: Exchange, proxy: FaultProxy, misp_uz: Misp,
                                     event_uuid: str) -> None:
    client = client_for(node, misp_uz.key)
    assert client.get_event(event_uuid) is not None
    before = proxy.forwarded
    assert client.get_event(str(uuid.uuid4())) is None  # MISP's 404, as a dict
    assert proxy.forwarded == before + 1


def test_a_timeout_is_retried_and_too_many_fail(node: Exchange, proxy: FaultProxy,
                                                misp_uz: Misp, event_uuid: str) -> None:
    client = MispClient(_with_timeout(target_of(node), 1.0), misp_uz.key,
                        retry=Retry(attempts=2, base=0.01, cap=0.02))
    assert client.get_event(event_uuid) is not None
    proxy.slow(1, 3.0)
    assert client.get_event(event_uuid) is not None  # the second try is not delayed
    proxy.slow(5, 3.0)
    with pytest.raises(RemoteError) as caught:
        client.get_event(event_uuid)
    assert caught.value.reason == (
        f"MISP target {TARGET!r} ({proxy.url}): reading event {event_uuid} timed out after"
        " 1 s (after 2 attempts)")


def test_a_connection_reset_mid_answer_is_retried_and_too_many_fail(
        node: Exchange, proxy: FaultProxy, misp_uz: Misp, event_uuid: str) -> None:
    client = client_for(node, misp_uz.key, Retry(attempts=2, base=0.01, cap=0.02))
    assert client.get_event(event_uuid) is not None
    proxy.reset(1)
    assert client.get_event(event_uuid) is not None
    assert proxy.faults == 1
    proxy.reset(5)
    with pytest.raises(RemoteError) as caught:
        client.get_event(event_uuid)
    assert caught.value.reason.startswith(f"MISP target {TARGET!r} ({proxy.url}): reading"
                                          f" event {event_uuid} failed: ")
    assert any(words in caught.value.reason for words in
               ("broke off in the middle of MISP's answer", "connection reset or closed"))
    assert caught.value.reason.endswith("(after 2 attempts)")


def test_a_refused_connection_is_retried_until_misp_is_back(
        node: Exchange, proxy: FaultProxy, misp_uz: Misp, event_uuid: str) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # MISP comes back during the second wait
        waits.append(seconds)
        if len(waits) == 2:
            proxy.up()

    client = MispClient(target_of(node), misp_uz.key, retry=FAST, sleep=sleep)
    assert client.get_event(event_uuid) is not None
    proxy.down()
    assert client.get_event(event_uuid) is not None
    assert len(waits) == 2
    assert waits[1] > waits[0] or waits[1] == FAST.cap  # exponential backoff
    proxy.down()
    with pytest.raises(RemoteError) as caught:
        client_for(node, misp_uz.key).get_event(event_uuid)
    assert caught.value.reason == (
        f"MISP target {TARGET!r} ({proxy.url}): connecting failed: MISP could not be"
        " reached (connection refused, reset, timed out or TLS not verified)"
        " (after 4 attempts)")


def test_a_wrong_key_makes_the_run_auth_failed_in_sync_status(
        node: Exchange, proxy: FaultProxy, event_uuid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "W" * 40
    monkeypatch.setenv(KEY_ENV, wrong)
    before = proxy.forwarded
    report = run_target(node, target_of(node), "pull", runners={"pull": reading(event_uuid)})
    assert report.outcome is Outcome.AUTH_FAILED
    assert proxy.forwarded - before <= 4  # the constructor's few calls, never retried
    result = CliRunner().invoke(main, ["--home", str(node.settings.home), "sync", "status"],
                                env={"EXCHANGE_SERVER_SECRET": None})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    pull = next(i for i, line in enumerate(lines) if line.startswith(f"{TARGET} pull:"))
    assert lines[pull].startswith(f"{TARGET} pull: auth-failed, last run 20")
    assert f"MISP target {TARGET!r} ({proxy.url}): connecting: MISP refused the API key" \
        in result.output
    assert "stopped: the last run could not authenticate to MISP" in result.output
    assert wrong not in result.output
    data = json.loads(CliRunner().invoke(
        main, ["--home", str(node.settings.home), "sync", "status", "--json"],
        env={"EXCHANGE_SERVER_SECRET": None}).output)
    row = next(r for r in data["targets"] if (r["target"], r["direction"]) == (TARGET, "pull"))
    assert row["outcome"] == "auth-failed"
    assert row["failures"] == 1


def test_a_failed_run_keeps_the_cursor_and_counts_failures(
        node: Exchange, proxy: FaultProxy, misp_uz: Misp, event_uuid: str) -> None:
    target = target_of(node)
    runners = {"pull": reading(event_uuid)}
    client = client_for(node, misp_uz.key, Retry(attempts=2, base=0.01, cap=0.02))
    ok = run_target(node, target, "pull", client=client, runners=runners)
    assert ok.outcome is Outcome.OK, ok.message
    first = node.store.misp_state(TARGET, "pull")
    assert first is not None
    assert first.cursor is not None
    assert first.cursor.isdigit()
    proxy.fail(100)
    for failures in (1, 2):
        report = run_target(node, target, "pull", client=client, runners=runners)
        assert report.outcome is Outcome.FAILED
        state = node.store.misp_state(TARGET, "pull")
        assert state is not None
        assert (state.cursor, state.failures, state.outcome) == (first.cursor, failures,
                                                                 "failed")
        assert state.message.startswith(f"MISP target {TARGET!r}")
        assert "server error" in state.message
        assert misp_uz.key not in state.message
    proxy.heal()
    run_target(node, target, "pull", client=client, runners=runners)
    state = node.store.misp_state(TARGET, "pull")
    assert state is not None
    assert (state.cursor, state.failures, state.outcome) == (first.cursor, 0, "ok")


def _with_timeout(target: MispTarget, seconds: float) -> MispTarget:
    from dataclasses import replace  # noqa: PLC0415

    return replace(target, timeout=seconds)


def _big_event(count: int) -> MispEvent:
    """A new event of ``count`` attributes (enough to be added in parts), published, as
    the push maps one: MISP's numbers as strings, a UUID per attribute."""
    tag = uuid.uuid4().hex[:10]
    attributes = [{"uuid": str(uuid.uuid4()), "type": "domain", "category": "Network activity",
                   "value": f"part-{n}-{tag}.faults.example", "to_ids": True,
                   "distribution": "5", "comment": f"indicator {n}"} for n in range(count)]
    event_id = str(uuid.uuid4())
    body = {"uuid": event_id, "info": f"cert-exchange parts {tag}", "date": "2026-12-06",
            "distribution": "0", "threat_level_id": "4", "analysis": "2",
            "published": True, "Attribute": attributes}
    return MispEvent(event_id, body)


def _held(misp: Misp, event_uuid: str) -> dict[str, Any]:
    answer = PyMISP(misp.url, misp.key, timeout=60).get_event(event_uuid, deleted=True)
    assert isinstance(answer, dict), answer
    assert "Event" in answer, str(answer)[:300]
    event: dict[str, Any] = answer["Event"]
    return event


def test_a_large_new_event_is_added_in_parts_and_published_whole(
        node: Exchange, misp_uz: Misp) -> None:
    event = _big_event(450)
    client = client_for(node, misp_uz.key)
    before = int(time.time())
    assert client.push_event(event) is PushResult.CREATED
    held = _held(misp_uz, event.uuid)
    assert held["published"] in (True, 1, "1")
    # Published when whole: MISP's "published since" searches and feeds find it then.
    assert before <= int(held["publish_timestamp"]) <= int(time.time())
    assert {a["uuid"] for a in held["Attribute"]} == \
        {a["uuid"] for a in event.body["Attribute"]}
    assert {a["value"] for a in held["Attribute"]} == \
        {a["value"] for a in event.body["Attribute"]}
    assert client.push_event(event) is PushResult.UNCHANGED  # nothing to write again


def test_a_part_that_fails_leaves_the_event_unpublished_and_the_next_push_completes_it(
        node: Exchange, proxy: FaultProxy, misp_uz: Misp) -> None:
    event = _big_event(420)
    client = client_for(node, misp_uz.key)
    proxy.fail(1, 500, path="/attributes/add/")  # one part refused; the other goes in
    with pytest.raises(RemoteError, match=r"adding attributes .* server error"):
        client.push_event(event)
    partial = _held(misp_uz, event.uuid)
    assert partial["published"] in (False, 0, "0")  # never seen whole by MISP's sync
    assert 0 < len(partial["Attribute"]) < 420
    proxy.heal()
    assert client.push_event(event) is PushResult.UPDATED
    held = _held(misp_uz, event.uuid)
    assert held["published"] in (True, 1, "1")
    assert {a["uuid"] for a in held["Attribute"]} == \
        {a["uuid"] for a in event.body["Attribute"]}


def test_push_parts_1_adds_a_large_event_in_one_request(node: Exchange, misp_uz: Misp) -> None:
    from dataclasses import replace  # noqa: PLC0415

    calls: list[str] = []

    def factory(*args: Any, **kwargs: Any) -> PyMISP:
        api = PyMISP(*args, **kwargs)
        for name in ("add_event", "add_attribute"):
            real = getattr(api, name)
            setattr(api, name, lambda *a, _n=name, _r=real, **k: (calls.append(_n), _r(*a, **k))[1])
        return api

    event = _big_event(420)
    client = MispClient(replace(target_of(node), push_parts=1), misp_uz.key, factory=factory)
    assert client.push_event(event) is PushResult.CREATED
    assert calls == ["add_event"]
    held = _held(misp_uz, event.uuid)
    assert held["published"] in (True, 1, "1")
    assert len(held["Attribute"]) == 420
