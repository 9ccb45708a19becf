"""What the audit sequencer costs per response, A/B against another commit; ONE JSON line.

    .venv/bin/python tests/perf/bench_sequencer.py --baseline-ref 80dee20
    .venv/bin/python tests/perf/bench_sequencer.py --baseline-ref 80dee20 \
        --postgres postgresql://postgres@127.0.0.1:5432/postgres

The read path spools each response's disclosures (a ``DisclosureBatch``); a sequencer
renders them into records, hashes them into the log and commits (exchange.audit.spool).
On the 2-core reference machine that process took 10 to 13 % of a core under the latency
load of ``bench_ledger_ab.py``, CPU the workers and clients then lack. This measures it
without servers or clients, so that a change to it shows above the machine's noise:

* a child process spools ``--responses`` responses of ``SIZE`` disclosures each (for each
  of ``--sizes``) into a fresh spool through ``SpoolWriter``, then runs ``spool.sequence``
  until the spool is empty, in transactions of about ``--round-kib`` KiB of spool (as the
  sequencer's runs every 200 ms take a few hundred poll responses);
* it reports its own CPU (``process_time``) per response and per disclosure and, on
  PostgreSQL, the CPU of the server backends it used (from ``/proc``; None where that
  cannot be read);
* the two sides take turns, ABBA, ``--rounds`` times; the figures are medians.

Each child runs on a fresh SQLite file (``synchronous=FULL``, as the node runs) or a
fresh PostgreSQL database (``cx_bench_seq_*``, dropped at the end) on a loopback server.
The baseline must have the spool and ``DisclosureBatch`` (e613a53 or later). Every loop
is bounded in count; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The A/B's checkout and its loopback-only PostgreSQL helpers (this script's directory is
# first on sys.path when it runs).
from bench_ledger_ab import ROOT, checkout, pg_admin, pg_server, pg_url

_PG_PREFIX = "cx_bench_seq_"
T0 = 1_764_000_000_000_000  # 2025-11-24, in microseconds
DIGEST = "sha256:" + "3f" * 32
# Two producers' objects in one collection, as a joint working group's polls see them.
GROUPS = [("UZ-CERT", "green", "tlp-green-members"), ("PK-CERT", "amber", "bilateral-uz-pk")]


def _batch(number: int, size: int) -> Any:
    """Response ``number``: ``size`` disclosures of served objects."""
    from exchange.audit.records import DisclosureBatch  # noqa: PLC0415 - the side's code

    first = number * size
    return DisclosureBatch(
        time=T0 + number * 1000, channel="taxii:get_objects", recipient_account="pk-soc-feed",
        recipient_org="PK-CERT", collection="5e1a4c2d-8f0b-4e53-9a6e-0c1b2d3e4f50",
        policy_digest=DIGEST, request_id=f"req-{number:012d}", groups=GROUPS,
        object_ids=[f"indicator--{i:08x}-7d2c-4b1e-9f3a-{i * 7919 % 2**48:012x}"
                    for i in range(first, first + size)],
        object_versions=[T0 + i for i in range(first, first + size)],
        dates_added=[T0 + 5 * i for i in range(first, first + size)],
        digests=[os.urandom(32) for _ in range(size)],
        group_of=[int(i % 3 == 0) for i in range(first, first + size)])


def _backend_seconds(pids: set[int]) -> float | None:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def child(size: int, responses: int, round_kib: int, url: str | None) -> None:
    """Spool the responses, sequence them, print the costs (runs with the side's code)."""
    from exchange.audit import spool  # noqa: PLC0415 - the side's code
    from exchange.storage.sql import SqlStore  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="bench-seq-"))
    try:
        store = SqlStore(url or f"sqlite:///{work}/ledger.db")
        store.open()
        store.upgrade()
        writer = spool.SpoolWriter(work / "spool", sync=False)
        for number in range(responses):
            writer.append(_batch(number, size), wait=True)
        writer.flush()
        pids: set[int] = set()
        if url:  # the pool's connections: every backend the runs below can use
            for _ in range(8):
                with store.audit_transaction(write=True) as conn:
                    pids.add(int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()))
        backend0 = _backend_seconds(pids) if url else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        moved = 0
        for _ in range(responses + 1):  # each run moves at least one response
            with store.audit_transaction(write=True) as conn:
                taken = spool.sequence(conn, work / "spool", max_bytes=round_kib * 1024)
            moved += taken
            if not taken:
                break
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        backend1 = _backend_seconds(pids) if url else None
        if moved != responses * -(-size // 256):
            raise RuntimeError(f"moved {moved} records for {responses} responses")
        print(json.dumps({
            "cpu_us_per_response": round(cpu / responses * 1e6, 1),
            "wall_us_per_response": round(wall / responses * 1e6, 1),
            "backend_us_per_response": None if backend0 is None or backend1 is None
            else round((backend1 - backend0) / responses * 1e6, 1),
        }))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(tree: Path, size: int, args: argparse.Namespace, server: Any, turn: int
         ) -> dict[str, Any]:
    url = None
    if server is not None:
        name = f"{_PG_PREFIX}{turn}"
        pg_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
                 f"CREATE DATABASE {name}")
        url = pg_url(server, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["PYTHONPATH"] = str(tree)
    try:
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(size),
             str(args.responses), str(args.round_kib), url or ""],
            cwd=tree, env=env, capture_output=True, text=True, check=False, timeout=1800)
    finally:
        if server is not None:
            pg_admin(server, f"DROP DATABASE IF EXISTS {_PG_PREFIX}{turn} WITH (FORCE)")
    if out.returncode != 0:
        raise RuntimeError(f"the child in {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _median(turns: list[dict[str, Any]], key: str) -> float | None:
    values = [t[key] for t in turns if t[key] is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> None:
    """Run the A/B and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", help="a commit to compare with (required)")
    parser.add_argument("--sizes", default="10,1000", help="disclosures per response")
    parser.add_argument("--responses", type=int, default=4000,
                        help="responses per size and turn (a tenth for sizes over 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-kib", type=int, default=256,
                        help="spool taken per transaction (the default is a few hundred"
                             " poll responses)")
    parser.add_argument("--postgres", metavar="URL", help="a loopback PostgreSQL server")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, responses, round_kib, url = args.child
        child(int(size), int(responses), int(round_kib), url or None)
        return
    if not args.baseline_ref:
        raise SystemExit("--baseline-ref is required: the commit to compare with")
    if not 1 <= args.rounds <= 20 or not 10 <= args.responses <= 100_000:
        raise SystemExit("--rounds must be 1 to 20 and --responses 10 to 100000")
    sizes = [int(s) for s in args.sizes.split(",")]
    if not all(1 <= s <= 10_000 for s in sizes):
        raise SystemExit("--sizes: each between 1 and 10000")
    server = pg_server(args.postgres) if args.postgres else None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"baseline": checkout(args.baseline_ref, Path(tmp) / "baseline-tree"),
                 "this": ROOT}
        turn = 0
        for size in sizes:
            responses = args.responses if size <= 100 else max(10, args.responses // 10)
            run_args = argparse.Namespace(**{**vars(args), "responses": responses})
            turns: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
            for number in range(args.rounds):
                order = list(sides) if number % 2 == 0 else list(reversed(sides))
                for name in order:
                    turn += 1
                    print(f"# size {size}, round {number + 1}, {name}", file=sys.stderr)
                    turns[name].append(_run(sides[name], size, run_args, server, turn))
            summary = {name: {key: _median(runs, key) for key in runs[0]}
                       for name, runs in turns.items()}
            base, this = (summary[n]["cpu_us_per_response"] for n in ("baseline", "this"))
            results[str(size)] = {
                "responses": responses, **summary, "turns": turns,
                "cpu_change_pct": None if not base or this is None
                else round((this - base) / base * 100, 1),
                "cpu_us_per_disclosure": {n: round(summary[n]["cpu_us_per_response"] / size, 2)
                                          for n in sides},
            }
    print(json.dumps({
        "bench": "sequencer", "baseline_ref": args.baseline_ref,
        "database": "postgresql" if server is not None else "sqlite",
        "rounds": args.rounds, "round_kib": args.round_kib, "sizes": results,
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
