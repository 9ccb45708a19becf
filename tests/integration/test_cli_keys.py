"""``exchange keys``, ``exchange sign`` and ``exchange verify`` as analysts and admins use them.

No server: the admin commands work on a home's database, the analyst's commands on files.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exchange.cli.main import main
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.registry import format_micros
from exchange.storage.timestamps import to_micros

PASSPHRASE = "correct horse battery staple 42"
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "stix21"


def run(*args: str, home: Path | None = None, env: dict[str, str | None] | None = None,
        stdin: str | None = None) -> tuple[int, str, str]:
    prefix = ["--home", str(home)] if home else []
    result = CliRunner().invoke(
        main, [*prefix, *args], input=stdin,
        env={"EXCHANGE_SERVER_SECRET": None, "EXCHANGE_PASSPHRASE": None,
             "EXCHANGE_SIGNING_KEY": None, "EXCHANGE_IDENTITY": None,
             "EXCHANGE_NODE_KEY_PASSPHRASE": None, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert run("init", home=home)[0] == 0
    for org in ("UZ-CERT", "PK-CERT"):
        assert run("org", "add", org, home=home)[0] == 0
    return home


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def generate(tmp_path: Path, name: str, passfile: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run("keys", "generate", "--out", str(tmp_path / f"{name}.key"),
                         "--public-out", str(tmp_path / f"{name}.pub"),
                         "--passphrase-file", str(passfile), "--json", *extra)
    assert code == 0, err
    return dict(json.loads(out))


def identity(home: Path, org: str) -> str:
    orgs = json.loads(run("org", "list", "--json", home=home)[1])
    return str(next(o["identity_id"] for o in orgs if o["name"] == org))


def test_generate_writes_an_encrypted_private_key_and_prints_the_public_half(
    tmp_path: Path, passfile: Path,
) -> None:
    made = generate(tmp_path, "uz", passfile, "--alg", "ECDSA-P256")
    key_file = tmp_path / "uz.key"
    assert made["alg"] == "ECDSA-P256"
    assert made["kid"].startswith("sha256:")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (tmp_path / "uz.pub").read_text() == made["public_pem"]
    code, _, err = run("keys", "generate", "--out", str(key_file), "--passphrase-file",
                       str(passfile))
    assert code == 1
    assert "already exists" in err


def test_the_passphrase_comes_from_the_environment_or_a_confirmed_prompt(
    tmp_path: Path,
) -> None:
    code, out, err = run("keys", "generate", "--out", str(tmp_path / "env.key"),
                         env={"EXCHANGE_PASSPHRASE": PASSPHRASE})
    assert code == 0, err
    assert PASSPHRASE not in out + err
    code, out, err = run("keys", "generate", "--out", str(tmp_path / "tty.key"),
                         stdin=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert code == 0, err
    assert "Passphrase for the new key" in err
    assert PASSPHRASE not in out + err
    code, _, err = run("keys", "generate", "--out", str(tmp_path / "short.key"),
                       env={"EXCHANGE_PASSPHRASE": "short"})
    assert code == 1
    assert err.count("\n") == 1
    assert "shorter than 12" in err
    assert "short" not in err.replace("shorter", "")
    assert not (tmp_path / "short.key").exists()


def test_no_passphrase_flag_exists() -> None:
    code, _, err = run("keys", "generate", "--out", "x.key", "--passphrase", PASSPHRASE)
    assert code == 2
    assert "No such option" in err


def test_admin_registers_lists_rotates_revokes_and_exports(
    tmp_path: Path, home: Path, passfile: Path,
) -> None:
    first = generate(tmp_path, "uz1", passfile)
    second = generate(tmp_path, "uz2", passfile)
    code, out, err = run("keys", "register", "--org", "UZ-CERT", "--public-key",
                         str(tmp_path / "uz1.pub"), "--valid-from", "2025-01-01T00:00:00Z",
                         "--json", home=home)
    assert code == 0, err
    registered = json.loads(out)
    assert (registered["kid"], registered["org"], registered["status"]) == (
        first["kid"], "UZ-CERT", "active")
    assert registered["valid_from"] == "2025-01-01T00:00:00Z"
    code, _, err = run("keys", "register", "--org", "PK-CERT", "--public-key",
                       str(tmp_path / "uz1.pub"), home=home)
    assert (code, err.count("\n")) == (1, 1)
    assert "already registered" in err

    code, out, _ = run("keys", "rotate", "--org", "UZ-CERT", "--public-key",
                       str(tmp_path / "uz2.pub"), "--json", home=home)
    rotated = json.loads(out)
    assert rotated["new"]["kid"] == second["kid"]
    assert [(r["kid"], r["status"]) for r in rotated["retired"]] == [(first["kid"], "retired")]

    code, out, err = run("keys", "revoke", first["kid"], "--compromised-since",
                         "2025-02-01T00:00:00Z", "--json", home=home)
    assert code == 0, err
    assert json.loads(out)["compromised_since"] == "2025-02-01T00:00:00Z"
    code, _, err = run("keys", "revoke", first["kid"], "--compromised-since", "yesterday",
                       home=home)
    assert (code, err.count("\n")) == (1, 1)
    assert "UTC timestamp" in err

    code, out, _ = run("keys", "list", "--org", "UZ-CERT", "--json", home=home)
    assert {(k["kid"], k["status"]) for k in json.loads(out)} == {
        (first["kid"], "revoked"), (second["kid"], "active")}
    code, out, _ = run("keys", "list", home=home)
    assert "(node)" in out
    assert "UZ-CERT" in out

    exported = tmp_path / "registry.json"
    assert run("keys", "export", "--out", str(exported), home=home)[0] == 0
    assert run("keys", "export", home=home)[1] == exported.read_text()
    document = json.loads(exported.read_text())
    assert document["extension_definition"] == EXTENSION_ID
    assert {k["purpose"] for k in document["keys"]} == {"object", "node"}
    assert PASSPHRASE not in exported.read_text()

    code, out, _ = run("keys", "affected", first["kid"], "--json", home=home)
    assert (code, json.loads(out)) == (0, [])


def _bundle(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "bundle", "id": "bundle--6f0a5ec8-3f3c-4e4d-9a0b-"
                                "1c2d3e4f5a6b", "objects": objects}, indent=1))
    return path


def test_analyst_signs_a_bundle_and_a_consumer_verifies_it_offline(
    tmp_path: Path, home: Path, passfile: Path,
) -> None:
    generate(tmp_path, "uz", passfile)
    run("keys", "register", "--org", "UZ-CERT", "--public-key", str(tmp_path / "uz.pub"),
        home=home)
    generate(tmp_path, "pk", passfile)
    run("keys", "register", "--org", "PK-CERT", "--public-key", str(tmp_path / "pk.pub"),
        home=home)
    registry = tmp_path / "registry.json"
    run("keys", "export", "--out", str(registry), home=home)
    uz = identity(home, "UZ-CERT")
    source = REAL / "indicator-for-malicious-url.json"

    code, _, err = run("sign", str(source), "--key", str(tmp_path / "uz.key"),
                       "--passphrase-file", str(passfile), "--out", str(tmp_path / "x.json"))
    assert code == 1
    assert "run with --normalise" in err
    assert "nothing written" in err.splitlines()[-1]
    assert not (tmp_path / "x.json").exists()

    signed = tmp_path / "signed.json"
    code, _, err = run("sign", str(source), "--key", str(tmp_path / "uz.key"),
                       "--normalise", "--out", str(signed),
                       env={"EXCHANGE_PASSPHRASE": PASSPHRASE})
    assert code == 0, err
    assert "normalised indicator--" in err
    bundle = json.loads(signed.read_text())
    assert bundle["type"] == "bundle"
    assert all(EXTENSION_ID in o["extensions"] for o in bundle["objects"])
    # the OASIS example names no author, and signing does not make UZ-CERT its author
    assert all("created_by_ref" not in o for o in bundle["objects"])

    code, out, _ = run("verify", str(signed), "--registry", str(registry))
    assert code == 0
    assert out.splitlines()[-1] == "3 valid, 0 unsigned, 0 invalid"
    assert all("attested by contributor UZ-CERT" in line for line in out.splitlines()[:3])
    # an object UZ-CERT writes itself is signed by its author
    own = {**bundle["objects"][0], "created_by_ref": uz}
    del own["extensions"]
    (tmp_path / "own.json").write_text(json.dumps(own))
    code, _, err = run("sign", str(tmp_path / "own.json"), "--key", str(tmp_path / "uz.key"),
                       "--out", str(tmp_path / "own.signed.json"),
                       env={"EXCHANGE_PASSPHRASE": PASSPHRASE})
    assert code == 0, err
    code, out, _ = run("verify", str(tmp_path / "own.signed.json"), "--registry", str(registry))
    assert "signed by the author UZ-CERT" in out.splitlines()[0]
    assert all(line.startswith("valid") and "UZ-CERT" in line for line in out.splitlines()[:-1])

    # a single changed byte, a forged creator, an unsigned object: per-object verdicts
    objects = bundle["objects"]
    objects[0]["name"] = objects[0].get("name", "") + "!"
    objects[1]["created_by_ref"] = identity(home, "PK-CERT")
    objects[2].pop("extensions")
    lines = tmp_path / "pulled.jsonl"
    lines.write_text("".join(json.dumps(o) + "\n" for o in objects))
    code, out, _ = run("verify", str(lines), "--registry", str(registry), "--json")
    assert code == 1
    report = json.loads(out)
    assert [o["status"] for o in report["objects"]] == ["invalid", "invalid", "unsigned"]
    assert "signature does not verify" in report["objects"][0]["reason"]
    assert (report["valid"], report["unsigned"], report["invalid"]) == (0, 1, 2)


def test_signing_is_refused_with_a_wrong_passphrase_in_one_line(
    tmp_path: Path, passfile: Path,
) -> None:
    generate(tmp_path, "uz", passfile)
    wrong = "not the passphrase at all"
    code, out, err = run("sign", str(REAL / "indicator-for-malicious-url.json"), "--key",
                         str(tmp_path / "uz.key"), env={"EXCHANGE_PASSPHRASE": wrong})
    assert (code, out) == (1, "")
    assert err == "error: wrong passphrase or corrupt key file\n"


def test_signing_refuses_a_key_file_others_can_read(tmp_path: Path, passfile: Path) -> None:
    generate(tmp_path, "uz", passfile)
    (tmp_path / "uz.key").chmod(0o644)
    code, _, err = run("sign", str(REAL / "indicator-for-malicious-url.json"), "--key",
                       str(tmp_path / "uz.key"), "--passphrase-file", str(passfile))
    assert code == 1
    assert "chmod 600" in err


def test_revoke_refuses_a_future_compromise_time(home: Path, tmp_path: Path,
                                                 passfile: Path) -> None:
    made = generate(tmp_path, "uz", passfile)
    run("keys", "register", "--org", "UZ-CERT", "--public-key", str(tmp_path / "uz.pub"),
        home=home)
    future = format_micros(to_micros("2999-01-01T00:00:00Z"))
    code, _, err = run("keys", "revoke", made["kid"], "--compromised-since", future, home=home)
    assert code == 1
    assert "in the future" in err


def test_pull_verify_needs_a_registry(tmp_path: Path) -> None:
    code, out, err = run("pull", "--url", "http://127.0.0.1:9/cx/collections/x/", "--user", "u",
                         "--out", str(tmp_path / "out.jsonl"), "--verify",
                         env={"EXCHANGE_API_KEY": "cx_0_0"})
    assert (code, out) == (2, "")
    assert err == "error: --verify needs --registry FILE (from 'exchange keys export')\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_publish_with_a_key_sends_nothing_when_an_object_cannot_be_signed(
    tmp_path: Path, passfile: Path,
) -> None:
    generate(tmp_path, "uz", passfile)
    bundle = json.loads((REAL / "indicator-for-malicious-url.json").read_text())
    bad = bundle["objects"][0]
    bad["id"] = bad["id"].upper().replace("INDICATOR--", "indicator--")  # not canonical
    source = tmp_path / "upper-case-id.json"
    source.write_text(json.dumps(bundle))
    code, out, err = run("publish", str(source), "--url", "http://127.0.0.1:9/cx/collections/x/",
                         "--user", "uz-pub", "--passphrase-file", str(passfile),
                         env={"EXCHANGE_API_KEY": "cx_0_0",
                              "EXCHANGE_SIGNING_KEY": str(tmp_path / "uz.key")})
    assert (code, out) == (1, "")
    assert f"'id' is {bad['id']} in upper case: STIX identifiers are lower-case (use" \
        f" {bad['id'].lower()})" in err
    assert err.splitlines()[-1] == ("error: nothing was published: sign or fix the objects"
                                    " above first")
    assert "cannot connect" not in err  # refused before any request
