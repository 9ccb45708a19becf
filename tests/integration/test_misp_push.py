"""The push client against real MISP 2.5.1 through the real PyMISP client.

Two real STIX 2.1 bundles (../shared/data/real/stix21, read in place) are mapped for a
MISP instance owned by PK-CERT under the shipped policies/, pushed with
:class:`exchange.misp.client.MispClient` to the session's real MISP, and read back with
plain PyMISP: UUIDs, attribute types and values, TLP tags, distribution. A second push
writes nothing; a soft delete reads back as deleted; refusals and an unreachable MISP
become ExchangeErrors that never carry the API key.

The instance keeps its data between sessions (the fixture stops it, it does not reset
it), so each run gives the bundles' non-marking, non-identity ids a fresh UUID of its own
(everything else is the real content) and groups loose indicators one event each (event
UUIDs named under the indicator's): every run creates its events afresh.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymisp import PyMISP

from exchange.errors import AuthError, NotFound, RemoteError
from exchange.misp.client import MispClient, MispRefused, PushResult, Retry, read_api_key
from exchange.misp.targets import (
    Direction,
    EventGrouping,
    MispTarget,
    Schedule,
    TargetFilters,
)
from exchange.model.objects import Tlp
from exchange.node.mispmap import (
    DISTRIBUTION,
    MispEvent,
    PushMapping,
    PushOptions,
    SourceObject,
    map_for_target,
)
from exchange.policy import Recipient
from exchange.policy.load import load_policies
from tests.integration.conftest import Misp, free_port

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "real" / "stix21"
PK = Recipient("PK-CERT", "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb", None, None,
               "misp", "misp")
NOW = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000
KEY_ENV = "CX_TEST_MISP_KEY"
_ID = re.compile(r'"((?!identity|marking-definition)[a-z0-9-]+)--([0-9a-f-]{36})"')


def target(url: str, timeout: float = 20.0) -> MispTarget:
    return MispTarget("pk-cert-misp", url, None, KEY_ENV, "PK-CERT", Direction.PUSH,
                      Schedule(interval=900), TargetFilters(), None, timeout,
                      EventGrouping.PRODUCER_DAY)


def fresh(name: str, salt: uuid.UUID) -> list[dict[str, Any]]:
    """A real bundle's objects with this run's ids (references rewritten alike)."""
    text = (REAL / name).read_text()
    text = _ID.sub(lambda m: f'"{m[1]}--{uuid.uuid5(salt, m[2])}"', text)
    objects: list[dict[str, Any]] = json.loads(text)["objects"]
    return objects


@pytest.fixture(scope="module")
def mapping() -> PushMapping:
    salt = uuid.uuid4()
    offered = [SourceObject(o, "UZ-CERT", "jwg", Tlp.GREEN)
               for o in fresh("indicator-for-malicious-url.json", salt)]
    offered += [SourceObject(o, "UZ-CERT", "jwg", Tlp.AMBER)
                for o in fresh("poisonivy.json", salt)]
    result = map_for_target(offered, policy=load_policies(REPO / "policies"), recipient=PK,
                            options=PushOptions(grouping=EventGrouping.INDICATOR), now=NOW)
    assert len(result.events) >= 2
    assert all(e.complete for e in result.events)
    return result


@pytest.fixture(scope="module")
def client(misp_uz: Misp) -> MispClient:
    return MispClient(target(misp_uz.url), read_api_key(target(misp_uz.url),
                                                         {KEY_ENV: misp_uz.key}))


@pytest.fixture(scope="module")
def reader(misp_uz: Misp) -> PyMISP:
    return PyMISP(misp_uz.url, misp_uz.key, timeout=20)


@pytest.fixture(scope="module")
def pushed(client: MispClient, mapping: PushMapping) -> list[PushResult]:
    return [client.push_event(e) for e in mapping.events]


def read_back(reader: PyMISP, event: MispEvent) -> dict[str, Any]:
    answer = reader.get_event(event.uuid, deleted=True)
    assert isinstance(answer, dict), answer
    assert "Event" in answer, answer
    held: dict[str, Any] = answer["Event"]
    return held


def tags(item: dict[str, Any]) -> set[str]:
    return {t["name"] for t in item.get("Tag", [])}


def test_push_creates_the_mapped_events(pushed: list[PushResult], mapping: PushMapping,
                                        reader: PyMISP) -> None:
    assert pushed == [PushResult.CREATED] * len(mapping.events)
    seen_levels = set()
    for event in mapping.events:
        held = read_back(reader, event)
        assert held["uuid"] == event.uuid
        assert held["info"] == event.body["info"]
        assert held["distribution"] == event.body["distribution"]
        assert tags(held) >= {t["name"] for t in event.body["Tag"]}
        by_uuid = {a["uuid"]: a for a in held["Attribute"]}
        assert set(by_uuid) == {a["uuid"] for a in event.body["Attribute"]}
        for sent in event.body["Attribute"]:
            got = by_uuid[sent["uuid"]]
            assert (got["type"], got["value"], got["to_ids"]) == \
                (sent["type"], sent["value"], sent["to_ids"])
            assert got["distribution"] == sent["distribution"]
            assert got["deleted"] is False
            # Its own tag, or (at the event's level) the event's, which applies to it.
            own = [Tlp(t[4:]) for t in tags(got) if t.startswith("tlp:")]
            of_event = [Tlp(t[4:]) for t in tags(held) if t.startswith("tlp:")]
            assert len(own) <= 1
            assert len(of_event) == 1
            level = own[0] if own else of_event[0]
            seen_levels.add(level)
            assert level.rank >= of_event[0].rank  # never wider than the event says
            expected = DISTRIBUTION[level] if level is not Tlp.AMBER else 0  # no SG given
            assert got["distribution"] == str(expected)
    # The real indicators arrive as typed attributes (a URL, file hashes), not as text.
    values = {(a["type"], a["value"]) for e in mapping.events for a in e.body["Attribute"]}
    assert ("url", "http://x4z9arb.cn/4712/") in values
    assert seen_levels == {Tlp.GREEN, Tlp.AMBER}


def test_second_push_writes_nothing(pushed: list[PushResult], client: MispClient,
                                    mapping: PushMapping, reader: PyMISP) -> None:
    before = {e.uuid: read_back(reader, e) for e in mapping.events}
    again = [client.push_event(e) for e in mapping.events]
    assert again == [PushResult.UNCHANGED] * len(mapping.events)
    for event in mapping.events:
        after = read_back(reader, event)
        assert after["timestamp"] == before[event.uuid]["timestamp"]
        assert [(a["uuid"], a["timestamp"]) for a in after["Attribute"]] == \
            [(a["uuid"], a["timestamp"]) for a in before[event.uuid]["Attribute"]]


def test_soft_delete_reads_back_deleted(pushed: list[PushResult], client: MispClient,
                                        mapping: PushMapping, reader: PyMISP) -> None:
    event = mapping.events[0]
    victim = event.body["Attribute"][0]["uuid"]
    before = read_back(reader, event)
    time.sleep(1.1)  # MISP's stamps are in seconds: a publish now is a later stamp
    # An attribute the event does not hold is left out; the edit deletes and publishes.
    assert client.delete_attributes(event.uuid, [victim, str(uuid.uuid4())],
                                    publish=True) == 1
    after = read_back(reader, event)
    held = {a["uuid"]: a for a in after["Attribute"]}
    assert held[victim]["deleted"] is True
    assert all(not a["deleted"] for u, a in held.items() if u != victim)
    # MISP published on the edit (its own publish, as its sync does): a new stamp.
    assert after["published"] in (True, 1, "1")
    assert int(after["publish_timestamp"]) > int(before["publish_timestamp"])
    # Deleting again is a no-op without a request, and the next push leaves it deleted.
    assert client.delete_attributes(event.uuid, [victim], publish=True) == 0
    assert client.push_event(event) is PushResult.UNCHANGED
    assert read_back(reader, event)["Attribute"][0]["deleted"] is True
    with pytest.raises(NotFound, match="is not on the target"):
        client.delete_attributes(str(uuid.uuid4()), [victim], publish=True)


def test_missing_event_reads_as_none(client: MispClient) -> None:
    assert client.get_event(str(uuid.uuid4())) is None


def test_wrong_key_is_an_auth_error_without_the_key(misp_uz: Misp) -> None:
    wrong = "x" * 40
    bad = MispClient(target(misp_uz.url), wrong)
    with pytest.raises(AuthError) as caught:
        bad.get_event(str(uuid.uuid4()))
    assert wrong not in str(caught.value)
    assert misp_uz.key not in str(caught.value)
    assert "pk-cert-misp" in str(caught.value)
    assert wrong not in repr(bad)


def test_refused_connection_is_a_remote_error(misp_uz: Misp) -> None:
    down = MispClient(target(f"http://127.0.0.1:{free_port()}", timeout=3), misp_uz.key)
    with pytest.raises(RemoteError, match="connecting failed: MISP could not be reached") as caught:
        down.get_event(str(uuid.uuid4()))
    assert misp_uz.key not in str(caught.value)


def test_construction_makes_no_request(misp_uz: Misp) -> None:
    calls: list[str] = []

    def factory(*args: Any, **kwargs: Any) -> PyMISP:
        calls.append(str(args[0]))
        raise AssertionError("PyMISP built too early")

    MispClient(target(misp_uz.url), misp_uz.key, factory=factory)
    assert calls == []


def test_connecting_ahead_builds_pymisp_once_on_a_worker(misp_uz: Misp) -> None:
    """The push starts PyMISP's constructor (four requests) while it reads its store; the
    first operation uses that client, built once, off the caller's thread."""
    threads: list[str] = []

    def factory(*args: Any, **kwargs: Any) -> PyMISP:
        threads.append(threading.current_thread().name)
        return PyMISP(*args, **kwargs)

    ahead = MispClient(target(misp_uz.url), misp_uz.key, factory=factory)
    ahead.connect_ahead()
    ahead.connect_ahead()
    assert ahead.get_event(str(uuid.uuid4())) is None
    assert ahead.is_sync_user() in (True, False)
    assert len(threads) == 1
    assert threads[0] != threading.current_thread().name


@pytest.mark.parametrize("kind", ["wrong-key", "refused"])
def test_a_failure_while_connecting_ahead_is_raised_by_the_first_operation(
        misp_uz: Misp, kind: str) -> None:
    if kind == "wrong-key":
        ahead = MispClient(target(misp_uz.url), "x" * 40)
        expected: type[Exception] = AuthError
    else:
        ahead = MispClient(target(f"http://127.0.0.1:{free_port()}", timeout=3),
                           misp_uz.key, retry=Retry(attempts=2, base=0.01))
        expected = RemoteError
    ahead.connect_ahead()
    with pytest.raises(expected) as caught:
        ahead.get_event(str(uuid.uuid4()))
    assert "connecting" in str(caught.value) or "API key" in str(caught.value)
    assert misp_uz.key not in str(caught.value)


def test_attribute_misp_drops_is_reported(client: MispClient) -> None:
    event_uuid = str(uuid.uuid4())
    bad = MispEvent(event_uuid, {
        "uuid": event_uuid, "info": "cert-exchange test: a type MISP does not know",
        "date": "2026-06-01", "distribution": "0", "threat_level_id": "4",
        "analysis": "2",
        "Attribute": [{"uuid": str(uuid.uuid4()), "type": "no-such-type",
                       "category": "Network activity", "value": "x", "to_ids": True,
                       "distribution": "0"}],
    })
    with pytest.raises(MispRefused, match="dropped 1 attribute") as caught:
        client.push_event(bad)
    assert "MISP target 'pk-cert-misp'" in str(caught.value)
    assert bad.body["Attribute"][0]["uuid"] in str(caught.value)
