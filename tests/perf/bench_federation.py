"""Federated pull benchmark: two local nodes, UZ pulls PK's signed indicators; prints ONE
JSON line.

    .venv/bin/python tests/perf/bench_federation.py                 # 10,000 indicators
    .venv/bin/python tests/perf/bench_federation.py --count 2000    # a quick run

Builds two fresh SQLite homes in a temporary directory (the nodes of
``exchange demo --federation``: shipped policy, UZ-CERT, PK-CERT, UZ-SOC, collection
``jwg`` requiring signatures), publishes ``--count`` TLP:GREEN indicators signed by
PK-CERT (Ed25519) at PK through the node's publish path in envelopes of 1,000, and
starts both real servers (``exchange serve``, gunicorn, 2 workers each) on 127.0.0.1.
UZ pins PK's node key and keeps its signed registry (not timed). Then UZ pulls PK's
``jwg`` as its peer account ``uz-node`` with the ingestion engine (a ``peer`` source of
:mod:`exchange.feeds.ingest`: taxii2-client paging, 1,000 a page, the next page read
while one is imported; PK decides each object on channel ``peer`` and records its
disclosure before serving), the peer verifier on every object (cx-sig v1 against PK's
pinned registry), and the import of the verified objects into UZ's ``jwg`` as PK-CERT's
contribution (strict validation, policy, storage, publish records, one transaction per
page) - and measures:

* ``objects_per_s``: objects imported per second of the whole pull (the target:
  >= 2,000);
* ``verify_objects_per_s``: the verifier alone, from the time spent in it during the pull;
* ``fetch_only_objects_per_s``: the same paging again without verifying or importing
  (PK's side: policy filter, disclosure records, serving);
* ``puller_cpu_seconds`` and ``objects_per_puller_cpu_s``: the CPU time of the pulling
  process (fetch thread, verifier, import; not the servers), a figure the other load on a
  shared machine disturbs less than the wall clock;
* ``seconds``, ``verify_seconds``, ``imported``, ``refused``, ``load_average_1m`` (at the
  start of the pull).

Every loop is bounded (``--count`` at most 200,000; the pull is bounded in pages).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from taxii2client.v21 import Collection, as_pages  # noqa: E402

from exchange.cli.demo_federation import (  # noqa: E402
    add_peer_account,
    build_node,
    federate,
    serve,
    signed_indicators,
)
from exchange.feeds import peers  # noqa: E402
from exchange.model.objects import Tlp  # noqa: E402
from exchange.signing import cxsig  # noqa: E402

MAX_COUNT = 200_000
ENVELOPE = 1000


class _Timed:
    """A verifier that keeps the time spent in it."""

    def __init__(self, inner: peers.PeerVerifier) -> None:
        self.inner = inner
        self.peer = inner.peer
        self.seconds = 0.0

    def verify(self, obj: Any, recorded: int | None = None) -> str | None:
        start = time.perf_counter()
        try:
            return self.inner.verify(obj, recorded)
        finally:
            self.seconds += time.perf_counter() - start

    def compromised_since(self, obj: Any) -> int | None:
        start = time.perf_counter()
        try:
            return self.inner.compromised_since(obj)
        finally:
            self.seconds += time.perf_counter() - start

    @property
    def keys(self) -> Any:
        return self.inner.keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=18600, help="UZ; PK is port + 1")
    args = parser.parse_args()
    count = max(1, min(args.count, MAX_COUNT))
    with tempfile.TemporaryDirectory(prefix="cx-bench-fed-") as tmp:
        root = Path(tmp)
        pk = build_node(root / "pk", name="pk", org="PK-CERT", peer_org="UZ-CERT")
        uz = build_node(root / "uz", name="uz", org="UZ-CERT", peer_org="PK-CERT")
        try:
            key_file = root / "key-for-uz-at-pk"
            add_peer_account(pk, "uz-node", "UZ-CERT", key_file)
            print(f"signing {count} indicators", file=sys.stderr)
            objects = signed_indicators(pk, count, seed=1, tlp=Tlp.GREEN)
            analyst = pk.exchange.authenticate(pk.analyst, pk.keys[pk.analyst])
            for start in range(0, count, ENVELOPE):
                body = json.dumps({"objects": objects[start:start + ENVELOPE]}).encode()
                status = pk.exchange.publish(analyst, pk.api_root, "jwg", body)
                if status.failure_count:
                    raise SystemExit(f"PK refused: {status.failures[:2]}")
            pk.exchange.audit.drain()
            serve(pk, args.port + 1)
            serve(uz, args.port)
            peers.trust(uz.exchange, "pk", [pk.exchange.node_key().kid],
                        registry_url=f"{pk.base}/{pk.api_root}/cx/registry/signed/",
                        api_key_file=str(key_file))
            print("pulling", file=sys.stderr)
            timed: list[_Timed] = []
            real = peers.verifier_for

            def timed_verifier(node: Any, name: str) -> Any:
                timed.append(_Timed(real(node, name)))
                return timed[-1]

            import exchange.cli.demo_federation as demo  # noqa: PLC0415

            demo.verifier_for = timed_verifier  # type: ignore[assignment]
            # PK's publish ran in this process: forget what it verified, so UZ's side
            # verifies every object itself (the pull's own second check, at UZ's ingest,
            # is what the memo of exchange.signing.cxsig saves)
            cxsig._VERIFIED.clear()
            load = os.getloadavg()[0]
            started, cpu_started = time.perf_counter(), time.process_time()
            report = federate(uz, pk, peer_name="pk", user="uz-node", key_file=key_file)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            demo.verifier_for = real  # type: ignore[assignment]

            started = time.perf_counter()
            fetched = 0
            collection = Collection(pk.url("jwg"), user="uz-node",
                                    password=key_file.read_text(encoding="utf-8").strip())
            for n, envelope in enumerate(as_pages(collection.get_objects, per_request=1000)):
                fetched += len(envelope.get("objects", []))
                if n > MAX_COUNT // 1000 + 1:
                    break
            fetch_seconds = time.perf_counter() - started
        finally:
            uz.close()
            pk.close()
    verify_seconds = timed[0].seconds if timed else 0.0
    imported = report.counts["created"]
    print(json.dumps({
        "benchmark": "federated_pull", "count": count, "imported": imported,
        "refused": report.counts["refused"], "outcome": str(report.outcome),
        "seconds": round(seconds, 3), "objects_per_s": round(imported / seconds, 1),
        "verify_seconds": round(verify_seconds, 3),
        "verify_objects_per_s": round(count / verify_seconds, 1)
        if verify_seconds else None,
        "fetch_only_objects_per_s": round(fetched / fetch_seconds, 1),
        "puller_cpu_seconds": round(cpu_seconds, 3),
        "objects_per_puller_cpu_s": round(imported / cpu_seconds, 1),
        "load_average_1m": round(load, 2),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
