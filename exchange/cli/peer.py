"""``exchange peer ...``: federation with peer exchange nodes (issue 20).

Serving side: ``peer add`` creates a peer node's account (role ``peer``) of the
organisation it serves, with an API key written to a new 0600 file (never printed).
Pulling side: ``peer fingerprint`` prints this node's key id to read out to the peer's
operator; ``peer trust`` pins a peer's node key after that out-of-band confirmation and
keeps its signed registry; ``peer list`` and ``peer untrust``.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click

from exchange.errors import ConfigError
from exchange.feeds.peers import trust
from exchange.node.service import Exchange
from exchange.signing.registry import format_micros
from exchange.storage.base import PeerTrust


def _exchange(ctx: click.Context) -> Exchange:
    """The node of ``--home``, closed when the command ends."""
    opened: AbstractContextManager[Exchange] = ctx.find_root().obj.exchange()
    return ctx.with_resource(opened)


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def write_key_file(path: Path, token: str) -> None:
    """Write the API key to a new file, mode 0600 (an existing file is never replaced)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; choose a new file for the peer's API key") from None
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror}") from e
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")


@click.group()
def peer() -> None:
    """Peer exchange nodes: accounts for them here, trust in theirs."""


@peer.command("add")
@click.argument("name")
@click.option("--serves", "org_name", required=True,
              help="The organisation the peer node serves (registered here); it receives"
                   " what that organisation may, on channel peer.")
@click.option("--key-out", type=click.Path(dir_okay=False), required=True,
              help="New file to write the peer's API key to (mode 0600).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peer_add(ctx: click.Context, name: str, org_name: str, key_out: str, as_json: bool) -> None:
    """Create a peer node's account and API key (the key goes to --key-out only)."""
    ex = _exchange(ctx)
    path = Path(key_out)
    if path.exists():
        raise ConfigError(f"{path} exists; choose a new file for the peer's API key")
    account = ex.add_account(name, org=org_name, role="peer")
    key, token = ex.create_api_key(name, label=f"peer node {name}")
    write_key_file(path, token)
    data = {"account": account.name, "serves": org_name, "role": "peer",
            "key_id": key.key_id, "key_file": str(path)}
    _emit(as_json, data, f"peer account {account.name} serving {org_name}; its API key"
                         f" {key.key_id} is in {path} (mode 0600): hand it to the peer's"
                         " operator")


@peer.command("fingerprint")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peer_fingerprint(ctx: click.Context, as_json: bool) -> None:
    """This node's key id, to read out to a peer's operator (they pin it)."""
    ex = _exchange(ctx)
    kid = ex.node_key().kid
    registry = f"/{ex.settings.api_root}/cx/registry/signed/"
    _emit(as_json, {"fingerprint": kid, "registry_path": registry},
          f"{kid}\n(the signed registry is served at {registry})")


def _trust_json(t: PeerTrust, keys: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": t.name, "pins": [kid for kid, _ in t.pins], "registry_url": t.registry_url,
        "api_key_file": t.api_key_file, "ca_file": t.ca_file,
        "fetched_at": format_micros(t.fetched_at) if t.fetched_at else None}
    if keys is not None:
        data["registry_keys"] = keys
    return data


@peer.command("trust")
@click.argument("name")
@click.option("--registry-url", help="The peer's signed registry"
              " (https://<peer>/<api_root>/cx/registry/signed/).")
@click.option("--registry-file", type=click.Path(exists=True, dir_okay=False),
              help="The peer's signed registry as a file, received out of band.")
@click.option("--fingerprint", "fingerprints", multiple=True, required=True,
              help="The peer's node key id (sha256:...), confirmed with its operator out of"
                   " band (repeat to pin its next key too).")
@click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the API key the peer issued to this node ('exchange peer"
                   " add' there).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="CA bundle of the peer's https certificate, if not a public one (kept:"
                   " the registry is fetched again with it).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peer_trust(ctx: click.Context, name: str, registry_url: str | None,
               registry_file: str | None, fingerprints: tuple[str, ...],
               api_key_file: str | None, ca_file: str | None, as_json: bool) -> None:
    """Pin a peer's node key and keep its signed registry (verified against the pin)."""
    ex = _exchange(ctx)
    key_file = str(Path(api_key_file).resolve()) if api_key_file else None
    record, keys = trust(ex, name, fingerprints, registry_url=registry_url,
                         registry_file=registry_file, api_key_file=key_file,
                         ca_file=str(Path(ca_file).resolve()) if ca_file else None)
    owners = sorted({keys.owner_of(r.kid) for r in keys.registry})
    data = {**_trust_json(record, len(keys.registry)), "owners": owners}
    _emit(as_json, data,
          f"peer {name} trusted: registry signed by {', '.join(data['pins'])};"
          f" {len(keys.registry)} keys of {', '.join(owners)}")


@peer.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peer_list(ctx: click.Context, as_json: bool) -> None:
    """Trusted peers, and the peer nodes' accounts served here."""
    ex = _exchange(ctx)
    trusted = [_trust_json(t) for t in ex.store.peer_trusts()]
    names = {o.id: o.name for o in ex.store.list_orgs()}
    accounts = [{"account": a.name, "serves": names.get(a.org_id, "?"),
                 "disabled": a.disabled}
                for a in ex.store.list_accounts() if a.role.value == "peer"]
    lines = [f"trusted  {t['name']:<20} {' '.join(t['pins'])}  {t['registry_url'] or '-'}"
             for t in trusted]
    lines += [f"served   {a['account']:<20} serves {a['serves']}" for a in accounts]
    _emit(as_json, {"trusted": trusted, "served": accounts}, "\n".join(lines) or "no peers")


@peer.command("untrust")
@click.argument("name")
@click.pass_context
def peer_untrust(ctx: click.Context, name: str) -> None:
    """Forget a peer's pins and registry: its objects no longer verify here."""
    _exchange(ctx).untrust_peer(name)
    click.echo(f"peer {name} no longer trusted")
