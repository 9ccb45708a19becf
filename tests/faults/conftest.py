"""Fixtures of the fault suite: a small tmpfs to fill, and a node whose server this
suite starts (in a process group of its own, so a test can signal the whole group as
systemd does) and stops by its pid.

Cases that need root (mounting a tmpfs) are skipped with the reason outside CI; with
``CI=true`` in the environment they fail instead, so CI cannot pass them silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from exchange.config import load_settings
from exchange.member.generate import generate_indicators
from exchange.model.objects import Tlp
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from tests.faults.postgres import ClusterUnavailable, PrivateCluster
from tests.integration.conftest import TAXII, free_port

START = datetime(2026, 7, 1, tzinfo=UTC)


def unavailable(reason: str) -> None:
    """Skip the test for ``reason``, or fail it in CI (``CI=true``)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the fault suite must run here)")
    pytest.skip(reason)


@contextlib.contextmanager
def small_tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_kib`` KiB at ``where`` (root only); always unmounted."""
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(where)],
        capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        unavailable(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the filesystem of ``directory`` with one file, leaving about ``leave`` bytes."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 4096
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                break
    finally:
        os.close(fd)
    if leave:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave))
    return filler


@dataclass
class Served:
    """A node served by ``exchange serve`` in its own process group."""

    home: Path
    base: str
    keys: dict[str, str]
    collection: str
    exchange: Exchange
    proc: subprocess.Popen[bytes]

    def read(self, limit: int = 20, account: str = "pk-reader") -> requests.Response:
        return requests.get(f"{self.base}/cx/collections/{self.collection}/objects/",
                            params={"limit": limit}, auth=(account, self.keys[account]),
                            headers={"Accept": TAXII}, timeout=30)

    def publish(self, count: int, seed: int) -> None:
        identity = self.exchange.store.find_org("UZ-CERT").identity_id
        objects = list(generate_indicators(count, identity_id=identity, seed=seed,
                                           start=START, tlp_weights={Tlp.GREEN: 1.0}))
        answer = requests.post(
            f"{self.base}/cx/collections/{self.collection}/objects/",
            data=json.dumps({"objects": objects}), auth=("uz-pub", self.keys["uz-pub"]),
            headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=60)
        assert answer.status_code == 202, answer.text

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Signal the server's whole process group (systemd's default) and wait."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)  # the group this suite created for it
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def make_home(home: Path, config: str) -> tuple[Exchange, dict[str, str], str]:
    """A home with UZ-CERT (publisher) and PK-CERT (reader) sharing one collection.

    ``config`` (TOML lines, ``database_url`` among them if wanted) is written before the
    home is initialised, so the schema is made in the database it names.
    """
    home.mkdir(parents=True, exist_ok=True)
    with (home / "exchange.toml").open("a", encoding="utf-8") as f:
        f.write(config)
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    ex = Exchange(settings, open_store(settings))
    keys = {}
    for org in ("UZ-CERT", "PK-CERT", "Operator"):
        ex.add_org(org)
    for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                               ("pk-reader", "PK-CERT", "consumer"),
                               ("auditor", "Operator", "auditor")]:
        ex.add_account(account, org=org, role=role)
        keys[account] = ex.create_api_key(account)[1]
    collection = ex.add_collection("Joint", alias="jwg", readers=["UZ-CERT", "PK-CERT"],
                                   writers=["UZ-CERT"])[0].id
    return ex, keys, collection


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this module's own, which its tests may restart."""
    try:
        cluster = PrivateCluster()
    except ClusterUnavailable as e:
        unavailable(f"no private PostgreSQL cluster: {e}")
    try:
        try:
            cluster.create()
        except ClusterUnavailable as e:
            unavailable(f"no private PostgreSQL cluster: {e}")
        yield cluster
    finally:
        cluster.destroy()


def start(home: Path, ex: Exchange, keys: dict[str, str], collection: str,
          workers: int = 2) -> Served:
    """Start ``exchange serve`` for ``home`` in a new process group; wait until it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    port = free_port()
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--home", str(home), "serve", "--port", str(port),
         "--workers", str(workers)], env=env, stdout=log, stderr=log,
        start_new_session=True)
    log.close()
    served = Served(home, f"http://127.0.0.1:{port}", keys, collection, ex, proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if served.read(1).status_code == 200:
                return served
        except requests.RequestException:
            pass
        time.sleep(0.2)
    served.stop(signal.SIGKILL)
    raise RuntimeError("the server did not answer within 30 s")


def recorded_request_ids(home: Path) -> set[str]:
    """The request ids of every disclosure record in the log (through the CLI's own
    ``exchange audit records``, which sequences the spool first)."""
    out = subprocess.run(
        [sys.executable, "-m", "exchange", "--home", str(home), "audit", "records",
         "--kind", "disclosure"], capture_output=True, text=True, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")},
        timeout=120)
    assert out.returncode == 0, out.stderr
    return {json.loads(line)["request_id"] for line in out.stdout.splitlines()}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``exchange --home <home> ...`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "exchange", "--home", str(home), *args], capture_output=True,
        text=True, check=False, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")})
