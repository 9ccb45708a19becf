"""The event bodies the push sends MISP, byte for byte, against golden digests.

The push's mapping is tuned for speed (issue 19: the push must add almost nothing to
MISP's own time); these digests were taken before that tuning, so any change to the JSON
MISP receives, to which objects are mapped or skipped and why, or to the soft deletions
fails here. Inputs: every real STIX 2.1 file (when ../shared/data/real is present) and a
generated set that does not need it (simple, ``OR``, nested and qualified patterns,
quotes and backslashes, hashes, unknown paths, every TLP level, revocations, validity
windows, three producers over three days).

To re-take the digests after an intended change to the bodies:
``.venv/bin/python tests/unit/misp/test_push_bodies.py --write`` (and say why in the
commit).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[3]
if __name__ == "__main__":
    sys.path.insert(0, str(REPO))

from exchange.model.objects import Tlp  # noqa: E402
from exchange.model.tlp import TLP2_IDS  # noqa: E402
from exchange.node.mispmap import (  # noqa: E402
    NAMESPACE,
    EventGrouping,
    PushMapping,
    PushOptions,
    SourceObject,
    map_for_target,
)
from exchange.node.misppatterns import _observation_end  # noqa: E402
from exchange.policy import Recipient  # noqa: E402
from exchange.policy.load import load_policies  # noqa: E402

GOLDEN = REPO / "tests" / "vectors" / "misp-push" / "bodies.json"
REAL = REPO.parent / "shared" / "data" / "real"
REAL_FILES = sorted([*REAL.glob("stix21/*.json"), *REAL.glob("misp-stix/*stix21*.json")])
PK = Recipient("PK-CERT", "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb", None, None,
               "misp", "misp")
NOW = 1_780_272_000_000_000  # 2026-06-01, inside the shipped agreement's term
OPTIONS = PushOptions(sharing_groups={"uz-pk-jwg-2026": 7})

_VALUES = ["198.51.100.7", "2001:db8::1", "evil.example", "a_b.example.org",
           "http://x.example/a?b=c", "o'brien@example.org", "back\\slash.example",
           "domain with space.example", "d41d8cd98f00b204e9800998ecf8427e"]
_PATHS = ["ipv4-addr:value", "ipv6-addr:value", "domain-name:value", "url:value",
          "email-addr:value", "file:hashes.MD5", "file:hashes.'SHA-256'",
          "x509-certificate:issuer", "network-traffic:dst_port"]


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _pattern(rng: random.Random) -> str:
    def comparison() -> str:
        return f"{rng.choice(_PATHS)} = '{_escaped(rng.choice(_VALUES))}'"
    shape = rng.randrange(6)
    if shape == 0:
        return f"[{comparison()}]"
    if shape == 1:
        return f"[{comparison()} OR {comparison()}] OR [{comparison()}]"
    if shape == 2:
        return f"[{comparison()} AND {comparison()}]"
    if shape == 3:
        return f"([{comparison()}] OR [{comparison()}])"
    if shape == 4:
        return f"[{comparison()}] WITHIN 60 SECONDS"
    return f"  [ {comparison()}   OR{comparison()} ]  "


def generated() -> list[SourceObject]:
    """A fixed set of indicators of every kind the mapping handles."""
    rng = random.Random("cert-exchange push bodies")
    levels = [None, *Tlp]
    out = []
    for n in range(400):
        day = f"2026-03-0{1 + n % 3}"
        obj: dict[str, Any] = {
            "type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(NAMESPACE, f'golden/{n}')}",
            "created": f"{day}T10:00:00.000Z", "modified": f"{day}T1{n % 10}:00:00.000Z",
            "name": f"golden {n}", "pattern": _pattern(rng), "pattern_type": "stix",
            "pattern_version": "2.1", "valid_from": f"{day}T10:00:00Z",
        }
        level = levels[n % len(levels)]
        if level is not None:
            obj["object_marking_refs"] = [TLP2_IDS[level]]
        if n % 7 == 0:
            obj["valid_until"] = "2027-01-01T00:00:00Z"
        if n % 5 == 0:
            obj["description"] = "d" * (n * 3)
        if n % 11 == 0:
            obj["revoked"] = True
        producer = ("UZ-CERT", "PK-CERT", "KZ-CERT")[n % 3]
        out.append(SourceObject(obj, producer, "jwg", Tlp.GREEN,
                                received_earlier=n % 2 == 0))
    return out


def digest(result: PushMapping) -> str:
    """SHA-256 over everything the push takes from a mapping."""
    h = hashlib.sha256()
    for event in result.events:
        h.update(event.uuid.encode() + bytes([event.complete]) + event.to_json() + b"\n")
    for m in result.mapped:
        h.update(json.dumps([m.object_id, m.version, m.event_uuid, m.attribute_uuids,
                             m.tlp.value, m.decision.rule, m.deleted, m.notes,
                             m.collection]).encode() + b"\n")
    for s in result.skipped:
        h.update(json.dumps([s.object_id, s.object_type, s.version, s.rule,
                             s.reason]).encode() + b"\n")
    h.update(json.dumps(result.deletions).encode())
    return h.hexdigest()


def cases() -> dict[str, list[SourceObject]]:
    out = {"generated": generated()}
    for path in REAL_FILES:
        objects = json.loads(path.read_text())["objects"]
        out[f"{path.parent.name}/{path.name}"] = [
            SourceObject(o, "UZ-CERT", "jwg", Tlp.GREEN) for o in objects]
    return out


def digests() -> dict[str, str]:
    policy = load_policies(REPO / "policies")
    out = {}
    for name, sources in cases().items():
        for grouping in EventGrouping:
            options = PushOptions(grouping=grouping, sharing_groups=OPTIONS.sharing_groups)
            result = map_for_target(sources, policy=policy, recipient=PK, options=options,
                                    now=NOW)
            out[f"{name} {grouping.value}"] = digest(result)
    return out


def test_the_generated_set_maps_to_the_golden_bodies() -> None:
    golden = json.loads(GOLDEN.read_text())
    got = digests()
    names = [n for n in got if n.startswith("generated ")]
    assert {n: got[n] for n in names} == {n: golden[n] for n in names}


@pytest.mark.skipif(not REAL_FILES, reason=f"real data not found under {REAL}")
def test_the_real_files_map_to_the_golden_bodies() -> None:
    golden = json.loads(GOLDEN.read_text())
    got = digests()
    assert {n: v for n, v in got.items() if n in golden} == \
        {n: v for n, v in golden.items() if n in got}
    assert set(got) == set(golden)


def _walk(pattern: str, start: int) -> int:
    """The closing ``]`` found one character at a time (the specification)."""
    i, quoted = start + 1, False
    while i < len(pattern):
        ch = pattern[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == "'":
                quoted = False
        elif ch == "'":
            quoted = True
        elif ch in "[(":
            return -1
        elif ch == "]":
            return i
        i += 1
    return -1


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="[]()'\\a =\n", max_size=30))
def test_the_observation_scan_finds_the_same_bracket_as_a_character_walk(
        text: str) -> None:
    pattern = "[" + text
    assert _observation_end(pattern, 0) == _walk(pattern, 0)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(digests(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
