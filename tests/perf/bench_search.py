"""Search benchmark: ``GET /<api_root>/cx/search/`` at 1M stored objects; prints ONE JSON line.

    .venv/bin/python tests/perf/bench_search.py                    # 1M objects, SQLite
    .venv/bin/python tests/perf/bench_search.py --size 100000      # a quick run
    .venv/bin/python tests/perf/bench_search.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

Fills a fresh home with ``--size`` objects: 60 % indicators whose STIX patterns name an
address, a network, a domain, a URL, a hash or an e-mail address (some two of them with
OR/AND), 40 % SCOs (ipv4-addr, domain-name, url, file with hashes); 90 % TLP:GREEN and
10 % TLP:RED naming nobody. They go in through the store (:meth:`Store.add_objects` in
envelopes of 5,000, which fills the observable index in the same transaction as at any
ingest), not through validation, which other benchmarks measure. Then it starts the real
server (``exchange serve``, gunicorn) on 127.0.0.1 and measures, with concurrent client
processes searching as a consumer of another organisation (so the visibility filter is
in every query), p50/p95/p99 of a mix of searches: a stored value (hit), a value stored
nowhere (miss), an address inside a stored network (CIDR), and a parent domain with
``subdomains=true``. Every search is a disclosure in the audit ledger, as in production.

With ``--postgres URL`` (a loopback server; the URL names a maintenance database) the
objects go into a new database named ``cx_bench_search_*``, dropped at the end.
Every loop is bounded in count and in time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exchange.config import load_settings  # noqa: E402
from exchange.model.objects import OrgId, StixId  # noqa: E402
from exchange.node.service import Exchange, init_home  # noqa: E402
from exchange.storage import open_store  # noqa: E402
from exchange.storage.base import NewVersion, Status  # noqa: E402

TAXII = "application/taxii+json;version=2.1"
BATCH = 5000
T0 = 1_700_000_000_000_000
_PG_PREFIX = "cx_bench_search_"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        return {}
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(qs[49] * 1000, 2), "p95_ms": round(qs[94] * 1000, 2),
            "p99_ms": round(qs[98] * 1000, 2), "n": len(samples)}


class Corpus:
    """Random but realistic values, and a sample of them kept for the queries."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.hits: list[str] = []
        self.cidr_hits: list[str] = []
        self.parents: list[str] = []
        #: Whether the object being made is visible to the searcher (its values may be
        #: kept as queries that must hit).
        self.keep = True

    def ip(self) -> str:
        return str(ipaddress.IPv4Address(self.rng.randrange(0x0B000000, 0xDF000000)))

    def domain(self) -> str:
        r = self.rng
        name = "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
        parent = f"{name}.{r.choice(['com', 'net', 'org', 'info', 'ru', 'cn', 'xyz'])}"
        return f"{r.choice(['www', 'mail', 'cdn', 'login', 'api'])}.{parent}" \
            if r.random() < 0.4 else parent

    def value(self) -> tuple[str, str]:
        """A (pattern comparison, searchable value) pair."""
        r = self.rng
        kind = r.random()
        if kind < 0.35:
            ip = self.ip()
            return f"ipv4-addr:value = '{ip}'", ip
        if kind < 0.42:
            prefix = r.choice([16, 20, 24, 24, 28])
            net = ipaddress.ip_network(f"{self.ip()}/{prefix}", strict=False)
            if self.keep and len(self.cidr_hits) < 5000:
                self.cidr_hits.append(str(net.network_address + r.randrange(net.num_addresses)))
            return f"ipv4-addr:value = '{net}'", str(net)
        if kind < 0.65:
            domain = self.domain()
            if self.keep and domain.count(".") == 2 and len(self.parents) < 5000:
                self.parents.append(domain.split(".", 1)[1])
            return f"domain-name:value = '{domain}'", domain
        if kind < 0.78:
            url = f"http://{self.domain()}/{r.randrange(10**6)}/index.php?id={r.randrange(999)}"
            return f"url:value = '{url}'", url
        if kind < 0.95:
            digest = f"{r.getrandbits(256):064x}"
            return f"file:hashes.'SHA-256' = '{digest}'", digest
        email = f"user{r.randrange(10**6)}@{self.domain()}"
        return f"email-addr:value = '{email}'", email

    def obj(self, n: int) -> tuple[dict[str, Any], bool]:
        """A new object, and whether it is TLP:RED (10 %, visible to its producer only)."""
        r = self.rng
        red = r.random() < 0.1
        self.keep = not red
        object_id = f"--{uuid.UUID(int=r.getrandbits(128), version=4)}"
        if r.random() < 0.6:
            comparison, value = self.value()
            if r.random() < 0.2:
                other, _ = self.value()
                comparison = f"{comparison}] OR [{other}"
            obj: dict[str, Any] = {
                "type": "indicator", "spec_version": "2.1", "id": "indicator" + object_id,
                "created": "2024-05-01T00:00:00.000Z", "modified": "2024-05-01T00:00:00.000Z",
                "valid_from": "2024-05-01T00:00:00Z", "pattern": f"[{comparison}]",
                "pattern_type": "stix", "indicator_types": ["malicious-activity"],
                "name": f"bench indicator {n}"}
        else:
            comparison, value = self.value()
            kind = comparison.split(":", 1)[0]
            if kind == "file":
                obj = {"type": "file", "spec_version": "2.1", "id": "file" + object_id,
                       "hashes": {"SHA-256": value}}
            else:
                kind = "ipv4-addr" if kind == "ipv4-addr" else kind
                obj = {"type": kind, "spec_version": "2.1", "id": kind + object_id,
                       "value": value}
        if self.keep and len(self.hits) < 20000 and r.random() < 0.05 \
                and not (obj["type"] in ("indicator", "ipv4-addr") and "/" in value
                         and "://" not in value):
            self.hits.append(value)
        return obj, red


def fill(ex: Exchange | None, collection: str, producer: OrgId, account: str, size: int,
         seed: int) -> tuple[Corpus, float]:
    """Store ``size`` objects through the store in envelopes of BATCH; seconds taken.

    Without ``ex`` nothing is stored: the same objects are generated again (same seed),
    only to rebuild the queries for a home filled by an earlier run (``--reuse``).
    """
    corpus = Corpus(seed)
    start = time.perf_counter()
    for first in range(0, size, BATCH):
        versions = []
        for n in range(first, min(size, first + BATCH)):
            obj, red = corpus.obj(n)
            body = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
            versions.append(NewVersion(
                id=StixId(obj["id"]), type=obj["type"], spec_version="2.1",
                version=T0 if obj["type"] == "indicator" else None, created=None,
                modified=None, producer_org=producer, tlp="red" if red else "green",
                effective_tlp="red" if red else "green", revoked=False, body=body))
        if ex is None:
            continue
        status = Status(id=str(uuid.uuid4()), api_root=ex.settings.api_root,
                        collection_id=collection, account_id=account,  # type: ignore[arg-type]
                        org_id=producer, request_timestamp=T0, status="pending",
                        total_count=len(versions), success_count=0, failure_count=0,
                        pending_count=0)
        ex.store.add_objects(collection, versions, status)  # type: ignore[arg-type]
        if (first // BATCH) % 20 == 0:
            print(f"stored {first + len(versions)} of {size}"
                  f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return corpus, time.perf_counter() - start


def _client(url: str, user: str, key: str, queries: list[tuple[str, dict[str, str]]],
            seconds: float) -> tuple[dict[str, list[float]], list[str]]:
    """One client process: every query once, bounded in time; samples by query kind."""
    session = requests.Session()
    session.auth = (user, key)
    session.headers["Accept"] = TAXII
    samples: dict[str, list[float]] = {}
    problems: list[str] = []
    deadline = time.monotonic() + seconds
    for kind, params in queries:
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        response = session.get(url, params=params, timeout=30)
        body = response.content
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            problems.append(f"{kind}: HTTP {response.status_code} {body[:200]!r}")
            continue
        hits = len(json.loads(body)["hits"])
        if (kind == "miss") == (hits > 0):
            problems.append(f"{kind} {params}: {hits} hits")
        samples.setdefault(kind, []).append(elapsed)
    return samples, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000, help="searches in all")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", metavar="URL", help="store in PostgreSQL (loopback)")
    parser.add_argument("--workdir", help="where to build the home (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure again on the home an earlier run filled in --workdir"
                             " (SQLite)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cx-bench-search-"))
    home = workdir / f"home-{args.size}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    database = None
    admin_url = None
    if args.postgres:
        import psycopg  # noqa: PLC0415 - only with --postgres
        import sqlalchemy as sa  # noqa: PLC0415

        server = sa.engine.make_url(args.postgres)
        if server.host not in (None, "127.0.0.1", "localhost", "::1") or server.password:
            raise SystemExit("--postgres: a loopback URL without a password")
        database = f"{_PG_PREFIX}{uuid.uuid4().hex[:8]}"
        admin_url = server.set(drivername="postgresql").render_as_string()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["EXCHANGE_DATABASE_URL"] = server.set(
            drivername="postgresql", database=database).render_as_string()
    proc = None
    result: dict[str, Any] = {"benchmark": "search", "size": args.size,
                              "database": "postgresql" if args.postgres else "sqlite"}
    try:
        settings_env = {"EXCHANGE_DATABASE_URL": env["EXCHANGE_DATABASE_URL"]} \
            if args.postgres else {}
        settings = load_settings(home, env=settings_env)
        if args.reuse:
            if args.postgres or not (home / "exchange.db").exists():
                raise SystemExit("--reuse needs an SQLite home filled by an earlier run")
            store = open_store(settings)
            ex = Exchange(settings, store)
            key = ex.create_api_key("pk-soc")[1]
            corpus, _ = fill(None, "", OrgId(""), "", args.size, seed=args.size)
            store.close()
        else:
            init_home(settings)
            settings = load_settings(home, env=settings_env)
            store = open_store(settings)
            ex = Exchange(settings, store)
            producer = ex.add_org("UZ-CERT")
            publisher = ex.add_account("uz-pub", org="UZ-CERT", role="publisher")
            ex.add_org("PK-CERT")
            ex.add_account("pk-soc", org="PK-CERT", role="consumer")
            key = ex.create_api_key("pk-soc")[1]
            collection = ex.add_collection("bench", readers=["UZ-CERT", "PK-CERT"],
                                           writers=["UZ-CERT"], default_tlp="green")[0].id
            corpus, took = fill(ex, collection, producer.id, publisher.id, args.size,
                                seed=args.size)
            store.close()
            os.sync()
            result["fill_s"] = round(took, 1)
            result["fill_objects_per_s"] = round(args.size / took)

        rng = random.Random(7)
        used = set(corpus.hits)
        mix: list[tuple[str, dict[str, str]]] = []
        for i in range(args.queries):
            kind = ("hit", "miss", "cidr", "subdomain")[i % 4]
            if kind == "hit":
                mix.append((kind, {"value": rng.choice(corpus.hits)}))
            elif kind == "miss":
                while True:
                    value = str(ipaddress.IPv4Address(rng.randrange(0xE0000000, 0xEFFFFFFF)))
                    if value not in used:
                        break  # 224/4 is never generated: a guaranteed miss
                mix.append((kind, {"value": value}))
            elif kind == "cidr":
                mix.append((kind, {"value": rng.choice(corpus.cidr_hits)}))
            else:
                mix.append((kind, {"value": rng.choice(corpus.parents), "subdomains": "true"}))
        rng.shuffle(mix)

        port = _port()
        log = (home / "server.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--home", str(home), "serve", "--port",
             str(port), "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
        url = f"http://127.0.0.1:{port}/{settings.api_root}/cx/search/"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url, params={"value": "192.0.2.1"}, auth=("pk-soc", key),
                                headers={"Accept": TAXII}, timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.3)
        # Warm-up (uncounted): one pass of 100 queries.
        _client(url, "pk-soc", key, mix[:100], 60)
        shares = [mix[i::args.clients] for i in range(args.clients)]
        with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
            outcomes = pool.starmap(_client, [(url, "pk-soc", key, share, 300)
                                              for share in shares])
        by_kind: dict[str, list[float]] = {}
        problems: list[str] = []
        for samples, trouble in outcomes:
            problems += trouble
            for kind, values in samples.items():
                by_kind.setdefault(kind, []).extend(values)
        if problems:
            raise RuntimeError(f"searches went wrong: {problems[:5]}")
        everything = [v for values in by_kind.values() for v in values]
        result["search_all"] = _percentiles(everything)
        for kind, values in sorted(by_kind.items()):
            result[f"search_{kind}"] = _percentiles(values)
        result["clients"] = args.clients
        result["workers"] = args.workers
        result["target_p99_ms"] = 50
        result["p99_within_target"] = result["search_all"].get("p99_ms", 1e9) <= 50
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if database is not None and admin_url is not None:
            import psycopg  # noqa: PLC0415

            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
