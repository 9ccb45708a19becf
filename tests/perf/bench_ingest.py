"""Ingestion of TAXII sources against the servers' own full read; ONE JSON line.

    .venv/bin/python tests/perf/bench_ingest.py
    .venv/bin/python tests/perf/bench_ingest.py --count 1000 --servers medallion

For each real server (medallion 3.0.0 with its MemoryBackend, OpenTAXII 0.9.3 with
SQLite; started on loopback as in tests/integration/taxii_servers.py, OpenTAXII
installed on first use into ~/.cache/cx-opentaxii/), in the same run:

* the server is loaded through its own TAXII POST (taxii2-client, envelopes of 500)
  with ``--count`` realistic generated indicators of a vendor identity
  (:func:`exchange.member.generate.generate_indicators`);
* ``server_read``: the server's own full read: taxii2-client paging the whole collection
  with ``next`` (``limit=--page``), nothing else -> objects/s;
* ``ingest``: :func:`exchange.feeds.run.run_source` of a vendor source on that
  collection into a fresh SQLite home under the shipped policies (page size ``--page``):
  read, strict validation, node attestation (Ed25519; in ``--workers`` processes, by
  default the engine's one per core), TLP reading, store and ledger -> objects/s, with
  ``created`` (must equal ``--count``) and the importing process's own CPU seconds;
* ``ratio``: ingest rate / server read rate (the target is >= 1);
* ``server_cpu_s`` (both sides, from /proc): the CPU the server's process spent serving,
  on the same cores as the importer. Where the server keeps a core busy through its own
  read, the ingestion can keep pace only if the importer's CPU
  (``main_process_cpu_s``) fits in what is left.

Progress goes to standard error; everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exchange.config import load_settings  # noqa: E402
from exchange.feeds.run import load_node_sources, run_source, source_named  # noqa: E402
from exchange.feeds.sources import TaxiiSource  # noqa: E402
from exchange.member.generate import generate_indicators, identity_id_for  # noqa: E402
from exchange.node.policy_source import PolicySource  # noqa: E402
from exchange.node.service import Exchange, init_home  # noqa: E402
from exchange.storage import open_store  # noqa: E402
from tests.integration.taxii_servers import (  # noqa: E402
    TaxiiServer,
    running_medallion,
    running_opentaxii,
)

VENDOR = "ExampleVendor"
STARTERS = {"medallion": running_medallion, "opentaxii": running_opentaxii}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def server_cpu(server: TaxiiServer) -> float | None:
    """The CPU seconds (user and system) the server's process has used so far, from
    /proc (None where there is none): what serving took on the machine's shared cores."""
    try:
        fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_spent(server: TaxiiServer, before: float | None) -> float | None:
    after = server_cpu(server)
    return None if before is None or after is None else round(after - before, 2)


def server_read(server: TaxiiServer, page: int) -> tuple[int, float, float | None]:
    """(objects, seconds, the server's CPU seconds) of the server's own full read."""
    cpu = server_cpu(server)
    started = time.perf_counter()
    count = len(server.read_all(page))
    return count, time.perf_counter() - started, cpu_spent(server, cpu)


@contextlib.contextmanager
def vendor_home(home: Path, *, api_root: str, collection: str, user: str, password: str,
                page: int) -> Iterator[tuple[Exchange, TaxiiSource]]:
    """A fresh SQLite home under the shipped policies with one vendor source ``vendor``
    importing into ``jwg`` as VENDOR, its node key made; the store closed on exit."""
    home.mkdir()
    key = home / "source.key"
    key.write_text(password)
    key.chmod(0o600)
    (home / "sources.yaml").write_text(f"""version: 1
sources:
  vendor:
    kind: vendor
    api_root: {api_root}
    collection: {collection}
    org: {VENDOR}
    into: jwg
    user: {user}
    password_file: {key}
    schedule: {{interval: 300}}
    timeout: 600
    page_size: {page}
""")
    (home / "exchange.toml").write_text(
        f'policy_dir = "{ROOT / "policies"}"\ntaxii_sources = "sources.yaml"\n')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    try:
        policy = PolicySource(settings.policy_path)  # type: ignore[arg-type]
        policy.load()
        node = Exchange(settings, store, policy=policy)
        for org in ("UZ-CERT", "PK-CERT", VENDOR):
            node.add_org(org)
        node.add_collection("Joint", alias="jwg", readers=["UZ-CERT", "PK-CERT"],
                            writers=["UZ-CERT", "PK-CERT", VENDOR])
        node.node_key()  # made before any clock starts
        yield node, source_named(load_node_sources(settings), "vendor")
    finally:
        store.close()


def ingest(server: TaxiiServer, work: Path, page: int, workers: int | None,
           profile: str | None = None) -> dict[str, Any]:
    """One vendor source's first run into a fresh home."""
    with vendor_home(work / "home", api_root=server.api_root, collection=server.collection,
                     user=server.user, password=server.password, page=page
                     ) as (node, source):
        profiler = cProfile.Profile(time.thread_time) if profile else None
        serving = server_cpu(server)
        started, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        report = run_source(node, source, workers=workers)
        if profiler is not None:
            profiler.disable()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        serving_cpu = cpu_spent(server, serving)
        if profiler is not None and profile:
            profiler.dump_stats(profile)
    return {"outcome": report.outcome.value, "created": report.counts["created"],
            "refused": report.counts["refused"], "pages": report.counts["pages"],
            "seconds": round(seconds, 3), "main_process_cpu_s": round(cpu, 3),
            "server_cpu_s": serving_cpu,
            "objects_per_s": round(report.counts["created"] / seconds, 1)}


def bench(name: str, count: int, page: int, workers: int | None,
          profile: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"cx-bench-ingest-{name}-") as tmp:
        work = Path(tmp)
        (work / "server").mkdir()
        with STARTERS[name](work / "server") as server:
            say(f"{name}: loading {count} indicators")
            objects = list(generate_indicators(count, identity_id=identity_id_for(VENDOR),
                                               seed=5, start=datetime(2026, 11, 30,
                                                                      tzinfo=UTC)))
            server.load(objects, batch=500)
            say(f"{name}: server's own full read")
            read, read_s, read_cpu = server_read(server, page)
            say(f"{name}: ingestion")
            ours = ingest(server, work, page, workers, profile)
    read_rate = read / read_s
    return {"server_read": {"objects": read, "seconds": round(read_s, 3),
                            "objects_per_s": round(read_rate, 1), "server_cpu_s": read_cpu},
            "ingest": ours, "ratio": round(ours["objects_per_s"] / read_rate, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=5000, help="indicators per server")
    parser.add_argument("--page", type=int, default=1000, help="objects per page")
    parser.add_argument("--servers", default="medallion,opentaxii")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="write the ingestion's cProfile statistics to FILE")
    parser.add_argument("--workers", type=int, default=None,
                        help="signing processes (default: the engine's, one per core)")
    args = parser.parse_args()
    if not 1 <= args.count <= 200_000 or not 1 <= args.page <= 10_000:
        parser.error("--count must be 1..200000 and --page 1..10000")
    results: dict[str, Any] = {"benchmark": "ingest", "count": args.count,
                               "page": args.page, "python": platform.python_version(),
                               "workers": args.workers}
    for name in args.servers.split(","):
        if name not in STARTERS:
            parser.error(f"unknown server {name!r} (medallion, opentaxii)")
        results[name] = bench(name, args.count, args.page, args.workers, args.profile)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
