"""``exchange demo --federation``: two national nodes, UZ and PK, federating on loopback.

Issue 20 item 3. Each node has its own home (``<demo home>/uz``, ``<demo home>/pk``), the
shipped policy, the same three organisations (UZ-CERT, PK-CERT, UZ-SOC) and a joint
collection ``jwg``; each CERT signs with its own key, registered at its own node. Then:

1. each node creates an account for the other (role ``peer``, ``exchange peer add``):
   PK's ``uz-node`` serves UZ-CERT, UZ's ``pk-node`` serves PK-CERT; the API keys go to
   0600 files, handed to the other operator;
2. PK-CERT's analyst publishes signed indicators at PK (TLP:GREEN and TLP:AMBER);
3. UZ pins PK's node key (``exchange peer trust``, the fingerprint as PK's operator reads
   it out) and keeps PK's signed registry;
4. UZ pulls PK's ``jwg`` as ``uz-node`` with the ingestion engine: a ``peer`` source
   ``pk`` written to UZ's sources file (``<uz home>/sources.yaml``, named in its
   ``exchange.toml``), run as ``exchange sync run pk`` runs it (taxii2-client). PK's
   policy decides on channel ``peer`` (the shipped re-share rules federate up to GREEN,
   so the AMBER one stays home), PK records each object sent as a disclosure to UZ-CERT,
   UZ verifies each signature against PK's pinned registry and imports what verified as
   PK-CERT's contribution; the engine mirrors PK-CERT's keys from that registry into
   UZ's, so UZ's consumers verify the imports offline;
5. the indicator published at PK verifies at UZ, from UZ's own TAXII server and registry;
6. PK pulls UZ back: UZ's own indicator arrives, nothing of PK-CERT's loops back.

It prints what happened, PK's disclosures to UZ-CERT from its audit ledger, and commands
to try; Ctrl-C stops both servers. Every run starts over (both homes are rebuilt).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from exchange.audit.query import RecordFilter
from exchange.audit.records import Disclosed, Disclosure, Kind
from exchange.cli.demo import exchange_command, private_file, wait_ready, write_signing_key
from exchange.cli.peer import write_key_file
from exchange.config import load_settings
from exchange.errors import ConfigError, RemoteError
from exchange.feeds.ingest import IngestReport
from exchange.feeds.peers import trust, verifier_for
from exchange.feeds.run import load_node_sources, run_source, source_named
from exchange.feeds.sources import Kind as SourceKind
from exchange.feeds.sources import Schedule, TaxiiSource
from exchange.member import client
from exchange.member.generate import generate_indicators
from exchange.member.signer import sign_all
from exchange.model.objects import Tlp
from exchange.node.keyring import register_key
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange, init_home
from exchange.signing.keys import SigningKey, generate
from exchange.signing.published import read_registry
from exchange.storage import open_store
from exchange.taxii.procs import stop_child

SHIPPED_POLICIES = Path(__file__).resolve().parents[2] / "policies"
MARKER = ".cert-exchange-federation-demo"
TAXII = "application/taxii+json;version=2.1"
GUIDE_END = "Ctrl-C stops both nodes; 'exchange demo --federation' again starts over."


@dataclass
class FedNode:
    """One national node of the federation demo (or of the tests and the benchmark)."""

    name: str  # "uz" / "pk"
    org: str  # the CERT whose node it is
    home: Path
    exchange: Exchange
    signing: SigningKey
    keys: dict[str, str] = field(default_factory=dict)  # account -> API key (demo only)
    base: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api_root(self) -> str:
        return self.exchange.settings.api_root

    def url(self, alias: str) -> str:
        """A collection's URL, by id (what taxii2-client checks the collection against)."""
        collection = self.exchange.store.get_collection(self.api_root, alias)
        return f"{self.base}/{self.api_root}/collections/{collection.id}/"

    @property
    def analyst(self) -> str:
        return f"{self.name}-analyst"

    def close(self) -> None:
        if self.proc is not None:
            stop_child(self.proc, timeout=15)
            self.proc = None
        self.exchange.audit.drain()
        self.exchange.store.close()


def build_node(home: Path, *, name: str, org: str, peer_org: str,
               policy_dir: Path = SHIPPED_POLICIES, config: str = "") -> FedNode:
    """A fresh node in ``home``: the working group's organisations, the CERT's analyst
    (API key), an import account of the peer's organisation, collection ``jwg`` (signatures
    required) and the CERT's signing key, registered.

    Raises:
        ConfigError: ``home`` is not empty.
    """
    if home.exists() and any(home.iterdir()):
        raise ConfigError(f"{home} is not empty")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home / "exchange.toml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f'policy_dir = "{policy_dir}"\n{config}')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    assert settings.policy_path is not None
    policy = PolicySource(settings.policy_path)
    policy.load()
    ex = Exchange(settings, open_store(settings), policy=policy)
    for org_name in ("UZ-CERT", "PK-CERT"):
        ex.add_org(org_name, sector="government-national")
    ex.add_org("UZ-SOC", parent="UZ-CERT", sector="government-national")
    node = FedNode(name, org, home, ex, generate("Ed25519"))
    ex.add_account(node.analyst, org=org, role="publisher")
    node.keys[node.analyst] = ex.create_api_key(node.analyst, label="demo")[1]
    ex.add_account(importer_name(peer_org), org=peer_org, role="publisher")
    ex.add_collection("UZ-PK Joint Working Group", alias="jwg",
                      readers=["UZ-CERT", "PK-CERT", "UZ-SOC"], writers=["UZ-CERT", "PK-CERT"],
                      require_signatures=True)
    register_key(ex.store, org, node.signing.public_pem())
    return node


def save_publisher(node: FedNode) -> tuple[Path, Path]:
    """Write the node's analyst API key (``api-keys/<analyst>.key``) and its CERT's
    signing key (encrypted, ``<org>-signing.key``, the passphrase beside it in
    ``.passphrase``) into its home, each 0600, for the commands the demo prints;
    returns (API key file, signing key file)."""
    key_dir = node.home / "api-keys"
    key_dir.mkdir(mode=0o700, exist_ok=True)
    api_key = key_dir / f"{node.analyst}.key"
    private_file(api_key, node.keys[node.analyst] + "\n")
    return api_key, write_signing_key(node.home, node.org, node.signing)


def importer_name(peer_org: str) -> str:
    """The local publisher account a peer organisation's imports are recorded under."""
    return f"peer-import-{peer_org.lower()}"


def add_peer_account(node: FedNode, name: str, serves: str, key_file: Path) -> str:
    """``exchange peer add NAME --serves ORG --key-out FILE``; returns the API key."""
    node.exchange.add_account(name, org=serves, role="peer")
    token = node.exchange.create_api_key(name, label=f"peer node {name}")[1]
    write_key_file(key_file, token)
    return token


def serve(node: FedNode, port: int, *, workers: int = 2) -> None:
    """Start ``exchange serve`` for the node on 127.0.0.1 and wait until it answers.

    Raises:
        RemoteError: It exited or did not answer within 60 s.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    with (node.home / "server.log").open("ab") as log:
        node.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "exchange", "--home", str(node.home), "serve",
             "--port", str(port), "--workers", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=log, process_group=0)
    node.base = f"http://127.0.0.1:{port}"
    wait_ready(f"{node.base}/taxii2/", node.analyst, node.keys[node.analyst], node.proc, 60,
               name=f"the {node.name.upper()} node",
               exit_hint=f"; see {node.home / 'server.log'}")


def signed_indicators(node: FedNode, count: int, *, seed: int, tlp: Tlp
                      ) -> list[dict[str, Any]]:
    """``count`` generated indicators of the node's CERT at one TLP level, signed."""
    identity = node.exchange.store.find_org(node.org).identity_id
    objects = list(generate_indicators(count, identity_id=identity, seed=seed,
                                       tlp_weights={tlp: 1.0}, start=datetime.now(UTC)))
    signed = sign_all(objects, node.signing, normalise=True)
    if signed.refused:
        raise RemoteError(f"could not sign: {signed.refused[:3]}")
    return list(signed.objects)


def publish(node: FedNode, objects: list[dict[str, Any]], alias: str = "jwg") -> None:
    """Publish as the node's analyst over TAXII (taxii2-client).

    Raises:
        RemoteError: Any object was refused.
    """
    conn = client.Connection(node.analyst, node.keys[node.analyst])
    try:
        report = client.publish(conn, node.url(alias), objects, batch_size=500)
    finally:
        conn.close()
    if report.failed:
        raise RemoteError(f"{node.name.upper()} refused: {report.failures[:3]}")


def peer_source(puller: FedNode, source: FedNode, *, peer_name: str, user: str,
                key_file: Path) -> TaxiiSource:
    """The ``peer`` source of ``feeds/sources.yaml`` that pulls ``source``'s ``jwg``
    into ``puller``'s, as the peer account ``user``, verified by the pinned peer
    ``peer_name``; the objects are the contributions of ``source``'s CERT."""
    collection = source.exchange.store.get_collection(source.api_root, "jwg")
    return TaxiiSource(
        name=peer_name, kind=SourceKind.PEER, trust=peer_name, discovery=None,
        api_root=f"{source.base}/{source.api_root}/", collection=collection.id,
        org=source.org, into="jwg", user=user, password_file=str(key_file),
        password_env=None, ca_file=None, schedule=Schedule(interval=300), timeout=30.0,
        page_size=1000)


def federate(puller: FedNode, source: FedNode, *, peer_name: str, user: str,
             key_file: Path) -> IngestReport:
    """One run of the ingestion engine (:mod:`exchange.feeds.ingest`) over the peer
    source of ``source``'s ``jwg``: incremental from the source's cursor, every object
    verified by the pinned peer's verifier (:func:`exchange.feeds.peers.verifier_for`)."""
    return run_source(puller.exchange, peer_source(puller, source, peer_name=peer_name,
                                                   user=user, key_file=key_file),
                      verifier_for=verifier_for)


def write_peer_source(puller: FedNode, source: TaxiiSource) -> TaxiiSource:
    """Write ``source`` as the puller's sources file (``<home>/sources.yaml``, named in
    its ``exchange.toml``), as an operator would, so that ``exchange sync run`` and
    ``sync status`` know it; returns the source as loaded back from that file.

    Raises:
        ConfigError: The file does not load back (a defect here).
    """
    text = "\n".join([
        "# written by 'exchange demo --federation': the peer node, as a TAXII source",
        "version: 1", "sources:", f"  {source.name}:",
        f"    description: {json.dumps(f'the {source.org} node (federation demo)')}",
        "    kind: peer", f"    trust: {json.dumps(source.trust)}",
        f"    api_root: {json.dumps(source.api_root)}",
        f"    collection: {json.dumps(source.collection)}",
        f"    org: {json.dumps(source.org)}", f"    into: {json.dumps(source.into)}",
        f"    user: {json.dumps(source.user)}",
        f"    password_file: {json.dumps(source.password_file)}",
        "    schedule:", f"      interval: {source.schedule.interval}",
        f"    timeout: {int(source.timeout)}", ""])
    path = puller.home / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    config = puller.home / "exchange.toml"
    kept = config.read_text(encoding="utf-8")
    if "taxii_sources" not in kept:
        config.write_text(f'{kept.rstrip()}\ntaxii_sources = "sources.yaml"\n',
                          encoding="utf-8")
    return source_named(load_node_sources(load_settings(puller.home, env={})), source.name)


def disclosures_to(node: FedNode, org: str) -> list[tuple[str, str, Disclosed]]:
    """Every disclosure in the node's ledger to ``org``: (channel, account, entry)."""
    out: list[tuple[str, str, Disclosed]] = []
    after = -1
    for _ in range(10_000):  # bounded: 10 million records
        found, cursor = node.exchange.audit.find(
            RecordFilter(kinds=(Kind.DISCLOSURE,), recipient_org=org), after=after,
            limit=1000)
        for entry in found:
            record = entry.record
            if isinstance(record, Disclosure):
                out += [(record.channel, record.recipient_account, d) for d in record.objects]
        if cursor is None:
            break
        after = cursor
    return out


def run_federation_demo(root: Path, *, uz_port: int, pk_port: int) -> None:
    """Build both nodes, federate, print what happened; block until Ctrl-C.

    Raises:
        ConfigError: ``root`` exists and was not made by this demo.
        RemoteError: A server did not start or refused the demo's data.
    """
    root = root.absolute()
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise ConfigError(f"{root} exists and is not a federation demo home")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, mode=0o700)
    (root / MARKER).write_text("created by 'exchange demo --federation'\n", encoding="utf-8")
    signal.signal(signal.SIGTERM, _interrupt)
    nodes: list[FedNode] = []
    try:
        pk = build_node(root / "pk", name="pk", org="PK-CERT", peer_org="UZ-CERT")
        nodes.append(pk)
        uz = build_node(root / "uz", name="uz", org="UZ-CERT", peer_org="PK-CERT")
        nodes.append(uz)
        handed = root / "handed-over"
        handed.mkdir(mode=0o700)
        add_peer_account(pk, "uz-node", "UZ-CERT", handed / "key-for-uz-at-pk")
        add_peer_account(uz, "pk-node", "PK-CERT", handed / "key-for-pk-at-uz")
        api_key, signing = save_publisher(pk)
        serve(pk, pk_port)
        serve(uz, uz_port)
        print(f"PK node {pk.base}/taxii2/ (home {pk.home})\nUZ node {uz.base}/taxii2/"
              f" (home {uz.home})", flush=True)
        green = signed_indicators(pk, 3, seed=1, tlp=Tlp.GREEN)
        amber = signed_indicators(pk, 1, seed=2, tlp=Tlp.AMBER)
        publish(pk, green + amber)
        print(f"PK-CERT published {len(green)} TLP:GREEN and {len(amber)} TLP:AMBER signed"
              " indicators at PK", flush=True)

        fingerprint = pk.exchange.node_key().kid  # read out by PK's operator
        registry_url = f"{pk.base}/{pk.api_root}/cx/registry/signed/"
        trust(uz.exchange, "pk", [fingerprint], registry_url=registry_url,
              api_key_file=str(handed / "key-for-uz-at-pk"))
        print(f"UZ pinned PK's node key {fingerprint}", flush=True)
        source = write_peer_source(uz, peer_source(
            uz, pk, peer_name="pk", user="uz-node", key_file=handed / "key-for-uz-at-pk"))
        report = run_source(uz.exchange, source, verifier_for=verifier_for)
        print(f"UZ pulled PK's jwg: {report.counts['created']} imported,"
              f" {report.counts['refused']} refused (the TLP:AMBER one stayed at PK: the"
              " shipped re-share rules federate up to TLP:GREEN)", flush=True)

        verdict = verify_at(uz, green[0]["id"])
        print(f"at UZ, from UZ's TAXII server and registry: {verdict}", flush=True)

        own = signed_indicators(uz, 1, seed=3, tlp=Tlp.GREEN)
        publish(uz, own)
        trust(pk.exchange, "uz", [uz.exchange.node_key().kid],
              registry_url=f"{uz.base}/{uz.api_root}/cx/registry/signed/",
              api_key_file=str(handed / "key-for-pk-at-uz"))
        back = federate(pk, uz, peer_name="uz", user="pk-node",
                        key_file=handed / "key-for-pk-at-uz")
        print(f"PK pulled UZ's jwg: {back.counts['created']} imported (UZ-CERT's own"
              " indicator; none of PK-CERT's came back)", flush=True)

        print("\nPK's audit ledger, disclosures to UZ-CERT:")
        for channel, account, entry in disclosures_to(pk, "UZ-CERT"):
            print(f"  {channel:<18} {account:<9} {entry.object_id}  TLP:{entry.tlp.upper()}"
                  f"  rule {entry.rule}")
        print(_guide(pk, uz, handed, api_key, signing), flush=True)
        while all(n.proc is not None and n.proc.poll() is None for n in nodes):
            time.sleep(0.5)
        raise RemoteError("a node stopped by itself; see server.log in its home")
    except KeyboardInterrupt:
        print("\nfederation demo stopped", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for node in nodes:
            node.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def verify_at(node: FedNode, object_id: str) -> str:
    """Fetch an object from the node's TAXII server and verify it against the node's
    published registry, as a consumer would."""
    from exchange.member.verification import check_object, describe  # noqa: PLC0415

    auth = (node.analyst, node.keys[node.analyst])
    r = requests.get(f"{node.url('jwg')}objects/{object_id}/", auth=auth, timeout=30,
                     headers={"Accept": TAXII})
    r.raise_for_status()
    [obj] = r.json()["objects"]
    registry = requests.get(f"{node.base}/{node.api_root}/cx/registry/", auth=auth,
                            timeout=30)
    registry.raise_for_status()
    verdict = check_object(read_registry(registry.content), obj,
                           now=time.time_ns() // 1000)
    return describe(verdict)


def _guide(pk: FedNode, uz: FedNode, handed: Path, api_key: Path, signing: Path) -> str:
    exe = exchange_command()
    root = pk.home.parent

    def q(path: Path) -> str:
        return shlex.quote(str(path))

    return "\n".join([
        "",
        "Try, in another shell (each command reads one node's home):",
        f"    {exe} --home {q(uz.home)} peer list",
        f"    {exe} --home {q(pk.home)} peer list",
        f"    {exe} --home {q(pk.home)} peer fingerprint",
        f"    {exe} --home {q(uz.home)} sync status",
        f"    {exe} --home {q(uz.home)} keys list --org PK-CERT",
        "  PK-CERT publishes one more indicator at PK (an IOC list, signed), UZ pulls it"
        " (incremental, from the cursor):",
        f"    printf '203.0.113.77\\n' > {q(root / 'iocs.txt')}",
        f"    {exe} --home {q(pk.home)} publish {q(root / 'iocs.txt')} --format list"
        f" --tlp green --url {pk.url('jwg')} --user {pk.analyst} --api-key-file"
        f" {q(api_key)} --sign-key {q(signing)} --passphrase-file"
        f" {q(signing.with_suffix('.passphrase'))}",
        f"    {exe} --home {q(uz.home)} sync run pk",
        f"    {exe} --home {q(pk.home)} audit report --recipient UZ-CERT"
        " --format csv",
        f"    curl -s -H \"Authorization: Bearer $(cat"
        f" {shlex.quote(str(handed / 'key-for-uz-at-pk'))})\""
        f" {pk.base}/{pk.api_root}/cx/registry/signed/",
        GUIDE_END,
    ])
