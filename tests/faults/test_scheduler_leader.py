"""Two ``exchange scheduler`` processes on one PostgreSQL database: exactly one leads
(holds the advisory lock and runs the jobs); when the leader is killed, the other takes
over within seconds; SIGTERM stops a scheduler cleanly.

The targets' keys are absent on purpose, so every job run ends at once (``auth-failed``,
or ``failed`` where push and pull are not installed) without any network traffic: what
is shown here is who runs the jobs, not the sync.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from exchange.misp.scheduler import JOB_TABLE
from tests.unit.misp.synchome import make_home, targets_yaml
from tests.unit.storage.conftest import PG_URL, pg_schema

POLL = "0.5"


@pytest.fixture
def schema() -> Iterator[str]:
    with pg_schema() as (name, _):
        yield name


def holder(schema: str) -> str | None:
    """The application name of the connection holding this schema's leader lock."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        key = conn.execute("SELECT hashtextextended('cert-exchange misp scheduler leader '"
                           " || current_schema(), 0)").fetchone()
        assert key is not None
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
            " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.classid::bigint = ((%s::bigint >> 32) & 4294967295)"
            " AND l.objid::bigint = (%s::bigint & 4294967295)", (key[0], key[0])).fetchall()
    assert len(rows) <= 1
    return str(rows[0][0]) if rows else None


def wait_for(check: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


def start(home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "exchange", "--home", str(home), "scheduler", "--poll",
             POLL], env=env, stdout=out, stderr=out)


@pytest.mark.postgres
def test_one_scheduler_leads_and_another_takes_over_when_it_dies(
        tmp_path: Path, schema: str) -> None:
    home = tmp_path / "home"
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    make_home(home, database_url=url,
              targets=targets_yaml(uz_key_file=str(home / "absent.key")))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start(home, logs[0]))
        wait_for(lambda: holder(schema) == f"cx-scheduler {procs[0].pid}",
                 "the first scheduler leading")
        procs.append(start(home, logs[1]))
        wait_for(lambda: "following" in logs[1].read_text(), "the second one following")
        assert holder(schema) == f"cx-scheduler {procs[0].pid}"
        with psycopg.connect(url, autocommit=True) as conn:
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM misp_sync_state WHERE outcome IN ('failed', 'auth-failed')"
            ).fetchone() == (3,), "the leader running the three jobs")
            jobs = sorted(r[0] for r in conn.execute(f"SELECT id FROM {JOB_TABLE}"))
        assert jobs == ["misp-pull:pk-cert-misp", "misp-push:pk-cert-misp",
                        "misp-push:uz-cert-misp"]
        assert "leading" not in logs[1].read_text()

        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        killed = time.monotonic()
        wait_for(lambda: holder(schema) == f"cx-scheduler {procs[1].pid}",
                 "the second scheduler taking over", seconds=20)
        took = time.monotonic() - killed
        assert "leading: running the MISP sync jobs" in logs[1].read_text()

        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=30) == 0
        assert "scheduler stopped" in logs[1].read_text()
        assert holder(schema) is None
        print(f"take-over after the leader was killed: {took:.1f} s (poll {POLL} s)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
