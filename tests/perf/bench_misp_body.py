"""What each part of the push's event body costs MISP; ONE JSON line.

    CX_BENCH_MISP_KEY=... .venv/bin/python tests/perf/bench_misp_body.py --misp-url URL \
        [--attributes 1000] [--rounds 5] [--instance NAME]

Sends MISP one ``add_event`` of N attributes (half ``ip-dst``, half ``domain``) per body
variant and round, through plain PyMISP, the variants in a fresh random order each round:

* ``plain``: :func:`bench_misp.misp_bulk_add`'s body (the issue 19 yardstick), as site admin;
* ``exchange``: the shape of the push's body (:mod:`exchange.node.mispmap`), as a sync
  user: attribute UUIDs, distribution, a comment naming the STIX id and version,
  ``first_seen``; the contributor tag, ``Orgc``, ``published`` and ``locked``;
* ``exchange-without-X``: the same without one part (``uuid``, ``first_seen``,
  ``long-comment``, ``published``, ``orgc``).

Every variant and round gets values of its own: MISP correlates a value it already
holds (two inserts and a select per attribute), which would swamp the differences.
Reported per variant: median wall seconds, and, with ``--instance`` (the instance's name
under ``/tmp/cx-misp``; this machine's MISP, run as root), the median CPU seconds of
MISP's PHP workers and MariaDB (from ``/proc``; steadier than wall time on a shared
machine) and MariaDB's statement counts of the last round (which do not vary).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_misp import Misp, sync_account, values
from pymisp import PyMISP

VARIANTS = ("plain", "exchange", "exchange-without-uuid", "exchange-without-first_seen",
            "exchange-without-long-comment", "exchange-without-published",
            "exchange-without-orgc")
STAMP = "1999-01-01T09:00:00.000Z"
_COUNTERS = ("Questions", "Com_select", "Com_insert", "Com_update")


def body(variant: str, count: int, seed: str, orgc_uuid: str) -> dict[str, Any]:
    """One event of ``count`` attributes shaped as ``variant`` says."""
    attributes = []
    for n, (kind, value) in enumerate(values(count, seed, "body")):
        attribute: dict[str, Any] = {"type": kind, "category": "Network activity",
                                     "value": value, "to_ids": True, "distribution": "1",
                                     "comment": "bench"}
        if variant != "plain":
            attribute_uuid = str(uuid.uuid4())
            attribute["uuid"] = attribute_uuid
            attribute["comment"] = f"bench {n}; STIX indicator--{attribute_uuid} version {STAMP}"
            attribute["first_seen"] = STAMP
            left_out = variant.removeprefix("exchange-without-")
            if left_out == "long-comment":
                attribute["comment"] = "bench"
            elif left_out in ("uuid", "first_seen"):
                del attribute[left_out]
        attributes.append(attribute)
    event: dict[str, Any] = {
        "uuid": str(uuid.uuid4()), "info": f"body cost {variant} {seed}", "date": STAMP[:10],
        "distribution": "1", "threat_level_id": "4", "analysis": "2",
        "Tag": [{"name": "tlp:green"}], "Attribute": attributes}
    if variant != "plain":
        event["Tag"].append({"name": 'cert-exchange:contributor="UZ-CERT bench"'})
        event["locked"] = True
        if variant != "exchange-without-orgc":
            event["Orgc"] = {"name": "UZ-CERT bench", "uuid": orgc_uuid}
        if variant != "exchange-without-published":
            event["published"] = True
    return event


class MispCosts:
    """CPU seconds of one MISP instance's PHP workers and MariaDB, and its statements."""

    def __init__(self, instance: str) -> None:
        self.socket = f"/tmp/cx-misp/{instance}/run/mysqld.sock"
        listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True,
                                 check=True).stdout
        self.pids = [int(line.split()[0]) for line in listing.splitlines()
                     if f"/cx-misp/{instance}/" in line
                     and any(p in line for p in ("php", "mariadbd"))]

    def cpu(self) -> float:
        ticks = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def statements(self) -> dict[str, int]:
        names = ",".join(f"'{c}'" for c in _COUNTERS)
        out = subprocess.run(
            ["mariadb", "-S", self.socket, "-u", "root", "-N", "-e",
             f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})"],
            capture_output=True, text=True, check=True).stdout
        return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--misp-url", required=True)
    parser.add_argument("--attributes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instance", default=None,
                        help="the instance's name, for MISP's CPU time and statements")
    args = parser.parse_args()
    key = os.environ.get("CX_BENCH_MISP_KEY", "").strip()
    if not key:
        raise SystemExit("the site admin's API key goes in CX_BENCH_MISP_KEY")
    misp = Misp(args.misp_url, key)
    tag = uuid.uuid4().hex[:8]
    admin = PyMISP(misp.url, misp.key, timeout=600)
    sync = PyMISP(misp.url, sync_account(misp, f"body-{tag}"), timeout=600)
    costs = MispCosts(args.instance) if args.instance else None
    orgc_uuid = str(uuid.uuid4())
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    statements: dict[str, dict[str, int]] = {}
    for n in range(args.rounds):
        order = list(VARIANTS)
        random.shuffle(order)
        for variant in order:
            event = body(variant, args.attributes, f"{tag}-{variant}-{n}", orgc_uuid)
            api = admin if variant == "plain" else sync
            before = costs.statements() if costs else {}
            c0 = costs.cpu() if costs else 0.0
            t0 = time.perf_counter()
            answer = api.add_event(event)  # type: ignore[arg-type]
            wall[variant].append(time.perf_counter() - t0)
            if costs:
                cpu[variant].append(costs.cpu() - c0)
                after = costs.statements()
                # less this script's own SHOW STATUS statement
                statements[variant] = {k: after[k] - before[k] - (k == "Questions")
                                       for k in _COUNTERS}
            assert isinstance(answer, dict), answer
            assert "Event" in answer, str(answer)[:300]
            kept = len(answer["Event"].get("Attribute", []))
            assert kept == args.attributes, (variant, kept)
            print(f"{variant} round {n}: {wall[variant][-1]:.3f} s", file=sys.stderr,
                  flush=True)
    result: dict[str, Any] = {"benchmark": "misp_body_costs", "attributes": args.attributes,
                              "rounds": args.rounds}
    for variant in VARIANTS:
        row: dict[str, Any] = {"wall_s": round(statistics.median(wall[variant]), 3)}
        if costs:
            row["misp_cpu_s"] = round(statistics.median(cpu[variant]), 3)
            row["misp_cpu_s_rounds"] = [round(x, 2) for x in cpu[variant]]
            row["statements"] = statements[variant]
        result[variant] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
