"""``exchange publish`` and ``pull`` as an analyst types them: URLs by alias, API-root and
discovery URLs, IOC lists with bad lines, and IOC lists published again unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.node.keyring import register_key
from exchange.signing.keyfiles import write_private_key
from exchange.signing.keys import generate
from tests.integration.conftest import Node


def cli(tmp_path: Path, *args: str, key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update(HOME=str(tmp_path), EXCHANGE_API_KEY=key)
    return subprocess.run([sys.executable, "-m", "exchange", "--home", str(tmp_path / "me"),
                           *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_a_collection_alias_works_for_publish_and_pull(node: Node, tmp_path: Path) -> None:
    alias = node.new_collection(readers=["UZ-CERT", "UZ-SOC"], writers=["UZ-CERT"])
    by_alias = f"{node.root}collections/{alias}/"
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("alias-test.example\n198.51.100.201\n")
    done = cli(tmp_path, "publish", str(iocs), "--url", by_alias, "--user", "uz-pub",
               "--identity", node.identities["UZ-CERT"], "--json", key=node.keys["uz-pub"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["succeeded"] == 2

    out = tmp_path / "feed.jsonl"
    pulled = cli(tmp_path, "pull", "--url", by_alias.rstrip("/"), "--user", "uz-soc", "--out",
                 str(out), "--json", key=node.keys["uz-soc"])
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["objects"] == 2
    # the cursor names the collection by id, so the id URL resumes where the alias left off
    cursor = json.loads((tmp_path / "feed.jsonl.cursor").read_text())
    assert cursor["collection"] == node.collection_url(alias)
    again = cli(tmp_path, "pull", "--url", node.collection_url(alias), "--user", "uz-soc",
                "--out", str(out), "--json", key=node.keys["uz-soc"])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["objects"] == 0


@pytest.mark.parametrize("where", ["api-root", "discovery", "collections", "unknown-alias"])
def test_a_url_that_is_not_a_collection_lists_the_collections_to_use(
        node: Node, tmp_path: Path, where: str) -> None:
    url = {"api-root": node.root, "discovery": f"{node.base}/taxii2/",
           "collections": f"{node.root}collections/",
           "unknown-alias": f"{node.root}collections/no-such-thing/"}[where]
    out = tmp_path / "feed.jsonl"
    done = cli(tmp_path, "pull", "--url", url, "--user", "uz-soc", "--out", str(out),
               key=node.keys["uz-soc"])
    assert done.returncode == 1
    assert "No 'id'" not in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    assert f"{node.root}collections/jwg/" in done.stderr  # what uz-soc can read
    assert f"{node.root}collections/uz/" not in done.stderr  # what it cannot see
    assert not out.exists()


def test_a_malformed_url_is_one_clear_line(tmp_path: Path) -> None:
    done = cli(tmp_path, "pull", "--url", "127.0.0.1:8421/cx/collections/jwg/", "--user",
               "uz-soc", "--out", str(tmp_path / "f.jsonl"), key="cx_x")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "http:// or https://" in done.stderr


def test_bad_ioc_lines_are_all_listed_and_skipped_only_when_asked(node: Node,
                                                                  tmp_path: Path) -> None:
    alias = node.new_collection(readers=["UZ-CERT"], writers=["UZ-CERT"])
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("good-one.example\n300.1.1.1\ngood-two.example\nnot an ioc\n"
                    "203.0.113.250\nbad..example\n")
    args = ("publish", str(iocs), "--url", node.collection_url(alias), "--user", "uz-pub",
            "--identity", node.identities["UZ-CERT"])
    refused = cli(tmp_path, *args, key=node.keys["uz-pub"])
    assert refused.returncode == 1
    for line in (2, 4, 6):
        assert f"line {line}: " in refused.stderr
    assert "nothing was published" in refused.stderr
    assert "--skip-bad-lines" in refused.stderr
    assert node.get(node.collection_url(alias) + "objects/").json().get("objects") is None

    skipped = cli(tmp_path, *args, "--skip-bad-lines", "--json", key=node.keys["uz-pub"])
    assert skipped.returncode == 0, skipped.stderr
    summary = json.loads(skipped.stdout)
    assert summary["succeeded"] == 3
    assert [s["line"] for s in summary["skipped_lines"]] == [2, 4, 6]
    assert "skipped line 2: " in skipped.stderr


def test_publishing_an_unchanged_signed_ioc_list_again_stores_no_new_version(
        node: Node, tmp_path: Path) -> None:
    alias = node.new_collection(readers=["UZ-CERT"], writers=["UZ-CERT"])
    key = generate("Ed25519")
    write_private_key(tmp_path / "uz.key", key, b"demo passphrase")
    (tmp_path / "uz.pass").write_text("demo passphrase\n")
    register_key(node.exchange.store, "UZ-CERT", key.public_pem())
    time.sleep(node.exchange.settings.cache_seconds + 0.3)  # the workers' registry cache
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("republish-1.example\n198.51.100.77\n")
    args = ("publish", str(iocs), "--url", node.collection_url(alias), "--user", "uz-pub",
            "--identity", node.identities["UZ-CERT"], "--sign-key", str(tmp_path / "uz.key"),
            "--passphrase-file", str(tmp_path / "uz.pass"), "--json")
    first = cli(tmp_path, *args, key=node.keys["uz-pub"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert "normalised indicator" not in first.stderr

    second = cli(tmp_path, *args, key=node.keys["uz-pub"])
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["unchanged"] == 2
    objects = node.get(node.collection_url(alias) + "objects/",
                       params={"match[version]": "all"}).json()["objects"]
    assert len(objects) == 2  # one version each, not two

    iocs.write_text("republish-1.example # now seen in a phishing wave\n198.51.100.77\n")
    third = cli(tmp_path, *args, key=node.keys["uz-pub"])
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["new_versions"] == 1
    objects = node.get(node.collection_url(alias) + "objects/",
                       params={"match[version]": "all"}).json()["objects"]
    assert len(objects) == 3
    versions = [o for o in objects if "republish-1" in o["pattern"]]
    assert len({o["created"] for o in versions}) == 1
    assert len({o["modified"] for o in versions}) == 2
