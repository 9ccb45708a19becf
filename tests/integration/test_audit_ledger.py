"""The audit ledger end to end: a real server records what it serves; an auditor reports,
exports and verifies offline; a member keeps a checkpoint and checks the hub against it;
a read whose ledger write fails serves nothing."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from exchange.audit import spool
from exchange.cli.main import main
from exchange.config import load_settings
from exchange.member.generate import generate_indicators
from exchange.model.objects import Tlp
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.taxii.app import create_app
from tests.integration.conftest import TAXII, serving

START = datetime(2026, 7, 1, tzinfo=UTC)


@dataclass
class Hub:
    home: Path
    base: str
    keys: dict[str, str]
    jwg: str
    exchange: Exchange

    def get(self, path: str, account: str, **params: object) -> requests.Response:
        return requests.get(f"{self.base}/cx/{path}", params=params,  # type: ignore[arg-type]
                            auth=(account, self.keys[account]),
                            headers={"Accept": TAXII}, timeout=30)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["--home", str(self.home), *args],
                                    env={"EXCHANGE_SERVER_SECRET": None, **(env or {})})
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    home = tmp_path_factory.mktemp("audit-hub")
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    keys = {}
    for org in ("UZ-CERT", "PK-CERT", "Operator"):
        ex.add_org(org)
    for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                               ("pk-reader", "PK-CERT", "consumer"),
                               ("auditor", "Operator", "auditor")]:
        ex.add_account(account, org=org, role=role)
        keys[account] = ex.create_api_key(account)[1]
    jwg = ex.add_collection("Joint", alias="jwg", readers=["UZ-CERT", "PK-CERT"],
                            writers=["UZ-CERT"])[0].id
    ex.add_collection("UZ only", alias="uz", readers=["UZ-CERT"], writers=["UZ-CERT"])
    try:
        with serving(home, ("uz-pub", keys["uz-pub"])) as base:
            yield Hub(home, base, keys, jwg, ex)
    finally:
        store.close()


def _publish(hub: Hub, count: int, seed: int) -> list[str]:
    identity = hub.exchange.store.find_org("UZ-CERT").identity_id
    objects = list(generate_indicators(count, identity_id=identity, seed=seed, start=START,
                                       tlp_weights={Tlp.GREEN: 1.0}))
    response = requests.post(
        f"{hub.base}/cx/collections/{hub.jwg}/objects/",
        data=json.dumps({"objects": objects}), auth=("uz-pub", hub.keys["uz-pub"]),
        headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=60)
    assert response.status_code == 202, response.text
    assert response.json()["success_count"] == count
    return [o["id"] for o in objects]


def _read_all(hub: Hub, account: str, limit: int = 10) -> list[str]:
    seen: list[str] = []
    params: dict[str, object] = {"limit": limit}
    for _ in range(100):
        page = hub.get(f"collections/{hub.jwg}/objects/", account, **params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [o["id"] for o in body.get("objects", [])]
        if not body["more"]:
            return seen
        params = {"limit": limit, "next": body["next"]}
    raise AssertionError("paging did not end")


def test_an_auditor_reports_exports_and_verifies_offline(hub: Hub, tmp_path: Path) -> None:
    ids = _publish(hub, 25, seed=1)
    read = _read_all(hub, "pk-reader")
    assert set(ids) <= set(read)
    one = hub.get(f"collections/{hub.jwg}/objects/{ids[0]}/", "pk-reader")
    assert one.status_code == 200

    code, out, err = hub.cli("audit", "checkpoint", "--json")
    assert code == 0, err
    size = json.loads(out)["size"]

    code, out, err = hub.cli("audit", "report", "--recipient", "PK-CERT", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    # Every object read, plus the one read by id, is one disclosure to PK-CERT.
    assert report["totals"]["disclosures"] == len(read) + 1
    assert report["totals"]["by_producer"] == {"UZ-CERT": len(read) + 1}
    assert report["totals"]["by_tlp"]["green"] == len(read) + 1
    assert report["checkpoint"]["size"] == size
    assert report["covered"] is True
    rows = report["disclosures"]
    assert {r["object_id"] for r in rows} == set(read)
    assert {r["channel"] for r in rows} == {"taxii:get_objects", "taxii:get_object"}
    assert all(r["rule"] == "baseline-tlp-green" for r in rows)
    assert all(r["object_digest"].startswith("sha256:") for r in rows)

    code, out, err = hub.cli("audit", "report", "--recipient", "PK-CERT", "--quarter", "2026Q1",
                             "--format", "csv")
    assert code == 0, err
    assert out.strip().count("\n") == 0  # the header only: nothing was read in Q1 2026

    code, html, err = hub.cli("audit", "report", "--recipient", "PK-CERT", "--format", "html")
    assert code == 0, err
    assert "PK-CERT" in html
    assert str(size) in html

    # The publish was recorded too, with its 25 versions, by the publishing account.
    code, out, err = hub.cli("audit", "records", "--kind", "publish")
    assert code == 0, err
    published = [json.loads(line) for line in out.splitlines()]
    assert sum(len(r["objects"]) for r in published) >= 25
    assert {r["account"] for r in published} == {"uz-pub"}

    export = tmp_path / "evidence"
    code, out, err = hub.cli("audit", "export", str(export))
    assert code == 0, err
    # Offline: another process, no home, no database, no server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["EXCHANGE_HOME"] = str(tmp_path / "nowhere")
    checked = subprocess.run(
        [sys.executable, "-m", "exchange", "audit", "verify", "--export", str(export)],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verified" in checked.stdout
    assert not (tmp_path / "nowhere").exists()

    # One changed record in the evidence is caught.
    lines = (export / "records.jsonl").read_bytes().splitlines(keepends=True)
    victim = next(i for i, line in enumerate(lines) if b'"PK-CERT"' in line)
    lines[victim] = lines[victim].replace(b'"PK-CERT"', b'"KZ-CERT"', 1)
    (export / "records.jsonl").write_bytes(b"".join(lines))
    code, out, _ = hub.cli("audit", "verify", "--export", str(export))
    assert code == 1
    assert "does NOT verify" in out
    assert "changed, removed, reordered or inserted" in out

    code, out, err = hub.cli("audit", "verify")
    assert code == 0, out + err
    code, out, err = hub.cli("audit", "proof", "0")
    assert code == 0, err
    assert json.loads(out)["tree_size"] == size


def test_a_member_keeps_a_checkpoint_and_the_hub_can_only_grow(hub: Hub,
                                                              tmp_path: Path) -> None:
    _publish(hub, 5, seed=2)
    assert hub.cli("audit", "checkpoint")[0] == 0
    saved = tmp_path / "pk-saved.json"
    member = {"EXCHANGE_API_KEY": hub.keys["pk-reader"]}
    code, _, err = hub.cli("audit", "checkpoint", "--save", str(saved), "--url",
                           f"{hub.base}/cx/", "--user", "pk-reader", env=member)
    assert code == 0, err
    kept = json.loads(saved.read_text())
    assert kept["verifier_keys"]

    _read_all(hub, "pk-reader")
    assert hub.cli("audit", "checkpoint")[0] == 0
    code, out, err = hub.cli("audit", "verify", "--against", str(saved), "--url",
                             f"{hub.base}/cx/", "--user", "pk-reader", "--json", env=member)
    assert code == 0, err
    grown = json.loads(out)
    assert grown["latest_size"] > grown["saved_size"]
    # The same check on the hub's own database agrees.
    code, out, err = hub.cli("audit", "verify", "--against", str(saved), "--json")
    assert code == 0, err
    assert json.loads(out)["saved_size"] == grown["saved_size"]

    # A kept checkpoint whose root was changed no longer verifies: the hub cannot pass it.
    forged = dict(kept)
    lines = kept["note"].split("\n")
    lines[2] = "A" * 43 + "="
    forged["note"] = "\n".join(lines)
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    code, out, err = hub.cli("audit", "verify", "--against", str(bad), "--url",
                             f"{hub.base}/cx/", "--user", "pk-reader", env=member)
    assert code == 1
    assert "signature" in (out + err).lower()


def test_a_read_whose_disclosures_cannot_be_written_serves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    try:
        ex = Exchange(settings, store)
        uz = ex.add_org("UZ-CERT")
        ex.add_org("PK-CERT")
        ex.add_account("uz-pub", org="UZ-CERT", role="publisher")
        ex.add_account("pk-reader", org="PK-CERT", role="consumer")
        keys = {a: ex.create_api_key(a)[1] for a in ("uz-pub", "pk-reader")}
        jwg = ex.add_collection("Joint", alias="jwg", readers=["UZ-CERT", "PK-CERT"],
                                writers=["UZ-CERT"])[0].id
        objects = list(generate_indicators(3, identity_id=uz.identity_id, seed=5, start=START,
                                           tlp_weights={Tlp.GREEN: 1.0}))
        client = create_app(settings, exchange=ex).test_client()

        def get(account: str) -> Any:
            token = base64.b64encode(f"{account}:{keys[account]}".encode()).decode()
            return client.get(f"/cx/collections/{jwg}/objects/",
                              headers={"Accept": TAXII, "Authorization": f"Basic {token}"})

        token = base64.b64encode(f"uz-pub:{keys['uz-pub']}".encode()).decode()
        posted = client.post(f"/cx/collections/{jwg}/objects/",
                             data=json.dumps({"objects": objects}),
                             headers={"Accept": TAXII, "Content-Type": TAXII,
                                      "Authorization": f"Basic {token}"})
        assert posted.status_code == 202
        # The spool cannot be written (here: its directory is a file).
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        ex.audit.writer.directory = blocker / "spool"
        refused = get("pk-reader")
        assert refused.status_code == 503
        assert refused.get_json()["title"] == "Storage unavailable"
        assert "indicator--" not in refused.get_data(as_text=True)
        ex.audit.writer.directory = ex.audit.spool_dir
        # The spool is written but cannot be made durable (the disk fails the sync,
        # which runs while the response is put together).
        def failing_sync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        with monkeypatch.context() as patched:
            patched.setattr(os, "fdatasync", failing_sync)
            unsynced = get("pk-reader")
        assert unsynced.status_code == 503
        assert "indicator--" not in unsynced.get_data(as_text=True)
        # The same for a batch large enough to be synced on the sync thread while the
        # envelope is serialised: the after-request hook turns the failure into 503.
        with monkeypatch.context() as patched:
            patched.setattr(os, "fdatasync", failing_sync)
            patched.setattr(spool, "_INLINE_SYNC_BYTES", 0)
            unsynced = get("pk-reader")
        assert unsynced.status_code == 503
        assert unsynced.get_json()["title"] == "Storage unavailable"
        assert "indicator--" not in unsynced.get_data(as_text=True)
        served = get("pk-reader")
        assert served.status_code == 200
        assert len(served.get_json()["objects"]) == 3
    finally:
        store.close()


def test_disclosures_survive_a_ledger_outage(hub: Hub) -> None:
    """The log's database refuses writes: reads go on (spooled durably), nothing is lost,
    and publishing, whose records commit with the objects, stores nothing."""
    database = hub.home / "exchange.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TRIGGER cx_test_ledger_down BEFORE INSERT ON audit_records"
                   " BEGIN SELECT RAISE(ABORT, 'ledger down'); END")
    try:
        read = hub.get(f"collections/{hub.jwg}/objects/", "pk-reader", limit=7)
        assert read.status_code == 200
        served = read.headers["X-Request-ID"]
        identity = hub.exchange.store.find_org("UZ-CERT").identity_id
        fresh = list(generate_indicators(2, identity_id=identity, seed=99, start=START))
        refused = requests.post(
            f"{hub.base}/cx/collections/{hub.jwg}/objects/",
            data=json.dumps({"objects": fresh}), auth=("uz-pub", hub.keys["uz-pub"]),
            headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=60)
        assert refused.status_code == 503
        code, _, err = hub.cli("audit", "records", "--kind", "disclosure")
        assert code == 1  # the auditor is told the log cannot take the spool now
        assert "audit" in err.lower() or "database" in err.lower()
    finally:
        with sqlite3.connect(database) as db:
            db.execute("DROP TRIGGER cx_test_ledger_down")
    code, out, err = hub.cli("audit", "records", "--kind", "disclosure", "--recipient",
                             "PK-CERT")
    assert code == 0, err
    recorded = [json.loads(line) for line in out.splitlines()]
    assert any(r["request_id"] == served and len(r["objects"]) == 7 for r in recorded)
    assert not any(hub.exchange.store.object_exists(hub.jwg, o["id"]) for o in fresh)


def test_refusals_and_admin_changes_are_recorded(hub: Hub) -> None:
    uz_only = hub.exchange.store.get_collection("cx", "uz").id
    refused = hub.get(f"collections/{uz_only}/objects/", "pk-reader")
    assert refused.status_code == 404
    code, out, err = hub.cli("audit", "records", "--kind", "denial", "--recipient", "PK-CERT")
    assert code == 0, err
    denials = [json.loads(line) for line in out.splitlines()]
    assert any(d["collection"] == uz_only and d["rule"] == "deny-no-grant"
               and d["request_id"] == refused.headers["X-Request-ID"] for d in denials)

    assert hub.cli("account", "add", "kz-new", "--org", "Operator", "--role", "consumer")[0] == 0
    code, out, err = hub.cli("audit", "records", "--kind", "admin")
    assert code == 0, err
    actions = [(r["action"], r["details"].get("name")) for r in map(json.loads, out.splitlines())]
    assert ("account.create", "kz-new") in actions
    assert ("org.create", "PK-CERT") in actions
    secrets = list(hub.keys.values())
    assert not any(secret in out for secret in secrets)

    (victim,) = _publish(hub, 1, seed=4)
    kept = requests.delete(f"{hub.base}/cx/collections/{hub.jwg}/objects/{victim}/",
                           auth=("uz-pub", hub.keys["uz-pub"]), headers={"Accept": TAXII},
                           timeout=30)
    assert kept.status_code == 403  # only admins delete; a refused write is a denial
    code, out, err = hub.cli("audit", "records", "--kind", "denial")
    assert code == 0, err
    (refusal,) = [d for d in map(json.loads, out.splitlines())
                  if d["request_id"] == kept.headers["X-Request-ID"]]
    assert (refusal["rule"], refusal["recipient_account"], refusal["collection"]) == (
        "deny-delete-not-admin", "uz-pub", hub.jwg)


def _sequencers(home: Path) -> list[int]:
    """Pids of the audit sequencers serving ``home`` (children of our test server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sequence" in argv and str(home).encode() in argv and b"--watch" in argv:
            found.append(int(entry.name))
    return found


def _nice(pid: int) -> int:
    """A process's niceness (proc(5): field 19 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])


def test_the_sequencer_yields_to_the_servers(hub: Hub) -> None:
    # The server runs at our priority; audit_sequencer_nice (default 10) lowers the
    # sequencer's, down to the lowest there is, 19, once it has started.
    expected = min(_nice(os.getpid()) + 10, 19)
    for _ in range(40):  # bounded: 20 s
        (sequencer,) = _sequencers(hub.home)
        if _nice(sequencer) == expected:
            break
        time.sleep(0.5)
    assert _nice(sequencer) == expected


def test_the_server_restarts_its_sequencer(hub: Hub) -> None:
    (first,) = _sequencers(hub.home)
    os.kill(first, signal.SIGKILL)  # a descendant of the server this module started
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _sequencers(hub.home)
        if now and first not in now:
            break
        time.sleep(0.5)
    (second,) = _sequencers(hub.home)
    assert second != first
    # The log says so, without the exit status gunicorn's arbiter took (it reaped the
    # killed child first; Popen could only have reported 0).
    logged = (hub.home / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "the audit sequencer stopped; restarting it" in logged
    assert "exited with 0" not in logged
    # And it works: what a reader receives reaches the log without any CLI help.
    _publish(hub, 2, seed=370)  # something to receive, whichever tests ran before
    read = hub.get(f"collections/{hub.jwg}/objects/", "pk-reader", limit=2)
    assert read.status_code == 200
    assert read.json()["objects"]
    rid = read.headers["X-Request-ID"]
    database = hub.home / "exchange.db"
    for _ in range(40):  # bounded: 20 s
        with sqlite3.connect(database) as db:
            hit = db.execute("SELECT count(*) FROM audit_records WHERE kind = 'disclosure'"
                             " AND instr(body, ?) > 0", (rid.encode(),)).fetchone()[0]
        if hit:
            break
        time.sleep(0.5)
    assert hit == 1
