"""Evidence for auditors: export the ledger to a directory, and verify it with no database.

An export holds everything up to the newest signed checkpoint, so every exported record
is covered by a signature::

    DIR/records.jsonl              one record per line: its canonical bytes (the leaf
                                   data, which carries its own "seq"), then a newline
    DIR/checkpoints/<size>.txt     every signed checkpoint up to the newest (C2SP notes)
    DIR/proofs/consistency.jsonl   {"from": m, "to": n, "proof": [base64...]} between
                                   successive checkpoints (RFC 9162 section 2.1.4)
    DIR/keys.json                  the log's origin and checkpoint keys (verifier keys)

:func:`verify_export` reads only those files: it recomputes the tree from the records
line by line (flat memory), checks each checkpoint's signature and root, and each
consistency proof. The keys in ``keys.json`` travel with the export, so an auditor
should pass the keys they obtained independently (or compare the report's ``keys``
with them); with the export's own keys the check proves integrity, not authorship.

Errors: :class:`~exchange.audit.verify.VerificationFailed` when the export does not
verify; :class:`~exchange.errors.InvalidInput` for a directory that is not an export;
:class:`~exchange.errors.Conflict` when exporting into a non-empty directory;
:class:`~exchange.errors.NotFound` when there is no checkpoint to export;
:class:`~exchange.errors.SignatureError` when the newest checkpoint does not verify.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import Connection

from exchange.audit import ledger
from exchange.audit.checkpoint import Checkpoint, NoteKey, verify_checkpoint
from exchange.audit.records import MAX_RECORD_BYTES
from exchange.audit.tree import verify_consistency
from exchange.audit.verify import CheckpointSource, Report, StreamVerifier, VerificationFailed
from exchange.errors import Conflict, InvalidInput, NotFound, SignatureError

__all__ = ["EXPORT_FORMAT", "export", "verify_export"]

#: The ``format`` member of ``keys.json``.
EXPORT_FORMAT: Final = "cx-audit-export v1"

_RECORDS: Final = "records.jsonl"
_CHECKPOINTS: Final = "checkpoints"
_PROOFS: Final = "proofs/consistency.jsonl"
_KEYS: Final = "keys.json"
_CHECKPOINT_NAME = re.compile(r"(0|[1-9][0-9]{0,18})\.txt", re.ASCII)
_MAX_SMALL_FILE: Final = 1024 * 1024


def export(
    conn: Connection,
    directory: Path,
    keys: Sequence[NoteKey],
    *,
    origin: str | None = None,
    proofs: bool = True,
) -> Checkpoint:
    """Write the ledger up to its newest checkpoint as an export directory.

    Args:
        conn: A connection (one read transaction gives one consistent export).
        directory: Where to write; created if missing, refused if not empty.
        keys: The checkpoint keys to verify the newest checkpoint with and to publish.
        origin: The log's origin, if known.
        proofs: Write consistency proofs between successive checkpoints.

    Returns:
        The newest checkpoint, which the export ends at.

    Raises:
        Conflict: ``directory`` exists and is not empty.
        NotFound: The ledger has no checkpoint yet.
        SignatureError: The newest checkpoint does not verify with ``keys``.
        StorageError: The database failed.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise Conflict(f"the export directory {directory} is not empty")
    stored = ledger.latest_checkpoint(conn)
    if stored is None:
        raise NotFound("the audit ledger has no checkpoint yet; make one first")
    latest = verify_checkpoint(stored.note, keys, origin=origin)
    (directory / _CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    (directory / _PROOFS).parent.mkdir(exist_ok=True)
    with (directory / _RECORDS).open("wb") as out:
        for _, body, _ in ledger.iter_records(conn, 0, latest.size):
            out.write(body + b"\n")
    previous: int | None = None
    with (directory / _PROOFS).open("w", encoding="ascii", newline="\n") as proof_file:
        for checkpoint in ledger.iter_checkpoints(conn, up_to=latest.size):
            (directory / _CHECKPOINTS / f"{checkpoint.size}.txt").write_bytes(
                checkpoint.note.encode("utf-8")
            )
            if proofs and previous is not None:
                proof = ledger.consistency_proof(conn, previous, checkpoint.size)
                line = {
                    "from": previous,
                    "to": checkpoint.size,
                    "proof": [base64.b64encode(h).decode("ascii") for h in proof],
                }
                proof_file.write(json.dumps(line, separators=(",", ":")) + "\n")
            previous = checkpoint.size
    meta = {
        "format": EXPORT_FORMAT,
        "origin": latest.origin,
        "size": latest.size,
        "keys": [
            {"name": key.name, "verifier": key.verifier(), "kid": key.public_key.kid}
            for key in keys
        ],
    }
    (directory / _KEYS).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return latest


def _read_small(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_SMALL_FILE + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read {path.name}: {e.strerror}") from None
    if len(data) > _MAX_SMALL_FILE:
        raise InvalidInput(f"{path.name} is larger than {_MAX_SMALL_FILE} bytes")
    return data


def _read_meta(directory: Path) -> tuple[str, list[NoteKey]]:
    try:
        meta = json.loads(_read_small(directory / _KEYS))
    except ValueError:
        raise InvalidInput(f"{_KEYS} is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise InvalidInput(f"{_KEYS} is not a {EXPORT_FORMAT} description")
    origin = meta.get("origin")
    entries = meta.get("keys")
    if not isinstance(origin, str) or not isinstance(entries, list):
        raise InvalidInput(f"{_KEYS} lacks the origin or the keys")
    keys = []
    for entry in entries:
        verifier = entry.get("verifier") if isinstance(entry, dict) else None
        if not isinstance(verifier, str):
            raise InvalidInput(f"{_KEYS}: a key has no verifier string")
        keys.append(NoteKey.parse(verifier))
    return origin, keys


def _checkpoint_files(directory: Path, verifier_notes: list[str]) -> list[tuple[int, Path]]:
    folder = directory / _CHECKPOINTS
    if not folder.is_dir():
        raise InvalidInput(f"{folder.name}/ is missing: this is not an audit export")
    files = []
    for path in folder.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match is None or not path.is_file():
            verifier_notes.append(f"{_CHECKPOINTS}/{path.name} is not a checkpoint file")
            continue
        files.append((int(match.group(1)), path))
    files.sort()
    return files


def _sources(files: list[tuple[int, Path]]) -> Iterator[CheckpointSource]:
    for size, path in files:
        label = f"{_CHECKPOINTS}/{path.name}"
        try:
            note = _read_small(path).decode("utf-8")
        except (InvalidInput, UnicodeDecodeError):
            note = ""  # fails verification below with the file's name
        yield CheckpointSource(size, note, label)


def _check_proofs(directory: Path, verifier: StreamVerifier) -> None:
    roots = verifier.verified_roots
    sizes = sorted(roots)
    wanted = set(itertools.pairwise(sizes))
    path = directory / _PROOFS
    if not path.is_file():
        if wanted:
            verifier.note(None, f"{_PROOFS} is missing")
        return
    seen: set[tuple[int, int]] = set()
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            where = f"{_PROOFS} line {number}"
            try:
                entry: Any = json.loads(line)
                old, new = int(entry["from"]), int(entry["to"])
                proof = [base64.b64decode(h, validate=True) for h in entry["proof"]]
            except (ValueError, KeyError, TypeError, binascii.Error):
                verifier.note(None, f"{where} is not a consistency proof")
                continue
            if old not in roots or new not in roots:
                continue  # its checkpoints did not verify; reported already
            try:
                verify_consistency(old, new, proof, roots[old], roots[new])
            except SignatureError as e:
                verifier.note(None, f"{where}: {e.reason}")
                continue
            seen.add((old, new))
    for old, new in sorted(wanted - seen):
        verifier.note(None, f"{_PROOFS} has no valid proof from checkpoint {old} to {new}")


def verify_export(
    directory: Path,
    keys: Sequence[NoteKey] | None = None,
    *,
    saved: Checkpoint | None = None,
    strict: bool = False,
) -> Report:
    """Verify an export on its own: no database, no server.

    Args:
        directory: The export.
        keys: The checkpoint keys to trust; if None, those in ``keys.json``.
        saved: A checkpoint the caller kept (already verified by the caller); the export's
            log must extend it.
        strict: Also check every record's fields and canonical form.

    Returns:
        The report, when everything verified (``report.keys`` names the keys trusted).

    Raises:
        VerificationFailed: Anything did not verify; its ``report`` lists what.
        InvalidInput: The directory is not an export (files missing or unreadable).
        SignatureError: A key in ``keys.json`` is malformed.
    """
    directory = Path(directory)
    origin, own_keys = _read_meta(directory)
    trusted = own_keys if keys is None else list(keys)
    early: list[str] = []
    files = _checkpoint_files(directory, early)
    verifier = StreamVerifier(trusted, _sources(files), origin=origin, strict=strict)
    for problem in early:
        verifier.note(None, problem)
    if saved is not None:
        verifier.expect(saved.size, saved.root, "the saved checkpoint")
    records = directory / _RECORDS
    if not records.is_file():
        raise InvalidInput(f"{_RECORDS} is missing: this is not an audit export")
    with records.open("rb") as f:
        while line := f.readline(MAX_RECORD_BYTES + 2):
            if not line.endswith(b"\n"):
                if len(line) > MAX_RECORD_BYTES:
                    verifier.note(verifier.expected_seq, "the line is longer than any record")
                    while (rest := f.readline(MAX_RECORD_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    continue
                verifier.note(None, f"the last line of {_RECORDS} has no newline (truncated?)")
            verifier.add(line.removesuffix(b"\n"))
    _check_proofs(directory, verifier)
    covered = max(verifier.verified_roots, default=0)
    if verifier.position > covered and not verifier.has_findings:
        verifier.note(
            covered,
            f"{verifier.position - covered} records at the end are not covered by any"
            " checkpoint",
        )
    report = verifier.finish()
    if not report.ok:
        raise VerificationFailed(report)
    return report
