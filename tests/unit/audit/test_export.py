"""The auditor's export and its offline verification (no database), and member checkpoints."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.audit import ledger, witness
from exchange.audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from exchange.audit.export import export, verify_export
from exchange.audit.records import record_bytes
from exchange.audit.tree import consistency_proof, leaf_hash, memory_subtree
from exchange.audit.tree import root as tree_root
from exchange.audit.verify import VerificationFailed
from exchange.errors import Conflict, InvalidInput, NotFound, SignatureError
from exchange.storage.engines import SqliteOptions, create_engine
from exchange.storage.sql import SqlStore
from tests.unit.audit.helpers import ORIGIN, checkpoint_key, disclosure, note_key, one_of_each

KEYS = [note_key()]


def _build(url: str, count: int, checkpoints: tuple[int, ...], *, first: int = 0) -> sa.Engine:
    store = SqlStore(url)
    store.open()
    store.upgrade()
    store.close()
    engine = create_engine(url, SqliteOptions(synchronous="NORMAL"))
    with engine.begin() as conn:
        done = 0
        for size in (*checkpoints, count):
            records = [disclosure(first + i) for i in range(done, size)]
            if done == 0:
                records[:5] = one_of_each()
            ledger.append(conn, records)
            done = size
            if size in checkpoints:
                ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN, now=size)
    return engine


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of a 60-record ledger with checkpoints at 20, 45 and 60."""
    base = tmp_path_factory.mktemp("audit-export")
    engine = _build(f"sqlite:///{base / 'ledger.db'}", 60, (20, 45, 60))
    with engine.connect() as conn, conn.begin():
        export(conn, base / "export", KEYS, origin=ORIGIN)
    engine.dispose()
    return base / "export"


@pytest.fixture
def copy(exported: Path, tmp_path: Path) -> Path:
    """A copy of the export the test may change."""
    return Path(shutil.copytree(exported, tmp_path / "copy"))


def _failure(directory: Path) -> str:
    with pytest.raises(VerificationFailed) as caught:
        verify_export(directory, KEYS)
    return "\n".join(str(f) for f in caught.value.report.findings)


def test_the_export_holds_records_checkpoints_proofs_and_keys(exported: Path) -> None:
    lines = (exported / "records.jsonl").read_bytes().split(b"\n")
    assert len(lines) == 61
    assert lines[-1] == b""
    assert lines[5] == record_bytes(disclosure(5), 5)
    assert sorted(p.name for p in (exported / "checkpoints").iterdir()) == [
        "20.txt", "45.txt", "60.txt"
    ]
    assert verify_checkpoint((exported / "checkpoints" / "45.txt").read_text(), KEYS).size == 45
    proofs = [json.loads(x) for x in (exported / "proofs" / "consistency.jsonl").read_text()
              .splitlines()]
    assert [(p["from"], p["to"]) for p in proofs] == [(20, 45), (45, 60)]
    meta = json.loads((exported / "keys.json").read_text())
    assert meta["origin"] == ORIGIN
    assert meta["size"] == 60
    assert meta["keys"] == [{"name": ORIGIN, "verifier": note_key().verifier(),
                             "kid": checkpoint_key().public_key.kid}]


def test_an_intact_export_verifies_offline(exported: Path) -> None:
    report = verify_export(exported, KEYS, strict=True)
    assert report.ok
    assert (report.records, report.checkpoints, report.unsigned) == (60, 3, 0)
    assert report.latest == Checkpoint(ORIGIN, 60, report.latest.root if report.latest else b"")
    own = verify_export(exported)  # trusting the keys that came with it
    assert own.keys == (note_key().verifier(),)


def test_the_export_stops_at_the_newest_checkpoint(tmp_path: Path) -> None:
    engine = _build(f"sqlite:///{tmp_path / 'l.db'}", 50, (30,))
    with engine.connect() as conn, conn.begin():
        latest = export(conn, tmp_path / "out", KEYS)
    engine.dispose()
    assert latest.size == 30
    assert verify_export(tmp_path / "out", KEYS).records == 30


def test_export_refusals(tmp_path: Path) -> None:
    engine = _build(f"sqlite:///{tmp_path / 'l.db'}", 5, ())
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with engine.connect() as conn, conn.begin():
        with pytest.raises(NotFound, match="no checkpoint"):
            export(conn, tmp_path / "out", KEYS)
        ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN)
        with pytest.raises(Conflict, match="not empty"):
            export(conn, tmp_path / "busy", KEYS)
        with pytest.raises(SignatureError, match="trusted"):
            export(conn, tmp_path / "out", [note_key(2)])
    engine.dispose()


def test_a_directory_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"keys\.json"):
        verify_export(tmp_path)


# -- tampering with the files ------------------------------------------------------------


def _edit_lines(directory: Path, edit: object) -> None:
    path = directory / "records.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    edit(lines)  # type: ignore[operator]
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_a_changed_record_is_caught_between_two_checkpoints(copy: Path) -> None:
    _edit_lines(copy, lambda lines: lines.__setitem__(30, lines[30].replace(b"org-pk",
                                                                            b"org-px")))
    assert "record 20: the signed root of checkpoints/45.txt does not match the records: one" \
           " of records 20 to 44" in _failure(copy)


def test_a_removed_line_is_named(copy: Path) -> None:
    _edit_lines(copy, lambda lines: lines.pop(12))
    assert "record 12: record 12 is missing: the next record found is 13" in _failure(copy)


def test_swapped_lines_are_named(copy: Path) -> None:
    def swap(lines: list[bytes]) -> None:
        lines[7], lines[8] = lines[8], lines[7]

    _edit_lines(copy, swap)
    found = _failure(copy)
    assert "record 7: record 7 is missing: the next record found is 8" in found
    assert "record 7: found again after record 8" in found


def test_a_truncated_last_line_is_named(copy: Path) -> None:
    path = copy / "records.jsonl"
    path.write_bytes(path.read_bytes()[:-20])
    assert "has no newline (truncated?)" in _failure(copy)


def test_a_replaced_checkpoint_is_caught(copy: Path) -> None:
    forged = sign_checkpoint(Checkpoint(ORIGIN, 45, leaf_hash(b"x")), checkpoint_key(2))
    (copy / "checkpoints" / "45.txt").write_text(forged)
    assert "checkpoints/45.txt: the note is not signed by any trusted key" in _failure(copy)


def test_a_checkpoint_filed_under_another_size_is_caught(copy: Path) -> None:
    (copy / "checkpoints" / "45.txt").rename(copy / "checkpoints" / "44.txt")
    assert "checkpoints/44.txt is filed under size 44 but states size 45" in _failure(copy)


def test_a_stray_file_is_caught(copy: Path) -> None:
    (copy / "checkpoints" / "notes.md").write_text("x")
    assert "checkpoints/notes.md is not a checkpoint file" in _failure(copy)


def test_a_wrong_consistency_proof_is_caught(copy: Path) -> None:
    path = copy / "proofs" / "consistency.jsonl"
    first, second = path.read_text().splitlines()
    entry = json.loads(second)
    entry["proof"] = entry["proof"][1:]
    path.write_text(first + "\n" + json.dumps(entry) + "\n")
    found = _failure(copy)
    assert "proofs/consistency.jsonl line 2" in found
    assert "no valid proof from checkpoint 45 to 60" in found


def test_records_beyond_the_newest_checkpoint_are_caught(copy: Path) -> None:
    _edit_lines(copy, lambda lines: lines.append(record_bytes(disclosure(60), 60)))
    assert "record 60: 1 records at the end are not covered by any checkpoint" in _failure(copy)


def test_substituted_keys_pass_only_with_the_substituted_keys(copy: Path) -> None:
    """Someone rewrites history and re-signs everything with their own key and keys.json."""
    _edit_lines(copy, lambda lines: lines.__setitem__(3, record_bytes(disclosure(999), 3)))
    records = (copy / "records.jsonl").read_bytes().split(b"\n")[:-1]
    mallory = checkpoint_key(9)
    for size in (20, 45, 60):
        root = tree_root(leaf_hash(r) for r in records[:size])
        (copy / "checkpoints" / f"{size}.txt").write_text(
            sign_checkpoint(Checkpoint(ORIGIN, size, root), mallory))
    subtree = memory_subtree([leaf_hash(r) for r in records])
    (copy / "proofs" / "consistency.jsonl").write_text("".join(
        json.dumps({"from": old, "to": new, "proof": [
            base64.b64encode(h).decode() for h in consistency_proof(old, new, subtree)]}) + "\n"
        for old, new in ((20, 45), (45, 60))
    ))
    meta = json.loads((copy / "keys.json").read_text())
    meta["keys"] = [{"name": ORIGIN, "verifier": note_key(9).verifier(), "kid": "x"}]
    (copy / "keys.json").write_text(json.dumps(meta))
    assert "not signed by any trusted key" in _failure(copy)
    report = verify_export(copy)  # integrity holds under the substituted key...
    assert report.keys != (note_key().verifier(),)  # ...which the report makes visible


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    op=st.sampled_from(["change", "remove", "swap", "move", "insert", "duplicate"]),
    i=st.integers(0, 59), j=st.integers(0, 59), byte=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_any_single_tampering_of_the_records_is_detected(
    exported: Path, tmp_path_factory: pytest.TempPathFactory,
    op: str, i: int, j: int, byte: int, bit: int,
) -> None:
    target = Path(shutil.copytree(exported, tmp_path_factory.mktemp("t") / "x"))
    lines = (target / "records.jsonl").read_bytes().split(b"\n")[:-1]
    if op == "change":
        line = bytearray(lines[i])
        line[byte % len(line)] ^= 1 << bit
        lines[i] = bytes(line)
    elif op == "remove":
        del lines[i]
    elif op in ("swap", "move"):
        j = j if j != i else (i + 1) % 60
        if op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(j, lines.pop(i))
    elif op == "insert":
        lines.insert(i, record_bytes(disclosure(500 + j), i))
    else:
        lines.insert(i, lines[j])
    (target / "records.jsonl").write_bytes(b"".join(x + b"\n" for x in lines))
    with pytest.raises(VerificationFailed):
        verify_export(target, KEYS)


# -- member-held checkpoints against an export ----------------------------------------------


def test_an_export_extends_a_kept_checkpoint(exported: Path) -> None:
    kept = (exported / "checkpoints" / "20.txt").read_text()
    assert witness.verify_against(exported, kept, KEYS).size == 60


def test_an_export_of_a_rewritten_history_fails_against_a_kept_checkpoint(
    exported: Path, tmp_path: Path
) -> None:
    kept = (exported / "checkpoints" / "20.txt").read_text()
    other = _build(f"sqlite:///{tmp_path / 'other.db'}", 60, (20, 60), first=1)
    with other.connect() as conn, conn.begin():
        export(conn, tmp_path / "other", KEYS)
    other.dispose()
    with pytest.raises(VerificationFailed) as caught:
        witness.verify_against(tmp_path / "other", kept, KEYS)
    assert "the saved checkpoint (size 20) is not a prefix of this log" in str(
        caught.value.report.findings[0])


def test_an_export_smaller_than_a_kept_checkpoint_fails(exported: Path, tmp_path: Path) -> None:
    engine = _build(f"sqlite:///{tmp_path / 'l.db'}", 70, (20, 45, 60, 70))
    with engine.connect() as conn, conn.begin():
        kept = witness.latest_note(conn, KEYS)
    engine.dispose()
    with pytest.raises(VerificationFailed) as caught:
        witness.verify_against(exported, kept, KEYS)
    assert "the log holds only 60 records: the log shrank" in str(caught.value)
