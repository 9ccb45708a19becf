"""Real third-party TAXII 2.1 servers on loopback for the ingestion tests and benchmark.

* **medallion** (our dependency, 3.0.0): its own ``medallion.scripts.run`` with its
  ``MemoryBackend``, loaded from medallion's test data (read in place from
  ``../shared/data/real/taxii/medallion-default_data.json``, with the discovery URLs
  pointed at the port it listens on), started as a child process.
* **OpenTAXII** (0.9.3, from PyPI): installed by :func:`opentaxii_python` into a venv of
  its own under ``~/.cache/cx-opentaxii/`` (it pins its own Flask, Werkzeug and
  SQLAlchemy, so it never enters ours), configured TAXII 2.1 only with a SQLite
  database, one API root, one collection and an admin account, and started as a child
  process. OpenTAXII 0.9.3 cannot serialise the UUIDs of its own TAXII 2.1 answers
  (eclecticiq/OpenTAXII#243, fixed upstream after the release): the launcher gives its
  ``make_taxii2_response`` a JSON encoder that writes a UUID as its string, nothing else.

Both are loaded through their TAXII POST with taxii2-client (:meth:`TaxiiServer.load`),
so every object gets the ``date_added`` the server assigns. A server that cannot be
installed or started skips the tests with the reason, except under ``CI=true``, where it
fails them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.v21 import Collection

from exchange.taxii.procs import stop_child

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
MEDALLION_DATA = REAL / "taxii" / "medallion-default_data.json"
#: medallion's collection "for testing adding objects" (readable and writable).
MEDALLION_API_ROOT = "trustgroup1"
MEDALLION_COLLECTION = "365fed99-08fa-fdcd-a1b3-fb247eb41d01"
OPENTAXII_VERSION = "0.9.3"
#: What OpenTAXII 0.9.3 runs on (its metadata pins nothing; these are the releases of
#: its time that it works with).
OPENTAXII_PINS = ("flask<2.3", "werkzeug<2.3", "sqlalchemy<2")
CACHE = Path(os.environ.get("CX_OPENTAXII_CACHE", "~/.cache/cx-opentaxii")).expanduser()
TAXII = "application/taxii+json;version=2.1"


def unavailable(reason: str) -> None:
    """Skip (outside CI) or fail (CI=true) because a server is not available."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TaxiiServer:
    """A running TAXII 2.1 server and the collection the tests read."""

    name: str
    base: str  # http://127.0.0.1:port
    discovery: str
    api_root: str
    collection: str
    user: str
    password: str
    proc: subprocess.Popen[bytes]

    @property
    def collection_url(self) -> str:
        return f"{self.api_root}collections/{self.collection}/"

    def client(self, base: str | None = None) -> Collection:
        """taxii2-client's Collection (through ``base`` instead of the server's, e.g. a
        proxy)."""
        url = self.collection_url if base is None else \
            self.collection_url.replace(self.base, base, 1)
        return Collection(url, user=self.user, password=self.password)

    def load(self, objects: Sequence[dict[str, Any]], batch: int) -> None:
        """POST ``objects`` in envelopes of ``batch`` (each envelope gets one
        ``date_added`` on medallion; separate ones on OpenTAXII)."""
        collection = self.client()
        for start in range(0, len(objects), batch):
            status = collection.add_objects({"objects": list(objects[start:start + batch])},
                                            wait_for_completion=False)
            if status.failure_count:
                raise RuntimeError(f"{self.name} refused {status.failure_count} objects:"
                                   f" {status.failures[:3]}")

    def read_all(self, page: int = 1000) -> list[dict[str, Any]]:
        """Every object version of the collection, read by following ``next``."""
        collection = self.client()
        out: list[dict[str, Any]] = []
        envelope = collection.get_objects(limit=page)
        for _ in range(100_000):
            out += envelope.get("objects") or []
            if not envelope.get("more") or not envelope.get("next"):
                break
            envelope = collection.get_objects(limit=page, next=envelope["next"])
        return out


def _wait(url: str, auth: tuple[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(url, auth=auth, headers={"Accept": TAXII}, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError("did not answer within 60 s")


class Unavailable(Exception):
    """A server cannot be installed or started (the message says why)."""


@pytest.fixture(scope="session")
def medallion_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaxiiServer]:
    """medallion with its own test data, on a free loopback port."""
    try:
        with running_medallion(tmp_path_factory.mktemp("medallion")) as server:
            yield server
    except Unavailable as e:
        unavailable(str(e))


@pytest.fixture(scope="session")
def opentaxii_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaxiiServer]:
    """OpenTAXII 0.9.3, TAXII 2.1 only, on a free loopback port."""
    try:
        with running_opentaxii(tmp_path_factory.mktemp("opentaxii")) as server:
            yield server
    except Unavailable as e:
        unavailable(str(e))


@contextlib.contextmanager
def running_medallion(work: Path) -> Iterator[TaxiiServer]:
    """medallion in ``work``, stopped on exit.

    Raises:
        Unavailable: It did not start.
    """
    if not MEDALLION_DATA.is_file():
        raise Unavailable(f"{MEDALLION_DATA} is missing")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = json.loads(MEDALLION_DATA.read_text(encoding="utf-8").replace(
        "http://localhost:5000", base))
    (work / "data.json").write_text(json.dumps(data), encoding="utf-8")
    password = os.urandom(12).hex()
    (work / "config.json").write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend", "filename": str(work / "data.json"),
                    "session_timeout": 600},
        "users": {"uz-node": password},
        "taxii": {"max_page_size": 1000}}), encoding="utf-8")
    log = work / "medallion.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medallion.scripts.run", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "ERROR", str(work / "config.json")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(f"{base}/taxii2/", ("uz-node", password), proc, log)
    except RuntimeError as e:
        stop_child(proc)
        raise Unavailable(f"medallion did not start: {e}") from None
    try:
        yield TaxiiServer("medallion", base, f"{base}/taxii2/",
                          f"{base}/{MEDALLION_API_ROOT}/", MEDALLION_COLLECTION,
                          "uz-node", password, proc)
    finally:
        stop_child(proc)


def opentaxii_python() -> Path:
    """The Python of OpenTAXII's own venv, installed on first use.

    Raises:
        RuntimeError: It cannot be installed (the message says why).
    """
    venv = CACHE / f"venv-{OPENTAXII_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "-q", f"opentaxii=={OPENTAXII_VERSION}",
              *OPENTAXII_PINS]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step[:4])} failed:"
                               f" {done.stderr.decode(errors='replace')[-800:]}")
    marker.write_text(OPENTAXII_VERSION)
    return python


_OPENTAXII_CONFIG = """\
domain: "127.0.0.1:{port}"
support_basic_auth: yes
return_server_error_details: no
auth_api:
  class: opentaxii.auth.sqldb.SQLDatabaseAPI
  parameters:
    db_connection: sqlite:///{work}/auth.db
    create_tables: yes
    secret: {secret}
    token_ttl_secs: 3600
taxii1:
taxii2:
  persistence_api:
    class: opentaxii.persistence.sqldb.Taxii2SQLDatabaseAPI
    parameters:
      db_connection: sqlite:///{work}/data.db
      create_tables: yes
  max_content_length: 10485760
  title: ExampleVendor TAXII
  public_discovery: true
logging:
  opentaxii: error
  root: error
"""
_OPENTAXII_SETUP = """\
import sys
from opentaxii.cli import app
from opentaxii.entities import Account
with app.app_context():
    api = app.taxii_server.servers.taxii2.persistence.api
    root = api.add_api_root(title="vendor", description="ExampleVendor feeds", default=True)
    col = api.add_collection(api_root_id=root.id, title="vendor-indicators",
                             description="indicators", alias="vendor", is_public=False,
                             is_public_write=False)
    app.taxii_server.auth.api.update_account(
        Account(id=None, username="uz-node", is_admin=True, permissions={}), sys.argv[1])
    print(root.id, col.id)
"""
_OPENTAXII_RUN = """\
import json, sys, types
import opentaxii.taxii2.http as taxii2_http
# eclecticiq/OpenTAXII#243: 0.9.3's TAXII 2.1 answers hold UUIDs json.dumps refuses.
taxii2_http.json = types.SimpleNamespace(dumps=lambda data: json.dumps(data, default=str))
from opentaxii.cli import app
app.run(host="127.0.0.1", port=int(sys.argv[1]), debug=False, use_reloader=False)
"""


@contextlib.contextmanager
def running_opentaxii(work: Path) -> Iterator[TaxiiServer]:
    """OpenTAXII in ``work`` (installed first if need be), stopped on exit.

    Raises:
        Unavailable: It cannot be installed, set up or started.
    """
    try:
        python = opentaxii_python()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"OpenTAXII {OPENTAXII_VERSION} cannot be installed: {e}") from None
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (work / "config.yml").write_text(_OPENTAXII_CONFIG.format(
        port=port, work=work, secret=os.urandom(16).hex()), encoding="utf-8")
    env = {**os.environ, "OPENTAXII_CONFIG": str(work / "config.yml"),
           "PYTHONWARNINGS": "ignore"}
    password = os.urandom(12).hex()
    setup = subprocess.run([str(python), "-c", _OPENTAXII_SETUP, password],
                           capture_output=True, env=env, timeout=120, check=False)
    if setup.returncode != 0:
        raise Unavailable("OpenTAXII setup failed:"
                          f" {setup.stderr.decode(errors='replace')[-800:]}")
    root_id, collection_id = setup.stdout.decode().split()[-2:]
    log = work / "opentaxii.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(python), "-c", _OPENTAXII_RUN, str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        _wait(f"{base}/taxii2/", ("uz-node", password), proc, log)
    except RuntimeError as e:
        stop_child(proc)
        raise Unavailable(f"OpenTAXII did not start: {e}") from None
    try:
        yield TaxiiServer("opentaxii", base, f"{base}/taxii2/",
                          f"{base}/taxii2/{root_id}/", collection_id, "uz-node", password,
                          proc)
    finally:
        stop_child(proc)


def real_objects() -> list[dict[str, Any]]:
    """Every object of the real STIX 2.1 bundles in ../shared/data/real/stix21, each
    (id, version) once, in file order."""
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for path in sorted((REAL / "stix21").glob("*.json")):
        for obj in json.loads(path.read_text(encoding="utf-8")).get("objects", []):
            key = (obj["id"], str(obj.get("modified") or obj.get("created") or ""))
            if key not in seen:
                seen.add(key)
                out.append(obj)
    return out


def versions_of(objects: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(id, modified or created) of each object."""
    return {(o["id"], str(o.get("modified") or o.get("created") or "")) for o in objects}
