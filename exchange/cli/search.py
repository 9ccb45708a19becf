"""Finding things: ``exchange search``, ``exchange show`` and ``exchange objects list``.

* ``exchange search VALUE --url API-ROOT --user ACCOUNT``: is this value in the exchange,
  and who said so? Member mode over HTTP (the node's ``cx/search/`` endpoint), so the
  answer holds only what the account may receive, and the node records it in its
  audit ledger. Exits 1 when nothing was found (like grep), so scripts can test it.
* ``exchange show ID --url ... --user ...``: the newest version of one object the
  account may receive, pretty-printed, with contributor, author, TLP and the verdict of
  its signature checked here against the node's published key registry.
* ``exchange objects list``: for operators, on the node's own database (like the admin
  commands): what is stored, filtered by collection, type, producer, TLP and time.

The API key comes from ``EXCHANGE_API_KEY`` or ``--api-key-file``, never from a flag.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Final, Protocol

import click

from exchange.cli.options import http_options, parse_when, read_api_key
from exchange.config import Settings
from exchange.errors import InvalidInput, NotFound
from exchange.member.lookup import NodeClient
from exchange.member.verification import check_object
from exchange.model.objects import Tlp
from exchange.signing.published import read_registry
from exchange.storage import open_store
from exchange.storage.base import ObjectListing
from exchange.storage.timestamps import from_micros

__all__ = ["objects", "search", "show"]

_MAX_LIST: Final = 100_000


class _Home(Protocol):
    """What the ``exchange`` group puts in the click context (``cli._Ctx``)."""

    @property
    def settings(self) -> Settings: ...


def _client(url: str, user: str, api_key_file: str | None, insecure: bool) -> NodeClient:
    return NodeClient(url, user, read_api_key(api_key_file), verify=not insecure)


def _hit_lines(hit: dict[str, Any]) -> list[str]:
    """A hit as a few readable lines: the object, then who said so and how far to trust it."""
    head = f"  {hit.get('id')}  ({hit.get('type')}, collection {hit.get('collection')})"
    if hit.get("revoked"):
        head += "  REVOKED"
    contributor = hit.get("contributor") or "withheld by the sharing policy"
    author = hit.get("created_by_ref") or "none named"
    said = [f"contributed by {contributor}", f"author {author}",
            f"TLP:{str(hit.get('tlp', '')).upper()}"]
    said.append(f"signed ({hit['signed_kid']})" if hit.get("signed_kid") else "not signed")
    lines = [head, "    " + "; ".join(said)]
    if hit.get("type") == "indicator":
        until = hit.get("valid_until") or "no end"
        lines.append(f"    valid from {hit.get('valid_from') or 'unknown'} until {until}")
    matched = hit.get("matched") or []
    if matched:
        lines.append(f"    matched {', '.join(str(m) for m in matched)}")
    return lines


@click.command()
@click.argument("value")
@http_options(required=True, url_help="The node's API root, e.g. https://hub.example/cx/.")
@click.option("--subdomains", is_flag=True, help="For a domain, find its subdomains too.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="At most this many hits.")
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
def search(value: str, url: str, user: str, api_key_file: str | None, insecure: bool,
           subdomains: bool, limit: int, as_json: bool) -> None:
    """Is VALUE in the exchange, and who said so?

    VALUE is an IP address or network (an address also finds the networks that contain
    it), a domain, a URL, an e-mail address or an MD5/SHA-1/SHA-256/SHA-512 hash. Only
    what this account may receive is searched; exits 1 when nothing is found.
    """
    answer = _client(url, user, api_key_file, insecure).search_all(
        value, subdomains=subdomains, limit=limit)
    hits = answer["hits"]
    if as_json:
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
    elif not hits:
        click.echo(f"{answer.get('query', value)}: not found in anything {user} may receive")
    else:
        noun = "object names" if len(hits) == 1 else "objects name"
        lines = [f"{answer.get('query', value)}: {len(hits)} {noun} it"
                 + (" (more not shown; raise --limit)" if answer.get("more") else "")]
        for hit in hits:
            lines.extend(_hit_lines(hit))
        click.echo("\n".join(lines))
    if not hits:
        sys.exit(1)


def _signature_line(obj: dict[str, Any], client: NodeClient) -> str:
    """The verdict on an object's signature, checked here against the node's registry."""
    trusted = read_registry(client.registry())
    verdict = check_object(trusted, obj, now=time.time_ns() // 1000)
    if verdict.status == "valid":
        return f"valid signature by {verdict.owner} (key {verdict.kid})"
    if verdict.status == "unsigned":
        return "not signed"
    return f"INVALID signature: {verdict.reason}"


@click.command()
@click.argument("object_id")
@http_options(required=True, url_help="The node's API root, e.g. https://hub.example/cx/.")
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
def show(object_id: str, url: str, user: str, api_key_file: str | None, insecure: bool,
         as_json: bool) -> None:
    """Show the newest version of OBJECT_ID this account may receive."""
    client = _client(url, user, api_key_file, insecure)
    hits = client.lookup(object_id)["hits"]
    if not hits:
        raise NotFound(f"{object_id} is not in anything {user} may receive")
    newest = hits[-1]
    obj = newest.get("object")
    if not isinstance(obj, dict):
        raise InvalidInput("the node answered without the object")
    if as_json:
        click.echo(json.dumps(newest, indent=2, sort_keys=True))
        return
    lines = _hit_lines(newest)
    lines.append(f"    signature: {_signature_line(obj, client)}")
    if len(hits) > 1:
        others = ", ".join(str(h.get("collection")) for h in hits[:-1])
        lines.append(f"    also in: {others}")
    click.echo("\n".join(lines))
    click.echo(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False))


# -- operators, on the node's database ----------------------------------------------------




@click.group()
def objects() -> None:
    """What the node stores (operators, on the node's own database)."""


@objects.command("list")
@click.option("--collection", "collections", multiple=True,
              help="Collection alias or id (repeat for several).")
@click.option("--type", "types", multiple=True, help="STIX type (repeat for several).")
@click.option("--producer", "producers", multiple=True,
              help="Contributing organisation's name (repeat for several).")
@click.option("--tlp", "tlps", multiple=True,
              type=click.Choice([level.value for level in Tlp]),
              help="Effective TLP level (repeat for several).")
@click.option("--since", help="Stored at or after (YYYY-MM-DD or a timestamp).")
@click.option("--until", help="Stored before (YYYY-MM-DD or a timestamp).")
@click.option("--all-versions", is_flag=True, help="Every version, not only the latest.")
@click.option("--limit", type=click.IntRange(1, _MAX_LIST), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one per object.")
@click.pass_obj
def objects_list(ctx_obj: _Home, collections: tuple[str, ...], types: tuple[str, ...],
                 producers: tuple[str, ...], tlps: tuple[str, ...], since: str | None,
                 until: str | None, all_versions: bool, limit: int, as_json: bool) -> None:
    """List stored objects, newest first."""
    settings = ctx_obj.settings
    store = open_store(settings)
    try:
        store.check_schema()
        chosen = [store.get_collection(settings.api_root, ref) for ref in collections]
        orgs = [store.find_org(name) for name in producers]
        names = {org.id: org.name for org in store.list_orgs()}
        titles = {c.id: c.alias or c.id for c in store.list_collections(settings.api_root)}
        page = store.list_objects(ObjectListing(
            collection_ids=tuple(c.id for c in chosen), types=types,
            producer_orgs=tuple(o.id for o in orgs), tlps=tlps,
            since=parse_when(since, "--since"), until=parse_when(until, "--until"),
            latest_only=not all_versions, limit=limit))
    finally:
        store.close()
    rows = [{
        "id": r.id, "type": r.type, "collection": titles.get(r.collection_id, r.collection_id),
        "producer": names.get(r.producer_org) if r.producer_org else None,
        "tlp": r.effective_tlp, "version": from_micros(r.version),
        "date_added": from_micros(r.date_added), "revoked": r.revoked,
        "signed_kid": r.signed_kid,
    } for r in page.rows]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    if not rows:
        click.echo("no stored objects match")
        return
    for row in rows:
        flags = " revoked" if row["revoked"] else ""
        flags += " signed" if row["signed_kid"] else ""
        click.echo(f"{row['date_added']}  {row['collection']}  {row['id']}  "
                   f"{row['producer'] or '-'}  TLP:{str(row['tlp']).upper()}{flags}")
    if page.more:
        click.echo(f"(more than {limit}; narrow the filters or raise --limit)")
