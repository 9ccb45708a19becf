"""``exchange audit``: the auditor's and the member's commands over the audit ledger.

On the hub (with the node's home): ``report`` (what one recipient received, as HTML, CSV
or JSON, checked against the newest signed checkpoint), ``records`` (filtered records as
JSON lines), ``verify`` (recompute the whole log, check every checkpoint), ``proof``
(one record's inclusion proof), ``export`` (the evidence for an offline check) and
``checkpoint`` (sign one now), ``key`` (the checkpoint verifier key to hand auditors).

Anywhere, without a database or a server: ``verify --export DIR`` checks an export.

For a member CERT, against the hub over HTTP: ``checkpoint --save FILE --url ...`` keeps
the newest checkpoint (and pins the hub's checkpoint key on first use), and a later
``verify --against FILE --url ...`` proves, with an RFC 9162 consistency proof, that the
log only grew since. Without ``--url`` both work on the hub's own database.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import click

from exchange.audit.checkpoint import Checkpoint, NoteKey, verify_checkpoint
from exchange.audit.export import verify_export
from exchange.audit.query import RecordFilter
from exchange.audit.records import Kind, record_bytes
from exchange.audit.report import build_report, render_csv, render_html, render_json
from exchange.audit.tree import verify_consistency, verify_inclusion
from exchange.audit.verify import Report, VerificationFailed
from exchange.cli.options import http_options, parse_when, read_api_key
from exchange.errors import InvalidInput, NotFound, RemoteError, SignatureError
from exchange.member.lookup import NodeClient
from exchange.node.base import now_micros
from exchange.storage.timestamps import from_micros

SAVED_FORMAT: Final = "cx-audit-checkpoint v1"
_QUARTER = re.compile(r"([0-9]{4})-?[Qq]([1-4])")




def _quarter(text: str) -> tuple[int, int]:
    match = _QUARTER.fullmatch(text)
    if match is None:
        raise InvalidInput(f"--quarter must look like 2026Q3, not {text!r}")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, 3 * number - 2, 1, tzinfo=UTC)
    end = (datetime(year + 1, 1, 1, tzinfo=UTC) if number == 4
           else datetime(year, 3 * number + 1, 1, tzinfo=UTC))
    return int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000


def _period(since: str | None, until: str | None, quarter: str | None
            ) -> tuple[int | None, int | None]:
    if quarter:
        if since or until:
            raise InvalidInput("give --quarter or --since/--until, not both")
        return _quarter(quarter)
    return parse_when(since, "--since"), parse_when(until, "--until")


def _write(out: str | None, text: str) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"cannot write {out}: {e.strerror}") from None
    click.echo(f"written to {out}", err=True)


def _keys_from(verifiers: Sequence[str]) -> list[NoteKey]:
    keys = []
    for text in verifiers:
        try:
            keys.append(NoteKey.parse(text))
        except SignatureError as e:
            raise InvalidInput(f"--key {text!r} is not a verifier key: {e.reason}") from None
    return keys


def _report_text(report: Report) -> str:
    lines = [report.summary()]
    if report.latest is not None:
        lines.append(f"  newest checkpoint: size {report.latest.size}, root "
                     f"{base64.b64encode(report.latest.root).decode()} ({report.latest.origin})")
    lines.extend(f"  {finding}" for finding in report.findings)
    if report.findings_total > len(report.findings):
        lines.append(f"  ... and {report.findings_total - len(report.findings)} more")
    return "\n".join(lines)


def _report_json(report: Report) -> str:
    latest = report.latest
    return json.dumps({
        "ok": report.ok, "records": report.records, "checkpoints": report.checkpoints,
        "latest": None if latest is None else {
            "origin": latest.origin, "size": latest.size,
            "root": base64.b64encode(latest.root).decode()},
        "unsigned": report.unsigned, "findings_total": report.findings_total,
        "findings": [{"seq": f.seq, "problem": f.problem} for f in report.findings],
        "keys": list(report.keys),
    }, indent=2)


# -- HTTP, for members ------------------------------------------------------------------


def _remote(url: str, path: str, user: str, key_file: str | None, insecure: bool,
            params: dict[str, str] | None = None) -> dict[str, Any]:
    base = url if url.endswith("/") else url + "/"
    marker = base.find("/collections/")
    if marker >= 0:  # a collection's URL (as publish and pull take): its API root
        base = base[:marker + 1]
    node = NodeClient(base, user, read_api_key(key_file), verify=not insecure)
    return node.get_json(f"audit/{path}", params)  # the project's endpoints below the root


def remote_options(f: Any) -> Any:
    """--url, --user, --api-key-file, --insecure: member mode, against the hub."""
    return http_options(
        required=False, url_help="The hub's API root, e.g. https://hub.example/cx/, or a"
        " collection URL under it (member mode).", user_help="Account name (with --url).")(f)


def _read_saved(path: str) -> tuple[str, list[NoteKey]]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise InvalidInput(f"{path} is not a saved checkpoint (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != SAVED_FORMAT \
            or not isinstance(document.get("note"), str) \
            or not isinstance(document.get("verifier_keys"), list):
        raise InvalidInput(f"{path} is not a saved checkpoint ({SAVED_FORMAT})")
    return document["note"], _keys_from([str(k) for k in document["verifier_keys"]])


def _save(path: str, note: str, keys: Sequence[NoteKey]) -> None:
    document = {"format": SAVED_FORMAT, "note": note,
                "verifier_keys": [k.verifier() for k in keys],
                "saved_at": from_micros(now_micros())}
    try:
        Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"cannot write {path}: {e.strerror}") from None


def _b64(items: Any, what: str) -> list[bytes]:
    if not isinstance(items, list):
        raise RemoteError(f"the hub's {what} is not a list")
    try:
        return [base64.b64decode(str(item), validate=True) for item in items]
    except (binascii.Error, ValueError):
        raise RemoteError(f"the hub's {what} is not base64") from None


# -- commands ---------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The audit ledger: reports, proofs, verification, exports, checkpoints."""


@audit.command("report")
@click.option("--recipient", help="Recipient organisation (default: every recipient).")
@click.option("--producer", help="Only objects this organisation produced.")
@click.option("--object", "object_id", help="Only this STIX id.")
@click.option("--since", help="From this date or timestamp (inclusive).")
@click.option("--until", help="Up to this date or timestamp (exclusive).")
@click.option("--quarter", help="A calendar quarter, e.g. 2026Q3 (instead of --since/--until).")
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json"]), default="html",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
@click.pass_obj
def audit_report(ctx_obj: Any, recipient: str | None, producer: str | None,
                 object_id: str | None, since: str | None, until: str | None,
                 quarter: str | None, fmt: str, out: str | None) -> None:
    """What was disclosed to whom, under which policy and rule, with totals.

    Every record in the report is proven included in the newest signed checkpoint,
    which the report names; records newer than it are reported as not covered.
    """
    start, end = _period(since, until, quarter)
    f = RecordFilter(kinds=(Kind.DISCLOSURE,), recipient_org=recipient, producer_org=producer,
                     object_id=object_id, since=start, until=end)
    with ctx_obj.exchange() as ex:
        entries = ex.audit.each(f)
        checkpoint: Checkpoint | None = None
        try:
            stored = ex.audit.latest_checkpoint()
            checkpoint = verify_checkpoint(stored.note, ex.audit.keys(), origin=ex.audit.origin)
        except NotFound:
            checkpoint = None
        if checkpoint is not None:
            for entry in entries:
                if entry.seq >= checkpoint.size:
                    continue
                proof = ex.audit.inclusion(entry.seq, checkpoint.size)
                verify_inclusion(entry.seq, checkpoint.size, proof.leaf_hash, proof.path,
                                 checkpoint.root)
    report = build_report(entries, f, checkpoint=checkpoint, generated_at=now_micros())
    renderer = {"html": render_html, "csv": render_csv, "json": render_json}[fmt]
    _write(out, renderer(report))
    if checkpoint is None:
        click.echo("warning: the ledger has no checkpoint; the report is not verified"
                   " ('exchange audit checkpoint' makes one)", err=True)
    elif not report.covered:
        click.echo(f"warning: some records are newer than checkpoint {checkpoint.size}; make"
                   " a checkpoint to cover them", err=True)


@audit.command("records")
@click.option("--recipient")
@click.option("--producer")
@click.option("--object", "object_id")
@click.option("--policy", "policy_digest", help="Policy digest sha256:...")
@click.option("--kind", "kinds", multiple=True, type=click.Choice([k.value for k in Kind]))
@click.option("--since")
@click.option("--until")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
@click.pass_obj
def audit_records(ctx_obj: Any, recipient: str | None, producer: str | None,
                  object_id: str | None, policy_digest: str | None, kinds: tuple[str, ...],
                  since: str | None, until: str | None, limit: int) -> None:
    """Print matching records as JSON lines (their canonical bytes)."""
    f = RecordFilter(kinds=tuple(Kind(k) for k in kinds), recipient_org=recipient,
                     producer_org=producer, object_id=object_id, policy_digest=policy_digest,
                     since=parse_when(since, "--since"), until=parse_when(until, "--until"))
    printed = 0
    after = -1
    with ctx_obj.exchange() as ex:
        while printed < limit:
            entries, cursor = ex.audit.find(f, after=after, limit=min(1000, limit - printed))
            for entry in entries:
                click.echo(record_bytes(entry.record, entry.seq).decode("utf-8"))
            printed += len(entries)
            if cursor is None:
                break
            after = cursor


@audit.command("verify")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, exists=True),
              help="Check an export directory instead (no database, no server needed).")
@click.option("--against", "saved", type=click.Path(dir_okay=False, exists=True),
              help="Prove the log only grew since this saved checkpoint.")
@click.option("--key", "verifiers", multiple=True,
              help="A trusted checkpoint verifier key (name+id+key); repeatable. Default: the"
                   " node's keys, the export's keys.json, or the saved file's pinned key.")
@click.option("--strict", is_flag=True, help="Also check every record's fields (slower).")
@remote_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit_verify(ctx_obj: Any, export_dir: str | None, saved: str | None,
                 verifiers: tuple[str, ...], strict: bool, url: str | None, user: str | None,
                 api_key_file: str | None, insecure: bool, as_json: bool) -> None:
    """Recompute the whole log and check every checkpoint (exit 1 on any finding)."""
    keys = _keys_from(verifiers)
    if saved is not None:
        _verify_against(ctx_obj, saved, keys, export_dir, url, user, api_key_file, insecure,
                        as_json)
        return
    if url:
        raise InvalidInput("--url needs --against (a member checks the hub against a saved"
                           " checkpoint)")
    try:
        if export_dir is not None:
            if not keys:
                click.echo("note: using the export's own keys.json: this proves integrity;"
                           " pass --key to also prove who signed", err=True)
            report = verify_export(Path(export_dir), keys or None, strict=strict)
        else:
            with ctx_obj.exchange() as ex:
                report = ex.audit.verify(strict=strict)
    except VerificationFailed as failed:
        click.echo(_report_json(failed.report) if as_json else _report_text(failed.report))
        sys.exit(1)
    click.echo(_report_json(report) if as_json else _report_text(report))


def _verify_against(ctx_obj: Any, saved: str, keys: list[NoteKey], export_dir: str | None,
                    url: str | None, user: str | None, api_key_file: str | None,
                    insecure: bool, as_json: bool) -> None:
    note, pinned = _read_saved(saved)
    trusted = keys or pinned
    old = verify_checkpoint(note, trusted)
    if url:
        if not user:
            raise InvalidInput("--url needs --user")
        answer = _remote(url, "consistency/", user, api_key_file, insecure,
                         params={"from": str(old.size)})
        new_note = answer.get("new_checkpoint")
        if not isinstance(new_note, str):
            raise RemoteError("the hub's answer has no new_checkpoint")
        new = verify_checkpoint(new_note, trusted, origin=old.origin)
        if new.size < old.size:
            raise SignatureError(f"the log shrank: the hub's newest checkpoint has {new.size}"
                                 f" records, the saved one {old.size}")
        verify_consistency(old.size, new.size, _b64(answer.get("proof"), "proof"),
                           old.root, new.root)
        latest = new
    elif export_dir is not None:
        from exchange.audit.witness import verify_against  # noqa: PLC0415

        latest = verify_against(Path(export_dir), note, trusted)
    else:
        with ctx_obj.exchange() as ex:
            latest = ex.audit.verify_against(note)
    data = {"saved_size": old.size, "latest_size": latest.size, "origin": latest.origin,
            "latest_root": base64.b64encode(latest.root).decode()}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"the log only grew: checkpoint {latest.size} extends the saved checkpoint"
                   f" {old.size} ({latest.origin})")


@audit.command("proof")
@click.argument("seq", type=click.IntRange(0))
@click.option("--size", type=click.IntRange(0), help="Prove against this checkpoint size.")
@click.pass_obj
def audit_proof(ctx_obj: Any, seq: int, size: int | None) -> None:
    """The inclusion proof of record SEQ in the newest checkpoint, as JSON (self-checked)."""
    with ctx_obj.exchange() as ex:
        proof = ex.audit.inclusion(seq, size)
        checkpoint = verify_checkpoint(proof.checkpoint, ex.audit.keys())
    verify_inclusion(seq, proof.size, proof.leaf_hash, proof.path, checkpoint.root)
    click.echo(json.dumps(proof.as_dict(), indent=2))


@audit.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_obj
def audit_export(ctx_obj: Any, directory: str) -> None:
    """Write records, checkpoints, consistency proofs and the public keys to DIRECTORY.

    Everything up to the newest checkpoint is exported; check it anywhere with
    ``exchange audit verify --export DIRECTORY``.
    """
    with ctx_obj.exchange() as ex:
        latest = ex.audit.export(Path(directory))
    click.echo(f"exported {latest.size} records up to checkpoint {latest.size} to {directory}")


@audit.command("checkpoint")
@click.option("--save", "save_to", type=click.Path(dir_okay=False),
              help="Keep the newest checkpoint (and its verifier key) in this file.")
@click.option("--key", "verifiers", multiple=True,
              help="The hub's checkpoint verifier key, to check the fetched checkpoint (member"
                   " mode; default: trust the key the hub sends, pinned in the saved file).")
@remote_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit_checkpoint(ctx_obj: Any, save_to: str | None, verifiers: tuple[str, ...],
                     url: str | None, user: str | None, api_key_file: str | None,
                     insecure: bool, as_json: bool) -> None:
    """Sign a checkpoint now (hub), or fetch and keep the newest one (--url, member)."""
    keys = _keys_from(verifiers)
    if url:
        if not user:
            raise InvalidInput("--url needs --user")
        answer = _remote(url, "checkpoint/", user, api_key_file, insecure)
        note = answer.get("note")
        if not isinstance(note, str):
            raise RemoteError("the hub's answer has no checkpoint note")
        offered = _keys_from([str(v) for v in answer.get("verifier_keys", [])])
        trusted = keys or offered
        checkpoint = verify_checkpoint(note, trusted)
    else:
        with ctx_obj.exchange() as ex:
            stored = ex.audit.checkpoint()
            trusted = keys or ex.audit.keys()
            note = stored.note
            checkpoint = verify_checkpoint(note, trusted)
    if save_to:
        _save(save_to, note, trusted)
    data = {"origin": checkpoint.origin, "size": checkpoint.size,
            "root": base64.b64encode(checkpoint.root).decode(), "note": note,
            "verifier_keys": [k.verifier() for k in trusted], "saved_to": save_to}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(note, nl=False)
        if save_to:
            click.echo(f"saved to {save_to}", err=True)


@audit.command("key")
@remote_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit_key(ctx_obj: Any, url: str | None, user: str | None, api_key_file: str | None,
              insecure: bool, as_json: bool) -> None:
    """Print the log's checkpoint verifier key(s), one per line.

    This is what ``exchange audit verify --export DIR --key KEY`` and ``checkpoint
    --key`` take: a C2SP signed-note verifier key ``<origin>+<key id>+<public key>``.
    On the hub it is read from the node's registry; with ``--url`` it is fetched from
    the hub's auditor API, which proves only what the hub says: compare it with the
    hub's operator out of band before you trust it.
    """
    if url:
        if not user:
            raise InvalidInput("--url needs --user")
        answer = _remote(url, "key/", user, api_key_file, insecure)
        keys = _keys_from([str(v) for v in answer.get("verifier_keys", [])])
        origin = str(answer.get("origin", ""))
    else:
        with ctx_obj.exchange() as ex:
            keys = ex.audit.keys()
            origin = ex.audit.origin
    if not keys:
        raise NotFound("the node has no checkpoint key yet (run 'exchange init')")
    if as_json:
        click.echo(json.dumps({"origin": origin,
                               "verifier_keys": [k.verifier() for k in keys]}, indent=2))
    else:
        click.echo("\n".join(k.verifier() for k in keys))


@audit.command("sequence")
@click.option("--watch", is_flag=True,
              help="Keep sequencing every audit_sequence_ms until stopped (SIGTERM/SIGINT).")
@click.option("--parent-pid", type=int, hidden=True,
              help="Stop when this process is gone (exchange serve starts it so).")
@click.pass_obj
def audit_sequence(ctx_obj: Any, watch: bool, parent_pid: int | None) -> None:
    """Move the servers' spooled disclosures into the log (once, or --watch).

    ``exchange serve`` runs one of these beside its workers; under an external gunicorn
    (deploy/gunicorn.conf.py), run ``exchange audit sequence --watch`` as a service and
    set ``audit_sequence_ms = 0`` for the workers (or leave it: each worker then
    sequences in a thread of its own). With ``--watch`` it lowers its own priority by
    ``audit_sequencer_nice`` (default 10).
    """
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    with ctx_obj.exchange() as ex:
        if not watch:
            moved = ex.audit.sequence()
            click.echo(f"{moved} records moved into the audit log")
            return
        # Below the servers: a read waits for no sequencing, and the spool holds its
        # records until the sequencer's turn (tests/perf/README.md has the figures).
        os.nice(ex.settings.audit_sequencer_nice)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        ex.audit.sequence_forever(
            stop, keep_going=lambda: parent_pid is None or os.getppid() == parent_pid)
        ex.audit.sequence()  # what arrived until the end
