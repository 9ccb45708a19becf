"""Micro-benchmark of cx-sig v1 on one typical (~1 KB) indicator; prints ONE JSON line.

    .venv/bin/python tests/perf/bench_signing.py
    .venv/bin/python tests/perf/bench_signing.py --seconds 0.5   # quicker, noisier

Figures are microseconds per object (median of 5 timed runs of a loop each):

* ``canonical_us``: RFC 8785 bytes of the signed object (``exchange.signing.canonical``);
* ``sign_raw_<alg>_us``: the signature alone over a ready signing input;
* ``sign_object_<alg>_us``: ``sign_object`` end to end (normal-form check through stix2,
  canonical bytes, read-back check, signature, strict ``validate_object``);
* ``verify_object_<alg>_us``: ``verify_object`` end to end (entry check, canonical bytes,
  PAE, verification);
* ``verify_envelope_<alg>_us``: the DSSE envelope (verify, strict parse, canonical check);
* ``require_normal_form_us``: the stix2 round trip on its own.

No I/O besides stdout; no network.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import cryptography  # noqa: E402
import rfc8785  # noqa: E402

from exchange.signing.canonical import canonical, require_normal_form, signing_input  # noqa: E402
from exchange.signing.cxsig import sign_object, verify_object  # noqa: E402
from exchange.signing.envelope import envelope_for, verify_envelope  # noqa: E402
from exchange.signing.keys import ALGORITHMS  # noqa: E402
from tests.unit.signing.helpers import SIGNED_AT, fixed_key, indicator, resolver  # noqa: E402


def _per_call_us(call: Callable[[], Any], seconds: float) -> float:
    """Median over 5 runs of the mean time per call, each run lasting about seconds/5."""
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.05:  # calibrate
        call()
        calls += 1
    per_run = max(1, int(calls * (seconds / 5) / (time.perf_counter() - start)))
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per_run):
            call()
        runs.append((time.perf_counter() - t0) / per_run * 1e6)
    return round(statistics.median(runs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure")
    args = parser.parse_args()
    obj = indicator()
    result: dict[str, Any] = {
        "object_bytes": len(canonical(obj)),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "rfc8785": rfc8785.__version__,
    }
    first = sign_object(obj, fixed_key("Ed25519"), signed_at=SIGNED_AT)
    result["signed_object_bytes"] = len(canonical(first))
    result["canonical_us"] = _per_call_us(lambda: canonical(first), args.seconds)
    result["require_normal_form_us"] = _per_call_us(
        lambda: require_normal_form(first), args.seconds
    )
    for alg in ALGORITHMS:
        key = fixed_key(alg)
        name = alg.lower().replace("-", "_")
        signed = sign_object(obj, key, signed_at=SIGNED_AT)
        message = signing_input(signed)
        trust = resolver(key)
        envelope = envelope_for(signed)
        result[f"sign_raw_{name}_us"] = _per_call_us(partial(key.sign, message), args.seconds)
        result[f"sign_object_{name}_us"] = _per_call_us(
            partial(sign_object, obj, key, signed_at=SIGNED_AT), args.seconds
        )
        result[f"verify_object_{name}_us"] = _per_call_us(
            partial(verify_object, signed, trust), args.seconds
        )
        result[f"verify_envelope_{name}_us"] = _per_call_us(
            partial(verify_envelope, envelope, trust), args.seconds
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
