"""The importer's cost in CPU instructions an object, counted by valgrind; ONE JSON line.

    .venv/bin/python tests/perf/bench_import_cost.py [--count 2000] [--page 1000]

Wall-clock figures on a shared virtual machine swing by a third between identical runs
(tests/perf/README.md); instruction counts do not. This runs the vendor-source ingestion
of :func:`exchange.feeds.ingest.ingest` (strict check, node attestation, TLP, store and
ledger into a fresh SQLite home under the shipped policies, signing in this process)
twice under ``valgrind --tool=callgrind``: once whole, once stopping just before the
ingestion; the difference divided by ``--count`` is the importer's instructions an
object, setup excluded. The pages come from an in-memory reader that decodes each
page's JSON as taxii2-client would, so no server shares the count. The objects are
:func:`exchange.member.generate.generate_indicators` (seed 5), as in bench_ingest.py.

One Ed25519 signature is about 0.5 M instructions of this count (OpenSSL, measured the
same way). Needs valgrind (Debian's package); nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_ingest(count: int, page: int, ingest_too: bool) -> None:
    """Build the home and, with ``ingest_too``, ingest ``count`` objects (the child)."""
    sys.path.insert(0, str(ROOT))
    from exchange.feeds.ingest import Page, ingest  # noqa: PLC0415 - the child's work only
    from exchange.member.generate import (  # noqa: PLC0415
        generate_indicators,
        identity_id_for,
    )
    from tests.perf.bench_ingest import VENDOR, vendor_home  # noqa: PLC0415

    objects = list(generate_indicators(count, identity_id=identity_id_for(VENDOR), seed=5,
                                       start=datetime(2026, 11, 30, tzinfo=UTC)))
    bodies = [json.dumps({"objects": objects[i:i + page], "more": i + page < count,
                          "next": str(i + page) if i + page < count else None})
              for i in range(0, count, page)]

    class Reader:
        def page(self, *, added_after: str | None, next_token: str | None,
                 limit: int) -> Page:
            index = int(next_token or 0) // page
            envelope = json.loads(bodies[index])
            return Page(envelope["objects"], envelope["more"], envelope.get("next"),
                        f"2026-12-01T00:00:{index % 60:02d}.000000Z")

    with tempfile.TemporaryDirectory(prefix="cx-bench-import-cost-") as tmp, \
            vendor_home(Path(tmp) / "home", api_root="http://127.0.0.1:9/taxii2/root/",
                        collection="vendor", user="reader", password="unused", page=page
                        ) as (node, source):
        if ingest_too:
            report = ingest(node, source, reader=Reader(), workers=0)
            if report.counts["created"] != count:
                raise SystemExit(f"created {report.counts['created']} of {count}")


def instructions(count: int, page: int, ingest_too: bool) -> int:
    """Instructions valgrind counted for one child run."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", "1" if ingest_too else "0",
               "--count", str(count), "--page", str(page)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                          check=False, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed: {done.stderr[-1500:]}")
    return int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=2000, help="indicators ingested")
    parser.add_argument("--page", type=int, default=1000, help="objects per page")
    parser.add_argument("--child", choices=("0", "1"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.count <= 20_000 or not 1 <= args.page <= 10_000:
        parser.error("--count must be 1..20000 and --page 1..10000")
    if args.child is not None:
        run_ingest(args.count, args.page, args.child == "1")
        return
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    setup = instructions(args.count, args.page, ingest_too=False)
    whole = instructions(args.count, args.page, ingest_too=True)
    result: dict[str, Any] = {
        "benchmark": "import_cost", "count": args.count, "page": args.page,
        "python": platform.python_version(),
        "instructions_per_object": round((whole - setup) / args.count)}
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
