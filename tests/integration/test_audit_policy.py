"""The ledger under a sharing policy: each disclosure names the rule that let it through,
and every policy change is recorded once, before it takes effect."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from exchange.audit.query import RecordFilter
from exchange.audit.records import Disclosure, Kind, PolicyReload
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange
from exchange.policy import PolicySet, load_policies
from tests.integration.test_policy_matrix import TAXII, World


def _world(tmp_path: Path) -> tuple[World, Exchange]:
    world = World(tmp_path, "in-force")
    ex = world.client.application.extensions["cert_exchange"]
    assert isinstance(ex, Exchange)
    return world, ex


def _reloads(ex: Exchange) -> list[PolicyReload]:
    entries = ex.audit.each(RecordFilter(kinds=(Kind.POLICY_RELOAD,)))
    return [e.record for e in entries if isinstance(e.record, PolicyReload)]


def _agreement(world: World) -> Path:
    assert world.settings.policy_path is not None
    return world.settings.policy_path / "agreements" / "uz-pk-jwg-2026.yaml"


def _policy(world: World) -> PolicySet:
    assert world.settings.policy_path is not None
    return load_policies(world.settings.policy_path)


def test_each_disclosure_names_the_rule_the_engine_gives(tmp_path: Path) -> None:
    world, ex = _world(tmp_path)
    digest = _policy(world).digest
    for account in ("pk-pub", "uz-soc", "outsider"):
        world.received(account, "objects")
    entries = ex.audit.each(RecordFilter(kinds=(Kind.DISCLOSURE,)))
    disclosures = [e.record for e in entries if isinstance(e.record, Disclosure)]
    assert {d.recipient_org for d in disclosures} == {"PK-CERT", "UZ-SOC", "Outsider"}
    assert {d.policy_digest for d in disclosures} == {digest}
    checked = 0
    for record in disclosures:
        for item in record.objects:
            if item.object_id not in {o["id"] for o in world.objects.values()}:
                continue  # a derived copy: its rule is checked by the original's level
            account = {"PK-CERT": "pk-pub", "UZ-SOC": "uz-soc",
                       "Outsider": "outsider"}[record.recipient_org]
            (explained,) = ex.explain(item.object_id, account)
            assert explained.decision.allowed
            assert item.rule == explained.decision.rule, (record.recipient_org, item.tlp)
            checked += 1
    assert checked >= 5
    # PK-CERT, a party to the agreement, received AMBER under the agreement's rule.
    pk_rules = {item.tlp: item.rule for d in disclosures if d.recipient_org == "PK-CERT"
                for item in d.objects}
    assert pk_rules["amber"].endswith(":uz-pk-jwg-2026")
    assert pk_rules["clear"] == "tlp-clear"


def _served_objects(response: bytes) -> list[bytes]:
    """The exact bytes of each object of a TAXII envelope, as they were sent."""
    text = response.decode("utf-8")
    decoder = json.JSONDecoder()
    at = text.index('"objects":[') + len('"objects":[')
    found = []
    while text[at] != "]":
        _, end = decoder.raw_decode(text, at)
        found.append(text[at:end].encode("utf-8"))
        at = end + 1 if text[end] == "," else end
    return found


@pytest.mark.parametrize("account", ["pk-pub", "uz-soc"])
def test_each_digest_is_of_the_exact_bytes_the_reader_received(tmp_path: Path,
                                                              account: str) -> None:
    world, ex = _world(tmp_path)
    auth = base64.b64encode(f"{account}:{world.keys[account]}".encode()).decode()
    response = world.client.get(f"/cx/collections/{world.collection}/objects/",
                                headers={"Accept": TAXII, "Authorization": f"Basic {auth}"})
    assert response.status_code == 200
    served = _served_objects(response.get_data())
    assert len(served) >= 3
    request_id = response.headers["X-Request-ID"]
    entries = [item for e in ex.audit.each(RecordFilter(kinds=(Kind.DISCLOSURE,)))
               if isinstance(e.record, Disclosure) and e.record.request_id == request_id
               for item in e.record.objects]
    assert [item.object_id for item in entries] == [json.loads(b)["id"] for b in served]
    assert [item.object_digest for item in entries] == [
        "sha256:" + hashlib.sha256(b).hexdigest() for b in served]
    # UZ-SOC receives PK-CERT's AMBER objects as derived copies (their digest is computed
    # when served); PK-CERT receives its own as stored (digest kept from ingest).
    originals = {o["id"] for o in world.objects.values()}
    derived = [item for item in entries if item.object_id not in originals]
    assert bool(derived) is (account == "uz-soc")


def test_a_policy_change_is_recorded_once_with_both_digests(tmp_path: Path) -> None:
    world, ex = _world(tmp_path)
    first = _policy(world).digest
    assert [(r.old_digest, r.new_digest) for r in _reloads(ex)] == [(None, first)]

    agreement = _agreement(world)
    agreement.write_text(agreement.read_text().replace("2028-01-01", "2027-06-01"))
    second = _policy(world).digest
    assert second != first
    assert ex.policy is not None
    ex.policy.interval = 0
    # A second worker of the same node notices the same change on its own.
    other_source = PolicySource(ex.policy.directory, interval=0)
    other_source.load()
    other = Exchange(world.settings, world.store, policy=other_source)

    world.received("pk-pub", "objects")
    assert other_source.current().digest == second
    assert ex.policy.current().digest == second
    assert [(r.old_digest, r.new_digest) for r in _reloads(ex)] == [(None, first),
                                                                     (first, second)]
    assert other.record_policy_in_force() is False


def test_a_policy_change_that_cannot_be_recorded_does_not_take_effect(tmp_path: Path) -> None:
    world, ex = _world(tmp_path)
    first = _policy(world).digest
    assert ex.policy is not None
    ex.policy.interval = 0
    database = world.settings.home / "exchange.db"
    agreement = _agreement(world)
    agreement.write_text(agreement.read_text().replace("2028-01-01", "2027-03-01"))
    with sqlite3.connect(database) as db:
        db.execute("CREATE TRIGGER cx_test_down BEFORE INSERT ON audit_records"
                   " BEGIN SELECT RAISE(ABORT, 'ledger down'); END")
    try:
        assert ex.policy.current().digest == first
    finally:
        with sqlite3.connect(database) as db:
            db.execute("DROP TRIGGER cx_test_down")
    assert ex.policy.current().digest != first
    assert len(_reloads(ex)) == 2


@pytest.mark.parametrize("command", [["register"], ["rotate"]])
def test_key_changes_are_admin_records(tmp_path: Path, command: list[str]) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from exchange.cli.main import main  # noqa: PLC0415

    world, ex = _world(tmp_path)
    runner = CliRunner()
    home = str(world.settings.home)
    key = tmp_path / "uz.key"
    public = tmp_path / "uz.pub"
    made = runner.invoke(main, ["--home", home, "keys", "generate", "--out", str(key),
                                "--public-out", str(public)],
                         env={"EXCHANGE_PASSPHRASE": "correct horse battery staple"})
    assert made.exit_code == 0, made.output
    done = runner.invoke(main, ["--home", home, "keys", *command, "--org", "UZ-CERT",
                                "--public-key", str(public), "--json"])
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    kid = (document.get("new") or document)["kid"]
    admin = [e.record for e in ex.audit.each(RecordFilter(kinds=(Kind.ADMIN,)))]
    assert any(getattr(r, "action", "") == f"key.{command[0]}" and getattr(r, "target", "")
               == kid for r in admin)


def test_under_a_policy_only_its_members_admins_and_auditors_witness(tmp_path: Path) -> None:
    world, _ = _world(tmp_path)

    def call(method: str, account: str) -> tuple[int, str]:
        token = base64.b64encode(f"{account}:{world.keys[account]}".encode()).decode()
        headers = {"Accept": TAXII, "Authorization": f"Basic {token}"}
        if method == "POST":
            headers["Content-Type"] = TAXII
        r = world.client.open("/cx/cx/audit/checkpoint/", method=method, headers=headers,
                              # a real client sends Content-Length: 0; Werkzeug drops it
                              environ_overrides={"CONTENT_LENGTH": "0"}
                              if method == "POST" else None)
        return r.status_code, r.get_data(as_text=True)

    assert call("POST", "operator")[0] == 201
    assert call("GET", "operator")[0] == 200  # an admin of the operator organisation
    assert call("GET", "pk-pub")[0] == 200  # a member of the community
    for account, org in (("uz-soc", "UZ-SOC"), ("outsider", "Outsider")):
        status, body = call("GET", account)
        assert status == 403, body
        assert f"{org!r}, which is not a member organisation" in body
