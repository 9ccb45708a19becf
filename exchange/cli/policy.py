"""``exchange policy``: check the sharing policy, explain a decision, dry-run a bundle.

Thin over :mod:`exchange.policy` (pure decisions) and the store (who exists, what is
stored). The policy directory is ``--dir`` or the node's ``policy_dir`` setting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from exchange.errors import ConfigError, InvalidInput
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.node.base import now_micros
from exchange.node.service import Exchange
from exchange.policy import (
    PolicySet,
    Recipient,
    dry_run,
    explain,
    format_dry_run,
    load_policies,
)


def _policy(ctx_obj: Any, directory: str | None) -> PolicySet:
    path = Path(directory) if directory else ctx_obj.settings.policy_path
    if path is None:
        raise ConfigError("no policy directory: pass --dir or set policy_dir in exchange.toml")
    return load_policies(path)


def _recipients(ex: Exchange) -> list[Recipient]:
    return [ex.recipient_named(account.name) for account in ex.store.list_accounts()]


@click.group()
def policy() -> None:
    """Sharing policies: check, explain, dry-run."""


@policy.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True),
              help="Policy directory (default: policy_dir of the node).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def policy_check(ctx_obj: Any, directory: str | None, as_json: bool) -> None:
    """Validate the policy files and print their digest."""
    p = _policy(ctx_obj, directory)
    data = {"digest": p.digest, "community": p.community.name,
            "agreements": sorted(p.agreements), "collections": sorted(p.collections),
            "files": sorted(str(f) for f in p.files)}
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    click.echo(f"policy OK: {p.digest}\n  community {p.community.name}\n"
               f"  agreements: {', '.join(data['agreements']) or '-'}\n"
               f"  collections: {', '.join(data['collections']) or '-'}")


@policy.command("explain")
@click.argument("object_id")
@click.option("--recipient", required=True, help="Account or organisation name.")
@click.option("--collection", "collection_ref", help="Collection id or alias (default: any).")
@click.option("--channel", type=click.Choice(["taxii", "pull", "misp", "peer", "feed"]),
              default="taxii", show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def policy_explain(ctx_obj: Any, object_id: str, recipient: str,
                   collection_ref: str | None, channel: str, directory: str | None,
                   as_json: bool) -> None:
    """Would RECIPIENT receive the stored OBJECT_ID, and why."""
    p = _policy(ctx_obj, directory)
    with ctx_obj.exchange() as ex:
        results = ex.explain(object_id, recipient, collection_ref=collection_ref,
                             channel=channel, policy=p)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2, sort_keys=True))
        return
    for r in results:
        click.echo(f"collection {r.collection.title} ({r.collection.alias or r.collection.id})")
        if r.copy is not None:
            click.echo(r.describe_copy())
        click.echo(explain(r.decision, recipient=r.recipient, obj=r.object))


@policy.command("dry-run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", "collection_alias", required=True,
              help="Alias of the collection the bundle would go to.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True))
@click.pass_obj
def policy_dry_run(ctx_obj: Any, file: str, collection_alias: str,
                   directory: str | None) -> None:
    """Who would receive each object of a bundle not yet published, and why."""
    p = _policy(ctx_obj, directory)
    document = parse_json(Path(file).read_bytes(), Limits(max_body_bytes=512 * 2**20))
    objects = document.get("objects") if isinstance(document, dict) else document
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise InvalidInput(f"{file}: expected a STIX bundle or a list of objects")
    with ctx_obj.exchange() as ex:
        recipients = _recipients(ex)
        by_identity = {o.identity_id: o.name for o in ex.store.list_orgs()}
    entries = dry_run(p, objects, recipients, now=now_micros(),
                      collection_alias=collection_alias, org_by_identity=by_identity)
    click.echo(format_dry_run(entries, p.digest))
