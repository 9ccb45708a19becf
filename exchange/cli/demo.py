"""``exchange demo``: a complete node for the UZ-CERT / PK-CERT working group, locally.

It builds a fresh home (SQLite, nothing to install), registers the two founding CERTs,
Uzbekistan's national SOC as a constituent of UZ-CERT and an operator organisation,
creates a publisher per CERT, a SOC consumer, an auditor and an admin, a joint
collection and one per country; starts the TAXII server under gunicorn on 127.0.0.1;
publishes generated, realistic indicators through the real TAXII path (taxii2-client);
and prints URLs, credentials and commands to try. Ctrl-C stops the server it started.

The demo's API keys are written to ``demo-credentials.json`` in the demo home (mode 0600)
because showing them is the point of a demo; a real node never stores a key.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from exchange.config import load_settings
from exchange.errors import ConfigError, RemoteError
from exchange.member import client
from exchange.member.generate import generate_indicators
from exchange.member.signer import sign_all
from exchange.model.objects import Tlp
from exchange.node.keyring import register_key
from exchange.node.service import Exchange, init_home
from exchange.signing.keyfiles import read_private_key, write_private_key
from exchange.signing.keys import generate
from exchange.storage import open_store
from exchange.taxii.procs import stop_child

MARKER = ".cert-exchange-demo"
DEMO_SEED = 2026


def _prepare_home(home: Path, fresh: bool) -> None:
    if home.exists() and fresh:
        if any(home.iterdir()) and not (home / MARKER).exists():
            raise ConfigError(
                f"{home} exists and is not a demo home; choose another --home or use --keep"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / MARKER).write_text("created by 'exchange demo'\n", encoding="utf-8")


def _wait_ready(url: str, user: str, key: str, proc: subprocess.Popen[bytes],
                timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RemoteError(f"the TAXII server exited with status {proc.returncode}")
        try:
            r = requests.get(url, auth=(user, key), timeout=2,
                             headers={"Accept": "application/taxii+json;version=2.1"})
            if r.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RemoteError(f"the TAXII server did not answer on {url} within {timeout:.0f} s")


def setup_world(ex: Exchange, home: Path) -> dict[str, Any]:
    """Create the working group's organisations, accounts, keys and collections.

    Each CERT gets an Ed25519 signing key (written encrypted to the demo home, the
    passphrase beside it: a demo convenience) whose public half is registered, so the
    demo's indicators are signed as the shipped policy requires.
    """
    uz = ex.add_org("UZ-CERT", sector="government-national")
    pk = ex.add_org("PK-CERT", sector="government-national")
    ex.add_org("UZ-SOC", parent="UZ-CERT", sector="government-national")
    ex.add_org("JWG-Operator", sector="government-national")
    accounts = {
        "uz-analyst": ("UZ-CERT", "publisher"),
        "pk-analyst": ("PK-CERT", "publisher"),
        "uz-soc": ("UZ-SOC", "consumer"),
        "auditor": ("JWG-Operator", "auditor"),
        "admin": ("JWG-Operator", "admin"),
    }
    keys: dict[str, str] = {}
    for name, (org, role) in accounts.items():
        ex.add_account(name, org=org, role=role)
        keys[name] = ex.create_api_key(name, label="demo")[1]
    signing: dict[str, str] = {}
    for org in ("UZ-CERT", "PK-CERT"):
        key = generate("Ed25519")
        passphrase = secrets.token_urlsafe(24)
        path = home / f"{org.lower()}-signing.key"
        write_private_key(path, key, passphrase.encode())
        (home / f"{org.lower()}-signing.passphrase").write_text(passphrase, encoding="utf-8")
        register_key(ex.store, org, key.public_pem())
        signing[org] = str(path)
    joint, _ = ex.add_collection(
        "UZ-PK Joint Working Group", alias="jwg",
        description="Indicators shared between UZ-CERT and PK-CERT",
        readers=["UZ-CERT", "PK-CERT", "UZ-SOC"], writers=["UZ-CERT", "PK-CERT"])
    uz_col, _ = ex.add_collection(
        "UZ-CERT national feed", alias="uz", description="UZ-CERT to its constituents",
        readers=["UZ-CERT", "UZ-SOC"], writers=["UZ-CERT"])
    pk_col, _ = ex.add_collection(
        "PK-CERT national feed", alias="pk", description="PK-CERT's own feed",
        readers=["PK-CERT"], writers=["PK-CERT"])
    return {
        "orgs": {"UZ-CERT": uz.identity_id, "PK-CERT": pk.identity_id},
        "keys": keys,
        "collections": {"jwg": joint.id, "uz": uz_col.id, "pk": pk_col.id},
        "signing_keys": signing,
    }


def run_demo(home: Path, *, port: int = 8421, count: int = 300, fresh: bool = True) -> None:
    """Build the demo home, serve it, publish indicators, print how to use it; block.

    Raises:
        ConfigError: The home is not a demo home.
        RemoteError: The server did not start or refused the demo's data.
    """
    home = home.resolve()
    _prepare_home(home, fresh)
    settings = replace(load_settings(home), port=port, host="127.0.0.1")
    shipped = Path(__file__).resolve().parents[1] / "policies"
    config = home / "exchange.toml"
    if shipped.is_dir() and not config.exists():
        # the demo runs under the shipped UZ-CERT / PK-CERT working-group policy
        config.write_text(f'policy_dir = "{shipped}"\n', encoding="utf-8")
    init_home(settings)
    settings = load_settings(home)
    settings = replace(settings, port=port, host="127.0.0.1")
    creds_path = home / "demo-credentials.json"
    if creds_path.exists():
        world = json.loads(creds_path.read_text(encoding="utf-8"))
        publish_now = False
    else:
        store = open_store(settings)
        try:
            world = setup_world(Exchange(settings, store), home)
        finally:
            store.close()
        creds_path.touch(mode=0o600)
        creds_path.write_text(json.dumps(world, indent=2), encoding="utf-8")
        publish_now = True

    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EXCHANGE_HOME": str(home), "EXCHANGE_PORT": str(port),
           "EXCHANGE_HOST": "127.0.0.1"}
    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop is a Ctrl-C too
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=(home / "server.log").open("ab"))
    try:
        keys = world["keys"]
        _wait_ready(f"{base}/taxii2/", "uz-analyst", keys["uz-analyst"], proc)
        if publish_now:
            _publish_demo_data(base, settings.api_root, world, count)
        _print_guide(base, settings.api_root, world, home)
        while proc.poll() is None:
            time.sleep(0.5)
        raise RemoteError(f"the TAXII server stopped (status {proc.returncode}); see "
                          f"{home / 'server.log'}")
    except KeyboardInterrupt:
        print("\nstopping the demo server ...", file=sys.stderr)
    finally:
        stop_child(proc, timeout=15)


def _publish_demo_data(base: str, api_root: str, world: dict[str, Any], count: int) -> None:
    now = datetime.now(UTC)
    plan = [
        ("uz-analyst", "UZ-CERT", "jwg", count * 2 // 5, 1),
        ("pk-analyst", "PK-CERT", "jwg", count * 2 // 5, 2),
        ("uz-analyst", "UZ-CERT", "uz", count // 10, 3),
        ("pk-analyst", "PK-CERT", "pk", count - (count * 2 // 5) * 2 - count // 10, 4),
    ]
    weights = {Tlp.CLEAR: 0.15, Tlp.GREEN: 0.45, Tlp.AMBER: 0.3, Tlp.AMBER_STRICT: 0.1}
    for account, org, alias, n, seed in plan:
        if n <= 0:
            continue
        objects = list(generate_indicators(n, identity_id=world["orgs"][org],
                                           seed=seed, tlp_weights=weights, start=now))
        key_path = Path(world["signing_keys"][org])
        passphrase = key_path.with_suffix(".passphrase").read_text(encoding="utf-8")
        signed = sign_all(objects, read_private_key(key_path, passphrase.encode()),
                          normalise=True)
        if signed.refused:
            raise RemoteError(f"the demo could not sign its data: {signed.refused[:3]}")
        objects = signed.objects
        url = f"{base}/{api_root}/collections/{world['collections'][alias]}/"
        conn = client.Connection(account, world["keys"][account])
        try:
            report = client.publish(conn, url, objects, batch_size=100)
        finally:
            conn.close()
        print(f"  {account} published {report.succeeded}/{report.total} indicators to "
              f"{alias}", file=sys.stderr)
        if report.failed:
            raise RemoteError(f"the demo data was refused: {report.failures[:3]}")


def _print_guide(base: str, api_root: str, world: dict[str, Any], home: Path) -> None:
    keys = world["keys"]
    jwg = f"{base}/{api_root}/collections/{world['collections']['jwg']}/"
    lines = [
        "",
        "cert-exchange demo is running (Ctrl-C stops it)",
        "",
        f"  discovery     {base}/taxii2/",
        f"  API root      {base}/{api_root}/",
        f"  joint (jwg)   {jwg}",
        f"  UZ national   {base}/{api_root}/collections/{world['collections']['uz']}/",
        f"  PK national   {base}/{api_root}/collections/{world['collections']['pk']}/",
        "",
        "  accounts (user / API key; sent as HTTP Basic user / password):",
    ]
    lines += [f"    {name:<11} {key}" for name, key in keys.items()]
    lines += [
        f"  (also saved in {home / 'demo-credentials.json'})",
        "",
        "  pull the joint collection as the UZ national SOC:",
        f"    EXCHANGE_API_KEY={keys['uz-soc']} exchange pull --url {jwg} --user uz-soc "
        "--out jwg.jsonl",
        "",
        "  the newest indicators with curl:",
        f"    curl -sg -u uz-soc:{keys['uz-soc']} -H 'Accept: application/taxii+json;"
        f"version=2.1' '{jwg}objects/?match[type]=indicator&limit=5'",
        "",
        "  with taxii2-client in Python:",
        "    from taxii2client.v21 import Collection",
        f"    c = Collection('{jwg}', user='uz-soc', password='{keys['uz-soc']}')",
        "    print(len(c.get_objects(limit=50)['objects']))",
        "",
        "  publish an IOC list as UZ-CERT:",
        f"    printf 'evil.example.com\\n203.0.113.7\\n' > iocs.txt && EXCHANGE_API_KEY="
        f"{keys['uz-analyst']} exchange publish iocs.txt --url {jwg} --user uz-analyst "
        f"--identity {world['orgs']['UZ-CERT']} --tlp green",
        "",
        "  what the UZ national SOC received, from the audit ledger (after a pull):",
        f"    exchange --home {home} audit checkpoint >/dev/null && exchange --home {home}"
        " audit report --recipient UZ-SOC --format html --out uz-soc-report.html",
        f"    exchange --home {home} audit verify",
        "",
    ]
    print("\n".join(lines), flush=True)
