"""The signing commands of ``exchange``: ``keys ...``, ``sign`` and ``verify``.

* ``exchange keys generate`` (members, offline): a new key, written encrypted (0600),
  its key id and public key printed;
* ``exchange keys register|list|rotate|revoke|affected|export`` (node admins, on the
  node's database; see :mod:`exchange.node.keyring`);
* ``exchange sign FILE`` signs each object of a bundle, envelope, list or JSON-lines file;
* ``exchange verify FILE --registry REGISTRY.json`` checks every object offline against the
  published registry and exits 1 when any is invalid.

Also the helpers ``exchange publish --sign-key`` and ``exchange pull --verify`` use
(:func:`load_signing_key`, :class:`PullVerifier`). Passphrases come from
``--passphrase-file``, ``EXCHANGE_PASSPHRASE`` or a prompt, never from a flag value, and
never appear in output or errors. Errors are :class:`~exchange.errors.ExchangeError`,
turned into one line by the ``exchange`` group.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol, cast

import click
import rfc8785

from exchange.audit import ledger
from exchange.config import Settings
from exchange.errors import ConfigError, InvalidInput, MalformedJSON
from exchange.member.publishing import MAX_INPUT_BYTES, objects_in
from exchange.member.signer import SigningReport, sign_all
from exchange.member.verification import Verdict, check_object, describe, summarise
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.node import keyring
from exchange.node.auditing import admin_record
from exchange.node.nodekey import node_identity
from exchange.signing.keyfiles import read_private_key, write_private_key
from exchange.signing.keys import ALGORITHMS, Algorithm, SigningKey, generate, load_public_pem
from exchange.signing.published import TrustedKeys, read_registry
from exchange.signing.registry import KeyRecord, format_micros
from exchange.storage import open_store
from exchange.storage.base import Store
from exchange.storage.timestamps import to_micros

__all__ = [
    "keys",
    "load_signing_key",
    "read_objects",
    "read_passphrase",
    "read_registry_file",
    "report_signing",
    "sign",
    "verify",
]

PASSPHRASE_ENV: Final = "EXCHANGE_PASSPHRASE"  # noqa: S105 - a variable name
#: The shortest passphrase ``keys generate`` accepts (PBKDF2 at 2048 iterations is cheap
#: to guess, see exchange.signing.keys).
MIN_PASSPHRASE: Final = 12
_MAX_SMALL_FILE: Final = 1024 * 1024
_LIMITS: Final = Limits(max_body_bytes=MAX_INPUT_BYTES, max_object_bytes=MAX_INPUT_BYTES)


class _Home(Protocol):
    """What the ``exchange`` group puts in the click context (``cli._Ctx``)."""

    @property
    def settings(self) -> Settings: ...


def _now() -> int:
    return time.time_ns() // 1000


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


@contextmanager
def _store(home: _Home) -> Iterator[Store]:
    store = open_store(home.settings)
    store.audit_sink = ledger.append  # key changes are recorded with the change
    try:
        store.check_schema()
        yield store
    finally:
        store.close()


def _read_small(path: str, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SMALL_FILE + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > _MAX_SMALL_FILE:
        raise InvalidInput(f"{what} {path} is larger than 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {path} is not UTF-8 text") from None


def _micros(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return to_micros(text)
    except InvalidInput:
        raise InvalidInput(
            f"{option} must be a UTC timestamp such as 2025-01-31T12:00:00Z"
        ) from None


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent or Path(), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError as e:
        Path(temporary).unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {e.strerror}") from None


# -- passphrases and key files --------------------------------------------------------
def read_passphrase(passphrase_file: str | None, *, confirm: bool, what: str) -> bytes:
    """A passphrase from ``--passphrase-file``, ``EXCHANGE_PASSPHRASE`` or a prompt.

    Args:
        passphrase_file: The file named by ``--passphrase-file`` (its first line is used).
        confirm: Ask twice when prompting (for a new key).
        what: What the passphrase is for, shown in the prompt.

    Raises:
        InvalidInput: The file cannot be read or the passphrase is empty.
    """
    if passphrase_file is not None:
        text = _read_small(passphrase_file, "passphrase file").split("\n", 1)[0].rstrip("\r")
    elif os.environ.get(PASSPHRASE_ENV):
        text = os.environ[PASSPHRASE_ENV]
    else:
        text = click.prompt(f"Passphrase for {what}", hide_input=True,
                            confirmation_prompt=confirm, err=True)
    if not text:
        raise InvalidInput("the passphrase is empty")
    return text.encode("utf-8")


def load_signing_key(path: str, passphrase_file: str | None) -> SigningKey:
    """Read an encrypted key file written by ``exchange keys generate``.

    Raises:
        InvalidInput: The passphrase cannot be read.
        ConfigError: The key file cannot be read or is accessible by others.
        SignatureError: Wrong passphrase, or not a cx-sig key.
    """
    passphrase = read_passphrase(passphrase_file, confirm=False, what=f"key {path}")
    return read_private_key(path, passphrase)


def _passphrase_option(f: Any) -> Any:
    return click.option(
        "--passphrase-file", type=click.Path(dir_okay=False),
        help=f"File holding the key's passphrase (default: ${PASSPHRASE_ENV} or a prompt).",
    )(f)


# -- exchange keys ... ------------------------------------------------------------------
def _key_json(record: KeyRecord, org: str | None, purpose: str) -> dict[str, Any]:
    def stamp(micros: int | None) -> str | None:
        return None if micros is None else format_micros(micros)

    return {
        "kid": record.kid, "alg": record.alg, "org": org, "purpose": purpose,
        "owner_identity": record.owner_identity, "status": record.status,
        "valid_from": stamp(record.valid_from), "valid_until": stamp(record.valid_until),
        "compromised_since": stamp(record.compromised_since), "public_pem": record.public_pem,
    }


def _key_line(data: dict[str, Any]) -> str:
    window = f"from {data['valid_from']}"
    if data["valid_until"]:
        window += f" until {data['valid_until']}"
    if data["compromised_since"]:
        window += f", compromised since {data['compromised_since']}"
    owner = data["org"] or "(node)"
    return f"{data['kid']}  {owner:<16} {data['alg']:<10} {data['status']:<8} {window}"


@click.group()
def keys() -> None:
    """Signing keys: generate (members), register, rotate, revoke, export (admins)."""


@keys.command("generate")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Encrypted private key file to create (mode 0600, never overwritten).")
@click.option("--alg", type=click.Choice(ALGORITHMS), default="Ed25519", show_default=True)
@click.option("--public-out", type=click.Path(dir_okay=False),
              help="Also write the public key (PEM) to this new file.")
@_passphrase_option
@click.option("--json", "as_json", is_flag=True)
def keys_generate(out: str, alg: str, public_out: str | None, passphrase_file: str | None,
                  as_json: bool) -> None:
    """Generate a signing key; print its key id and public key (give those to the admin)."""
    for target in (out, public_out):
        if target is not None and Path(target).exists():
            raise ConfigError(f"{target} already exists; refusing to overwrite it")
    passphrase = read_passphrase(passphrase_file, confirm=True, what="the new key")
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(
            f"the passphrase is shorter than {MIN_PASSPHRASE} characters; use a long random"
            " one (the key file's encryption is only as strong as the passphrase)"
        )
    key = generate(cast(Algorithm, alg))  # click.Choice(ALGORITHMS)
    write_private_key(out, key, passphrase)
    if public_out is not None:
        try:
            with open(public_out, "x", encoding="ascii") as f:
                f.write(key.public_pem())
        except OSError as e:
            raise InvalidInput(f"cannot write {public_out}: {e.strerror}") from None
    data = {"kid": key.kid, "alg": key.alg, "public_pem": key.public_pem(), "key_file": out,
            "public_file": public_out}
    _emit(as_json, data, f"key {key.kid} ({key.alg}) written to {out}\n{key.public_pem()}"
          .rstrip("\n"))


@keys.command("register")
@click.option("--org", "org_name", required=True, help="The organisation that owns the key.")
@click.option("--public-key", required=True, type=click.Path(dir_okay=False),
              help="Its public key (PEM), from 'exchange keys generate'.")
@click.option("--valid-from", help="First instant it may sign (UTC, e.g. 2025-01-31T12:00:00Z;"
              " default now).")
@click.option("--valid-until", help="First instant it may no longer sign (default: none).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_register(home: _Home, org_name: str, public_key: str, valid_from: str | None,
                  valid_until: str | None, as_json: bool) -> None:
    """Register a member's public key (admin)."""
    pem = _read_small(public_key, "public key file")
    with _store(home) as store, store.audited([admin_record(
            "key.register", load_public_pem(pem).kid, {"org": org_name,
                                                       "valid_from": valid_from,
                                                       "valid_until": valid_until})]):
        record = keyring.register_key(
            store, org_name, pem, valid_from=_micros(valid_from, "--valid-from"),
            valid_until=_micros(valid_until, "--valid-until"))
        org = store.find_org(org_name).name
    data = _key_json(record, org, "object")
    _emit(as_json, data, f"key {record.kid} registered for {org}")


@keys.command("list")
@click.option("--org", "org_name", help="Only this organisation's keys.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_list(home: _Home, org_name: str | None, as_json: bool) -> None:
    """List registered keys (member and node keys)."""
    with _store(home) as store:
        found = _listed(home, store, org_name)
    data = [_key_json(k.record, k.org_name, k.purpose) for k in found]
    _emit(as_json, data, "\n".join(_key_line(d) for d in data) or "no keys")


@keys.command("rotate")
@click.option("--org", "org_name", required=True, help="The organisation.")
@click.option("--public-key", required=True, type=click.Path(dir_okay=False),
              help="The new public key (PEM).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_rotate(home: _Home, org_name: str, public_key: str, as_json: bool) -> None:
    """Register a new key and retire the organisation's active keys now (admin)."""
    pem = _read_small(public_key, "public key file")
    with _store(home) as store, store.audited([admin_record(
            "key.rotate", load_public_pem(pem).kid, {"org": org_name})]):
        new, retired = keyring.rotate_key(store, org_name, pem)
        org = store.find_org(org_name).name
    data = {"new": _key_json(new, org, "object"),
            "retired": [_key_json(r, org, "object") for r in retired]}
    lines = [f"key {new.kid} registered for {org}"]
    lines += [f"key {r.kid} retired from {format_micros(r.valid_until or 0)}" for r in retired]
    _emit(as_json, data, "\n".join(lines))


@keys.command("revoke")
@click.argument("kid")
@click.option("--compromised-since", required=True,
              help="First instant the key is no longer trusted (UTC, e.g. 2025-01-31T12:00:00Z).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_revoke(home: _Home, kid: str, compromised_since: str, as_json: bool) -> None:
    """Revoke a key: objects recorded from COMPROMISED_SINCE on no longer verify (admin)."""
    since = _micros(compromised_since, "--compromised-since")
    with _store(home) as store:
        with store.audited([admin_record("key.revoke", kid, {
                "compromised_since": compromised_since})]):
            keyring.revoke_key(store, kid, since if since is not None else _now())
        listed = [k for k in _listed(home, store) if k.record.kid == kid]
        affected = keyring.affected_versions(store, kid)
    after = sum(v.after_compromise for v in affected)
    data: dict[str, Any] = {"kid": kid, "compromised_since": format_micros(since or 0)}
    if listed:
        data = _key_json(listed[0].record, listed[0].org_name, listed[0].purpose)
    data["affected_after_compromise"] = after
    _emit(as_json, data,
          f"key {kid} revoked, compromised since {data['compromised_since']};"
          f" {after} stored version(s) recorded since then (see 'exchange keys affected"
          f" {kid}')")


def _listed(home: _Home, store: Store, org_name: str | None = None
            ) -> list[keyring.RegisteredKey]:
    return keyring.list_keys(store, org_name,
                             node_identity=node_identity(home.settings))


@keys.command("affected")
@click.argument("kid")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_affected(home: _Home, kid: str, as_json: bool) -> None:
    """List every stored object version signed by KID."""
    with _store(home) as store:
        found = keyring.affected_versions(store, kid)
    data = [{"collection_id": v.collection_id, "id": v.object_id,
             "version": format_micros(v.version), "date_added": format_micros(v.date_added),
             "after_compromise": v.after_compromise} for v in found]
    lines = [f"{d['collection_id']}  {d['id']}  version {d['version']}  recorded"
             f" {d['date_added']}" + ("  AFTER COMPROMISE" if d["after_compromise"] else "")
             for d in data]
    after = sum(v.after_compromise for v in found)
    lines.append(f"{len(found)} version(s) signed by {kid}; {after} recorded at or after"
                 " its compromise")
    _emit(as_json, data, "\n".join(lines))


@keys.command("export")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
@click.pass_obj
def keys_export(home: _Home, out: str | None) -> None:
    """Print the member registry consumers verify against (JSON, deterministic)."""
    with _store(home) as store:
        document = keyring.export_registry(
            store, node_identity=node_identity(home.settings))
    if out is None:
        click.echo(document, nl=False)
    else:
        _write_atomically(Path(out), document.encode("utf-8"))


# -- reading and writing object files ------------------------------------------------------
def read_objects(path: str) -> tuple[str, Any, list[dict[str, Any]]]:
    """The objects of a bundle, envelope, list, single object or JSON-lines file.

    Returns:
        The shape (``"document"`` or ``"lines"``), the parsed document (None for lines)
        and the objects.

    Raises:
        InvalidInput: Unreadable, not JSON, or not a STIX container.
    """
    target = Path(path)
    try:
        if target.stat().st_size > MAX_INPUT_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
        data = target.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from None
    lines = [line for line in data.splitlines() if line.strip()]
    try:
        document = parse_json(data, _LIMITS)
    except MalformedJSON:
        if len(lines) < 2:
            raise
        return "lines", None, _json_lines(path, lines)
    return "document", document, objects_in(document, Path(path))


def _json_lines(path: str, lines: list[bytes]) -> list[dict[str, Any]]:
    objects = []
    for number, line in enumerate(lines, 1):
        try:
            obj = parse_json(line, _LIMITS)
        except MalformedJSON as e:
            raise InvalidInput(f"{path}: line {number}: {e.reason}") from None
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path}: line {number} is not a JSON object")
        objects.append(obj)
    return objects


def _rebuild(shape: str, document: Any, objects: list[dict[str, Any]]) -> bytes:
    if shape == "lines":
        return b"".join(rfc8785.dumps(obj) + b"\n" for obj in objects)
    if isinstance(document, list):
        out: Any = objects
    elif isinstance(document, dict) and isinstance(document.get("objects"), list):
        out = {**document, "objects": objects}
    else:
        out = objects[0]
    return (json.dumps(out, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def report_signing(report: SigningReport, key: SigningKey) -> None:
    """Tell the user (on stderr) what was normalised, kept and refused."""
    for label in report.normalised:
        click.echo(f"normalised {label}", err=True)
    for label, why in report.kept:
        click.echo(f"kept {label}: {why}", err=True)
    for label, reason in report.refused:
        click.echo(f"error: {label}: {reason}", err=True)
    click.echo(f"signed {len(report.signed)} of {len(report.objects)} objects with key"
               f" {key.kid} ({len(report.normalised)} normalised, {len(report.kept)} kept,"
               f" {len(report.refused)} refused)", err=True)


@click.command("sign")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False),
              help="Your encrypted signing key (from 'exchange keys generate').")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
@click.option("--normalise", is_flag=True,
              help="Sign the normal form (as the STIX library re-emits it) of objects that"
                   " are not in it, instead of refusing them.")
@_passphrase_option
def sign(file: str, key_file: str, out: str | None, normalise: bool,
         passphrase_file: str | None) -> None:
    """Sign each object of a bundle, envelope, list or JSON-lines FILE.

    Every object is signed as it is, SCOs and objects without created_by_ref included:
    the signature makes you the contributor, never the author.
    """
    shape, document, objects = read_objects(file)
    key = load_signing_key(key_file, passphrase_file)
    report = sign_all(objects, key, normalise=normalise)
    report_signing(report, key)
    if report.refused:
        raise InvalidInput(f"nothing written: {len(report.refused)} object(s) could not be"
                           " signed")
    data = _rebuild(shape, document, report.objects)
    if out is None:
        click.echo(data.decode("utf-8"), nl=False)
    else:
        _write_atomically(Path(out), data)


# -- verification -------------------------------------------------------------------------
def read_registry_file(path: str) -> TrustedKeys:
    """The published registry in ``path`` (``exchange keys export``).

    Raises:
        InvalidInput: The file cannot be read.
        SignatureError: It is not a usable registry document.
        MalformedJSON: It is not JSON.
        LimitExceeded: It is too large.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read registry {path}: {e.strerror}") from None
    return read_registry(data, limits=_LIMITS)


def _verdict_json(v: Verdict) -> dict[str, Any]:
    return {"id": v.object_id, "status": v.status, "kid": v.kid, "owner": v.owner,
            "node_attested": v.node_attested, "signed_by": v.signed_by,
            "verdict": v.attestation or None, "reason": v.reason or None}


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--registry", "registry_file", required=True, type=click.Path(dir_okay=False),
              help="The member registry ('exchange keys export').")
@click.option("--json", "as_json", is_flag=True)
def verify(file: str, registry_file: str, as_json: bool) -> None:
    """Check every signature of FILE (JSON lines from 'exchange pull', or a bundle).

    The time the exchange recorded each object is not in the file: a revoked key's
    signatures are reported invalid (use 'exchange pull --verify' to check them against
    the recording time); retired keys' signatures verify.
    """
    trusted = read_registry_file(registry_file)
    _, _, objects = read_objects(file)
    now = _now()
    verdicts = [check_object(trusted, obj, now=now) for obj in objects]
    counts = summarise(verdicts)
    text = [describe(v) for v in verdicts]
    text.append(f"{counts['valid']} valid, {counts['unsigned']} unsigned,"
                f" {counts['invalid']} invalid")
    _emit(as_json, {"objects": [_verdict_json(v) for v in verdicts], **counts},
          "\n".join(text))
    if counts["invalid"]:
        sys.exit(1)
