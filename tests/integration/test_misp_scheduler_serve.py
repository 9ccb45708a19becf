"""``exchange serve`` runs the MISP scheduler beside the server (a child process it
starts and stops), unless ``--no-scheduler``.

The targets' keys are absent on purpose, so each job run ends at once without network
traffic; what is shown is that the jobs run while the server runs and that nothing is
left behind when it stops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from exchange.config import Settings
from exchange.misp.scheduler import FileLeadership
from exchange.storage import open_store
from exchange.taxii.procs import stop_child
from tests.integration.conftest import free_port
from tests.unit.misp.synchome import make_home, targets_yaml


def wait_for(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 401
    except requests.ConnectionError:
        return False


def lock_free(settings: Settings) -> bool:
    lock = FileLeadership(Path(f"{settings.home / 'exchange.db'}.scheduler-lock"))
    if lock.try_acquire():
        lock.release()
        return True
    return False


def ran_jobs(settings: Settings) -> int:
    store = open_store(settings)
    try:
        return sum(1 for s in store.misp_states() if s.outcome not in ("never", "running"))
    finally:
        store.close()


def serve(home: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    port = free_port()
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--home", str(home), "serve", "--port", str(port),
         "--workers", "1", *flags], env=env, stdout=log, stderr=log)
    log.close()
    return proc, f"http://127.0.0.1:{port}/taxii2/"


@pytest.mark.parametrize("flags", [(), ("--no-scheduler",)], ids=["scheduler", "none"])
def test_serve_runs_the_scheduler_as_a_child_unless_told_not_to(
        tmp_path: Path, flags: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    settings = make_home(home, targets=targets_yaml(uz_key_file=str(home / "absent.key")))
    proc, url = serve(home, *flags)
    try:
        wait_for(lambda: answers(url), "the server answering")
        if flags:
            assert lock_free(settings)
            assert ran_jobs(settings) == 0
        else:
            wait_for(lambda: ran_jobs(settings) == 3, "the scheduler running the 3 jobs")
            assert not lock_free(settings)  # the scheduler child leads
    finally:
        stop_child(proc, timeout=30)
    assert proc.returncode == 0
    assert lock_free(settings)  # the child stopped with the server
    log = (home / "server.log").read_text()
    assert "Traceback" not in log
    if not flags:
        assert "scheduler stopped" in log
