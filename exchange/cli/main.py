"""The ``exchange`` command: a thin layer over :mod:`exchange.node.service` and the client.

Every error becomes one readable line on standard error and a non-zero exit status
(1 for a refusal or failure, 2 for wrong usage). ``--json`` on ``add``, ``create`` and
``list`` commands prints machine-readable JSON for scripts. Secrets are never accepted
as flags: API keys come from ``EXCHANGE_API_KEY`` or a file, the server secret from the
home or ``EXCHANGE_SERVER_SECRET``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from exchange import __version__
from exchange.cli.audit import audit
from exchange.cli.demo import MISP_TARGETS, run_demo
from exchange.cli.demo_federation import run_federation_demo
from exchange.cli.keys import (
    keys,
    load_signing_key,
    read_registry_file,
    report_signing,
    sign,
    verify,
)
from exchange.cli.options import http_options, read_api_key
from exchange.cli.peer import peer
from exchange.cli.policy import policy
from exchange.cli.revoke import revoke, revoke_file
from exchange.cli.search import objects, search, show
from exchange.cli.sync import scheduler, sync
from exchange.config import Settings, load_settings
from exchange.errors import ExchangeError
from exchange.model.objects import OrgId
from exchange.node.home import tighten_home
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.storage.base import Account, ApiKey, Collection, Grant, Organisation

log = logging.getLogger("exchange")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text)


class _Ctx:
    def __init__(self, home: str | None) -> None:
        self.home = home
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.home)
        return self._settings

    @contextmanager
    def exchange(self) -> Iterator[Exchange]:
        store = open_store(self.settings)
        try:
            store.check_schema()
            yield Exchange(self.settings, store)
        finally:
            store.close()


pass_ctx = click.make_pass_decorator(_Ctx)


class _Group(click.Group):
    """Turns every ExchangeError into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ExchangeError as e:
            _fail(e.reason)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


@click.group(cls=_Group)
@click.option("--home", type=click.Path(file_okay=False), envvar="EXCHANGE_HOME",
              help="Exchange home (default: $EXCHANGE_HOME or ~/.cert-exchange).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
@click.version_option(__version__, prog_name="exchange")
@click.pass_context
def main(ctx: click.Context, home: str | None, verbose: bool) -> None:
    """cert-exchange: TAXII 2.1 threat-intelligence exchange for national CERTs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = _Ctx(home)


# -- node administration --------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def init(c: _Ctx, as_json: bool) -> None:
    """Create the exchange home: server secret and database schema.

    An existing home is narrowed to 0700 and the node's files to 0600, and the command
    says which permissions it narrowed.
    """
    narrowed = tighten_home(c.settings) if c.settings.home.exists() else []
    created = init_home(c.settings)
    data = {"home": str(c.settings.home), "secret_created": created,
            "database": c.settings.redacted()["database_url"],
            "permissions_narrowed": [str(t) for t in narrowed]}
    text = "".join(f"narrowed permissions of {t}\n" for t in narrowed)
    _emit(as_json, data, text + f"exchange home ready at {c.settings.home}"
          + (" (new server secret written)" if created else ""))


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@pass_ctx
def config_check(c: _Ctx) -> None:
    """Validate and print the effective configuration, secrets redacted."""
    click.echo(json.dumps(c.settings.redacted(), indent=2, sort_keys=True))


def _org_json(o: Organisation) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "identity_id": o.identity_id, "parent_id": o.parent_id}


@main.group()
def org() -> None:
    """Member organisations and their constituents."""


@org.command("add")
@click.argument("name")
@click.option("--identity-id", help="Reuse an existing STIX identity id.")
@click.option("--parent", help="Member organisation this one is a constituent of.")
@click.option("--sector", help="STIX industry sector (e.g. government-national).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def org_add(c: _Ctx, name: str, identity_id: str | None, parent: str | None,
            sector: str | None, as_json: bool) -> None:
    """Register an organisation."""
    with c.exchange() as ex:
        o = ex.add_org(name, identity_id=identity_id, parent=parent, sector=sector)
    _emit(as_json, _org_json(o), f"organisation {o.name} added: identity {o.identity_id}")


@org.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def org_list(c: _Ctx, as_json: bool) -> None:
    """List organisations."""
    with c.exchange() as ex:
        orgs = ex.store.list_orgs()
        names = {o.id: o.name for o in orgs}
    lines = [f"{o.name:<24} {o.identity_id}"
             + (f"  (constituent of {names.get(o.parent_id, '?')})" if o.parent_id else "")
             for o in orgs]
    _emit(as_json, [_org_json(o) for o in orgs], "\n".join(lines) or "no organisations")


def _account_json(a: Account, org_name: str) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "org": org_name, "org_id": a.org_id,
            "role": a.role.value, "disabled": a.disabled}


@main.group()
def account() -> None:
    """Accounts (publisher, consumer, auditor, admin)."""


@account.command("add")
@click.argument("name")
@click.option("--org", "org_name", required=True, help="Organisation of the account.")
@click.option("--role", required=True,
              type=click.Choice(["publisher", "consumer", "auditor", "admin", "peer"]))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def account_add(c: _Ctx, name: str, org_name: str, role: str, as_json: bool) -> None:
    """Create an account."""
    with c.exchange() as ex:
        a = ex.add_account(name, org=org_name, role=role)
        o = ex.store.get_org(a.org_id)
    _emit(as_json, _account_json(a, o.name), f"account {a.name} ({a.role.value}) of {o.name}")


@account.command("list")
@click.option("--org", "org_name", help="Only accounts of this organisation.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def account_list(c: _Ctx, org_name: str | None, as_json: bool) -> None:
    """List accounts."""
    with c.exchange() as ex:
        org_id = ex.store.find_org(org_name).id if org_name else None
        accounts = ex.store.list_accounts(org_id)
        names = {o.id: o.name for o in ex.store.list_orgs()}
    data = [_account_json(a, names.get(a.org_id, "?")) for a in accounts]
    lines = [f"{d['name']:<24} {d['role']:<10} {d['org']}" for d in data]
    _emit(as_json, data, "\n".join(lines) or "no accounts")


def _key_json(k: ApiKey) -> dict[str, Any]:
    return {"key_id": k.key_id, "account_id": k.account_id, "label": k.label,
            "revoked": k.revoked_at is not None}


@main.group()
def apikey() -> None:
    """API keys (sent as the HTTP Basic password)."""


@apikey.command("create")
@click.argument("account_name", metavar="ACCOUNT")
@click.option("--label", default="", help="What the key is for.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def apikey_create(c: _Ctx, account_name: str, label: str, as_json: bool) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    with c.exchange() as ex:
        key, token = ex.create_api_key(account_name, label=label)
    data = {**_key_json(key), "account": account_name, "api_key": token}
    _emit(as_json, data,
          f"API key {key.key_id} for {account_name} (shown once, store it now):\n{token}")


@apikey.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def apikey_revoke(c: _Ctx, key_id: str, as_json: bool) -> None:
    """Revoke a key immediately."""
    with c.exchange() as ex:
        key = ex.revoke_api_key(key_id)
    _emit(as_json, _key_json(key), f"API key {key.key_id} revoked")


@apikey.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def apikey_list(c: _Ctx, as_json: bool) -> None:
    """List keys (never their secrets)."""
    with c.exchange() as ex:
        keys = ex.store.list_api_keys()
    lines = [f"{k.key_id}  {'revoked' if k.revoked_at else 'active ':<7}  {k.label}"
             for k in keys]
    _emit(as_json, [_key_json(k) for k in keys], "\n".join(lines) or "no keys")


def _collection_json(col: Collection, grants: list[Grant], names: dict[OrgId, str]
                     ) -> dict[str, Any]:
    return {
        "id": col.id, "title": col.title, "alias": col.alias, "api_root": col.api_root,
        "description": col.description, "default_tlp": col.default_tlp,
        "require_signatures": col.require_signatures,
        "readers": sorted(names.get(g.org_id, g.org_id) for g in grants if g.can_read),
        "writers": sorted(names.get(g.org_id, g.org_id) for g in grants if g.can_write),
    }


@main.group()
def collection() -> None:
    """TAXII collections and who may read and write them."""


@collection.command("add")
@click.argument("title")
@click.option("--read", "readers", multiple=True, help="Organisation that may read (repeat).")
@click.option("--write", "writers", multiple=True, help="Organisation that may write (repeat).")
@click.option("--alias", help="Short URL-safe alias.")
@click.option("--description", default="")
@click.option("--default-tlp", help="Level for objects without a TLP marking (default amber).")
@click.option("--require-signatures", is_flag=True,
              help="Refuse unsigned objects (a policy binding of the collection overrides).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def collection_add(c: _Ctx, title: str, readers: tuple[str, ...], writers: tuple[str, ...],
                   alias: str | None, description: str, default_tlp: str | None,
                   require_signatures: bool, as_json: bool) -> None:
    """Create a collection."""
    with c.exchange() as ex:
        col, grants = ex.add_collection(title, readers=readers, writers=writers, alias=alias,
                                        description=description, default_tlp=default_tlp,
                                        require_signatures=require_signatures)
        names = {o.id: o.name for o in ex.store.list_orgs()}
    data = _collection_json(col, grants, names)
    _emit(as_json, data, f"collection {col.title} added: {col.id}")


@collection.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def collection_list(c: _Ctx, as_json: bool) -> None:
    """List collections with readers and writers."""
    with c.exchange() as ex:
        names = {o.id: o.name for o in ex.store.list_orgs()}
        data = [_collection_json(col, ex.store.grants(col.id), names)
                for col in ex.store.list_collections(c.settings.api_root)]
    lines = [f"{d['id']}  {d['title']}\n    read: {', '.join(d['readers']) or '-'}"
             f"   write: {', '.join(d['writers']) or '-'}   default TLP: {d['default_tlp']}"
             for d in data]
    _emit(as_json, data, "\n".join(lines) or "no collections")


@main.command()
@click.option("--host", help="Address to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8421).")
@click.option("--workers", type=int, help="gunicorn worker processes.")
@click.option("--threads", type=int, default=4, show_default=True,
              help="Threads per worker.")
@click.option("--no-scheduler", is_flag=True,
              help="Do not run the MISP sync jobs beside the server (run 'exchange"
                   " scheduler' elsewhere, or no sync at all).")
@pass_ctx
def serve(c: _Ctx, host: str | None, port: int | None, workers: int | None,
          threads: int, no_scheduler: bool) -> None:
    """Serve TAXII 2.1 under gunicorn, with the sync jobs beside it.

    The MISP and TAXII source jobs run in an 'exchange scheduler' child when
    misp_targets or taxii_sources is set, unless --no-scheduler; with several servers on
    one PostgreSQL database, one of them leads.
    """
    from dataclasses import replace  # noqa: PLC0415

    from exchange.feeds.run import load_node_sources  # noqa: PLC0415
    from exchange.misp.sync import load_node_targets  # noqa: PLC0415
    from exchange.taxii.serve import serve as run  # noqa: PLC0415

    settings = c.settings
    changes: dict[str, Any] = {}
    if host:
        changes["host"] = host
    if port:
        changes["port"] = port
    if workers:
        changes["workers"] = workers
    logging.getLogger().setLevel(settings.log_level)
    with_scheduler = not no_scheduler and (settings.misp_targets_path is not None
                                           or settings.taxii_sources_path is not None)
    if with_scheduler and settings.misp_targets_path is not None:
        load_node_targets(settings)  # refuse to start on a broken targets file
    if with_scheduler and settings.taxii_sources_path is not None:
        load_node_sources(settings)  # and on a broken sources file
    run(replace(settings, **changes), threads=threads, scheduler=with_scheduler)


# -- client commands ------------------------------------------------------------------
client_options = http_options(
    required=True, url_help="Collection URL, e.g. http://127.0.0.1:8421/cx/collections/<id>/")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@client_options
@click.option("--format", "fmt", type=click.Choice(["auto", "stix", "csv", "list"]),
              default="auto", show_default=True, help="Input format.")
@click.option("--tlp", default="amber", show_default=True,
              help="TLP level for indicators made from CSV or IOC lists.")
@click.option("--identity", envvar="EXCHANGE_IDENTITY",
              help="Author of the indicators made from a CSV or IOC list (default: your"
                   " organisation's identity, asked from the server). STIX input keeps"
                   " its own created_by_ref.")
@click.option("--valid-days", type=int, help="valid_until = now + N days for IOC lists.")
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--sign-key", type=click.Path(dir_okay=False), envvar="EXCHANGE_SIGNING_KEY",
              help="Sign every object with this encrypted key (default: $EXCHANGE_SIGNING_KEY;"
                   " objects not in normal form are normalised first and reported).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False),
              help="File holding the signing key's passphrase (default: $EXCHANGE_PASSPHRASE"
                   " or a prompt).")
@click.option("--revoke", is_flag=True,
              help="Revoke the objects FILE names (one id per line, or a STIX bundle's ids)"
                   " instead of publishing it; needs --reason.")
@click.option("--reason", help="Why the objects are revoked (with --revoke).")
@click.option("--skip-bad-lines", is_flag=True,
              help="IOC lists: publish the valid lines and report the bad ones (default:"
                   " refuse the whole list, listing every bad line).")
@click.option("--ioc-state", type=click.Path(dir_okay=False),
              help="IOC lists: what was published before, so unchanged IOCs are sent"
                   " unchanged (default: <home>/published-iocs.sqlite).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--verbose", is_flag=True, help="List every refused object, not one line per reason.")
@click.pass_context
def publish(ctx: click.Context, file: str, url: str, user: str, api_key_file: str | None,
            insecure: bool, fmt: str, tlp: str, identity: str | None, valid_days: int | None,
            batch_size: int, sign_key: str | None, passphrase_file: str | None,
            revoke: bool, reason: str | None, skip_bad_lines: bool, ioc_state: str | None,
            as_json: bool, verbose: bool) -> None:
    """Publish a STIX 2.1 or 2.0 bundle, STIX 1.x XML, CSV or IOC list over TAXII."""
    if revoke:
        revoke_file(file, url=url, user=user, api_key_file=api_key_file, insecure=insecure,
                    reason=reason, sign_key=sign_key, passphrase_file=passphrase_file,
                    as_json=as_json)
        return
    from exchange.cli.iocrun import IocRun, state_path  # noqa: PLC0415
    from exchange.cli.refusals import format_refusals, group_refusals  # noqa: PLC0415
    from exchange.member import client  # noqa: PLC0415
    from exchange.member.publishing import describe_bad_lines, read_publishable  # noqa: PLC0415

    api_key = read_api_key(api_key_file)

    def own_identity() -> str:  # asked only for an IOC list, when --identity is not given
        asking = client.Connection(user, api_key, verify=not insecure)
        try:
            return str(asking.whoami(url)["identity"])
        finally:
            asking.close()

    loaded = read_publishable(Path(file), fmt=fmt, tlp=tlp, identity=identity or own_identity,
                              valid_days=valid_days, skip_bad_lines=skip_bad_lines)
    for note in loaded.notes:
        click.echo(note, err=True)
    for line in describe_bad_lines(loaded.bad_lines):
        click.echo(f"skipped {line}", err=True)
    objects = loaded.objects
    key = load_signing_key(sign_key, passphrase_file) if sign_key else None
    home = getattr(ctx.find_object(_Ctx), "home", None)
    run = (IocRun.begin(objects, path=state_path(home, ioc_state), valid_days=valid_days,
                        key=key) if loaded.from_iocs else None)
    objects = run.objects if run else objects
    signing: dict[str, Any] = {}
    if key is not None:
        from exchange.member.signer import sign_all  # noqa: PLC0415

        signed = run.sign(key) if run else sign_all(objects, key, normalise=True)
        report_signing(signed, key)
        if signed.refused:
            _fail("nothing was published: sign or fix the objects above first")
        objects = signed.objects
        signing = {"kid": key.kid, "signed": len(signed.signed),
                   "normalised": signed.normalised, "kept": [i for i, _ in signed.kept]}
    conn = client.Connection(user, api_key, verify=not insecure)
    try:
        with click.progressbar(length=len(objects), label="publishing",
                               file=sys.stderr) as bar:
            report = client.publish(conn, url, objects, batch_size=batch_size,
                                    progress=bar.update)
    except BaseException:
        if run is not None:
            run.close()
        raise
    finally:
        conn.close()
    if run is not None:
        run.finish(objects, report)
    data = {"total": report.total, "succeeded": report.succeeded, "failed": report.failed,
            "failures": [{"id": i, "message": m} for i, m in report.failures],
            "refusals": [g.as_json() for g in group_refusals(report.failures)],
            "source": loaded.source, "status_ids": report.status_ids}
    if loaded.upgrade is not None:
        data["upgrade"] = {"objects": len(loaded.upgrade.upgraded),
                           "changes": dict(loaded.upgrade.changes),
                           "renamed": loaded.upgrade.renamed}
    if signing:
        data["signing"] = signing
    if loaded.bad_lines:
        data["skipped_lines"] = [{"line": n, "reason": r} for n, r in loaded.bad_lines]
    if run is not None:
        data["unchanged"] = len(run.settled.unchanged)
        data["new_versions"] = len(run.settled.new_versions)
    text = [f"{report.succeeded} of {report.total} objects accepted, {report.failed} refused"]
    text += format_refusals(report.failures, verbose=verbose)
    _emit(as_json, data, "\n".join(text))
    if report.failed:
        sys.exit(1)


@main.command()
@client_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSON-lines file to append to.")
@click.option("--cursor", "cursor_file", type=click.Path(dir_okay=False),
              help="Cursor file (default: OUT.cursor).")
@click.option("--page-size", type=int, default=1000, show_default=True)
@click.option("--verify", "check", is_flag=True,
              help="Check every pulled object's signature against --registry; invalid ones go"
                   " to OUT.rejected, never into OUT.")
@click.option("--registry", "registry_file", type=click.Path(dir_okay=False),
              help="The member registry to verify against ('exchange keys export').")
@click.option("--reset", is_flag=True,
              help="Start over: remove OUT, its cursor and OUT.rejected, then pull everything.")
@click.option("--json", "as_json", is_flag=True)
def pull(url: str, user: str, api_key_file: str | None, insecure: bool, out: str,
         cursor_file: str | None, page_size: int, check: bool, registry_file: str | None,
         reset: bool, as_json: bool) -> None:
    """Download new objects of a collection incrementally into a JSON-lines file.

    Exits 1 while OUT.rejected holds objects (from this run or an earlier one).
    """
    from exchange.member import client  # noqa: PLC0415

    if check and registry_file is None:
        _fail("--verify needs --registry FILE (from 'exchange keys export')", 2)
    cursor = Path(cursor_file) if cursor_file else None
    removed = client.reset_pull(Path(out), cursor) if reset else []
    verifier = None
    conn = client.Connection(user, read_api_key(api_key_file), verify=not insecure)
    try:
        if check and registry_file is not None:
            from exchange.member.pullcheck import PullVerifier  # noqa: PLC0415

            verifier = PullVerifier(read_registry_file(registry_file), conn, url)
        report = client.pull(conn, url, Path(out), cursor_file=cursor, page_size=page_size,
                             screen=verifier.screen if verifier else None)
    finally:
        conn.close()
    data: dict[str, Any] = {"objects": report.objects, "pages": report.pages,
                            "cursor": report.cursor, "appended": report.kept,
                            "rejected": report.rejected, "rejected_file": str(report.rejected_file),
                            "quarantined": report.held, "removed": [str(p) for p in removed]}
    text = [f"removed {', '.join(str(p) for p in removed)} (--reset)"] if removed else []
    text.append(f"{report.objects} new objects in {report.pages} page(s): {report.kept}"
                f" appended to {out}; cursor {report.cursor or '(none)'}")
    if verifier is not None:
        from exchange.member.verification import describe, summarise  # noqa: PLC0415

        counts = summarise(verifier.verdicts)
        data["verification"] = counts
        text += [describe(v) for v in verifier.verdicts if v.status == "invalid"]
        attested = (f", {counts['node_attested']} attested by the node"
                    if counts["node_attested"] else "")
        text.append(f"verified {len(verifier.verdicts)} objects: {counts['valid']} valid"
                    f" ({counts['signed_by_author']} signed by the author,"
                    f" {counts['attested_by_contributor']} attested by a contributor{attested}),"
                    f" {counts['unsigned']} unsigned, {counts['invalid']} invalid")
    _emit(as_json, data, "\n".join(text))
    if report.held:
        earlier = f", {report.held_before} from earlier runs" if report.held_before else ""
        _fail(f"{report.held} object(s) quarantined in {report.rejected_file}"
              f" ({report.rejected} rejected by this run{earlier}), not in {out}: inspect"
              " them, then remove that file, or pull again with --reset to start over")


@main.command()
@click.option("--port", type=int, default=8421, show_default=True)
@click.option("--count", type=int, default=300, show_default=True,
              help="Indicators to generate and publish.")
@click.option("--fresh/--keep", default=False,
              help="Start over from an empty demo home, or (the default) serve the one an"
                   " earlier run built, with its data.")
@click.option("--misp", "misp_urls", metavar="URL", multiple=True,
              help="A MISP instance to keep in sync (push and pull): the first is UZ-CERT's,"
                   " a second PK-CERT's. API keys from --misp-key-file (same order) or the"
                   f" variables {MISP_TARGETS[0][2]} and {MISP_TARGETS[1][2]}.")
@click.option("--misp-key-file", "misp_key_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="A file holding only a MISP API key (once per --misp, same order).")
@click.option("--federation", is_flag=True,
              help="Run two national nodes instead, UZ (on --port) and PK (on --port + 1),"
                   " each with its own home, and federate them (starts over every run).")
@pass_ctx
def demo(c: _Ctx, port: int, count: int, fresh: bool, misp_urls: tuple[str, ...],
         misp_key_files: tuple[str, ...], federation: bool) -> None:
    """Run a complete demo node on 127.0.0.1 (Ctrl-C stops it)."""
    if federation:
        root = Path(c.home) if c.home else Path.cwd() / ".exchange" / "federation"
        run_federation_demo(root, uz_port=port, pk_port=port + 1)
        return
    home = Path(c.home) if c.home else Path.cwd() / ".exchange" / "demo"
    misp: list[tuple[str, str | None]] = []
    for n, url in enumerate(misp_urls):
        variable = MISP_TARGETS[min(n, len(MISP_TARGETS) - 1)][2]
        key = (Path(misp_key_files[n]).read_text(encoding="utf-8")
               if n < len(misp_key_files) else os.environ.get(variable))
        misp.append((url, key))
    run_demo(home, port=port, count=count, fresh=fresh, misp=misp)


for _command in (policy, audit, keys, sign, verify, revoke, search, show, objects, sync,
                 scheduler, peer):
    main.add_command(_command)
