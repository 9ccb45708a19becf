"""Withdrawing intelligence and keeping bad objects out of a SOC's feed (issue 17, 5 and 6).

On a node of its own (real gunicorn on loopback, driven by the real CLI and taxii2-client):

* ``pull --verify`` puts what does not verify in ``OUT.rejected``, never in the feed,
  exits 1 while the quarantine holds anything, advances the cursor over what it handled,
  starts over with ``--reset``, and refuses a cursor whose feed file is gone;
* ``exchange revoke`` and ``publish --revoke`` post signed revoked versions that a SOC
  polling with ``added_after`` receives and verifies; another member cannot revoke;
* TAXII DELETE is for admins: a publisher's is refused (403, a denial in the ledger), an
  admin's stores a node-signed revocation that a SOC that held the object receives on
  its next poll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from exchange.cli.main import main
from exchange.config import load_settings
from exchange.model.stixkinds import parse_timestamp
from exchange.node.service import Exchange, init_home
from exchange.signing.canonical import EXTENSION_ID, normal_form
from exchange.signing.cxsig import sign_object
from exchange.signing.keyfiles import read_private_key
from exchange.signing.keys import SigningKey
from exchange.signing.revocation import REVOCATION_SOURCE, revocation_reason
from exchange.storage import open_store
from exchange.storage.timestamps import from_micros
from tests.integration.conftest import TAXII, serving
from tests.integration.stixdata import envelope, indicator

PASSPHRASE = "a long analyst passphrase 2026"
REAL_INDICATOR = (Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "stix21"
                  / "indicator-for-malicious-url.json")


@dataclass
class Hub:
    base: str
    home: Path
    work: Path
    exchange: Exchange
    keys: dict[str, str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)
    signing: dict[str, SigningKey] = field(default_factory=dict)

    def url(self, alias: str) -> str:
        return f"{self.base}/cx/collections/{self.collections[alias]}/"

    def cli(self, *args: str, account: str | None = None, admin: bool = False
            ) -> tuple[int, str, str]:
        env: dict[str, str | None] = {
            "EXCHANGE_SERVER_SECRET": None, "EXCHANGE_SIGNING_KEY": None,
            "EXCHANGE_IDENTITY": None, "EXCHANGE_URL": None, "EXCHANGE_USER": None,
            "EXCHANGE_PASSPHRASE": PASSPHRASE,
            "EXCHANGE_API_KEY": self.keys[account] if account else None}
        prefix = ["--home", str(self.home)] if admin else []
        result = CliRunner().invoke(main, [*prefix, *args], env=env)
        return result.exit_code, result.stdout, result.stderr

    def post(self, alias: str, objects: list[dict[str, Any]], account: str) -> dict[str, Any]:
        r = requests.post(self.url(alias) + "objects/", data=envelope(*objects),
                          auth=(account, self.keys[account]),
                          headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=60)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def delete(self, alias: str, object_id: str, account: str) -> requests.Response:
        return requests.delete(self.url(alias) + f"objects/{object_id}/",
                               auth=(account, self.keys[account]),
                               headers={"Accept": TAXII}, timeout=30)

    def signed(self, org: str, **extra: Any) -> dict[str, Any]:
        return sign_object(normal_form(indicator(self.identities[org], **extra)),
                           self.signing[org])

    def pull(self, alias: str, out: Path, *extra: str, account: str = "uz-soc"
             ) -> tuple[int, dict[str, Any], str]:
        code, stdout, stderr = self.cli(
            "pull", "--url", self.url(alias), "--user", account, "--out", str(out),
            "--verify", "--registry", str(self.work / "registry.json"), "--json", *extra,
            account=account)
        return code, json.loads(stdout) if stdout else {}, stderr

    def records(self, kind: str, *args: str) -> list[dict[str, Any]]:
        code, out, err = self.cli("audit", "records", "--kind", kind, *args, admin=True)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    home = tmp_path_factory.mktemp("revoke-hub")
    work = tmp_path_factory.mktemp("revoke-work")
    init_home(load_settings(home, env={}))
    store = open_store(load_settings(home, env={}))
    ex = Exchange(load_settings(home, env={}), store)
    h = Hub(base="", home=home, work=work, exchange=ex)
    # TJ-CERT's key is the one found stolen (quarantine test); the others stay good.
    for name in ("UZ-CERT", "PK-CERT", "TJ-CERT", "Operator"):
        h.identities[name] = ex.add_org(name).identity_id
    h.identities["UZ-SOC"] = ex.add_org("UZ-SOC", parent="UZ-CERT").identity_id
    for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                               ("pk-pub", "PK-CERT", "publisher"),
                               ("tj-pub", "TJ-CERT", "publisher"),
                               ("uz-soc", "UZ-SOC", "consumer"),
                               ("admin", "Operator", "admin")]:
        ex.add_account(account, org=org, role=role)
        h.keys[account] = ex.create_api_key(account)[1]
    for alias, required in (("open", False), ("signed", True)):
        h.collections[alias] = ex.add_collection(
            alias, alias=alias, readers=["UZ-CERT", "PK-CERT", "UZ-SOC"],
            writers=["UZ-CERT", "PK-CERT", "TJ-CERT"], require_signatures=required)[0].id
    for org in ("UZ-CERT", "PK-CERT", "TJ-CERT"):  # registered before the server starts
        key_file, public = work / f"{org}.key", work / f"{org}.pub"
        assert h.cli("keys", "generate", "--out", str(key_file), "--public-out",
                     str(public))[0] == 0
        code, _, err = h.cli("keys", "register", "--org", org, "--public-key", str(public),
                             admin=True)
        assert code == 0, err
        h.signing[org] = read_private_key(key_file, PASSPHRASE.encode())
    try:
        with serving(home, ("uz-pub", h.keys["uz-pub"])) as base:
            h.base = base
            yield h
    finally:
        store.close()


def export_registry(hub: Hub) -> None:
    code, _, err = hub.cli("keys", "export", "--out", str(hub.work / "registry.json"),
                           admin=True)
    assert code == 0, err


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- pull --verify quarantines ------------------------------------------------------------
def test_pull_verify_quarantines_what_does_not_verify(hub: Hub) -> None:
    """TJ-CERT's key turns out to have been stolen before it signed an object: a SOC's feed
    never holds that object, the quarantine does, and says why."""
    good = [hub.signed("UZ-CERT"), hub.signed("UZ-CERT")]
    hub.post("open", good, "uz-pub")
    stolen_since = from_micros(time.time_ns() // 1000)
    forged = hub.signed("TJ-CERT")
    hub.post("open", [forged], "tj-pub")
    code, _, err = hub.cli("keys", "revoke", hub.signing["TJ-CERT"].kid,
                           "--compromised-since", stolen_since, admin=True)
    assert code == 0, err
    export_registry(hub)

    feed = hub.work / "soc.jsonl"
    rejected = hub.work / "soc.jsonl.rejected"
    cursor = hub.work / "soc.jsonl.cursor"
    code, report, err = hub.pull("open", feed)
    assert code == 1
    assert f"1 object(s) quarantined in {rejected}" in err
    assert (report["objects"], report["appended"], report["rejected"]) == (3, 2, 1)
    assert [o["id"] for o in lines(feed)] == [o["id"] for o in good]
    (entry,) = lines(rejected)
    assert entry["id"] == forged["id"]
    assert entry["object"] == forged
    assert "was revoked" in entry["reason"]
    assert "compromised since" in entry["reason"]
    assert report["verification"]["invalid"] == 1
    assert json.loads(cursor.read_text())["added_after"] == report["cursor"]

    # the next run reports the quarantine again, though nothing new was rejected
    code, report, err = hub.pull("open", feed)
    assert code == 1
    assert (report["objects"], report["quarantined"]) == (0, 1)
    assert "(0 rejected by this run, 1 from earlier runs)" in err

    # new objects still arrive, past the cursor only
    later = hub.signed("UZ-CERT")
    hub.post("open", [later], "uz-pub")
    code, report, _ = hub.pull("open", feed)
    assert (code, report["objects"], report["appended"]) == (1, 1, 1)
    assert [o["id"] for o in lines(feed)] == [*(o["id"] for o in good), later["id"]]

    # --reset starts over: feed, cursor and quarantine
    code, report, _ = hub.pull("open", feed, "--reset")
    assert code == 1
    assert sorted(report["removed"]) == sorted(map(str, (feed, cursor, rejected)))
    assert (report["objects"], report["appended"], report["rejected"]) == (4, 3, 1)
    assert len(lines(feed)) == 3
    assert len(lines(rejected)) == 1

    # the analyst dealt with the quarantine: the feed is clean and the pull succeeds
    rejected.unlink()
    code, report, err = hub.pull("open", feed)
    assert (code, report["objects"], report["quarantined"]) == (0, 0, 0), err


def test_a_cursor_without_its_feed_file_is_an_error_that_says_what_to_do(hub: Hub) -> None:
    hub.post("open", [hub.signed("UZ-CERT")], "uz-pub")
    export_registry(hub)
    feed = hub.work / "lost.jsonl"
    code, report, err = hub.pull("open", feed)
    assert report["appended"] >= 1
    feed.unlink()
    code, _, err = hub.pull("open", feed)
    assert code == 1
    assert "exists but the feed file" in err
    assert "--reset" in err
    assert not feed.exists()
    code, report, err = hub.pull("open", feed, "--reset")
    assert report["appended"] >= 1
    assert feed.exists()


# -- exchange revoke ----------------------------------------------------------------------
def test_a_member_revokes_what_it_published_and_the_soc_receives_it(hub: Hub) -> None:
    code, out, err = hub.cli("publish", str(REAL_INDICATOR), "--url", hub.url("signed"),
                             "--user", "uz-pub",
                             "--sign-key", str(hub.work / "UZ-CERT.key"), "--json",
                             account="uz-pub")
    assert code == 0, err
    assert json.loads(out)["succeeded"] == 3
    export_registry(hub)
    feed = hub.work / "signed.jsonl"
    code, report, err = hub.pull("signed", feed)
    assert (code, report["appended"]) == (0, 3), err
    real = json.loads(REAL_INDICATOR.read_text())["objects"]
    target = real[0]["id"]

    # another member cannot revoke it
    code, out, _ = hub.cli("revoke", target, "--reason", "not yours", "--url", hub.url("signed"),
                           "--user", "pk-pub", "--sign-key", str(hub.work / "PK-CERT.key"),
                           "--json", account="pk-pub")
    assert code == 1
    (refused,) = json.loads(out)["outcomes"]
    assert refused["status"] == "refused"
    assert "only the organisation that created this object may add versions" in refused["detail"]

    reason = "false positive: x4z9arb.cn is sinkholed since 2026-11-30"
    code, out, err = hub.cli("revoke", target, "--reason", reason, "--url", hub.url("signed"),
                             "--user", "uz-pub", "--sign-key", str(hub.work / "UZ-CERT.key"),
                             "--json", account="uz-pub")
    assert code == 0, err
    (done,) = json.loads(out)["outcomes"]
    assert done["status"] == "revoked"

    code, report, err = hub.pull("signed", feed)  # the SOC's next poll (added_after)
    assert code == 0, err
    assert (report["appended"], report["verification"]["valid"]) == (1, 1)
    revoked = lines(feed)[-1]
    assert (revoked["id"], revoked["revoked"], revoked["modified"]) == (
        target, True, done["detail"])
    assert parse_timestamp(revoked["modified"]) > parse_timestamp(real[0]["modified"])  # type: ignore[operator]
    assert revocation_reason(revoked) == reason
    assert revoked["extensions"][EXTENSION_ID]["kid"] == hub.signing["UZ-CERT"].kid

    # publish --revoke: the rest of the same bundle; the indicator is already revoked
    code, out, err = hub.cli("publish", str(REAL_INDICATOR), "--revoke", "--reason",
                             "withdrawn with the indicator", "--url", hub.url("signed"),
                             "--user", "uz-pub", "--sign-key",
                             str(hub.work / "UZ-CERT.key"), "--json", account="uz-pub")
    assert code == 0, err
    statuses = {o["id"]: o["status"] for o in json.loads(out)["outcomes"]}
    assert statuses == {real[0]["id"]: "skipped", real[1]["id"]: "revoked",
                        real[2]["id"]: "revoked"}
    code, report, err = hub.pull("signed", feed)
    assert (code, report["appended"], report["verification"]["valid"]) == (0, 2, 2), err
    assert all(o["revoked"] for o in lines(feed)[-2:])


# -- TAXII DELETE ---------------------------------------------------------------------------
def test_delete_is_for_admins_and_reaches_earlier_recipients_as_a_revocation(hub: Hub) -> None:
    victim = hub.signed("UZ-CERT")
    hub.post("signed", [victim], "uz-pub")
    export_registry(hub)
    feed = hub.work / "delete.jsonl"
    code, report, err = hub.pull("signed", feed)
    assert code == 0, err
    assert victim["id"] in {o["id"] for o in lines(feed)}

    for account in ("pk-pub", "uz-pub"):  # even the contributor: it revokes instead
        refused = hub.delete("signed", victim["id"], account)
        assert refused.status_code == 403
        assert "only admin accounts may delete" in refused.json()["description"]
        (denial,) = [d for d in hub.records("denial")
                     if d["request_id"] == refused.headers["X-Request-ID"]]
        assert (denial["rule"], denial["recipient_account"], denial["channel"]) == (
            "deny-delete-not-admin", account, "taxii:delete_object")

    gone = hub.delete("signed", victim["id"], "admin")  # no write grant needed
    assert gone.status_code == 200, gone.text
    (action,) = hub.records("admin", "--object", victim["id"])
    assert (action["action"], action["actor"], action["details"]["outcome"]) == (
        "object.delete", "admin", "revoked")

    code, report, err = hub.pull("signed", feed)  # the SOC's next poll
    assert code == 0, err
    assert (report["appended"], report["verification"]["valid"]) == (1, 1)
    notice = lines(feed)[-1]
    assert (notice["id"], notice["revoked"]) == (victim["id"], True)
    assert notice["created_by_ref"] == victim["created_by_ref"]
    assert notice["pattern"] == victim["pattern"]
    assert "TAXII DELETE" in (revocation_reason(notice) or "")
    assert notice["extensions"][EXTENSION_ID]["kid"] == hub.exchange.audit.signing_key().kid
    assert any(r["source_name"] == REVOCATION_SOURCE for r in notice["external_references"])

    # a default read now serves only the revoked version; deleting again changes nothing
    latest = requests.get(hub.url("signed") + f"objects/{victim['id']}/",
                          auth=("uz-soc", hub.keys["uz-soc"]), headers={"Accept": TAXII},
                          timeout=30).json()["objects"]
    assert [o["revoked"] for o in latest] == [True]
    assert hub.delete("signed", victim["id"], "admin").status_code == 200
    code, report, _ = hub.pull("signed", feed)
    assert (code, report["objects"]) == (0, 0)


def test_delete_of_an_unknown_object_is_refused_and_recorded(hub: Hub) -> None:
    missing = "indicator--00000000-0000-4000-8000-0000000000aa"
    r = hub.delete("signed", missing, "admin")
    assert r.status_code == 404
    (denial,) = [d for d in hub.records("denial")
                 if d["request_id"] == r.headers["X-Request-ID"]]
    assert denial["rule"] == "deny-delete-not-found"
