"""End-to-end benchmark of one exchange node on SQLite; prints ONE JSON line.

    .venv/bin/python tests/perf/bench_exchange.py                 # 100k and 1M stored objects
    .venv/bin/python tests/perf/bench_exchange.py --sizes 20000   # a quick run
    .venv/bin/python tests/perf/bench_exchange.py --signed        # + signed ingest (issue 4)

For each size it fills a fresh collection to that many stored indicators (in-process
through the same publish path the TAXII view uses: strict parse, validation, store), then
starts the real server (gunicorn, ``exchange serve``) on 127.0.0.1 and measures over HTTP:

* ingest objects/s through TAXII with envelopes of 100 (2 concurrent publishers);
* full-collection read objects/s (pages of 1000, one client, ``next`` paging);
* p50/p95/p99 latency with 4 concurrent clients of: the newest page of 100 with
  ``match[type]=indicator``; one object by id; an incremental poll with ``added_after``
  near the end; a manifest page of 100;
* the server's peak RSS (largest worker VmHWM, and the sum over master and workers).

Every loop is bounded in count and in time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exchange.config import load_settings  # noqa: E402
from exchange.member.generate import generate_indicators  # noqa: E402
from exchange.model.objects import Tlp  # noqa: E402
from exchange.node.service import Exchange, init_home  # noqa: E402
from exchange.storage import open_store  # noqa: E402
from exchange.storage.timestamps import from_micros  # noqa: E402

TAXII = "application/taxii+json;version=2.1"
LOAD_BATCH = 1000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _written_back() -> None:
    """Flush a fill to disk before anything is measured: otherwise a response's
    fdatasync (the audit spool's) waits behind the fill's gigabyte of writeback, which a
    baseline without fsyncs on its read path never meets."""
    os.sync()


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(qs[49] * 1000, 2), "p95_ms": round(qs[94] * 1000, 2),
            "p99_ms": round(qs[98] * 1000, 2), "n": len(samples)}


class Bench:
    def __init__(self, workdir: Path, size: int, workers: int, threads: int = 4) -> None:
        self.home = workdir / f"home-{size}"
        self.size = size
        self.workers = workers
        self.threads = threads
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        self.proc: subprocess.Popen[bytes] | None = None

    def fill(self) -> dict[str, Any]:
        settings = load_settings(self.home, env={})
        init_home(settings)
        settings = load_settings(self.home, env={})
        store = open_store(settings)
        ex = Exchange(settings, store)
        org = ex.add_org("UZ-CERT")
        ex.add_account("pub", org="UZ-CERT", role="publisher")
        self.key = ex.create_api_key("pub")[1]
        self.collection = ex.add_collection("bench", readers=["UZ-CERT"],
                                            writers=["UZ-CERT"])[0].id
        self.identity = org.identity_id
        self.reader, self.reader_key = "pub", self.key
        start = time.perf_counter()
        loaded = _load(ex, ex.authenticate("pub", self.key), self.collection,
                       generate_indicators(self.size, identity_id=self.identity,
                                           seed=self.size, start=datetime.now(UTC)))
        elapsed = time.perf_counter() - start
        store.close()
        _written_back()
        self.settings = settings
        return {"stored": loaded, "load_s": round(elapsed, 1),
                "load_objects_per_s": round(loaded / elapsed)}

    def start(self) -> None:
        port = _port()
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/{self.settings.api_root}/collections/{self.collection}/"
        self.log = (self.home / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--home", str(self.home), "serve",
             "--port", str(port), "--workers", str(self.workers),
             "--threads", str(self.threads)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url, auth=("pub", self.key), timeout=2,
                                headers={"Accept": TAXII}).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> dict[str, int]:
        assert self.proc is not None
        pids = [self.proc.pid, *_children(self.proc.pid)]
        rss = {pid: _rss_kib(pid) for pid in pids}
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        workers = [v for p, v in rss.items() if p != self.proc.pid]
        return {"server_peak_rss_worker_mb": round(max(workers or [0]) / 1024, 1),
                "server_peak_rss_total_mb": round(sum(rss.values()) / 1024, 1)}

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (self.reader, self.reader_key)
        s.headers["Accept"] = TAXII
        return s

    def ingest(self, envelopes: int = 60, clients: int = 2, seconds: float = 60) -> dict:
        per_client = envelopes // clients
        batches = [list(generate_indicators(per_client * 100, identity_id=self.identity,
                                            seed=10_000 + i * 7919 + self.size,
                                            start=datetime.now(UTC)))
                   for i in range(clients)]
        sent, elapsed = _post_concurrently(self, batches, seconds)
        return {"ingest_objects_per_s": round(sent / elapsed), "ingested": sent}

    def full_read(self, seconds: float = 180) -> dict:
        s = self.session()
        params: dict[str, str] = {"limit": "1000"}
        count = 0
        start = time.perf_counter()
        deadline = time.monotonic() + seconds
        pages = 0
        while time.monotonic() < deadline and pages < 5000:
            r = s.get(self.url + "objects/", params=params, timeout=60)
            r.raise_for_status()
            body = r.json()
            count += len(body.get("objects", []))
            pages += 1
            if not body.get("more"):
                break
            params = {"limit": "1000", "next": body["next"]}
        elapsed = time.perf_counter() - start
        return {"full_read_objects_per_s": round(count / elapsed), "full_read_objects": count,
                "full_read_complete": not body.get("more")}

    def _newest_marks(self) -> tuple[str, str, list[str]]:
        db = sqlite3.connect(self.home / "exchange.db")
        try:
            rows = db.execute("SELECT date_added FROM object_versions ORDER BY date_added "
                              "DESC LIMIT 1 OFFSET 100").fetchone()
            near_end = db.execute("SELECT date_added FROM object_versions ORDER BY "
                                  "date_added DESC LIMIT 1 OFFSET 10").fetchone()
            ids = db.execute("SELECT id FROM object_versions ORDER BY random() "
                             "LIMIT 400").fetchall()
        finally:
            db.close()
        return (from_micros(rows[0]), from_micros(near_end[0]),
                [i[0] for i in ids if i])

    def latencies(self, per_client: int = 150, clients: int = 4, seconds: float = 60) -> dict:
        """p50/p95/p99 of each read shape with ``clients`` concurrent client processes.

        Clients are separate processes so that one client's JSON parsing never stalls
        another behind the GIL (which would be charged to the server's latency).
        """
        newest, near_end, ids = self._newest_marks()
        shapes: dict[str, tuple[str, dict[str, str]]] = {
            "newest_page_indicators": ("objects/", {"match[type]": "indicator",
                                                    "limit": "100", "added_after": newest}),
            "object_by_id": ("objects/{id}/", {}),
            "incremental_poll": ("objects/", {"added_after": near_end}),
            "manifest_page": ("manifest/", {"limit": "100", "added_after": newest}),
        }
        out: dict[str, Any] = {}
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(clients) as pool:
            for name, (path, params) in shapes.items():
                jobs = [(self.url, self.reader, self.reader_key, path, params, ids,
                         per_client, seconds, 11 + i) for i in range(clients)]
                results = pool.starmap(_client_run, jobs)
                samples = [dt for part, _ in results for dt in part[len(part) // 10:]]
                failures = [code for _, codes in results for code in codes]
                if failures:
                    raise RuntimeError(f"{name}: HTTP {failures[:5]}")
                out[name] = _percentiles(samples)  # each client's warm-up dropped
        return out


def _load(ex: Exchange, principal: Any, collection: str,
          objects: Iterable[dict[str, Any]]) -> int:
    """Publish objects in-process in envelopes of LOAD_BATCH; the number stored."""
    loaded = 0
    iterator = iter(objects)
    while batch := list(itertools.islice(iterator, LOAD_BATCH)):
        loaded += ex.publish(principal, ex.settings.api_root, collection,
                             json.dumps({"objects": batch}).encode()).success_count
    return loaded


def _post_concurrently(bench: Bench, batches: list[list[dict[str, Any]]],
                       seconds: float) -> tuple[int, float]:
    """POST each client's objects in envelopes of 100, one thread per client.

    Returns:
        Objects accepted and the wall time taken; raises on any refusal.
    """
    done = [0] * len(batches)
    errors: list[str] = []

    def run(i: int) -> None:
        s = bench.session()
        deadline = time.monotonic() + seconds
        for e in range(0, len(batches[i]), 100):
            if time.monotonic() > deadline:
                break
            body = json.dumps({"objects": batches[i][e:e + 100]})
            r = s.post(bench.url + "objects/", data=body, timeout=60,
                       headers={"Content-Type": TAXII})
            if r.status_code != 202 or r.json().get("failure_count"):
                errors.append(r.text[:300])
                return
            done[i] += 100

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    return sum(done), elapsed


def _client_run(url: str, user: str, key: str, path: str, params: dict[str, str],
                ids: list[str], count: int, seconds: float, seed: int
                ) -> tuple[list[float], list[int]]:
    """One latency client (a separate process): ``count`` requests, bounded in time."""
    rng = random.Random(seed)
    session = requests.Session()
    session.auth = (user, key)
    session.headers["Accept"] = TAXII
    samples: list[float] = []
    failures: list[int] = []
    deadline = time.monotonic() + seconds
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        target = url + path.replace("{id}", rng.choice(ids))
        t0 = time.perf_counter()
        r = session.get(target, params=params, timeout=30)
        r.content  # noqa: B018 - read the whole body inside the timing
        samples.append(time.perf_counter() - t0)
        if r.status_code != 200:
            failures.append(r.status_code)
    return samples, failures


class PolicyBench(Bench):
    """A collection under the shipped policy where the reader (PK-CERT, a party) may see
    10% of the objects: UZ-CERT publishes 10% TLP:CLEAR and 90% TLP:RED naming nobody."""

    def fill(self) -> dict[str, Any]:
        self.home = self.home.parent / f"home-policy-{self.size}"
        policies = self.home.parent / "policies"
        if not policies.exists():
            shutil.copytree(ROOT / "policies", policies)
            bindings = policies / "collections.yaml"
            bindings.write_text(bindings.read_text().replace("require_signatures: true",
                                                             "require_signatures: false"))
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "exchange.toml").write_text(f'policy_dir = "{policies}"\n')
        settings = load_settings(self.home, env={})
        init_home(settings)
        settings = load_settings(self.home, env={})
        store = open_store(settings)
        ex = Exchange(settings, store)
        org = ex.add_org("UZ-CERT")
        ex.add_org("PK-CERT")
        ex.add_account("pub", org="UZ-CERT", role="publisher")
        ex.add_account("pk", org="PK-CERT", role="consumer")
        self.key = ex.create_api_key("pub")[1]
        self.reader, self.reader_key = "pk", ex.create_api_key("pk")[1]
        self.collection = ex.add_collection("bench", alias="jwg",
                                            readers=["UZ-CERT", "PK-CERT"],
                                            writers=["UZ-CERT"])[0].id
        self.identity = org.identity_id
        start = time.perf_counter()
        loaded = _load(ex, ex.authenticate("pub", self.key), self.collection,
                       generate_indicators(self.size, identity_id=self.identity,
                                           seed=self.size, start=datetime.now(UTC),
                                           tlp_weights={Tlp.CLEAR: 0.1, Tlp.RED: 0.9}))
        elapsed = time.perf_counter() - start
        store.close()
        _written_back()
        self.settings = settings
        return {"stored": loaded, "load_s": round(elapsed, 1)}

    def without_policy(self) -> None:
        """Same home, same data, the built-in baseline filter instead of the policy."""
        (self.home / "exchange.toml").write_text("")

    def _newest_marks(self) -> tuple[str, str, list[str]]:
        newest, _, _ = super()._newest_marks()
        db = sqlite3.connect(self.home / "exchange.db")
        try:
            # ~10 visible objects after the mark: 100 rows before the end at 10%
            near_end = db.execute("SELECT date_added FROM object_versions ORDER BY "
                                  "date_added DESC LIMIT 1 OFFSET 100").fetchone()
            visible = db.execute("SELECT id FROM object_versions WHERE effective_tlp = "
                                 "'clear' ORDER BY random() LIMIT 400").fetchall()
        finally:
            db.close()
        return newest, from_micros(near_end[0]), [v[0] for v in visible]


def policy_figures(workdir: Path, size: int, workers: int, threads: int) -> dict[str, Any]:
    """Reads by a 10%-visibility reader with the policy on, then with the baseline filter."""
    bench = PolicyBench(workdir, size, workers, threads)
    out: dict[str, Any] = {"policy_stored": bench.fill()["stored"]}
    for label in ("with_policy", "without_policy"):
        if label == "without_policy":
            bench.without_policy()
        bench.start()
        try:
            lat = bench.latencies()
            read = bench.full_read()
        finally:
            bench.stop()
        out[label] = {"incremental_poll": lat["incremental_poll"],
                      "object_by_id": lat["object_by_id"],
                      "visible_read_objects_per_s": read["full_read_objects_per_s"],
                      "visible_objects": read["full_read_objects"]}
    with_p, without = out["with_policy"], out["without_policy"]
    out["policy_cost_poll_p99_pct"] = round(
        100 * (with_p["incremental_poll"]["p99_ms"] / without["incremental_poll"]["p99_ms"]
               - 1), 1)
    out["policy_cost_read_pct"] = round(
        100 * (without["visible_read_objects_per_s"] / with_p["visible_read_objects_per_s"]
               - 1), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000",
                        help="comma-separated stored-object counts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--workdir", help="where to build the homes (default: a temp dir)")
    parser.add_argument("--policy-only", action="store_true",
                        help="with --policy: skip the unfiltered runs")
    parser.add_argument("--policy", action="store_true",
                        help="also measure reads under the shipped policy (10%% visible)")
    parser.add_argument("--signed", action="store_true",
                        help="also measure ingest of cx-sig signed indicators (signed_ingest)")
    parser.add_argument("--baseline-ref", metavar="GIT_REF",
                        help="first run the same measurement on this commit (e.g. one before"
                             " the audit ledger) and report the relative cost")
    args = parser.parse_args()
    baseline = _baseline(args.baseline_ref, args.sizes, args.workdir) \
        if args.baseline_ref else None
    sizes = [int(x) for x in args.sizes.split(",")]
    result: dict[str, Any] = {"benchmark": "cert-exchange", "backend": "sqlite",
                              "workers": args.workers, "threads": args.threads,
                              "cpus": os.cpu_count(),
                              "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "sizes": {}}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in [] if args.policy_only else sizes:
            bench = Bench(Path(tmp), size, args.workers, args.threads)
            entry: dict[str, Any] = bench.fill()
            print(f"# {size}: loaded in {entry['load_s']} s", file=sys.stderr)
            bench.start()
            try:
                entry.update(bench.latencies())
                entry.update(bench.ingest())
                if args.signed:
                    entry.update(signed_ingest(bench))
                entry.update(bench.full_read())
            finally:
                entry.update(bench.stop())
            entry["db_mb"] = round((bench.home / "exchange.db").stat().st_size / 2**20, 1)
            result["sizes"][str(size)] = entry
            print(f"# {size}: {json.dumps(entry)}", file=sys.stderr)
        if args.policy:
            result["policy"] = {str(size): policy_figures(Path(tmp), size, args.workers,
                                                          args.threads)
                                for size in sizes}
    if args.signed:
        result["signing_per_object_us"] = signing_figures()
    if baseline is not None:
        result["baseline"] = {"ref": args.baseline_ref, "sizes": baseline["sizes"]}
        result["relative_to_baseline"] = _relative(baseline["sizes"], result["sizes"])
    print(json.dumps(result, sort_keys=True))


def _baseline(ref: str, sizes: str, workdir: str | None) -> dict[str, Any]:
    """The same benchmark run on ``ref`` (a clean ``git archive`` of it, its own bench)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tree = Path(tmp) / "baseline"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref],
                                 capture_output=True, check=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
        print(f"# baseline {ref}: running its benchmark", file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run(
            [sys.executable, str(tree / "tests" / "perf" / "bench_exchange.py"),
             "--sizes", sizes, *(["--workdir", workdir] if workdir else [])],
            capture_output=True, text=True, check=True, timeout=6 * 3600, cwd=tree, env=env)
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def _relative(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Percent change of the read figures the ledger must keep within 15 %."""
    out: dict[str, Any] = {}
    for size, now in after.items():
        then = before.get(size)
        if then is None:
            continue
        out[size] = {
            "incremental_poll_p99_pct": round(
                100 * (now["incremental_poll"]["p99_ms"] / then["incremental_poll"]["p99_ms"]
                       - 1), 1),
            "full_read_objects_per_s_pct": round(
                100 * (now["full_read_objects_per_s"] / then["full_read_objects_per_s"] - 1),
                1),
        }
    return out



def signed_ingest(bench: Bench, envelopes: int = 60, clients: int = 2,
                  seconds: float = 60) -> dict[str, Any]:
    """Ingest of Ed25519-signed indicators through TAXII (``--signed``).

    Registers a member key for the bench organisation, waits for the workers' registry
    cache (exchange.node.keyring.RegistryCache, ``cache_seconds``) to pick it up, signs
    the indicators before the clock starts (signing is the publisher's cost), then posts
    envelopes of 100 from ``clients`` concurrent publishers. Every object is verified at ingest
    (signature, owner, validity) and stored with its key id.
    """
    from exchange.member.signer import sign_all  # noqa: PLC0415
    from exchange.node import keyring  # noqa: PLC0415
    from exchange.signing.keys import generate  # noqa: PLC0415

    key = generate("Ed25519")
    store = open_store(bench.settings)
    try:
        keyring.register_key(store, "UZ-CERT", key.public_pem())
    finally:
        store.close()
    time.sleep(bench.settings.cache_seconds + 0.5)  # until every worker knows the key
    per_client = envelopes // clients
    batches: list[list[dict[str, Any]]] = []
    for i in range(clients):
        objs = list(generate_indicators(per_client * 100, identity_id=bench.identity,
                                        seed=20_000 + i * 7919 + bench.size,
                                        start=datetime.now(UTC)))
        report = sign_all(objs, key, normalise=True)
        if report.refused:
            raise RuntimeError(f"signing failed: {report.refused[0]}")
        batches.append(report.objects)
    sent, elapsed = _post_concurrently(bench, batches, seconds)
    db = sqlite3.connect(bench.home / "exchange.db")
    try:
        stored = db.execute("SELECT count(*) FROM object_versions WHERE signed_kid = ?",
                            (key.kid,)).fetchone()[0]
    finally:
        db.close()
    return {"signed_ingest_objects_per_s": round(sent / elapsed),
            "signed_ingested": sent, "signed_stored_with_kid": stored}


def signing_figures() -> dict[str, Any]:
    """Per-object canonicalise/sign/verify µs from tests/perf/bench_signing.py."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "perf" / "bench_signing.py"), "--seconds", "1"],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT)
    figures = json.loads(out.stdout)
    wanted = ("canonical_us", "require_normal_form_us", "sign_object_ed25519_us",
              "verify_object_ed25519_us", "sign_object_ecdsa_p256_us",
              "verify_object_ecdsa_p256_us", "signed_object_bytes")
    return {name: figures[name] for name in wanted if name in figures}


if __name__ == "__main__":
    main()
