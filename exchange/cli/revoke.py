"""``exchange revoke ID... --reason TEXT``, and ``exchange publish --revoke FILE``.

A member withdraws objects it published: each becomes a signed revoked version
(:mod:`exchange.member.revoke`), posted to the collection; one line per id says what
happened. Exit status 1 when any id was refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from exchange.cli.keys import load_signing_key
from exchange.cli.options import http_options, read_api_key
from exchange.member import client
from exchange.member.revoke import Outcome, read_ids
from exchange.member.revoke import revoke as revoke_ids

__all__ = ["revoke", "revoke_file", "run_revoke"]


def run_revoke(ids: list[str], *, url: str, user: str, api_key_file: str | None,
               insecure: bool, reason: str, sign_key: str | None,
               passphrase_file: str | None, as_json: bool) -> None:
    """Revoke ``ids``, print one line (or JSON entry) per id, exit 1 if any was refused.

    Raises:
        ExchangeError: The key, the API key or the server failed as a whole.
    """
    key = load_signing_key(sign_key, passphrase_file) if sign_key else None
    conn = client.Connection(user, read_api_key(api_key_file), verify=not insecure)
    try:
        outcomes = revoke_ids(conn, url, ids, reason, key=key)
    finally:
        conn.close()
    _print(outcomes, as_json=as_json, signed_by=key.kid if key else None)
    if any(o.status == "refused" for o in outcomes):
        sys.exit(1)


def _print(outcomes: list[Outcome], *, as_json: bool, signed_by: str | None) -> None:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("revoked", "skipped", "refused")}
    if as_json:
        click.echo(json.dumps({"outcomes": [{"id": o.id, "status": o.status, "detail": o.detail}
                                            for o in outcomes],
                               "signed_by": signed_by, **counts}, indent=2, sort_keys=True))
        return
    for o in outcomes:
        what = {"revoked": f"revoked (modified {o.detail})", "skipped": o.detail,
                "refused": f"refused: {o.detail}"}[o.status]
        click.echo(f"{o.id}  {what}")
    signed = f", signed with {signed_by}" if signed_by else ", unsigned"
    click.echo(f"{counts['revoked']} revoked{signed}, {counts['skipped']} already revoked,"
               f" {counts['refused']} refused")


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", required=True,
              help="Why the objects are withdrawn (recorded in each revoked version).")
@http_options(required=True,
              url_help="Collection URL, e.g. http://127.0.0.1:8421/cx/collections/<id>/")
@click.option("--sign-key", type=click.Path(dir_okay=False), envvar="EXCHANGE_SIGNING_KEY",
              help="Sign every revoked version with this encrypted key (default:"
                   " $EXCHANGE_SIGNING_KEY).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False),
              help="File holding the signing key's passphrase (default: $EXCHANGE_PASSPHRASE"
                   " or a prompt).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def revoke(ids: tuple[str, ...], reason: str, url: str, user: str, api_key_file: str | None,
           insecure: bool, sign_key: str | None, passphrase_file: str | None,
           as_json: bool) -> None:
    """Revoke objects you published: post a signed revoked version of each."""
    run_revoke(list(ids), url=url, user=user, api_key_file=api_key_file, insecure=insecure,
               reason=reason, sign_key=sign_key, passphrase_file=passphrase_file,
               as_json=as_json)


def revoke_file(path: str, *, url: str, user: str, api_key_file: str | None,
                insecure: bool, reason: str | None, sign_key: str | None,
                passphrase_file: str | None, as_json: bool) -> None:
    """``exchange publish --revoke FILE``: revoke the ids the file names
    (:func:`exchange.member.revoke.read_ids`).

    Raises:
        ExchangeError: As :func:`run_revoke`; also an unreadable file.
    """
    if not reason:
        raise click.UsageError("--revoke needs --reason TEXT")
    run_revoke(read_ids(Path(path)), url=url, user=user, api_key_file=api_key_file,
               insecure=insecure, reason=reason, sign_key=sign_key,
               passphrase_file=passphrase_file, as_json=as_json)
