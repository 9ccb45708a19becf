"""``exchange demo``: a complete node for the UZ-CERT / PK-CERT working group, locally.

The first run builds a demo home (SQLite, nothing to install): the two founding CERTs,
Uzbekistan's national SOC as a constituent of UZ-CERT and an operator organisation; a
publisher per CERT, a SOC consumer, an auditor and an admin; a joint collection and one
per country; a signing key per CERT. It starts the TAXII server under gunicorn on
127.0.0.1, publishes generated, realistic indicators through the real TAXII path
(taxii2-client), and prints URLs, credentials and commands to try. Later runs serve the
same home and data again, so what a printed command left behind (a feed file and its
cursor, the IOC state) stays valid; ``--fresh`` starts over. Ctrl-C (or SIGTERM) stops
the server it started and exits 0.

With ``--misp URL`` the demo also keeps MISP instances in sync (issue 19): the first
``--misp`` is UZ-CERT's instance, a second one PK-CERT's. It writes a targets file to the
demo home naming them (push and pull), with each API key copied to a 0600 file beside it
(from ``--misp-key-file``, given in the same order, or the variables
``EXCHANGE_MISP_KEY_DEMO`` and ``EXCHANGE_MISP_KEY_DEMO_PK``; never from the command
line), and the server runs the scheduler beside itself, which syncs at once and then
every five minutes. The demo waits for the first push and pull of each and prints how
they went. Without ``--misp`` it says how to get a MISP to try it with.

Every printed command runs as pasted into a new shell in the directory the demo was
started from (the project root for ``make demo``): it names the ``exchange`` script by
its path, passes ``--home`` where the command reads the home, and takes API keys, the
signing key and its passphrase from files in the demo home (mode 0600, in a 0700
directory). The demo's API keys are also in ``demo-credentials.json`` there, because
showing them is the point of a demo; a real node never stores a key.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from exchange.config import Settings, load_settings
from exchange.errors import ConfigError, RemoteError
from exchange.member import client
from exchange.member.generate import generate_indicators
from exchange.member.signer import sign_all
from exchange.misp.targets import load_targets
from exchange.model.objects import CollectionId, Tlp
from exchange.node.keyring import register_key
from exchange.node.service import Exchange, init_home
from exchange.signing.keyfiles import read_private_key, write_private_key
from exchange.signing.keys import SigningKey, generate
from exchange.storage import open_store
from exchange.storage.base import MispSyncState, ObjectQuery, VersionMatch
from exchange.storage.timestamps import from_micros
from exchange.taxii.procs import stop_child

MARKER = ".cert-exchange-demo"
CREDENTIALS = "demo-credentials.json"
DATA_DONE = ".demo-data-published"
DEMO_SEED = 2026
#: How many of the newest indicators the printed curl command fetches.
NEWEST = 5
#: The project's policies/ (the UZ-CERT / PK-CERT working group), which the demo runs under.
SHIPPED_POLICIES = Path(__file__).resolve().parents[2] / "policies"
#: The demo's MISP targets in the order of --misp: (target, owner, key variable).
MISP_TARGETS = (("uz-cert-misp", "UZ-CERT", "EXCHANGE_MISP_KEY_DEMO"),
                ("pk-cert-misp", "PK-CERT", "EXCHANGE_MISP_KEY_DEMO_PK"))
MISP_TARGETS_FILE = "misp-targets.yaml"
#: How long the demo waits for the first sync of each direction.
MISP_WAIT_SECONDS = 180
#: The guide's last line.
GUIDE_END = "Ctrl-C stops the demo; 'exchange demo' again resumes it with the same data."


def private_file(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner may read (0600 from the start)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_signing_key(home: Path, org: str, key: SigningKey) -> Path:
    """Write an organisation's signing key into a demo home, encrypted with a fresh
    passphrase (``<org>-signing.key``, the passphrase beside it in ``.passphrase``; both
    0600); returns the key file."""
    passphrase = secrets.token_urlsafe(24)
    path = home / f"{org.lower()}-signing.key"
    write_private_key(path, key, passphrase.encode())
    private_file(path.with_suffix(".passphrase"), passphrase + "\n")
    return path


def _prepare_home(home: Path, fresh: bool) -> bool:
    """Make ``home`` a demo home; True when it already holds a complete demo.

    Raises:
        ConfigError: ``home`` exists, is not empty and was not made by the demo.
    """
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        raise ConfigError(f"{home} exists and is not a demo home; choose another --home")
    complete = (home / CREDENTIALS).exists() and (home / DATA_DONE).exists()
    if home.exists() and (fresh or not complete):
        if not fresh and any(p.name != MARKER for p in home.iterdir()):
            print(f"the demo home {home} is incomplete (an earlier run was interrupted"
                  " while building it): starting over", file=sys.stderr)
        shutil.rmtree(home)
        complete = False
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    (home / MARKER).write_text("created by 'exchange demo'\n", encoding="utf-8")
    return complete


def wait_ready(url: str, user: str, key: str, proc: subprocess.Popen[bytes],
               timeout: float = 30.0, *, name: str = "the TAXII server",
               exit_hint: str = " (is the port in use? see server.log in the demo home)"
               ) -> None:
    """Wait until the server ``proc`` runs answers ``url`` (a TAXII discovery or API root)
    with 200 for the user.

    Raises:
        RemoteError: ``<name> exited with status N<exit_hint>``, or it did not answer
            within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RemoteError(f"{name} exited with status {proc.returncode}{exit_hint}")
        try:
            r = requests.get(url, auth=(user, key), timeout=2,
                             headers={"Accept": "application/taxii+json;version=2.1"})
            if r.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RemoteError(f"{name} did not answer on {url} within {timeout:.0f} s")


def setup_world(ex: Exchange, home: Path) -> dict[str, Any]:
    """Create the working group's organisations, accounts, keys and collections.

    Each account's API key is written to ``api-keys/<account>.key`` (0600). Each CERT
    gets an Ed25519 signing key (written encrypted to the demo home, the passphrase
    beside it, 0600: a demo convenience) whose public half is registered, so the
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
    key_dir = home / "api-keys"
    key_dir.mkdir(mode=0o700, exist_ok=True)
    for name, (org, role) in accounts.items():
        ex.add_account(name, org=org, role=role)
        keys[name] = ex.create_api_key(name, label="demo")[1]
        private_file(key_dir / f"{name}.key", keys[name] + "\n")
    signing: dict[str, str] = {}
    for org in ("UZ-CERT", "PK-CERT"):
        key = generate("Ed25519")
        signing[org] = str(write_signing_key(home, org, key))
        register_key(ex.store, org, key.public_pem())
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


def run_demo(home: Path, *, port: int = 8421, count: int = 300, fresh: bool = False,
             misp: Sequence[tuple[str, str | None]] = ()) -> None:
    """Build (or reuse) the demo home, serve it, print how to use it; block until stopped.

    Args:
        home: The demo home.
        port: The TAXII server's port on 127.0.0.1.
        count: Indicators to generate and publish on the first run.
        fresh: Start over from an empty home.
        misp: MISP instances to keep in sync, (URL, API key) each: UZ-CERT's, then
            PK-CERT's (none: no MISP sync, or what an earlier run set up).

    Raises:
        ConfigError: The home is not a demo home, a MISP URL came without a key, or
            more MISP instances than members were given.
        RemoteError: The server did not start, stopped by itself, or refused the demo's
            data.
    """
    home = home.absolute()
    complete = _prepare_home(home, fresh)
    settings = replace(load_settings(home), port=port, host="127.0.0.1")
    shipped = SHIPPED_POLICIES
    config = home / "exchange.toml"
    if shipped.is_dir() and not any(line.startswith("policy_dir") for line in (
            config.read_text(encoding="utf-8").splitlines() if config.exists() else [])):
        # the demo runs under the shipped UZ-CERT / PK-CERT working-group policy
        kept = config.read_text(encoding="utf-8") if config.exists() else ""
        config.write_text(f'policy_dir = "{shipped}"\n{kept}', encoding="utf-8")
    if misp:
        _setup_misp(home, config, misp)
    init_home(settings)
    settings = replace(load_settings(home), port=port, host="127.0.0.1")
    creds_path = home / CREDENTIALS
    if complete:
        world = json.loads(creds_path.read_text(encoding="utf-8"))
    else:
        store = open_store(settings)
        try:
            world = setup_world(Exchange(settings, store), home)
        finally:
            store.close()
        private_file(creds_path, json.dumps(world, indent=2))

    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EXCHANGE_HOME": str(home), "EXCHANGE_PORT": str(port),
           "EXCHANGE_HOST": "127.0.0.1"}

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A service manager's stop, or the terminal closing, is a Ctrl-C too.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with (home / "server.log").open("ab") as log:
            # Its own process group: the terminal's Ctrl-C reaches this process only,
            # which then stops the server in order (no race with a dying child).
            proc = subprocess.Popen(
                [sys.executable, "-m", "exchange", "serve"], env=env,
                stdout=subprocess.DEVNULL, stderr=log, process_group=0)
        keys = world["keys"]
        wait_ready(f"{base}/taxii2/", "uz-analyst", keys["uz-analyst"], proc)
        if not complete:
            _publish_demo_data(base, settings.api_root, world, count)
            (home / DATA_DONE).write_text("demo data published\n", encoding="utf-8")
        newest = _newest_cutoff(settings, world)
        synced = _misp_outcome(settings, proc) if settings.misp_targets_path else None
        print(guide(base, settings.api_root, world, home, newest_after=newest,
                    misp=synced), flush=True)
        while proc.poll() is None:
            time.sleep(0.5)
        raise RemoteError(f"the TAXII server stopped by itself (status {proc.returncode});"
                          f" see {home / 'server.log'}")
    except KeyboardInterrupt:
        print("\ndemo stopped", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan it
        if proc is not None:
            stop_child(proc, timeout=15)


def _setup_misp(home: Path, config: Path, misp: Sequence[tuple[str, str | None]]) -> None:
    """Name the MISP instances as UZ-CERT's and PK-CERT's in a targets file of the demo
    home (keys beside it, 0600) and point the home's configuration at it."""
    if len(misp) > len(MISP_TARGETS):
        raise ConfigError(f"--misp names at most {len(MISP_TARGETS)} instances (one per"
                          f" member CERT: {', '.join(o for _, o, _ in MISP_TARGETS)})")
    targets: dict[str, Any] = {}
    for (url, key), (name, owner, variable) in zip(misp, MISP_TARGETS, strict=False):
        if not key or not key.strip():
            raise ConfigError(f"--misp {url} ({owner}'s) needs its API key: in a file given"
                              f" with --misp-key-file, or in the variable {variable}")
        key_path = home / f"{name}.key"
        private_file(key_path, key.strip() + "\n")
        targets[name] = {
            "description": f"the demo's MISP, kept in sync as {owner}'s instance",
            "url": url,
            "api_key_file": str(key_path),
            "owner": owner,
            "direction": "both",
            "schedule": {"interval": 300},
            "filters": {"collections": ["jwg", owner[:2].lower()]},
            "timeout": 60,
        }
    text = ("# Written by 'exchange demo --misp' (see feeds/misp-targets.yaml for every key)\n"
            + yaml.safe_dump({"version": 1, "targets": targets}, sort_keys=False))
    private_file(home / MISP_TARGETS_FILE, text)
    lines = [line for line in config.read_text(encoding="utf-8").splitlines()
             if not line.startswith("misp_targets")] if config.exists() else []
    lines.append(f'misp_targets = "{MISP_TARGETS_FILE}"')
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _misp_outcome(settings: Settings, proc: subprocess.Popen[bytes]) -> list[str]:
    """Wait (bounded) for the scheduler's first push and pull of every target; one line
    on each."""
    names = [t.name for t in load_targets(settings.misp_targets_path)] \
        if settings.misp_targets_path is not None else []
    deadline = time.monotonic() + MISP_WAIT_SECONDS
    states: dict[tuple[str, str], MispSyncState] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        store = open_store(settings)
        try:
            states = {(s.target, s.direction): s for s in store.misp_states()
                      if s.target in names}
        finally:
            store.close()
        if len(states) == 2 * len(names) and all(
                s.outcome not in ("never", "running") for s in states.values()):
            break
        time.sleep(1.0)
    lines = []
    for name in names:
        for direction in ("push", "pull"):
            state = states.get((name, direction))
            if state is None or state.outcome in ("never", "running"):
                lines.append(f"{name} {direction}: not finished within {MISP_WAIT_SECONDS}"
                             " s (the scheduler goes on; see sync status)")
                continue
            counts = ", ".join(f"{k} {v}" for k, v in sorted(state.counts.items()) if v)
            lines.append(f"{name} {direction}: {state.outcome}" + (
                f" ({counts or 'nothing to do'})" if state.outcome in ("ok", "partial")
                else f": {state.message}"))
    return lines


def _newest_cutoff(settings: Settings, world: dict[str, Any]) -> str | None:
    """The ``added_after`` at which the SOC's last :data:`NEWEST` indicators of the joint
    collection begin, or None when it may read no more than that many.

    TAXII 2.1 (section 3.4) serves objects oldest ``date_added`` first and has no
    reverse order, so "the newest N" is "after the date_added of the (N+1)th newest".
    Read node-locally through the same visibility rules as the SOC's TAXII reads, and
    without recording a disclosure: nothing leaves the node here.
    """
    store = open_store(settings)
    try:
        ex = Exchange(settings, store)
        principal = ex.authenticate("uz-soc", world["keys"]["uz-soc"])
        tail: collections.deque[int] = collections.deque(maxlen=NEWEST + 1)
        cursor: int | None = None
        while True:
            query = ObjectQuery(collection_id=CollectionId(""), types=("indicator",),
                                versions=VersionMatch.latest(), limit=1000, cursor=cursor,
                                include_body=False)
            page = ex.read(principal, settings.api_root, "jwg", query).page
            tail.extend(row.date_added for row in page.rows)
            if not page.more or not page.rows:
                break
            cursor = page.rows[-1].date_added
    finally:
        store.close()
    return from_micros(tail[0]) if len(tail) > NEWEST else None


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
        passphrase = key_path.with_suffix(".passphrase").read_text(encoding="utf-8").strip()
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


def _misp_guide(node: str, misp: list[str] | None) -> list[str]:
    if misp is None:
        return [
            "  MISP sync is not set up. To try it, run the demo with MISP instances to keep"
            " in sync: 'exchange demo --misp URL' (UZ-CERT's) and optionally a second",
            f"  '--misp URL' (PK-CERT's), their API keys in files given with --misp-key-file"
            f" in the same order, or in the variables {MISP_TARGETS[0][2]} and"
            f" {MISP_TARGETS[1][2]} (a sync user's key keeps each contributor as the events'"
            " creator). A test MISP needs no Docker: see ../shared/misp/README.md beside the"
            " project, or MISP's own install guides.",
            "",
        ]
    return [
        "  MISP sync (the server's scheduler syncs every 5 minutes):",
        *(f"  - {line}" for line in misp),
        "  how each target and direction stands, and every item skipped with its reason:",
        f"    {node} sync status",
        "  what a sync of UZ-CERT's MISP would push and pull now, and why, writing nothing:",
        f"    {node} sync run {MISP_TARGETS[0][0]} --dry-run",
        "",
    ]


def _shown(path: Path) -> str:
    """A path as the user should type it here: relative when under the current
    directory (``.venv/bin/exchange``, ``.exchange/demo``), else absolute."""
    try:
        relative = path.absolute().relative_to(Path.cwd())
    except ValueError:
        return str(path.absolute())
    return str(relative) if relative.parts else "."


def exchange_command() -> str:
    """How to run this installation's ``exchange`` from the current directory."""
    script = Path(sys.executable).parent / "exchange"
    if script.is_file() and os.access(script, os.X_OK):
        shown = _shown(script)
        return shlex.quote(shown if "/" in shown else f"./{shown}")
    return f"{shlex.quote(sys.executable)} -m exchange"


def guide(base: str, api_root: str, world: dict[str, Any], home: Path, *,
          newest_after: str | None, misp: list[str] | None = None) -> str:
    """What the demo prints: URLs, accounts, keys, and commands to paste.

    Every line that is a command starts with exactly four spaces (and nothing else
    does), so it can be copied whole, and tests can find and run each one.
    """
    keys = world["keys"]
    exe = exchange_command()
    venv = Path(sys.executable).parent
    python = shlex.quote(_shown(venv / "python") if (venv / "python").exists()
                         else sys.executable)
    h = shlex.quote(_shown(home))
    node = f"{exe} --home {h}"
    root = f"{base}/{api_root}/"
    jwg = f"{root}collections/{world['collections']['jwg']}/"
    uz_id = world["orgs"]["UZ-CERT"]

    def keyfile(account: str) -> str:
        return shlex.quote(_shown(home / "api-keys" / f"{account}.key"))

    def at(name: str) -> str:
        return shlex.quote(_shown(home / name))

    roles = {"uz-analyst": "publisher, UZ-CERT", "pk-analyst": "publisher, PK-CERT",
             "uz-soc": "consumer, UZ-SOC (constituent of UZ-CERT)",
             "auditor": "auditor, JWG-Operator", "admin": "admin, JWG-Operator"}
    newest = f"&added_after={newest_after}" if newest_after else ""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    evidence = at(f"evidence-{stamp}")
    activate = _shown(venv / "activate")
    lines = [
        "",
        f"cert-exchange demo is running at {base}/ (Ctrl-C stops it; run it again to"
        " resume with the same data, or with --fresh to start over)",
        "",
        f"  discovery     {base}/taxii2/",
        f"  API root      {root}",
        f"  joint (jwg)   {jwg}   (also {root}collections/jwg/)",
        f"  UZ national   {root}collections/{world['collections']['uz']}/   (alias uz)",
        f"  PK national   {root}collections/{world['collections']['pk']}/   (alias pk)",
        f"  demo home     {_shown(home)}   (database, server.log, keys; mode 0700)",
        "",
        "  accounts (user, API key sent as the HTTP Basic password, role); each key is also"
        f" in {_shown(home / 'api-keys')}/<user>.key:",
    ]
    lines += [f"  - {name:<11} {key}  {roles.get(name, '')}" for name, key in keys.items()]
    lines += [
        "  signing keys (Ed25519, encrypted, registered with the node; the shipped policy"
        " makes every collection require signatures):",
    ]
    for org, path in world["signing_keys"].items():
        key_path = Path(path)
        lines.append(f"  - {org:<8} key {_shown(key_path)}, passphrase in"
                     f" {_shown(key_path.with_suffix('.passphrase'))} (both mode 0600)")
    lines += [
        "",
        f"Commands to paste in this directory ({Path.cwd().absolute()}); the CLI is"
        f" {exe} (or run 'source {activate}' and call it as 'exchange'):",
        "",
        "  pull the joint collection as the UZ national SOC (again: only what is new):",
        f"    {exe} pull --url {jwg} --user uz-soc --api-key-file {keyfile('uz-soc')}"
        f" --out {at('jwg.jsonl')}",
        "",
        f"  the {NEWEST} newest indicators the SOC may read, with curl (TAXII 2.1 lists oldest"
        f" first; added_after starts after the {NEWEST + 1}th newest as of now):",
        f"    curl -sg -u uz-soc:{keys['uz-soc']} -H 'Accept: application/taxii+json;"
        f"version=2.1' '{jwg}objects/?match[type]=indicator{newest}&limit={NEWEST}'",
        "",
        "  with taxii2-client, from Python:",
        f"    {python} -c 'from taxii2client.v21 import Collection;"
        f" c = Collection(\"{jwg}\", user=\"uz-soc\", password=\"{keys['uz-soc']}\");"
        " print(len(c.get_objects(limit=50)[\"objects\"]), \"objects\")'",
        "",
        "  publish an IOC list as UZ-CERT, signed with UZ-CERT's key (the joint collection"
        " requires signatures; publishing it again sends nothing new):",
        f"    printf 'evil.example.com\\n203.0.113.7\\n' > {at('iocs.txt')}",
        f"    {node} publish {at('iocs.txt')} --url {root}collections/jwg/ --user uz-analyst"
        f" --api-key-file {keyfile('uz-analyst')} --identity {uz_id} --tlp green"
        f" --sign-key {at('uz-cert-signing.key')}"
        f" --passphrase-file {at('uz-cert-signing.passphrase')}",
        "",
        "  check the signatures of what the SOC pulled, against the node's key registry:",
        f"    {node} keys export --out {at('registry.json')} && {exe} verify"
        f" {at('jwg.jsonl')} --registry {at('registry.json')}",
        "",
        "  what the UZ national SOC received, from the audit ledger (after a pull):",
        f"    {node} audit checkpoint >/dev/null && {node} audit report --recipient UZ-SOC"
        f" --format html --out {at('uz-soc-report.html')}",
        f"    {node} audit verify",
        "",
        "  the hub's checkpoint verifier key, and an offline check of the evidence with it:",
        f"    {node} audit key",
        f"    {node} audit export {evidence} && {exe} audit verify --export {evidence}"
        f" --key \"$({node} audit key)\"",
        "",
    ]
    lines += _misp_guide(node, misp)
    lines += [GUIDE_END]
    return "\n".join(lines)
