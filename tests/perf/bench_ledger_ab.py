"""The audit ledger's cost, A/B: a commit without it against this tree; prints ONE JSON line.

    .venv/bin/python tests/perf/bench_ledger_ab.py --baseline-ref 74b1813 \
        --size 1000000 --rounds 3

With ``--postgres URL`` (a loopback server; the URL names a maintenance database such as
``postgres``) both sides store into PostgreSQL instead of SQLite: each side fills a
database of its own, and each turn runs on a copy made with ``CREATE DATABASE ...
TEMPLATE``, dropped afterwards.

``--ledger-setting KEY=VALUE`` (a TOML value, repeatable) puts a setting into the ledger
side's exchange.toml for its turns (not its fill), e.g. a spool on another file system:
``--ledger-setting 'audit_spool_dir="/dev/shm/cx-ab-spool"'``.

``bench_exchange.py --baseline-ref`` runs the baseline's whole benchmark, then ours: two
fills and two servers minutes apart, on a shared machine whose speed drifts by 10 % or
more within minutes. One such pair says little about a 15 % budget (issue 5). Here each
side is filled once (by its own code, through its own ``bench_exchange.Bench``), the fills
are flushed to disk, and then the two sides take turns, ABBA: each turn copies its
filled home, starts that side's real server (``exchange serve``) on 127.0.0.1, runs the
latency clients (``--polls`` requests per client and read shape; the incremental poll is
the figure kept), waits until the ledger's sequencer has caught up with them and flushes
the disk, then makes full-collection reads, and stops the server. The drift then falls on
both sides alike, and the figures are medians over the turns. Before the rounds, each
side has ``--warmup`` turns (default 1) that are printed and not counted: in most earlier
runs the first turn of the run was its side's slowest, and it always fell to the
baseline, which flattered the ledger.

Every loop is bounded in count and in time (the measurements are those of
``bench_exchange.py``); all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_HOURS = 3600
#: The databases this benchmark creates (and drops) on a ``--postgres`` server.
_PG_PREFIX = "cx_ledger_ab_"


def pg_server(url: str) -> Any:
    """The parsed ``--postgres`` URL; refuses any host but the loopback."""
    import sqlalchemy as sa  # noqa: PLC0415 - only with --postgres

    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith(("postgresql", "postgres")):
        raise SystemExit(f"--postgres: not a PostgreSQL URL: {parsed.drivername}://...")
    if parsed.password is not None:
        raise SystemExit("--postgres: the URL holds a password, which would show in the"
                         " process list; give it in PGPASSWORD or ~/.pgpass instead")
    host = parsed.host or "127.0.0.1"
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise SystemExit(f"--postgres: {host} is not the loopback; this benchmark"
                             " talks only to 127.0.0.1 or ::1")
    return parsed.set(drivername="postgresql")


def pg_url(server: Any, database: str) -> str:
    return str(server.set(database=database).render_as_string())


def pg_admin(server: Any, *statements: str) -> None:
    """Run statements on the maintenance database, outside a transaction."""
    import psycopg  # noqa: PLC0415 - only with --postgres

    with psycopg.connect(pg_url(server, server.database or "postgres"), autocommit=True,
                         connect_timeout=10) as conn:
        for statement in statements:
            conn.execute(statement)


def _configure(home: Path, **values: str) -> None:
    """Set keys of a home's exchange.toml to TOML values (replacing any already there)."""
    config = home / "exchange.toml"
    lines = [line for line in (config.read_text().splitlines() if config.exists() else [])
             if line.partition("=")[0].strip() not in values]
    lines += [f"{key} = {value}" for key, value in values.items()]
    config.write_text("".join(f"{line}\n" for line in lines))


def _use_database(home: Path, url: str) -> None:
    """Point a home at a database through its exchange.toml."""
    _configure(home, database_url=json.dumps(url))


def _config(home: Path) -> dict[str, Any]:
    config = home / "exchange.toml"
    return tomllib.loads(config.read_text()) if config.exists() else {}


def _database_url(home: Path) -> str | None:
    url = _config(home).get("database_url")
    return str(url) if url else None


def _spool_dir(home: Path) -> Path:
    """Where the home's server spools disclosures (the product's default when unset)."""
    return home / str(_config(home).get("audit_spool_dir") or "audit-spool")


def _setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` with VALUE a TOML value; refused with the reason otherwise."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    try:
        if not sep or not key.isidentifier() or key == "database_url":
            raise ValueError("expected KEY=VALUE (and not database_url: use --postgres)")
        tomllib.loads(f"{key} = {value}")
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    return key, value


def _query(home: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on the home's database (SQLite file or PostgreSQL)."""
    url = _database_url(home)
    if url is None:
        db = sqlite3.connect(f"file:{home / 'exchange.db'}?mode=ro", uri=True, timeout=30)
        try:
            return list(db.execute(sql))
        finally:
            db.close()
    import psycopg  # noqa: PLC0415 - only with --postgres

    with psycopg.connect(url, connect_timeout=10) as conn:
        return list(conn.execute(sql))


def _child_bench(tree: Path) -> Any:
    """The tree's own bench_exchange module (so its own code fills and serves)."""
    sys.path.insert(0, str(tree / "tests" / "perf"))
    import bench_exchange  # noqa: PLC0415 - the tree's, chosen at run time

    if Path(bench_exchange.__file__).resolve().parents[2] != tree.resolve():
        raise RuntimeError(f"imported {bench_exchange.__file__}, not {tree}'s benchmark")
    return bench_exchange


def _fill(tree: Path, workdir: Path, size: int) -> None:
    b = _child_bench(tree)
    bench = b.Bench(workdir, size, 2)
    url = os.environ.get("CX_AB_DATABASE_URL")
    if url:
        bench.home.mkdir(parents=True, mode=0o700)
        _use_database(bench.home, url)
    loaded = bench.fill()
    meta = {"collection": bench.collection, "key": bench.key, "fill": loaded}
    (workdir / "meta.json").write_text(json.dumps(meta))


def _measure(tree: Path, workdir: Path, size: int, reads: int, polls: int
             ) -> dict[str, Any]:
    b = _child_bench(tree)
    meta = json.loads((workdir / "meta.json").read_text())
    bench = b.Bench(workdir, size, 2)
    bench.collection, bench.key = meta["collection"], meta["key"]
    bench.reader, bench.reader_key = "pub", meta["key"]
    bench.settings = b.load_settings(bench.home, env={})
    if _database_url(bench.home) is not None:
        # The tree's own marks read its SQLite file; the same queries, on PostgreSQL.
        def marks() -> tuple[str, str, list[str]]:
            newest, near_end = (_query(bench.home, "SELECT date_added FROM object_versions"
                                       f" ORDER BY date_added DESC LIMIT 1 OFFSET {n}")[0][0]
                                for n in (100, 10))
            ids = _query(bench.home, "SELECT id FROM object_versions ORDER BY random()"
                                     " LIMIT 400")
            return (b.from_micros(newest), b.from_micros(near_end), [i[0] for i in ids if i])

        bench._newest_marks = marks
    bench.start()
    try:
        # The polls first, as in bench_exchange.py: measured after full reads, the ledger's
        # side would also carry their records' writeback (hundreds of MB per 1M read).
        poll = bench.latencies(per_client=polls)["incremental_poll"]
        drained = _drain(bench.home)
        full = [bench.full_read()["full_read_objects_per_s"] for _ in range(reads)]
    finally:
        bench.stop()
    return {"full_read_objects_per_s": full, "incremental_poll": poll,
            "spool_drain_s": drained}


def _drain(home: Path, seconds: float = 300) -> float:
    """Wait until the server's sequencer has moved every spooled disclosure into the log,
    then flush the disk; the seconds waited.

    The latency clients leave a backlog of records on the ledger's side (about 10 ** 6
    disclosures at 1,000 requests per client and shape) that the sequencer renders and
    commits over the next seconds; the full reads should not carry it, as the baseline
    carries nothing. A home without a spool (the baseline) has nothing to wait for.
    """
    start = time.monotonic()
    spool = _spool_dir(home)
    for _ in range(int(seconds * 10)):
        files = {p.name: p.stat().st_size for p in spool.glob("*.spool")} \
            if spool.is_dir() else {}
        if not files:
            break
        done = dict(_query(home, "SELECT name, consumed FROM audit_spool_offsets"))
        if all(done.get(name, 0) >= size for name, size in files.items()):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"the spool was not sequenced within {seconds} s")
    os.sync()
    return round(time.monotonic() - start, 1)


def _run_child(tree: Path, *args: str, database_url: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EXCHANGE_", "CX_AB_"))}
    env["PYTHONPATH"] = str(tree)
    if database_url:
        env["CX_AB_DATABASE_URL"] = database_url
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                         cwd=tree, env=env, capture_output=True, text=True, check=False,
                         timeout=2 * _HOURS)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} in {tree} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", metavar="GIT_REF",
                        help="the commit without the ledger (74b1813)")
    parser.add_argument("--size", type=int, default=1_000_000, help="stored objects")
    parser.add_argument("--rounds", type=int, default=3,
                        help="ABBA rounds (each: one turn per side)")
    parser.add_argument("--reads", type=int, default=2, help="full reads per turn")
    parser.add_argument("--warmup", type=int, default=1,
                        help="uncounted turns per side before the rounds (default 1)")
    parser.add_argument("--polls", type=int, default=1000,
                        help="requests per latency client and read shape (4 clients; the"
                             " first tenth of each is warm-up)")
    parser.add_argument("--workdir", help="where to build the homes (default: a temp dir)")
    parser.add_argument("--ledger-setting", metavar="KEY=VALUE", type=_setting,
                        action="append", default=[],
                        help="a setting (TOML value) for the ledger side's turns; repeatable")
    parser.add_argument("--postgres", metavar="URL",
                        help="store into PostgreSQL on this loopback server (URL of a"
                             " maintenance database, e.g. postgresql://postgres@127.0.0.1/"
                             f"postgres); creates and drops databases named {_PG_PREFIX}*")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        action, tree, workdir = args.child[0], Path(args.child[1]), Path(args.child[2])
        if action == "fill":
            _fill(tree, workdir, args.size)
        else:
            print(json.dumps(_measure(tree, workdir, args.size, args.reads, args.polls)))
        return
    if not args.baseline_ref:
        parser.error("--baseline-ref is required")
    if (not 1 <= args.rounds <= 10 or not 1 <= args.reads <= 5
            or not 50 <= args.polls <= 5000 or not 0 <= args.warmup <= 3):
        parser.error("--rounds must be 1 to 10, --reads 1 to 5, --polls 50 to 5000 and"
                     " --warmup 0 to 3")
    server = pg_server(args.postgres) if args.postgres else None
    try:
        turns = _turns(args, server)
    finally:
        if server is not None:
            pg_admin(server, *(f"DROP DATABASE IF EXISTS {_PG_PREFIX}{name} WITH (FORCE)"
                               for name in ("baseline", "ledger", "run")))
    _report(args, turns, "postgresql" if server else "sqlite")


def _prepare_turn(args: argparse.Namespace, server: Any, name: str, home: Path
                  ) -> Path | None:
    """Point a turn's fresh home copy at its own database copy and give the ledger side
    its settings; the spool directory to remove after the turn, if it is outside the home.
    """
    if server is not None:
        # CHECKPOINT: the copy's (and the last turn's) dirty buffers are written now, not
        # by the server's checkpointer during the turn (it needs a superuser).
        pg_admin(server, f"DROP DATABASE IF EXISTS {_PG_PREFIX}run WITH (FORCE)",
                 f"CREATE DATABASE {_PG_PREFIX}run TEMPLATE {_PG_PREFIX}{name}",
                 "CHECKPOINT")
        _use_database(home, pg_url(server, _PG_PREFIX + "run"))
    if name != "ledger" or not args.ledger_setting:
        return None
    _configure(home, **dict(args.ledger_setting))
    spool = _spool_dir(home)
    if spool.is_relative_to(home):
        return None
    # A spool outside the home outlives the turn; the next turn's fresh copy has not
    # consumed it, and would take its records in again.
    shutil.rmtree(spool, ignore_errors=True)
    return spool


def checkout(ref: str, tree: Path) -> Path:
    """This repository's files at ``ref``, written into the new directory ``tree``."""
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref],
                             capture_output=True, check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
    return tree


def _turns(args: argparse.Namespace, server: Any) -> dict[str, list[dict[str, Any]]]:
    """Fill both sides, then run the ABBA turns; each side's turns."""
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        base_tree = checkout(args.baseline_ref, Path(tmp) / "baseline-tree")
        sides = {"baseline": base_tree, "ledger": ROOT}
        filled = {name: Path(tmp) / f"filled-{name}" for name in sides}
        for name, tree in sides.items():
            print(f"# filling {args.size} objects with the {name} code", file=sys.stderr)
            filled[name].mkdir()
            url = None
            if server is not None:
                pg_admin(server, f"DROP DATABASE IF EXISTS {_PG_PREFIX}{name} WITH (FORCE)",
                         f"CREATE DATABASE {_PG_PREFIX}{name}")
                url = pg_url(server, _PG_PREFIX + name)
            _run_child(tree, "fill", str(tree), str(filled[name]), "--size", str(args.size),
                       database_url=url)

        def turn(name: str) -> dict[str, Any]:
            run = Path(tmp) / "run"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(filled[name], run)
            outside = _prepare_turn(args, server, name, next(run.glob("home-*")))
            os.sync()  # the copy's writeback is not charged to the turn
            out = _run_child(sides[name], "measure", str(sides[name]), str(run),
                             "--size", str(args.size), "--reads", str(args.reads),
                             "--polls", str(args.polls))
            if outside is not None:
                shutil.rmtree(outside, ignore_errors=True)
            return dict(json.loads(out.strip().splitlines()[-1]))

        # The run's first turn was the slowest of its side in most A/Bs (it always fell
        # to the baseline): warm-up turns (one a side by default) are measured and not counted.
        for number in range(args.warmup):
            for name in sides:
                print(f"# warm-up {number + 1} {name} (not counted): {json.dumps(turn(name))}",
                      file=sys.stderr)
        turns: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for number in range(args.rounds):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for name in order:
                turns[name].append(turn(name))
                print(f"# round {number + 1} {name}: {json.dumps(turns[name][-1])}",
                      file=sys.stderr)
        shutil.rmtree(Path(tmp) / "run", ignore_errors=True)
    return turns


def _report(args: argparse.Namespace, turns: dict[str, list[dict[str, Any]]], backend: str
            ) -> None:
    """Print the one JSON line: medians per side, the ledger's cost, every turn."""
    sides = list(turns)
    summary = {name: {
        "full_read_objects_per_s_median": round(statistics.median(
            x for t in turns[name] for x in t["full_read_objects_per_s"])),
        "incremental_poll_p99_ms_median": round(statistics.median(
            t["incremental_poll"]["p99_ms"] for t in turns[name]), 2),
        "incremental_poll_p50_ms_median": round(statistics.median(
            t["incremental_poll"]["p50_ms"] for t in turns[name]), 2),
    } for name in sides}
    base, ours = summary["baseline"], summary["ledger"]
    print(json.dumps({
        "benchmark": "cert-exchange ledger A/B", "backend": backend, "size": args.size,
        "baseline_ref": args.baseline_ref, "rounds": args.rounds, "reads": args.reads,
        "warmup": args.warmup,
        "polls": args.polls, "ledger_settings": {
            key: tomllib.loads(f"v = {value}")["v"] for key, value in args.ledger_setting},
        "cpus": os.cpu_count(), "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": summary,
        "relative": {
            "full_read_objects_per_s_pct": round(
                100 * (ours["full_read_objects_per_s_median"]
                       / base["full_read_objects_per_s_median"] - 1), 1),
            "incremental_poll_p99_pct": round(
                100 * (ours["incremental_poll_p99_ms_median"]
                       / base["incremental_poll_p99_ms_median"] - 1), 1),
        },
        "turns": turns,
    }, sort_keys=True))


if __name__ == "__main__":
    main()
