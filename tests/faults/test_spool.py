"""The audit spool under faults, through a real server and real HTTP reads: the spool's
disk filled and freed, a writer killed mid-frame, SIGTERM to the whole process group.

What each asserts is what an auditor relies on: no 200 leaves without its records (every
fully received 200 response has its disclosure record in the log), a refused read is a
TAXII error (503, JSON, Retry-After), and ``exchange audit sequence``, ``verify`` and
``records`` work afterwards without a restart. Bounded: about half a minute in all.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exchange.audit import spool
from exchange.audit.records import DisclosureBatch
from tests.faults.conftest import (
    Served,
    cli,
    fill,
    make_home,
    recorded_request_ids,
    small_tmpfs,
    start,
)
from tests.unit.audit.helpers import DIGEST, T0


@pytest.fixture(scope="module")
def spool_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with small_tmpfs(tmp_path_factory.mktemp("spool-disk") / "mnt", 512) as mounted:
        yield mounted


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, spool_disk: Path) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("spool-fault-home")
    ex, keys, collection = make_home(home, f'audit_spool_dir = "{spool_disk}"\n')
    served = start(home, ex, keys, collection)
    try:
        served.publish(40, seed=18)
        yield served
    finally:
        served.stop()
        ex.store.close()


def _refusal(answer: requests.Response) -> None:
    """A refused read: 503 as a TAXII error message, with Retry-After, and no objects."""
    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"].startswith("application/taxii+json")
    body = answer.json()
    assert body["http_status"] == "503"
    assert "objects" not in body
    assert int(answer.headers["Retry-After"]) > 0


def test_a_full_spool_disk_refuses_reads_and_recovers_without_a_restart(
        node: Served, spool_disk: Path) -> None:
    served: list[str] = []
    refused: list[str] = []
    filler = fill(spool_disk, leave=24 * 1024)  # room for a few responses, then ENOSPC
    try:
        for _ in range(400):  # bounded
            answer = node.read(20)
            if answer.status_code == 200:
                assert len(answer.json()["objects"]) == 20  # fully received
                served.append(answer.headers["X-Request-ID"])
            else:
                _refusal(answer)
                refused.append(answer.headers["X-Request-ID"])
                if len(refused) >= 20:
                    break
    finally:
        filler.unlink()
    assert served
    assert len(refused) >= 20
    # Space is back: reads are served and recorded again, by the same server.
    for _ in range(10):
        answer = node.read(20)
        assert answer.status_code == 200, answer.text
        served.append(answer.headers["X-Request-ID"])
    assert cli(node.home, "audit", "sequence").returncode == 0
    verified = cli(node.home, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    recorded = recorded_request_ids(node.home)
    assert set(served) <= recorded  # no 200 without its records
    assert not set(refused) & recorded  # and nothing recorded that was refused


def _columns(request_id: str) -> DisclosureBatch:
    return DisclosureBatch(
        time=T0, channel="taxii:get_objects", recipient_account="pk-reader",
        recipient_org="PK-CERT", collection="c-1", policy_digest=DIGEST,
        request_id=request_id, groups=[("UZ-CERT", "green", "baseline-tlp-green")],
        object_ids=["indicator--00000001-0000-4000-8000-000000000000"],
        object_versions=[T0], dates_added=[T0], digests=[bytes(32)], group_of=[0])


def _workers(server: int) -> list[int]:
    """The gunicorn workers of our server (its children that are not the sequencer)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == server and b"sequence" not in argv:
            found.append(int(entry.name))
    return found


def test_a_writer_killed_mid_frame_poisons_nothing(node: Served, spool_disk: Path) -> None:
    # A real worker killed with SIGKILL between reads (gunicorn starts another) ...
    before = node.read(5)
    assert before.status_code == 200
    os.kill(_workers(node.proc.pid)[0], signal.SIGKILL)
    # ... and one killed mid-write, simulated: its file ends in half a frame.
    dead = spool_disk / f"999999999-{time.time_ns()}-1.spool"
    torn = spool.encode(_columns("killed-mid-frame"))
    dead.write_bytes(spool.encode(_columns("killed-after-a-whole-batch"))
                     + torn[:len(torn) // 2])
    served = [before.headers["X-Request-ID"]]
    for _ in range(10):  # more appends by the live workers, then sequencing
        answer = node.read(5)
        assert answer.status_code == 200, answer.text
        served.append(answer.headers["X-Request-ID"])
    sequenced = cli(node.home, "audit", "sequence")
    assert sequenced.returncode == 0, sequenced.stderr
    assert not dead.exists()  # sequenced, its torn tail skipped, and reclaimed
    assert cli(node.home, "audit", "verify").returncode == 0
    recorded = recorded_request_ids(node.home)
    assert set(served) | {"killed-after-a-whole-batch"} <= recorded
    assert "killed-mid-frame" not in recorded


def _logged(database: Path, request_id: str) -> bool:
    with sqlite3.connect(database) as db:
        return bool(db.execute("SELECT count(*) FROM audit_records WHERE kind = 'disclosure'"
                               " AND instr(body, ?) > 0", (request_id.encode(),)).fetchone()[0])


def test_sigterm_to_the_process_group_drains_the_spool_into_the_log(
        tmp_path: Path) -> None:
    """Under load, SIGTERM to every process of the server at once (systemd's
    KillMode=control-group): the records of every response received are in the log
    when the server has exited, before any restart or ``exchange audit`` command."""
    home = tmp_path / "home"
    home.mkdir()
    # The sequencer would move the spool only once a minute: what reaches the log does
    # so at shutdown.
    ex, keys, collection = make_home(home, "audit_sequence_ms = 60000\n")
    node = start(home, ex, keys, collection)
    try:
        node.publish(30, seed=12)
        received: list[str] = []
        lock = threading.Lock()
        going = threading.Event()
        going.set()

        def poll() -> None:
            while going.is_set():
                try:
                    answer = node.read(10)
                    objects = answer.json().get("objects") if answer.ok else None
                except (requests.RequestException, ValueError):
                    return  # the server is gone
                if objects:
                    with lock:
                        received.append(answer.headers["X-Request-ID"])

        threads = [threading.Thread(target=poll) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(200):  # bounded: until a few dozen responses are in
            with lock:
                if len(received) >= 40:
                    break
            time.sleep(0.05)
        node.stop(signal.SIGTERM)
        going.clear()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        node.stop(signal.SIGKILL)
        ex.store.close()
    assert len(received) >= 40
    missing = [rid for rid in received if not _logged(home / "exchange.db", rid)]
    assert missing == []
    assert spool.usage(home / "audit-spool") == 0  # nothing left for the next start
