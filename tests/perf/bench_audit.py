"""Benchmark of the audit ledger; prints ONE JSON line.

    .venv/bin/python tests/perf/bench_audit.py                       # 1M and 2M records
    .venv/bin/python tests/perf/bench_audit.py --records 10000000 --single   # the 10M figure
    .venv/bin/python tests/perf/bench_audit.py --records 20000 --single      # a quick look

On a fresh SQLite file (``synchronous=FULL``, as the exchange runs by default) or on
``--url`` (an empty database or PostgreSQL schema):

* ``append``: ``ledger.append`` of one-entry disclosure records in batches of ``--batch``,
  one write transaction and commit per batch: records/s and the p50/p99 time of one batch
  (build, canonical bytes, hashes, insert, commit);
* ``append_pages``: what one TAXII page of ``--page`` disclosures costs the way the server
  records it (records of up to 256 entries each, one transaction): microseconds per
  disclosure and the p50/p99 time of one page;
* ``fill``: the ledger grown to ``--records`` (batches of 5000, a checkpoint every 100k;
  on PostgreSQL then ``VACUUM ANALYZE``, as autovacuum would have done);
* ``verify``: ``ledger.verify_all`` over the whole ledger, in a child process so that its
  peak RSS (``ru_maxrss``) is its own: seconds, records/s, peak RSS. Run at N and 2N
  (unless ``--single``) to show that memory does not grow with the log;
* ``proofs``: one inclusion proof and one consistency proof at the final size.

The temporary database is deleted at the end unless ``--keep``.

The records are made-up disclosures (~540 bytes each, like real ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from exchange.audit import ledger  # noqa: E402
from exchange.audit.records import MAX_ENTRIES  # noqa: E402
from exchange.audit.tree import (  # noqa: E402
    Frontier,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from exchange.storage.engines import WRITE_OPTION, SqliteOptions, create_engine  # noqa: E402
from exchange.storage.sql import SqlStore  # noqa: E402
from tests.unit.audit.helpers import ORIGIN, checkpoint_key, disclosure, note_key  # noqa: E402

CHECKPOINT_EVERY = 100_000


def _engine(url: str) -> sa.Engine:
    return create_engine(url, SqliteOptions())


def _size(engine: sa.Engine) -> int:
    with engine.connect() as conn, conn.begin():
        return ledger.current_root(conn).size


def _append_batches(engine: sa.Engine, start: int, count: int, batch: int) -> list[float]:
    """Append ``count`` records, one transaction per batch; the seconds of each batch."""
    times = []
    done = start
    while done < start + count:
        n = min(batch, start + count - done)
        t0 = time.perf_counter()
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                ledger.append(conn, [disclosure(i) for i in range(done, done + n)])
        times.append(time.perf_counter() - t0)
        done += n
    return times


def _append_pages(engine: sa.Engine, pages: int, page: int) -> list[float]:
    """Append ``pages`` responses of ``page`` disclosures each; the seconds of each page."""
    times = []
    start = _size(engine)
    for n in range(pages):
        t0 = time.perf_counter()
        first = n * page
        records = [disclosure(i, count=min(MAX_ENTRIES, first + page - i))
                   for i in range(first, first + page, MAX_ENTRIES)]
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                ledger.append(conn, records)
        times.append(time.perf_counter() - t0)
    assert _size(engine) == start + pages * -(-page // MAX_ENTRIES)
    return times


def _fill(engine: sa.Engine, target: int) -> float:
    t0 = time.perf_counter()
    size = _size(engine)
    while size < target:
        step = min(5000, target - size, CHECKPOINT_EVERY - size % CHECKPOINT_EVERY)
        _append_batches(engine, size, step, step)
        size += step
        if size % CHECKPOINT_EVERY == 0 or size == target:
            with engine.connect() as conn, conn.begin():
                ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN)
    if engine.dialect.name == "postgresql":
        # As autovacuum would have done long before an audit: set the visibility hints,
        # or the first read of freshly written rows pays for writing them.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE audit_records")
    return time.perf_counter() - t0


def _verify_child(url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--verify-only", url],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def verify_only(url: str) -> None:
    """Child process: verify_all, then print seconds and this process's peak RSS."""
    engine = _engine(url)
    t0 = time.perf_counter()
    with engine.connect() as conn, conn.begin():
        report = ledger.verify_all(conn, [note_key()], origin=ORIGIN)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "records": report.records,
        "checkpoints": report.checkpoints,
        "seconds": round(seconds, 1),
        "records_per_s": round(report.records / seconds),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }))


def _proofs(engine: sa.Engine) -> dict[str, float]:
    """Time one inclusion and one consistency proof at the final size, and check both."""
    with engine.connect() as conn, conn.begin():
        head = ledger.current_root(conn)
        seq = head.size * 3 // 7
        t0 = time.perf_counter()
        inclusion = ledger.inclusion_proof(conn, seq, head.size)
        inclusion_ms = (time.perf_counter() - t0) * 1000
        verify_inclusion(seq, head.size, leaf_hash(ledger.record_at(conn, seq)), inclusion,
                         head.root)
        old = head.size // 3 + 1
        t0 = time.perf_counter()
        consistency = ledger.consistency_proof(conn, old, head.size)
        consistency_ms = (time.perf_counter() - t0) * 1000
        old_tree = Frontier()
        for _, body, _ in ledger.iter_records(conn, 0, old):
            old_tree.append(leaf_hash(body))
        verify_consistency(old, head.size, consistency, old_tree.root(), head.root)
    return {"inclusion_ms": round(inclusion_ms, 2), "consistency_ms": round(consistency_ms, 2),
            "inclusion_hashes": len(inclusion), "consistency_hashes": len(consistency)}


def main() -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--single", action="store_true", help="verify at N only, not 2N")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--append-sample", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=1000, help="disclosures per response")
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--url", help="an empty database (default: a temporary SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    parser.add_argument("--verify-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_only:
        verify_only(args.verify_only)
        return
    workdir = tempfile.mkdtemp(prefix="bench-audit-")
    url = args.url or f"sqlite:///{workdir}/ledger.db"
    store = SqlStore(url)
    store.open()
    store.upgrade()
    store.close()
    engine = _engine(url)

    sample = min(args.append_sample, args.records)
    times = _append_batches(engine, 0, sample, args.batch)
    per_batch = sorted(times)
    append = {
        "batch": args.batch,
        "records": sample,
        "records_per_s": round(sample / sum(times)),
        "batch_p50_ms": round(statistics.median(per_batch) * 1000, 2),
        "batch_p99_ms": round(per_batch[int(len(per_batch) * 0.99)] * 1000, 2),
    }
    page_times = sorted(_append_pages(engine, args.pages, args.page))
    append_pages = {
        "page": args.page,
        "pages": args.pages,
        "us_per_disclosure": round(sum(page_times) / (args.pages * args.page) * 1e6, 2),
        "page_p50_ms": round(statistics.median(page_times) * 1000, 2),
        "page_p99_ms": round(page_times[int(len(page_times) * 0.99)] * 1000, 2),
    }
    verify = []
    fill_seconds = 0.0
    for target in [args.records] if args.single else [args.records, 2 * args.records]:
        fill_seconds += _fill(engine, target)
        verify.append(_verify_child(url))
    result = {
        "bench": "audit",
        "database": engine.dialect.name,
        "sqlite_synchronous": SqliteOptions().synchronous if engine.dialect.name == "sqlite"
        else None,
        "append": append,
        "append_pages": append_pages,
        "fill_seconds": round(fill_seconds, 1),
        "verify": verify,
        "proofs": _proofs(engine),
        "db_mib": round(Path(workdir, "ledger.db").stat().st_size / 2**20)
        if not args.url else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    engine.dispose()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
