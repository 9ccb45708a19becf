"""STIX 1.x XML input (exchange.member.stix1): the optional extra, and what is said without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.errors import InvalidInput
from exchange.member import stix1
from exchange.member.publishing import read_publishable
from exchange.model.limits import Limits

NO_EXTRA = "the stix1 extra is not installed: pip install 'cert-exchange[stix1]'"


def test_without_the_extra_the_message_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stix1, "elevator_version", lambda: None)
    xml = tmp_path / "feed.xml"
    xml.write_text('<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1"/>')
    with pytest.raises(InvalidInput) as caught:
        read_publishable(xml)
    assert caught.value.reason == (
        f"{xml}: STIX 1.x XML needs the optional stix2-elevator; install it with"
        " pip install 'cert-exchange[stix1]' (or convert the file to STIX 2.1 first)")


def test_xml_the_elevator_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("stix2elevator", reason=NO_EXTRA)
    with pytest.raises(InvalidInput, match="stix2-elevator could not convert it"):
        stix1.elevate_xml(b"<not-stix/>", Path("x.xml"), Limits())
