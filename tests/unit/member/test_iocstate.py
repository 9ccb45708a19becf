"""Tests for exchange.member.iocstate: an unchanged IOC is sent again unchanged."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.member.iocs import iocs_to_objects, parse_ioc_text
from exchange.member.iocstate import IocState
from exchange.model.objects import Tlp

ORG = "identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
FIRST = datetime(2026, 3, 1, 10, 0, 0, 123_000, tzinfo=UTC)
LATER = FIRST + timedelta(days=2)
KID = "sha256:" + "A" * 43


def generate(text: str, now: datetime, *, tlp: Tlp = Tlp.GREEN,
             valid_days: int | None = None) -> list[dict[str, object]]:
    return iocs_to_objects(parse_ioc_text(text), identity_id=ORG, tlp=tlp, now=now,
                           valid_days=valid_days)


def publish_once(state: IocState, text: str, now: datetime, **kw: object
                 ) -> tuple[list[dict[str, object]], set[str], set[str]]:
    kid = kw.pop("kid", None)
    valid_days = kw.get("valid_days")
    objects = generate(text, now, **kw)  # type: ignore[arg-type]
    settled = state.settle(objects, valid_days=valid_days, kid=kid, now=now)  # type: ignore[arg-type]
    state.remember(settled.objects, settled.digests, kid=kid)  # type: ignore[arg-type]
    return settled.objects, settled.unchanged, settled.new_versions


@pytest.fixture
def state(tmp_path: Path) -> IocState:
    s = IocState(tmp_path / "state" / "published-iocs.sqlite")
    yield s  # type: ignore[misc]
    s.close()


def test_an_unchanged_list_is_sent_byte_for_byte_as_before(state: IocState) -> None:
    first, unchanged, versions = publish_once(state, "evil.example\n203.0.113.7\n", FIRST)
    assert (unchanged, versions) == (set(), set())
    again, unchanged, versions = publish_once(state, "203.0.113.7\nevil.example\n", LATER)
    assert again == [first[1], first[0]]
    assert unchanged == {o["id"] for o in first}
    assert versions == set()


def test_a_changed_ioc_becomes_a_later_version_of_the_same_object(state: IocState) -> None:
    first, _, _ = publish_once(state, "evil.example\n203.0.113.7\n", FIRST)
    again, unchanged, versions = publish_once(
        state, "evil.example # now seen in phishing\n203.0.113.7\n", LATER)
    assert unchanged == {first[1]["id"]}
    assert versions == {first[0]["id"]}
    changed = again[0]
    assert changed["id"] == first[0]["id"]
    assert changed["created"] == first[0]["created"]
    assert changed["valid_from"] == first[0]["valid_from"]
    assert changed["modified"] == "2026-03-03T10:00:00.123Z"
    assert changed["description"] == "now seen in phishing"


@pytest.mark.parametrize("change", [
    pytest.param({"tlp": Tlp.AMBER}, id="tlp"),
    pytest.param({"valid_days": 30}, id="validity"),
    pytest.param({"kid": KID}, id="now-signed"),
])
def test_what_makes_a_new_version(state: IocState, change: dict[str, object]) -> None:
    publish_once(state, "evil.example\n", FIRST)
    _, unchanged, versions = publish_once(state, "evil.example\n", LATER, **change)
    assert unchanged == set()
    assert len(versions) == 1


def test_a_new_version_is_later_even_when_the_clock_is_not(state: IocState) -> None:
    publish_once(state, "evil.example\n", FIRST)
    again, _, _ = publish_once(state, "evil.example # changed\n", FIRST - timedelta(hours=1))
    assert again[0]["modified"] == "2026-03-01T10:00:00.124Z"


def test_refused_objects_are_not_remembered(state: IocState) -> None:
    objects = generate("evil.example\n203.0.113.7\n", FIRST)
    settled = state.settle(objects, valid_days=None, kid=None, now=FIRST)
    assert state.remember(settled.objects, settled.digests, kid=None,
                          refused=[objects[0]["id"]]) == 1
    _, unchanged, _ = publish_once(state, "evil.example\n203.0.113.7\n", LATER)
    assert unchanged == {objects[1]["id"]}


def test_the_state_file_is_private(state: IocState) -> None:
    publish_once(state, "evil.example\n", FIRST)
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.path.parent.stat().st_mode) == 0o700
