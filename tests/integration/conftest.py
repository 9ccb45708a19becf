"""A real exchange node for integration tests: gunicorn on loopback, a temp SQLite home.

The server is the production entry point (``python -m exchange serve``) started as a
child process and stopped by its pid. Tests talk to it over HTTP with taxii2-client and
requests, and set up members and collections through the service layer on the same
database (SQLite in WAL mode is safe for that across processes).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from pymisp import MISPOrganisation, MISPUser, PyMISP

from exchange.config import load_settings
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.taxii.procs import stop_child

TAXII = "application/taxii+json;version=2.1"


@pytest.fixture(autouse=True)
def _user_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
               ) -> None:
    """A user home of the test's own: what the CLI keeps under ``~`` (the IOC state of
    ``exchange publish`` without ``--home``) never lands in the real one."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("user-home")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """A running exchange node and the members set up in it."""

    base: str
    home: Path
    exchange: Exchange
    api_root: str
    keys: dict[str, str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"{self.base}/{self.api_root}/"

    def collection_url(self, alias: str) -> str:
        return f"{self.root}collections/{self.collections[alias]}/"

    def auth(self, account: str) -> tuple[str, str]:
        return account, self.keys[account]

    def get(self, url: str, account: str | None = "uz-pub", **kw: object) -> requests.Response:
        headers = {"Accept": TAXII, **kw.pop("headers", {})}  # type: ignore[dict-item]
        auth = self.auth(account) if account else None
        return requests.get(url, auth=auth, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def post(self, url: str, body: bytes, account: str | None = "uz-pub",
             **kw: object) -> requests.Response:
        headers = {"Accept": TAXII, "Content-Type": TAXII, **kw.pop("headers", {})}  # type: ignore[dict-item]
        auth = self.auth(account) if account else None
        return requests.post(url, data=body, auth=auth, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]

    def new_collection(self, *, readers: list[str], writers: list[str],
                       default_tlp: str | None = None) -> str:
        alias = f"c-{uuid.uuid4().hex[:10]}"
        col, _ = self.exchange.add_collection(alias, readers=readers, writers=writers,
                                              alias=alias, default_tlp=default_tlp)
        self.collections[alias] = col.id
        return alias


def _wait(url: str, auth: tuple[str, str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(url, auth=auth, headers={"Accept": TAXII}, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start within 30 s")


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    home = tmp_path_factory.mktemp("exchange-home")
    settings = load_settings(home, env={})
    init_home(settings)
    settings = load_settings(home, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    n = Node(base="", home=home, exchange=ex, api_root=settings.api_root)
    for name in ("UZ-CERT", "PK-CERT", "Operator"):
        n.identities[name] = ex.add_org(name).identity_id
    n.identities["UZ-SOC"] = ex.add_org("UZ-SOC", parent="UZ-CERT").identity_id
    for account, org, role in [
        ("uz-pub", "UZ-CERT", "publisher"),
        ("pk-pub", "PK-CERT", "publisher"),
        ("uz-reader", "UZ-CERT", "consumer"),
        ("uz-soc", "UZ-SOC", "consumer"),
        ("auditor", "Operator", "auditor"),
        ("admin", "Operator", "admin"),
    ]:
        ex.add_account(account, org=org, role=role)
        n.keys[account] = ex.create_api_key(account)[1]
    n.collections["jwg"] = ex.add_collection(
        "Joint", alias="jwg", readers=["UZ-CERT", "PK-CERT", "UZ-SOC"],
        writers=["UZ-CERT", "PK-CERT"])[0].id
    n.collections["uz"] = ex.add_collection(
        "UZ only", alias="uz", readers=["UZ-CERT"], writers=["UZ-CERT"])[0].id

    try:
        with serving(home, n.auth("uz-pub")) as base:
            n.base = base
            yield n
    finally:
        store.close()


@contextlib.contextmanager
def serving(home: Path, auth: tuple[str, str], workers: int = 2) -> Iterator[str]:
    """Run ``exchange serve`` on a free loopback port for a home; yield its base URL.

    The server is our child, stopped by its pid (SIGTERM, then SIGKILL after 20 s).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--home", str(home), "serve", "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=log, stderr=log)
    try:
        _wait(f"{base}/taxii2/", auth, proc)
        yield base
    finally:
        stop_child(proc, timeout=20)
        log.close()


#: The real MISP 2.5.1 of ../shared/misp (its README), started once per session.
MISP_SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "misp" / "start-misp.sh"


@dataclass(frozen=True)
class Misp:
    """A running real MISP instance: its base URL and its site admin's API key."""

    name: str
    url: str
    key: str = field(repr=False)


def _misp_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the MISP tests against real MISP")
    pytest.skip(reason)


def _start_misp(member: str) -> Misp:
    # CX_MISP_PREFIX keeps several checkouts' test runs on separate instances.
    name = f"{os.environ.get('CX_MISP_PREFIX', 'cx')}-{member}"
    if not MISP_SCRIPT.is_file():
        _misp_unavailable(f"{MISP_SCRIPT} is missing")
    # A new instance keeps its ports for good: give it three below the kernel's ephemeral
    # range, or a client socket of a later run may hold one when the instance restarts
    # (MariaDB then refuses to bind). One retry covers a port briefly taken all the same.
    command = [str(MISP_SCRIPT), "start", name, *_fixed_misp_port(name)]
    for attempt in (1, 2):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            _misp_unavailable(f"MISP {name} did not start ({type(e).__name__})")
        if done.returncode == 0 or attempt == 2:
            break
        _stop_misp(name)
        time.sleep(2)
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    url, key = values.get("MISP_URL", ""), values.get("MISP_KEY", "")
    if done.returncode != 0 or not url or not key:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        _misp_unavailable(f"MISP {name} did not start (exit {done.returncode}: {tail[0]})")
    return Misp(name, url, key)


def _fixed_misp_port(name: str) -> list[str]:
    """An HTTP port for a MISP instance not created yet (its database and Redis take the
    next two), free now and below the ephemeral range; [] for an existing instance."""
    root = Path(os.environ.get("MISP_ROOT", "/tmp/cx-misp")) / name
    if (root / "ports").exists():
        return []
    for port in range(20_000 + (uuid.uuid4().int % 3000) * 3, 30_000, 3):
        if all(_port_free(p) for p in (port, port + 1, port + 2)):
            return [str(port)]
    return []


def _port_free(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_misp(name: str) -> None:
    subprocess.run([str(MISP_SCRIPT), "stop", name], capture_output=True, timeout=120,
                   check=False)


@pytest.fixture(scope="session")
def misp_uz() -> Iterator[Misp]:
    """UZ-CERT's MISP (instance ``cx-uz``; the prefix is ``$CX_MISP_PREFIX``), started by
    ``start-misp.sh`` once per session and stopped (data kept, not reset) at its end.
    Outside CI a MISP that cannot start skips the tests that ask for it, with the reason;
    in CI (``CI=true``) they fail."""
    misp = _start_misp("uz")
    try:
        yield misp
    finally:
        _stop_misp(misp.name)


@pytest.fixture(scope="session")
def misp_pk() -> Iterator[Misp]:
    """PK-CERT's MISP (instance ``cx-pk``), like :func:`misp_uz`: a second, separate
    MISP (own database, own port) so sync between two member CERTs is tested for real."""
    misp = _start_misp("pk")
    try:
        yield misp
    finally:
        _stop_misp(misp.name)


def misp_account(admin: PyMISP, org_name: str, role: str, email: str) -> str:
    """A fresh local organisation on a MISP, one user of it with ``role`` (a role name:
    "Sync user", "Publisher", "Org Admin"...), as a deployment sets them up through
    PyMISP; the user's API key. This MISP runs without advanced auth keys (its README),
    so the key ``add_user`` gives back is the user's API key."""
    org = MISPOrganisation()
    org.name = org_name
    made = admin.add_organisation(org, pythonify=True)
    assert isinstance(made, MISPOrganisation), made
    found = admin.roles()
    assert isinstance(found, list), found
    roles = {r["Role"]["name"]: r["Role"]["id"] for r in found}
    user = MISPUser()
    user.email, user.org_id, user.role_id = email, made.id, roles[role]
    added = admin.add_user(user, pythonify=True)
    assert isinstance(added, MISPUser), added
    key = str(added.authkey)
    assert len(key) == 40
    return key


#: A vendor identity some tests relay reports as (FireEye, as in the real APT1 bundle).
FIREEYE = "identity--81cade27-7df8-4730-836b-62d880e6d9d3"


def working_group(ex: Exchange, aliases: tuple[str, ...]
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """The working group on a fresh node: UZ-CERT, PK-CERT, their constituent UZ-SOC, the
    operator and the FireEye identity; accounts uz-pub, pk-pub, fireeye-pub (publishers),
    uz-soc (consumer) and auditor with API keys; and each collection in ``aliases``, read
    by UZ-CERT, PK-CERT and UZ-SOC, written by the two CERTs and FireEye, default AMBER.

    Returns:
        The API keys by account, and the collection ids by alias.
    """
    ex.add_org("UZ-CERT")
    ex.add_org("PK-CERT")
    ex.add_org("UZ-SOC", parent="UZ-CERT")
    ex.add_org("JWG-Operator")
    # Relaying a vendor's report as the vendor (until contributor and author are apart).
    ex.add_org("FireEye", identity_id=FIREEYE)
    keys: dict[str, str] = {}
    for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                               ("pk-pub", "PK-CERT", "publisher"),
                               ("uz-soc", "UZ-SOC", "consumer"),
                               ("fireeye-pub", "FireEye", "publisher"),
                               ("auditor", "JWG-Operator", "auditor")]:
        ex.add_account(account, org=org, role=role)
        keys[account] = ex.create_api_key(account)[1]
    ids = {alias: ex.add_collection(alias, alias=alias, readers=["UZ-CERT", "PK-CERT", "UZ-SOC"],
                                    writers=["UZ-CERT", "PK-CERT", "FireEye"],
                                    default_tlp="amber")[0].id
           for alias in aliases}
    return keys, ids
