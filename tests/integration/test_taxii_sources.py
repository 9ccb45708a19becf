"""TAXII sources ingested from real servers (issue 20 items 2 and 6).

medallion and OpenTAXII run on loopback (tests/integration/taxii_servers.py), loaded
through their own TAXII POST with real STIX 2.1 bundles and realistic generated
indicators. Each test ingests into a fresh exchange home under the shipped policies
and checks what an operator would: every object version the server holds is stored once
in the local collection as the vendor's contribution, or refused with a reason; nothing
is stored twice, whatever failed in between.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import certifi
import pytest
from click.testing import CliRunner
from taxii2client.v21 import Collection

from exchange.cli.main import main
from exchange.config import load_settings
from exchange.feeds import ingest as ingest_module
from exchange.feeds.ingest import Outcome
from exchange.feeds.run import load_node_sources, run_source, source_named
from exchange.feeds.sources import Kind, TaxiiSource
from exchange.member.generate import generate_indicators, identity_id_for
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange, init_home
from exchange.signing.cxsig import verify_object
from exchange.storage import open_store
from exchange.storage.base import ObjectQuery, VersionMatch
from exchange.storage.timestamps import to_micros
from exchange.taxii.procs import stop_child
from tests.integration.taxii_proxy import TaxiiProxy
from tests.integration.taxii_servers import (
    TaxiiServer,
    medallion_server,
    opentaxii_server,
    real_objects,
    versions_of,
)
from tests.integration.tls_pki import TlsProxy, make_pki

__all__ = ["medallion_server", "opentaxii_server"]

REPO = Path(__file__).resolve().parents[2]
VENDOR = "ExampleVendor"
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: Generated indicators each server holds beside the real bundles (medallion's memory
#: backend scans its whole manifest per object on every request: keep it small).
GENERATED = 150


def vendor_indicators(count: int, seed: int) -> list[dict[str, Any]]:
    return list(generate_indicators(count, identity_id=identity_id_for(VENDOR), seed=seed,
                                    start=START))


@pytest.fixture(scope="module")
def medallion(medallion_server: TaxiiServer) -> TaxiiServer:
    """medallion holding the real bundles and 150 generated indicators (envelopes of 10,
    so each shares one date_added)."""
    if not medallion_server.read_all():
        medallion_server.load(real_objects(), batch=10)
        medallion_server.load(vendor_indicators(GENERATED, seed=20), batch=10)
    return medallion_server


@pytest.fixture(scope="module")
def opentaxii(opentaxii_server: TaxiiServer) -> TaxiiServer:
    if not opentaxii_server.read_all():
        # OpenTAXII 0.9.3 answers 500 to an object without `modified` (it keys every
        # version by it): marking definitions and SCOs of the bundles stay out.
        opentaxii_server.load([o for o in real_objects() if "modified" in o], batch=25)
        opentaxii_server.load(vendor_indicators(GENERATED, seed=21), batch=50)
    return opentaxii_server


class Home:
    """An exchange home under the shipped policies, reading one source into jwg."""

    def __init__(self, path: Path, server: TaxiiServer, *, api_root: str | None = None,
                 page_size: int = 40, timeout: float = 10,
                 where: str | None = None, sign_workers: int = 0) -> None:
        path.mkdir(parents=True, exist_ok=True)
        secret = path / "source.key"
        secret.write_text(server.password + "\n")
        secret.chmod(0o600)
        (path / "sources.yaml").write_text(f"""version: 1
sources:
  vendor:
    kind: vendor
    {where or "api_root: " + (api_root or server.api_root)}
    collection: {server.collection}
    org: {VENDOR}
    into: jwg
    user: {server.user}
    password_file: {secret}
    schedule: {{interval: 300}}
    timeout: {timeout}
    page_size: {page_size}
    sign_workers: {sign_workers}
""")
        (path / "exchange.toml").write_text(
            f'policy_dir = "{REPO / "policies"}"\ntaxii_sources = "sources.yaml"\n')
        init_home(load_settings(path, env={}))
        self.settings = load_settings(path, env={})
        self.store = open_store(self.settings)
        policy = PolicySource(self.settings.policy_path)  # type: ignore[arg-type]
        policy.load()
        self.node = Exchange(self.settings, self.store, policy=policy)
        for org in ("UZ-CERT", "PK-CERT", VENDOR):
            self.node.add_org(org)
        self.jwg = self.node.add_collection(
            "Joint", alias="jwg", readers=["UZ-CERT", "PK-CERT"],
            writers=["UZ-CERT", "PK-CERT", VENDOR])[0]
        self.source: TaxiiSource = source_named(load_node_sources(self.settings), "vendor")

    def run(self, **kw: Any) -> Any:
        return run_source(self.node, self.source, **kw)

    def stored(self) -> Counter[tuple[str, int]]:
        """(id, version) -> rows stored in jwg (each must be 1)."""
        rows = self.store.get_objects(ObjectQuery(
            collection_id=self.jwg.id, versions=VersionMatch(all=True), limit=100_000,
            include_body=False)).rows
        assert all(r.producer_org == self.node.store.find_org(VENDOR).id for r in rows)
        return Counter((r.id, r.version) for r in rows)


@pytest.fixture(params=["medallion", "opentaxii"])
def server(request: pytest.FixtureRequest) -> TaxiiServer:
    """Each real server in turn, loaded."""
    found: TaxiiServer = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def home(tmp_path: Path, server: TaxiiServer) -> Iterator[Home]:
    h = Home(tmp_path / "home", server)
    try:
        yield h
    finally:
        h.store.close()


def micros(key: tuple[str, str]) -> tuple[str, int]:
    return key[0], to_micros(key[1])


def assert_exactly_once(h: Home, server: TaxiiServer, refused: set[str]) -> None:
    """Every version the server holds is stored once, or was refused with a reason."""
    wanted = {micros(k) for k in versions_of(server.read_all())}
    stored = h.stored()
    assert [k for k, n in stored.items() if n != 1] == []
    missing = {k for k in wanted if k not in stored and k[0] not in refused}
    assert missing == set()
    assert set(stored) <= wanted


def test_a_vendor_feed_is_ingested_exactly_once_and_then_only_what_is_new(
        home: Home, server: TaxiiServer) -> None:
    first = home.run()
    assert first.outcome in (Outcome.OK, Outcome.PARTIAL), first.message
    refused = {r.id for r in first.refusals}
    assert all(r.reason for r in first.refusals)
    assert first.counts["created"] >= GENERATED, (first.message, first.refusals[:3])
    assert_exactly_once(home, server, refused)
    state = home.store.source_state("vendor")
    assert state is not None
    assert state.cursor is not None
    assert state.paging == "next"
    assert state.counts["created"] == first.counts["created"]
    assert len(state.reasons) == len(first.refusals)

    again = home.run()
    assert again.counts["created"] == 0, again.message
    before = sum(home.stored().values())

    seed = 30 if server.name == "medallion" else 31
    server.load(vendor_indicators(25, seed=seed), batch=5)
    newer = home.run()
    assert newer.counts["created"] == 25, newer.message
    assert sum(home.stored().values()) == before + 25
    assert_exactly_once(home, server, refused)


def test_signing_in_worker_processes_stores_every_version_once_attested_by_the_node(
        opentaxii: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", opentaxii, page_size=150, sign_workers=2)
    try:
        report = h.run()
        assert report.outcome in (Outcome.OK, Outcome.PARTIAL), report.message
        assert report.counts["created"] >= GENERATED
        assert_exactly_once(h, opentaxii, {r.id for r in report.refusals})
        node_key = h.node.node_key()
        rows = h.store.get_objects(ObjectQuery(
            collection_id=h.jwg.id, versions=VersionMatch(all=True), limit=100_000)).rows
        assert len(rows) == report.counts["created"]
        for row in rows:
            assert row.signed_kid == node_key.kid
            signed = verify_object(json.loads(row.body), lambda _kid: node_key.public_key)
            assert signed.kid == node_key.kid
    finally:
        h.store.close()


def test_a_connection_cut_mid_page_resumes_without_loss_or_duplication(
        server: TaxiiServer, tmp_path: Path) -> None:
    proxy = TaxiiProxy(server.base).start()
    try:
        h = Home(tmp_path / "home", server,
                 api_root=server.api_root.replace(server.base, proxy.url("")), page_size=30)
        proxy.cut_after(3)
        cut = h.run()
        assert cut.outcome is Outcome.FAILED
        assert "connection broke" in cut.message or "not a valid TAXII" in cut.message
        state = h.store.source_state("vendor")
        assert state is not None
        assert state.outcome == "failed"
        assert state.failures == 1
        assert state.cursor is not None  # three pages were stored before the cut
        partly = sum(h.stored().values())
        assert partly > 0

        proxy.down()
        refused_connection = h.run()
        assert refused_connection.outcome is Outcome.FAILED
        assert "cannot connect" in refused_connection.message
        assert h.store.source_state("vendor").cursor == state.cursor  # type: ignore[union-attr]
        proxy.up()

        resumed = h.run()
        assert resumed.outcome in (Outcome.OK, Outcome.PARTIAL), resumed.message
        assert h.store.source_state("vendor").failures == 0  # type: ignore[union-attr]
        assert_exactly_once(h, server, {r.id for r in resumed.refusals}
                            | {r.id for r in cut.refusals})
        h.store.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize(("fault", "paging", "note"), [
    ("drop_next", "more", None),
    ("ignore_next", "offset", "same page again"),
    ("more_forever", "more", "more is wrong"),
], ids=["more-without-next", "next-ignored", "more-forever"])
def test_a_server_that_pages_wrongly_is_detected_and_read_whole(
        opentaxii: TaxiiServer, tmp_path: Path, fault: str, paging: str,
        note: str | None) -> None:
    # OpenTAXII, whose added_after is an indexed query (medallion's scans its manifest
    # for every object, about a second per page at this size).
    proxy = TaxiiProxy(opentaxii.base).start()
    try:
        h = Home(tmp_path / "home", opentaxii,
                 api_root=opentaxii.api_root.replace(opentaxii.base, proxy.url("")),
                 page_size=50)
        getattr(proxy, fault)()
        report = h.run()
        assert report.outcome in (Outcome.OK, Outcome.PARTIAL), report.message
        assert report.paging == paging
        if note:
            assert note in report.message
        assert report.counts["pages"] < 200  # bounded
        assert_exactly_once(h, opentaxii, {r.id for r in report.refusals})
        state = h.store.source_state("vendor")
        assert state is not None
        assert state.paging == paging
        h.store.close()
    finally:
        proxy.stop()


def test_a_wrong_password_is_auth_failed_and_stores_nothing(medallion: TaxiiServer,
                                                              tmp_path: Path) -> None:
    h = Home(tmp_path / "home", medallion)
    (tmp_path / "home" / "source.key").write_text("not-the-password\n")
    report = h.run()
    assert report.outcome is Outcome.AUTH_FAILED
    assert "refused the login (HTTP 401)" in report.message
    assert "not-the-password" not in json.dumps(report.message)
    assert sum(h.stored().values()) == 0
    state = h.store.source_state("vendor")
    assert state is not None
    assert state.outcome == "auth-failed"
    assert state.cursor is None
    status = CliRunner().invoke(main, ["--home", str(h.settings.home), "sync", "status"],
                                env={"EXCHANGE_SERVER_SECRET": None})
    assert ("  stopped: the server refused the login; fix the password or the sources file"
            " and the job resumes") in status.stdout.splitlines()
    h.store.close()


def test_sync_run_and_status_show_a_source_as_an_operator_sees_it(
        medallion: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", medallion)
    h.store.close()
    runner = CliRunner()
    run = runner.invoke(main, ["--home", str(h.settings.home), "sync", "run", "vendor"],
                        env={"EXCHANGE_SERVER_SECRET": None})
    assert run.exit_code in (0, 1), run.output
    first = run.stdout.splitlines()
    assert first[0] in ("source vendor: ok", "source vendor: partial")
    assert first[1].startswith("  created ")
    status = runner.invoke(main, ["--home", str(h.settings.home), "sync", "status"],
                           env={"EXCHANGE_SERVER_SECRET": None})
    assert status.exit_code == 0, status.output
    lines = status.stdout.splitlines()
    at = lines.index("TAXII sources:")
    assert lines[at + 1].startswith("vendor (TAXII source): ")
    assert ", next run not scheduled" in lines[at + 1]
    assert lines[at + 3].startswith("  cursor: 20")
    assert lines[at + 3].endswith("paging: next")
    data = json.loads(runner.invoke(
        main, ["--home", str(h.settings.home), "sync", "status", "--json"],
        env={"EXCHANGE_SERVER_SECRET": None}).stdout)
    (row,) = data["sources"]
    assert row["counts"]["created"] >= GENERATED
    assert row["counts"]["refused"] == len(row["reasons"])
    assert all(r["reason"] for r in row["reasons"])
    assert medallion.password not in status.stdout + run.stdout


def test_a_peer_source_without_a_pinned_peer_verifier_refuses_to_run(
        medallion: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", medallion)
    peer = replace(h.source, kind=Kind.PEER, trust="pk-node")
    report = run_source(h.node, peer, verifier_for=None)
    assert report.outcome is Outcome.FAILED
    assert "cannot verify peer signatures" in report.message
    assert sum(h.stored().values()) == 0
    h.store.close()


class RefuseIndicators:
    """A pinned-peer verifier stand-in (the ObjectVerifier seam): refuses indicators."""

    def verify(self, obj: Mapping[str, Any], recorded: int | None = None) -> str | None:
        if obj.get("type") == "indicator":
            return "no signature by a key pinned for peer pk-node"
        return None

    def compromised_since(self, obj: Mapping[str, Any]) -> int | None:
        return None

    keys = None  # no registry: nothing to mirror


def test_a_peer_source_stores_only_what_its_verifier_accepts(
        medallion: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", medallion)
    peer = replace(h.source, kind=Kind.PEER, trust="pk-node")
    report = run_source(h.node, peer, verifier_for=lambda _node, _trust: RefuseIndicators())
    refused = [r for r in report.refusals if r.rule == "signature"]
    assert len(refused) >= GENERATED
    assert {r.reason for r in refused} == {"no signature by a key pinned for peer pk-node"}
    assert not [k for k in h.stored() if k[0].startswith("indicator--")]
    state = h.store.source_state("vendor")
    assert state is not None
    assert sum(1 for r in state.reasons if r["rule"] == "signature") == len(refused)
    h.store.close()


class CompromisedKey:
    """A verifier stand-in for a peer whose key, which signed every indicator, was
    revoked as compromised since ``since``: an indicator verifies only with a recording
    time before it, as the pinned-peer verifier decides (exchange.feeds.peers)."""

    def __init__(self, since: int) -> None:
        self.since = since
        self.recorded: dict[str, int | None] = {}

    def verify(self, obj: Mapping[str, Any], recorded: int | None = None) -> str | None:
        if obj.get("type") != "indicator":
            return None
        self.recorded[str(obj["id"])] = recorded
        if recorded is not None and recorded < self.since:
            return None
        return "key k was revoked (compromised since s) and " + (
            "the time the peer recorded this object is not known here" if recorded is None
            else "the peer recorded this object at r")

    def compromised_since(self, obj: Mapping[str, Any]) -> int | None:
        return self.since if obj.get("type") == "indicator" else None

    keys = None  # no registry: nothing to mirror


def test_objects_signed_by_a_revoked_key_are_judged_by_when_the_source_recorded_them(
        medallion: TaxiiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded before the compromise (medallion's manifest says when): stored, each
    once. With the manifest unreadable: refused, saying the time is not known."""
    indicators = {o["id"] for o in medallion.read_all() if o["type"] == "indicator"}
    h = Home(tmp_path / "before", medallion)
    verifier = CompromisedKey(since=int(time.time() * 1_000_000))
    peer = replace(h.source, kind=Kind.PEER, trust="pk-node")
    report = run_source(h.node, peer, verifier_for=lambda _node, _trust: verifier)
    assert not [r for r in report.refusals if r.rule == "signature"], report.refusals[:3]
    other = {r.id for r in report.refusals}  # a real file's, refused by the ingest rules
    assert len(indicators - other) >= GENERATED
    assert indicators - other <= {k[0] for k in h.stored()}
    assert set(verifier.recorded) == indicators
    assert all(t is not None and t < verifier.since for t in verifier.recorded.values())
    assert [k for k, n in h.stored().items() if n != 1] == []
    h.store.close()

    def unreadable(self: Any, ids: Any) -> Any:
        raise ingest_module.ExchangeError("the server answered HTTP 500")

    monkeypatch.setattr(ingest_module.TaxiiReader, "recorded", unreadable)
    h = Home(tmp_path / "unknown", medallion)
    peer = replace(h.source, kind=Kind.PEER, trust="pk-node")
    report = run_source(h.node, peer, verifier_for=lambda _n, _t: CompromisedKey(since=1))
    refused = {r.id: r.reason for r in report.refusals if r.rule == "signature"}
    assert set(refused) == indicators
    assert all(reason.endswith("is not known here") for reason in refused.values())
    assert not [k for k in h.stored() if k[0].startswith("indicator--")]
    h.store.close()


def test_the_scheduler_runs_each_source_as_a_job_and_records_its_next_run(
        medallion: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", medallion)
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--home", str(h.settings.home), "scheduler",
         "--poll", "0.5"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")},
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            state = h.store.source_state("vendor")
            if state is not None and state.outcome in ("ok", "partial") and state.next_run:
                break
            time.sleep(0.3)
        assert state is not None
        assert state.outcome in ("ok", "partial"), state.message
        assert state.next_run is not None
        assert state.next_run > state.last_finished  # type: ignore[operator]
        assert state.counts["created"] >= GENERATED
    finally:
        stop_child(proc)
    assert proc.returncode == 0
    assert_exactly_once(h, medallion, {r["id"] for r in state.reasons})
    h.store.close()


def test_an_answer_over_the_size_limit_is_refused_and_nothing_stored(
        medallion: TaxiiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "MAX_ANSWER_BYTES", 4096)
    h = Home(tmp_path / "home", medallion)
    report = h.run()
    assert report.outcome is Outcome.FAILED
    assert "bytes is over the 4,096 the exchange reads; lower page_size" in report.message
    assert sum(h.stored().values()) == 0
    h.store.close()


@pytest.mark.parametrize("by", ["id", "title"])
def test_a_source_named_by_discovery_url_reads_the_default_api_root(
        opentaxii: TaxiiServer, tmp_path: Path, by: str) -> None:
    h = Home(tmp_path / "home", opentaxii, where=f"discovery: {opentaxii.discovery}")
    if by == "title":
        h.source = replace(h.source, collection="vendor-indicators")
    report = h.run()
    assert report.outcome in (Outcome.OK, Outcome.PARTIAL), report.message
    assert_exactly_once(h, opentaxii, {r.id for r in report.refusals})
    assert report.counts["created"] >= GENERATED
    h.store.close()


def test_a_run_killed_mid_ingestion_resumes_and_stores_each_version_once(
        opentaxii: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", opentaxii, page_size=10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--home", str(h.settings.home), "sync", "run",
         "vendor"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")},
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(h.stored().values()) < 30:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = sum(h.stored().values())
    assert killed_at >= 30
    state = h.store.source_state("vendor")
    assert state is not None
    assert state.outcome == "running"  # what a crash leaves; the next run takes over
    resumed = h.run()
    assert resumed.outcome in (Outcome.OK, Outcome.PARTIAL), resumed.message
    assert sum(h.stored().values()) > killed_at
    assert_exactly_once(h, opentaxii, {r.id for r in resumed.refusals})
    h.store.close()


def test_a_cursor_lost_after_its_page_was_stored_costs_duplicates_never_copies(
        opentaxii: TaxiiServer, tmp_path: Path) -> None:
    h = Home(tmp_path / "home", opentaxii)
    first = h.run()
    stored = h.stored()
    h.store.save_source_state(replace(h.store.source_state("vendor"),  # type: ignore[type-var]
                                      cursor=None))
    again = h.run()
    assert again.counts["created"] == 0
    assert again.counts["duplicate"] == first.counts["created"]
    assert h.stored() == stored
    h.store.close()


def _behind_tls(h_path: Path, server: TaxiiServer, proxy: TlsProxy, extra: str) -> Home:
    """A home whose source reads ``server`` through the TLS ``proxy``, with ``extra``
    lines (ca_file, client_cert, client_key) in its entry."""
    url = server.api_root.replace(server.base, proxy.url("").rstrip("/"), 1)
    return Home(h_path, server, where=f"api_root: {url}{extra}")


def test_a_source_behind_mutual_tls_presents_its_client_certificate(
        medallion: TaxiiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A partner's server that authenticates clients by certificate (mutual TLS, as
    government sharing programmes do), in front of real medallion: the source presents
    the certificate and key its entry names and reads the feed exactly once; without
    them, or trusting another CA, the run fails and says it was TLS. The source's
    ca_file holds where requests would let the environment's CA bundle override it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    pki = make_pki(tmp_path / "pki")
    proxy = TlsProxy(medallion.base, pki, require_client_cert=True).start()
    try:
        h = _behind_tls(tmp_path / "mtls", medallion, proxy,
                        f"\n    ca_file: {pki.ca}\n    client_cert: {pki.client_cert}"
                        f"\n    client_key: {pki.client_key}")
        assert (h.source.client_cert, h.source.client_key) == (
            str(pki.client_cert), str(pki.client_key))
        report = h.run()
        assert report.outcome in (Outcome.OK, Outcome.PARTIAL), report.message
        assert_exactly_once(h, medallion, {r.id for r in report.refusals})
        assert proxy.forwarded > 0
        h.store.close()

        for name, extra, why in [
                ("no-cert", f"\n    ca_file: {pki.ca}", "TLS with the server failed"),
                ("other-ca", f"\n    ca_file: {pki.ca}\n    client_cert:"
                             f" {pki.stranger_cert}\n    client_key: {pki.stranger_key}",
                 "TLS with the server failed"),
                ("untrusted-server", f"\n    client_cert: {pki.client_cert}"
                                     f"\n    client_key: {pki.client_key}",
                 "CERTIFICATE_VERIFY_FAILED")]:
            before = proxy.forwarded
            h = _behind_tls(tmp_path / name, medallion, proxy, extra)
            report = h.run()
            assert report.outcome is Outcome.FAILED, (name, report.message)
            assert why in report.message, (name, report.message)
            assert proxy.forwarded == before  # nothing reached the server
            assert not h.stored()
            h.store.close()
    finally:
        proxy.stop()


#: medallion's own "High Value Indicator Collection", as its test data ships it: versions
#: recorded in 2017 and 2018, long before anything the tests load.
HIGH_VALUE = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"


def test_a_source_pointed_at_another_collection_reads_that_one_from_the_start(
        medallion: TaxiiServer, tmp_path: Path) -> None:
    """The operator re-points a source, keeping its name, at another collection: the
    cursor of the first (a position there) must not skip what the second recorded
    before it; re-run, the second is read incrementally again."""
    h = Home(tmp_path / "home", medallion)
    assert h.run().counts["created"] > 0
    cursor = h.store.source_state("vendor").cursor  # type: ignore[union-attr]
    other = Collection(f"{medallion.api_root}collections/{HIGH_VALUE}/",
                       user=medallion.user, password=medallion.password)
    held = versions_of(other.get_objects()["objects"])
    assert held
    assert not other.get_objects(added_after=cursor).get("objects")  # all before it
    moved = replace(h.source, collection=HIGH_VALUE)
    report = run_source(h.node, moved)
    assert report.counts["created"] + report.counts["refused"] == len(held), report.message
    assert report.counts["created"] > 0
    assert f"its cursor was for {h.source.endpoint}" in report.message
    state = h.store.source_state("vendor")
    assert state is not None
    assert state.endpoint == moved.endpoint
    assert state.cursor is not None
    assert state.cursor < cursor  # a position in the second collection now
    again = run_source(h.node, moved)
    assert again.counts["created"] == 0
    assert "cursor was for" not in again.message
    h.store.close()


def test_a_sources_manifest_gives_when_it_recorded_each_version(
        home: Home, server: TaxiiServer) -> None:
    """TaxiiReader.recorded, which decides whether a key a peer revoked as compromised
    still vouches for an object, against each real server's manifest: every version of
    the ids asked (more than one request's worth) with its date_added, nothing else."""
    held = [o for o in server.read_all() if "modified" in o][:70]
    assert len(held) == 70
    reader = ingest_module.TaxiiReader(home.source, server.password)
    times = reader.recorded([o["id"] for o in held] + [held[0]["id"]])
    assert {(o["id"], to_micros(o["modified"])) for o in held} <= set(times)
    assert {i for i, _ in times} == {o["id"] for o in held}
    loaded = int((time.time() - 3600) * 1_000_000)  # the fixture loaded them this session
    assert all(loaded < t <= int(time.time() * 1_000_000) for t in times.values())
