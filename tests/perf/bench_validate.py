"""Micro-benchmark of ingest validation; prints ONE JSON line.

    .venv/bin/python tests/perf/bench_validate.py
    .venv/bin/python tests/perf/bench_validate.py --objects 500 --rounds 1   # quicker

On the same realistic indicators (ipv4 / domain / url / SHA-256 patterns, TLP 1.0 and 2.0
markings, created_by_ref, mostly distinct timestamps) it measures, in microseconds per
object (median of ``--rounds`` passes, the timestamp cache cleared before each pass):

* ``stix2_parse_us``: ``stix2.parse(obj, allow_custom=False, version="2.1")``;
* ``validate_object_us``: :func:`exchange.model.stix.validate_object`, including RFC 8785
  canonicalisation and the TLP lookup;
* ``validate_with_stix2_us``: the same check through stix2 (the reference path);
* ``run_validator_us`` and ``check_pattern_us``: the pattern alone, reference vs ours;
* ``parse_envelope_ms``: strict parse of all objects sent as one envelope.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import stix2
from stix2patterns.validator import run_validator

from exchange.model.envelope import parse_envelope
from exchange.model.limits import Limits
from exchange.model.pattern import check_pattern
from exchange.model.stix import validate_object, validate_with_stix2
from exchange.model.stixkinds import parse_timestamp
from exchange.model.tlp import TLP_MARKING_IDS

IDENTITIES = [
    f"identity--{uuid.UUID(int=random.Random(i).getrandbits(128), version=4)}" for i in range(5)
]
MARKINGS = sorted(TLP_MARKING_IDS)[:9]  # TLP 1.0 and 2.0 ids (not OpenCTI's)
WORDS = ["loader", "c2", "phishing", "botnet", "stealer", "beacon", "dropper", "panel"]


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _pattern(rng: random.Random) -> str:
    kind = rng.choice(["ipv4", "domain", "url", "sha256"])
    if kind == "ipv4":
        address = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        return f"[ipv4-addr:value = '{address}']"
    host = f"{rng.choice(WORDS)}{rng.randrange(10**6)}.example"
    if kind == "domain":
        return f"[domain-name:value = '{host}']"
    if kind == "url":
        return f"[url:value = 'http://{host}/{rng.choice(WORDS)}/{rng.randrange(999)}.php']"
    return f"[file:hashes.'SHA-256' = '{rng.getrandbits(256):064x}']"


def indicators(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` realistic STIX 2.1 indicators, reproducible from ``seed``."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    found = []
    for _ in range(count):
        created = start + timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6))
        obj: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            "created_by_ref": rng.choice(IDENTITIES),
            "created": _timestamp(created),
            "modified": _timestamp(created + timedelta(hours=rng.randrange(48))),
            "name": f"{rng.choice(WORDS)} infrastructure",
            "description": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 40))),
            "indicator_types": ["malicious-activity"],
            "pattern": _pattern(rng),
            "pattern_type": "stix",
            "pattern_version": "2.1",
            "valid_from": _timestamp(created),
            "confidence": rng.randrange(101),
            "labels": rng.sample(WORDS, 2),
            "object_marking_refs": [rng.choice(MARKINGS)],
        }
        if rng.random() < 0.3:
            obj["kill_chain_phases"] = [
                {"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}
            ]
        found.append(obj)
    return found


def _per_item_us(action: Callable[[Any], object], items: list[Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        parse_timestamp.cache_clear()
        started = time.perf_counter()
        for item in items:
            action(item)
        times.append((time.perf_counter() - started) / len(items) * 1e6)
    return round(statistics.median(times), 1)


def main() -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    limits = Limits(max_objects=max(args.objects, 1000))
    objects = indicators(args.objects, seed=1)
    patterns = [obj["pattern"] for obj in objects]
    for warm in indicators(200, seed=2):  # import and warm every code path once
        validate_object(warm, limits)
        validate_with_stix2(warm, limits)
    body = json.dumps({"objects": objects}).encode()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = {
            "objects": len(objects),
            "avg_object_bytes": round(len(body) / len(objects)),
            "stix2_parse_us": _per_item_us(
                lambda o: stix2.parse(o, allow_custom=False, version="2.1"), objects, args.rounds
            ),
            "validate_object_us": _per_item_us(
                lambda o: validate_object(o, limits), objects, args.rounds
            ),
            "validate_with_stix2_us": _per_item_us(
                lambda o: validate_with_stix2(o, limits), objects, args.rounds
            ),
            "run_validator_us": _per_item_us(
                lambda p: run_validator(p, stix_version="2.1"), patterns, args.rounds
            ),
            "check_pattern_us": _per_item_us(
                lambda p: check_pattern(p, limits), patterns, args.rounds
            ),
            "parse_envelope_ms": round(
                _per_item_us(lambda b: parse_envelope(b, limits), [body], args.rounds) / 1000, 2
            ),
        }
    result["speedup_validate"] = round(result["stix2_parse_us"] / result["validate_object_us"], 1)
    result["speedup_pattern"] = round(result["run_validator_us"] / result["check_pattern_us"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
