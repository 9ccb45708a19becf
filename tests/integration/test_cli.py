"""The ``exchange`` command as an operator and an analyst use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import main
from tests.integration.conftest import Node


def run(home: Path, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(main, ["--home", str(home), *args],
                           env={"EXCHANGE_SERVER_SECRET": None})
    return result.exit_code, result.stdout, result.stderr


def exchange_cmd(*args: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    return subprocess.run(
        [sys.executable, "-m", "exchange", *args], env={**base, **(env or {})},
        capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_operator_sets_up_a_node_with_json_output(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out, _ = run(home, "init", "--json")
    assert code == 0
    assert json.loads(out)["secret_created"] is True
    secret = (home / "server-secret").read_text().strip()
    assert oct((home / "server-secret").stat().st_mode & 0o777) == "0o600"

    code, out, _ = run(home, "org", "add", "UZ-CERT", "--json")
    uz = json.loads(out)
    assert uz["identity_id"].startswith("identity--")
    run(home, "org", "add", "UZ-SOC", "--parent", "UZ-CERT")
    code, out, _ = run(home, "account", "add", "uz-analyst", "--org", "UZ-CERT",
                       "--role", "publisher", "--json")
    assert json.loads(out)["role"] == "publisher"
    code, out, _ = run(home, "apikey", "create", "uz-analyst", "--json")
    created = json.loads(out)
    assert created["api_key"].startswith(f"cx_{created['key_id']}_")
    code, out, _ = run(home, "apikey", "list", "--json")
    assert created["api_key"] not in out
    assert json.loads(out)[0]["key_id"] == created["key_id"]
    code, out, _ = run(home, "collection", "add", "Joint", "--alias", "jwg", "--read",
                       "UZ-CERT", "--read", "UZ-SOC", "--write", "UZ-CERT", "--json")
    col = json.loads(out)
    assert (col["readers"], col["writers"]) == (["UZ-CERT", "UZ-SOC"], ["UZ-CERT"])
    code, out, _ = run(home, "collection", "list", "--json")
    assert [c["alias"] for c in json.loads(out)] == ["jwg"]
    code, out, _ = run(home, "org", "list", "--json")
    assert {o["name"] for o in json.loads(out)} == {"UZ-CERT", "UZ-SOC"}
    code, out, _ = run(home, "config", "check")
    assert code == 0
    assert secret not in out
    assert json.loads(out)["server_secret"] == "********"
    code, out, _ = run(home, "apikey", "revoke", created["key_id"], "--json")
    assert json.loads(out)["revoked"] is True


@pytest.mark.parametrize(("args", "phrase"), [
    pytest.param(["account", "add", "x", "--org", "NOPE", "--role", "consumer"], "NOPE",
                 id="unknown-org"),
    pytest.param(["org", "add", "bad name!"], "invalid", id="bad-org-name"),
    pytest.param(["collection", "add", "T", "--default-tlp", "pink"], "TLP",
                 id="bad-tlp"),
    pytest.param(["apikey", "revoke", "000000000000"], "not found", id="unknown-key"),
])
def test_errors_are_one_line_and_non_zero(tmp_path: Path, args: list[str],
                                          phrase: str) -> None:
    run(tmp_path, "init")
    code, out, err = run(tmp_path, *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert phrase.lower() in lines[0].lower()
    assert "Traceback" not in err + out


def test_commands_need_an_initialised_home(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "empty", "org", "list")
    assert code == 1
    assert "exchange init" in err


def test_publish_ioc_list_then_pull_incrementally(node: Node, tmp_path: Path) -> None:
    alias = node.new_collection(readers=["UZ-CERT", "UZ-SOC"], writers=["UZ-CERT"])
    url = node.collection_url(alias)
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("# seen in phishing wave\nevil-login[.]example.com\n198.51.100.23\n"
                    "hxxps://bad.example.org/payload.php\n"
                    "44d88612fea8a8f36de82e1219d2ea4f24a1d8e4b9d2a3c3e1e3c1e2e4b9d2a3\n")
    pub_env = {"EXCHANGE_API_KEY": node.keys["uz-pub"]}
    done = exchange_cmd("publish", str(iocs), "--url", url, "--user", "uz-pub", "--tlp",
                        "green", "--identity", node.identities["UZ-CERT"], "--json",
                        env=pub_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (4, 4, 0)

    out = tmp_path / "feed.jsonl"
    soc_env = {"EXCHANGE_API_KEY": node.keys["uz-soc"]}
    first = exchange_cmd("pull", "--url", url, "--user", "uz-soc", "--out", str(out),
                         "--page-size", "3", "--json", env=soc_env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["objects"] == 4
    lines = out.read_text().splitlines()
    patterns = sorted(json.loads(line)["pattern"] for line in lines)
    assert any("evil-login.example.com" in p for p in patterns)
    assert any("https://bad.example.org/payload.php" in p for p in patterns)

    again = exchange_cmd("pull", "--url", url, "--user", "uz-soc", "--out", str(out),
                         "--json", env=soc_env)
    assert json.loads(again.stdout)["objects"] == 0

    more = tmp_path / "more.txt"
    more.write_text("203.0.113.99\n")
    exchange_cmd("publish", str(more), "--url", url, "--user", "uz-pub",
                 env=pub_env)  # without --identity: the server names UZ-CERT's identity
    third = exchange_cmd("pull", "--url", url, "--user", "uz-soc", "--out", str(out),
                         "--json", env=soc_env)
    assert json.loads(third.stdout)["objects"] == 1
    assert len(out.read_text().splitlines()) == 5
    newest = json.loads(out.read_text().splitlines()[-1])
    assert newest["created_by_ref"] == node.identities["UZ-CERT"]


def test_publish_reports_refused_objects_and_exits_non_zero(node: Node,
                                                            tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-"
                                  "9642-33f4c354e56d", "objects": [{
                                      "type": "indicator", "spec_version": "2.1",
                                      "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                                      "created": "2026-11-01T00:00:00.000Z",
                                      "modified": "2026-11-01T00:00:00.000Z",
                                      "pattern": "[ipv4-addr:value = '203.0.113.1']",
                                      "pattern_type": "stix",
                                      "valid_from": "2026-11-01T00:00:00.000Z",
                                      "created_by_ref": node.identities["PK-CERT"]}]}))
    done = exchange_cmd("publish", str(bundle), "--url", node.collection_url("jwg"),
                        "--user", "uz-pub", env={"EXCHANGE_API_KEY": node.keys["uz-pub"]})
    assert done.returncode == 1
    assert "0 of 1 objects accepted" in done.stdout
    assert (f"created_by_ref {node.identities['PK-CERT']} is the registered identity of"
            " PK-CERT") in done.stdout


def test_wrong_key_is_one_clear_line(node: Node, tmp_path: Path) -> None:
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("203.0.113.5\n")
    done = exchange_cmd("publish", str(iocs), "--url", node.collection_url("jwg"),
                        "--user", "uz-pub", "--identity", node.identities["UZ-CERT"],
                        env={"EXCHANGE_API_KEY": "cx_000000000000_" + "A" * 43})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "401" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_api_key_is_refused_before_any_request(tmp_path: Path) -> None:
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("203.0.113.5\n")
    done = exchange_cmd("publish", str(iocs), "--url", "http://127.0.0.1:9/x/", "--user",
                        "u", "--identity", "identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f")
    assert done.returncode == 1
    assert "EXCHANGE_API_KEY" in done.stderr


def test_init_narrows_a_world_readable_home_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    (home / "server-secret").write_text("s" * 43 + "\n")
    os.chmod(home / "server-secret", 0o644)
    done = exchange_cmd("--home", str(home), "init")
    assert done.returncode == 0, done.stderr
    assert f"narrowed permissions of {home}: 0755 -> 0700" in done.stdout
    assert f"narrowed permissions of {home / 'server-secret'}: 0644 -> 0600" in done.stdout
    assert "narrowed" not in exchange_cmd("--home", str(home), "init").stdout


def test_a_serving_node_writes_nothing_another_user_can_read(node: Node) -> None:
    import requests  # noqa: PLC0415

    response = requests.get(
        f"{node.base}/{node.api_root}/collections/{node.collections['jwg']}/objects/",
        auth=node.auth("uz-reader"), timeout=30,
        headers={"Accept": "application/taxii+json;version=2.1"})
    assert response.status_code == 200  # a read: its disclosure goes through the spool
    exposed = [(p.relative_to(node.home).as_posix(), oct(p.stat().st_mode & 0o777))
               for p in [node.home, *node.home.rglob("*")]
               if p.name != "server.log"  # the test harness's own log of the server
               and p.stat().st_mode & 0o077]
    assert exposed == []
    assert any(node.home.rglob("*.db-wal"))
