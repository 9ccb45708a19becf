"""A full page of 1,000 derived copies: graph resolution and node signing; ONE JSON line.

    .venv/bin/python tests/perf/bench_derived.py
    .venv/bin/python tests/perf/bench_derived.py --objects 1000 --rounds 5

A fresh home with the shipped policies (signatures not required at ingest, so the
fixture needs no member keys) holds ``--objects`` AMBER indicators by UZ-CERT, each with
a description, and one relationship per indicator to the previous one (so every copy has
references to resolve). Through the real application (Flask test client: medallion's
views, our backend, the SQL filter, the ledger) it times one ``GET objects/?limit=1000``:

* ``party_page_ms``: PK-CERT's page (no transform: stored bytes), the baseline;
* ``copies_cold_page_ms``: UZ-SOC's page of derived copies with an empty copy cache (a
  new node object each round): redaction, reference resolution, stix2 normal form, the
  node's Ed25519 signature, recording the derived ids;
* ``copies_warm_page_ms``: the same page again on the same node object (cached copies);
* ``cold_us_per_copy``: ``copies_cold_page_ms`` per copy served, in microseconds.

Medians over ``--rounds``. No network: everything runs in this process on 127.0.0.1-free
in-memory requests; the database is a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exchange.config import load_settings  # noqa: E402
from exchange.node.service import Exchange, init_home  # noqa: E402
from exchange.storage import open_store  # noqa: E402
from exchange.taxii.app import create_app  # noqa: E402

TAXII = "application/taxii+json;version=2.1"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, tmp: Path, count: int) -> None:
        policies = tmp / "policies"
        shutil.copytree(ROOT / "policies", policies)
        collections = policies / "collections.yaml"
        collections.write_text(collections.read_text().replace(
            "require_signatures: true", "require_signatures: false"))
        self.home = tmp / "home"
        self.home.mkdir()
        (self.home / "exchange.toml").write_text(f'policy_dir = "{policies}"\n')
        init_home(load_settings(self.home, env={}))
        self.settings = load_settings(self.home, env={})
        store = open_store(self.settings)
        ex = Exchange(self.settings, store)
        uz = ex.add_org("UZ-CERT").identity_id
        ex.add_org("PK-CERT")
        ex.add_org("UZ-SOC", parent="UZ-CERT")
        self.keys: dict[str, str] = {}
        for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                                   ("pk-pub", "PK-CERT", "publisher"),
                                   ("uz-soc", "UZ-SOC", "consumer")]:
            ex.add_account(account, org=org, role=role)
            self.keys[account] = ex.create_api_key(account)[1]
        self.collection = ex.add_collection("Joint", alias="jwg",
                                            readers=["UZ-CERT", "PK-CERT", "UZ-SOC"],
                                            writers=["UZ-CERT", "PK-CERT"])[0].id
        store.close()
        self.client = create_app(self.settings).test_client()
        objects: list[dict[str, Any]] = []
        previous = None
        for n in range(count // 2):
            indicator = {
                "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
                "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
                "name": f"bench {n}", "description": "analyst notes " * 8,
                "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']",
                "pattern_type": "stix", "pattern_version": "2.1",
                "valid_from": "2026-06-01T00:00:00Z", "created_by_ref": uz,
                "object_marking_refs": [AMBER],
            }
            objects.append(indicator)
            if previous is not None:
                objects.append({
                    "type": "relationship", "spec_version": "2.1",
                    "id": f"relationship--{uuid.uuid4()}",
                    "created": "2026-06-01T00:00:00.000Z",
                    "modified": "2026-06-01T00:00:00.000Z", "relationship_type": "related-to",
                    "source_ref": indicator["id"], "target_ref": previous,
                    "created_by_ref": uz, "object_marking_refs": [AMBER],
                })
            previous = indicator["id"]
        for start in range(0, len(objects), 1000):
            status = self.request("POST", "objects/", "uz-pub",
                                  {"objects": objects[start:start + 1000]})
            assert status["failure_count"] == 0, status
        self.stored = len(objects)

    def request(self, method: str, path: str, account: str, body: Any = None,
                client: Any = None, **params: str) -> Any:
        auth = base64.b64encode(f"{account}:{self.keys[account]}".encode()).decode()
        headers = {"Accept": TAXII, "Authorization": f"Basic {auth}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = TAXII
        r = (client or self.client).open(f"/cx/collections/{self.collection}/{path}",
                                         method=method, headers=headers, data=data,
                                         query_string=params)
        assert r.status_code in (200, 202), r.get_data(as_text=True)[:300]
        return r.get_json()

    def page_ms(self, account: str, client: Any = None) -> tuple[float, int]:
        t0 = time.perf_counter()
        body = self.request("GET", "objects/", account, client=client, limit="1000")
        return (time.perf_counter() - t0) * 1000, len(body.get("objects", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cx-bench-derived-") as tmp:
        _log(f"filling {args.objects} objects ...")
        bench = Bench(Path(tmp), args.objects)
        party, cold, warm = [], [], []
        served = 0
        for round_ in range(args.rounds):
            _log(f"round {round_ + 1}/{args.rounds}")
            party.append(bench.page_ms("pk-pub")[0])
            fresh = create_app(bench.settings).test_client()  # a new node: empty caches
            bench.page_ms("pk-pub", client=fresh)  # warm the process-wide imports (stix2)
            ms, served = bench.page_ms("uz-soc", client=fresh)
            cold.append(ms)
            warm.append(bench.page_ms("uz-soc", client=fresh)[0])
        cold_ms = statistics.median(cold)
        print(json.dumps({
            "benchmark": "derived_copies_page",
            "stored_objects": bench.stored,
            "copies_per_page": served,
            "party_page_ms": round(statistics.median(party), 1),
            "copies_cold_page_ms": round(cold_ms, 1),
            "copies_warm_page_ms": round(statistics.median(warm), 1),
            "cold_us_per_copy": round(cold_ms * 1000 / max(served, 1), 1),
            "rounds": args.rounds,
            "python": platform.python_version(),
        }))


if __name__ == "__main__":
    main()
