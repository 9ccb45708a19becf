"""The ledger in the database (SQLite and PostgreSQL): append, checkpoints, proofs, verify_all,
tamper detection and member-held checkpoints."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from exchange.audit import ledger, witness
from exchange.audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from exchange.audit.records import MAX_ENTRIES, parse_record, record_bytes
from exchange.audit.tree import (
    Frontier,
    leaf_hash,
    memory_subtree,
    root,
    verify_consistency,
    verify_inclusion,
)
from exchange.audit.tree import consistency_proof as memory_consistency
from exchange.audit.tree import inclusion_proof as memory_inclusion
from exchange.audit.verify import Report, VerificationFailed
from exchange.errors import NotFound, SignatureError, StorageError
from exchange.storage.schema import audit_frontier, audit_nodes, audit_records
from exchange.storage.sql import MIGRATIONS_DIR
from tests.unit.audit.helpers import (
    ORIGIN,
    checkpoint_key,
    disclosure,
    drop_guards,
    note_key,
    one_of_each,
)

KEYS = [note_key()]
CHECKPOINTS = (10, 25, 40)


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection whose transaction the test commits or rolls back itself."""
    with engine.connect() as connection:
        yield connection


def _fill(conn: Connection, count: int, *, start: int = 0, batch: int = 7) -> list[bytes]:
    """Append ``count`` disclosures in batches; returns their leaf data."""
    bodies = []
    for first in range(start, start + count, batch):
        records = [disclosure(i) for i in range(first, min(first + batch, start + count))]
        seqs = ledger.append(conn, records)
        bodies.extend(record_bytes(r, s) for r, s in zip(records, seqs, strict=True))
    return bodies


def _ledger(conn: Connection, count: int = 40, checkpoints: tuple[int, ...] = CHECKPOINTS) -> None:
    """A committed ledger of ``count`` records with checkpoints at the given sizes."""
    with conn.begin():
        done = 0
        for size in (*checkpoints, count):
            _fill(conn, size - done, start=done)
            done = size
            if size in checkpoints:
                ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN, now=size)


def _failure(conn: Connection, **kwargs: Any) -> Report:
    with pytest.raises(VerificationFailed) as caught:
        ledger.verify_all(conn, KEYS, **kwargs)
    return caught.value.report


def _seqs(report: Report) -> set[int | None]:
    return {finding.seq for finding in report.findings}


# -- append ------------------------------------------------------------------------------


def test_append_in_batches_gives_gapless_seqs_and_the_rfc_root(conn: Connection) -> None:
    with conn.begin():
        assert ledger.append(conn, []) == []
        assert ledger.append(conn, [disclosure(0)]) == [0]
        assert ledger.append(conn, [disclosure(i) for i in range(1, 101)]) == list(range(1, 101))
        assert ledger.append(conn, one_of_each()) == list(range(101, 106))
    with conn.begin():
        head = ledger.current_root(conn)
        bodies = [b for _, b, _ in ledger.iter_records(conn)]
    assert head.size == 106
    assert head.root == root(leaf_hash(b) for b in bodies)
    assert [parse_record(b).seq for b in bodies] == list(range(106))
    assert parse_record(bodies[0]).record == disclosure(0)


def test_records_keep_their_query_columns(conn: Connection) -> None:
    with conn.begin():
        ledger.append(conn, one_of_each())
        rows = conn.execute(
            sa.select(audit_records.c.kind, audit_records.c.recipient_org,
                      audit_records.c.producer_org, audit_records.c.time)
            .order_by(audit_records.c.seq)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("publish", None, "org-uz", one_of_each()[0].time),
        ("disclosure", "org-pk", "org-uz", one_of_each()[1].time),
        ("denial", "org-kz", None, one_of_each()[2].time),
        ("admin", None, None, one_of_each()[3].time),
        ("policy-reload", None, None, one_of_each()[4].time),
    ]


def test_an_append_rolls_back_with_the_callers_transaction(conn: Connection) -> None:
    with conn.begin():
        _fill(conn, 5)
    def failing_response() -> None:
        with conn.begin():
            ledger.append(conn, [disclosure(5), disclosure(6)])
            raise RuntimeError("the response failed before commit")

    with pytest.raises(RuntimeError):
        failing_response()
    with conn.begin():
        assert ledger.current_root(conn).size == 5
        assert len(list(ledger.iter_records(conn))) == 5
        assert ledger.append(conn, [disclosure(5)]) == [5]


def test_a_stale_tree_state_cannot_overwrite_records(conn: Connection) -> None:
    with conn.begin():
        _fill(conn, 3)
        conn.execute(sa.update(audit_frontier).values(size=2, hashes=bytes(32)))
        with pytest.raises(StorageError, match="could not append"):
            ledger.append(conn, [disclosure(3)])  # seq 2 is taken: the insert fails


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_records SET body = body WHERE seq = 0",
        "DELETE FROM audit_records WHERE seq = 0",
        "DELETE FROM audit_nodes",
        "UPDATE audit_checkpoints SET note = 'x'",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_the_log_tables_are_append_only(conn: Connection, statement: str) -> None:
    _ledger(conn, 300, (300,))
    with pytest.raises(exc.DatabaseError, match="append-only"), conn.begin():
        conn.exec_driver_sql(statement)


def test_complete_256_leaf_subtrees_are_stored(conn: Connection) -> None:
    with conn.begin():
        bodies = _fill(conn, 600, batch=100)
        nodes = conn.execute(sa.select(audit_nodes).order_by(audit_nodes.c.idx)).all()
    hashes = [leaf_hash(b) for b in bodies]
    assert [(n.level, n.idx) for n in nodes] == [(8, 0), (8, 1)]
    assert nodes[0].hash == root(hashes[:256])
    assert nodes[1].hash == root(hashes[256:512])


# -- proofs ------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [2, 8])
def test_proofs_from_the_database_equal_the_rfc_proofs(
    conn: Connection, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    monkeypatch.setattr(ledger, "NODE_STRIDE", stride)  # stride 2 stores levels 2, 4, 6
    with conn.begin():
        bodies = _fill(conn, 300 if stride == 8 else 70, batch=33)
    hashes = [leaf_hash(b) for b in bodies]
    subtree = memory_subtree(hashes)
    n = len(hashes)
    with conn.begin():
        for size in (1, 2, 7, 64, 65, n - 1, n):
            for seq in {0, min(1, size - 1), size // 2, size - 1}:
                proof = ledger.inclusion_proof(conn, seq, size)
                assert proof == memory_inclusion(seq, size, subtree)
                verify_inclusion(seq, size, hashes[seq], proof, root(hashes[:size]))
            for old in {1, 3, size // 3, size - 1, size}:
                if 0 < old <= size:
                    proof = ledger.consistency_proof(conn, old, size)
                    assert proof == memory_consistency(old, size, subtree)
        assert ledger.inclusion_proof(conn, 5) == memory_inclusion(5, n, subtree)
        with pytest.raises(ValueError, match="holds"):
            ledger.inclusion_proof(conn, 0, n + 1)
        with pytest.raises(ValueError, match="not in a tree"):
            ledger.inclusion_proof(conn, n, n)


def test_record_at(conn: Connection) -> None:
    with conn.begin():
        bodies = _fill(conn, 3)
        assert ledger.record_at(conn, 2) == bodies[2]
        with pytest.raises(NotFound, match="no audit record 3"):
            ledger.record_at(conn, 3)


# -- checkpoints -------------------------------------------------------------------------


def test_checkpoints_sign_the_tree_head(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin():
        stored = list(ledger.iter_checkpoints(conn))
        assert [c.size for c in stored] == list(CHECKPOINTS)
        assert ledger.latest_checkpoint(conn) == stored[-1]
        assert ledger.checkpoint_at(conn, 25) == stored[1]
        with pytest.raises(NotFound):
            ledger.checkpoint_at(conn, 26)
        bodies = [b for _, b, _ in ledger.iter_records(conn)]
        for c in stored:
            checkpoint = verify_checkpoint(c.note, KEYS, origin=ORIGIN)
            assert (checkpoint.size, checkpoint.root) == (c.size, c.root)
            assert checkpoint.root == root(leaf_hash(b) for b in bodies[: c.size])
            proof = ledger.inclusion_proof(conn, 3, c.size)
            verify_inclusion(3, c.size, leaf_hash(bodies[3]), proof, c.root)
        proof = ledger.consistency_proof(conn, 10, 40)
        verify_consistency(10, 40, proof, stored[0].root, stored[2].root)


def test_no_new_checkpoint_without_growth(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin():
        again = ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN, now=999)
        assert again == ledger.latest_checkpoint(conn)
        assert again.created_at == 40


def test_key_rotation_needs_the_old_key_trusted(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin():
        _fill(conn, 5, start=40)
        with pytest.raises(SignatureError, match="not signed by any trusted key"):
            ledger.make_checkpoint(conn, checkpoint_key(2), ORIGIN)
        rotated = ledger.make_checkpoint(conn, checkpoint_key(2), ORIGIN, trusted=KEYS)
    assert verify_checkpoint(rotated.note, [note_key(2)]).size == 45


def test_the_log_refuses_to_sign_a_rewritten_history(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin():
        drop_guards(conn)
        conn.execute(sa.update(audit_records).where(audit_records.c.seq == 3)
                     .values(leaf_hash=leaf_hash(b"rewritten")))
        _fill(conn, 5, start=40)
        with pytest.raises(SignatureError, match="no longer extends checkpoint 40"):
            ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN)
        conn.rollback()


def test_the_log_refuses_to_sign_after_losing_records(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin():
        frontier = Frontier()
        for _, body, _ in ledger.iter_records(conn, 0, 30):
            frontier.append(leaf_hash(body))
        conn.execute(sa.update(audit_frontier).values(size=30, hashes=frontier.to_bytes()))
        with pytest.raises(SignatureError, match="tree holds only 30"):
            ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN)
        conn.rollback()


# -- verify_all --------------------------------------------------------------------------


def test_verify_all_on_an_intact_ledger(conn: Connection) -> None:
    _ledger(conn, 45)
    with conn.begin():
        report = ledger.verify_all(conn, KEYS, origin=ORIGIN, strict=True, chunk=8)
    assert report.ok
    assert report.records == 45
    assert report.checkpoints == 3
    assert report.latest == verify_checkpoint(
        ledger.checkpoint_at(conn, 40).note, KEYS
    )
    assert report.unsigned == 5
    assert report.keys == (note_key().verifier(),)
    assert "45 records, 3 checkpoints verified up to size 40" in report.summary()


def test_verify_all_with_stored_subtrees(conn: Connection) -> None:
    _ledger(conn, 700, (256, 600))
    with conn.begin():
        assert ledger.verify_all(conn, KEYS).records == 700


def test_verify_all_needs_a_trusted_key(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin(), pytest.raises(VerificationFailed) as caught:
        ledger.verify_all(conn, [note_key(2)])
    report = caught.value.report
    assert report.findings_total == 3
    assert "not signed by any trusted key" in str(report.findings[0])


def _tampered(conn: Connection, statement: str, **params: Any) -> Report:
    with conn.begin():
        drop_guards(conn)
        conn.execute(sa.text(statement), params)
        report = _failure(conn)
        conn.rollback()
    return report


def _body(conn: Connection, seq: int) -> bytes:
    with conn.begin():
        return ledger.record_at(conn, seq)


def test_a_changed_byte_is_reported_with_its_seq(conn: Connection) -> None:
    _ledger(conn)
    body = _body(conn, 17)
    changed = body.replace(b"org-pk", b"org-px")
    report = _tampered(conn, "UPDATE audit_records SET body = :b WHERE seq = 17", b=changed)
    assert report.findings[0].seq == 17
    assert "stored leaf hash does not match" in report.findings[0].problem
    assert 10 in _seqs(report)  # and checkpoint 25 fails for the range from 10


def test_a_changed_record_with_a_matching_leaf_hash_is_pinned_to_a_checkpoint_range(
    conn: Connection,
) -> None:
    _ledger(conn)
    changed = _body(conn, 17).replace(b"org-pk", b"org-px")
    report = _tampered(
        conn, "UPDATE audit_records SET body = :b, leaf_hash = :h WHERE seq = 17",
        b=changed, h=leaf_hash(changed),
    )
    assert report.findings[0].seq == 10
    assert "records 10 to 24" in report.findings[0].problem
    assert "1 later checkpoint does not match either" in str(report.findings[-1])


def test_a_removed_record_is_reported_with_its_seq(conn: Connection) -> None:
    _ledger(conn)
    report = _tampered(conn, "DELETE FROM audit_records WHERE seq = 12")
    assert report.findings[0].seq == 12
    assert "record 12 is missing" in report.findings[0].problem


def test_removed_records_at_the_end_are_reported(conn: Connection) -> None:
    _ledger(conn)
    report = _tampered(conn, "DELETE FROM audit_records WHERE seq >= 38")
    assert str(report.findings[0]) == (
        "record 38: records 38 to 39 are missing: the tree holds 40 records"
    )
    assert "covers 40 records but only 38 are stored" in report.findings[1].problem


def test_swapped_records_are_both_reported(conn: Connection) -> None:
    _ledger(conn)
    a, b = _body(conn, 20), _body(conn, 21)
    with conn.begin():
        drop_guards(conn)
        for seq, body in ((20, b), (21, a)):
            conn.execute(sa.update(audit_records).where(audit_records.c.seq == seq)
                         .values(body=body, leaf_hash=leaf_hash(body)))
        report = _failure(conn)
        conn.rollback()
    assert {20, 21} <= _seqs(report)
    assert "stored under seq 20 says it is record 21" in report.findings[0].problem


def test_an_inserted_record_is_reported_with_its_seq(conn: Connection) -> None:
    _ledger(conn)
    forged = record_bytes(disclosure(99), 40)
    report = _tampered(
        conn,
        "INSERT INTO audit_records (seq, kind, time, body, leaf_hash)"
        " VALUES (40, 'disclosure', 0, :b, :h)",
        b=forged, h=leaf_hash(forged),
    )
    assert report.findings[0].seq == 40
    assert "not part of the tree" in report.findings[0].problem


def test_corrupt_stored_subtree_hashes_are_reported(conn: Connection) -> None:
    _ledger(conn, 600, (600,))
    report = _tampered(conn, "UPDATE audit_nodes SET hash = :h WHERE idx = 1",
                       h=leaf_hash(b"x"))
    assert report.findings[0].seq == 256
    assert "records 256 to 511 (used for proofs)" in report.findings[0].problem


@pytest.mark.parametrize(
    ("hashes", "message"),
    [
        pytest.param(bytes(32) * 4, "record 40: the stored tree state disagrees with records"
                     " 40 to 43", id="wrong-hashes"),
        pytest.param(bytes(32) * 3, "the stored tree state is malformed (size 45)",
                     id="wrong-count"),  # 45 = 32 + 8 + 4 + 1: four edge hashes needed
    ],
)
def test_a_corrupt_tree_edge_is_reported(conn: Connection, hashes: bytes, message: str) -> None:
    _ledger(conn, 45)
    with conn.begin():
        stored = conn.execute(sa.select(audit_frontier.c.hashes)).scalar_one()
    if hashes == bytes(32) * 4:  # keep the edges of the signed records [0, 40)
        hashes = stored[:64] + hashes[64:]
    report = _tampered(conn, "UPDATE audit_frontier SET hashes = :h", h=hashes)
    assert str(report.findings[0]) == message


def test_a_forged_checkpoint_row_is_reported(conn: Connection) -> None:
    _ledger(conn)
    with conn.begin():
        stored = ledger.checkpoint_at(conn, 25)
    forged = sign_checkpoint(Checkpoint(ORIGIN, 25, leaf_hash(b"x")), checkpoint_key(3))
    report = _tampered(conn, "UPDATE audit_checkpoints SET note = :n WHERE size = 25", n=forged)
    assert "checkpoint 25: the note is not signed by any trusted key" in str(report.findings[0])
    assert stored.note != forged


# -- the property: any single change, removal, reordering or insertion is caught ----------

_COLUMNS = ("seq", "kind", "time", "recipient_org", "producer_org", "object_id", "body",
            "leaf_hash")


def _renumber(body: bytes, seq: int) -> bytes:
    document = json.loads(body)
    document["seq"] = seq
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


@st.composite
def _tampering(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["change", "remove", "swap", "move", "insert", "duplicate"]))
    return {
        "op": op,
        "i": draw(st.integers(0, 39)),
        "j": draw(st.integers(0, 39)),
        "byte": draw(st.integers(0, 10_000)),
        "bit": draw(st.integers(0, 7)),
        "renumber": draw(st.booleans()),     # hide gaps: seq = position
        "fix_leaf": draw(st.booleans()),     # recompute the stored leaf hash
        "fix_body_seq": draw(st.booleans()),  # rewrite the record's own seq member too
    }


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tampering=_tampering())
def test_any_single_tampering_is_detected(engine: Engine, tampering: dict[str, Any]) -> None:
    with engine.connect() as conn:
        with conn.begin():
            empty = ledger.current_root(conn).size == 0
        if empty:
            _ledger(conn)
        with conn.begin():
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(*[audit_records.c[c] for c in _COLUMNS]).order_by(audit_records.c.seq))]
            original = [dict(row) for row in rows]
            op, i, j = tampering["op"], tampering["i"], tampering["j"]
            if op == "change":
                body = bytearray(rows[i]["body"])
                body[tampering["byte"] % len(body)] ^= 1 << tampering["bit"]
                rows[i]["body"] = bytes(body)
            elif op == "remove":
                del rows[i]
            elif op in ("swap", "move"):
                if i == j:
                    j = (i + 1) % 40
                if op == "swap":
                    rows[i], rows[j] = rows[j], rows[i]
                else:
                    rows.insert(j, rows.pop(i))
            elif op == "insert":
                rows.insert(i, {**rows[i], "body": record_bytes(disclosure(1000 + j), i),
                                "seq": None})
            else:
                rows.insert(i, {**rows[j], "seq": None})
            # Rows are found by seq: moving content means giving it another seq. Without
            # renumbering, removed rows leave a gap and new rows get a seq after the end.
            renumber = tampering["renumber"] or op in ("swap", "move")
            for position, row in enumerate(rows):
                if renumber:
                    row["seq"] = position
                elif row["seq"] is None:
                    row["seq"] = 40 + position
                if tampering["fix_body_seq"]:
                    with contextlib.suppress(ValueError):  # a changed byte broke the JSON
                        row["body"] = _renumber(row["body"], row["seq"])
                if tampering["fix_leaf"]:
                    row["leaf_hash"] = leaf_hash(row["body"])
            # A changed digit of "seq" that fix_body_seq writes back is no change at all.
            assume(rows != original)
            drop_guards(conn)
            conn.execute(sa.delete(audit_records))
            conn.execute(sa.insert(audit_records), rows)
            with pytest.raises(VerificationFailed):
                ledger.verify_all(conn, KEYS)
            conn.rollback()


# -- member-held checkpoints ---------------------------------------------------------------


def test_verify_against_a_kept_checkpoint_proves_growth(conn: Connection) -> None:
    _ledger(conn, 25, (10, 25))
    with conn.begin():
        kept = witness.latest_note(conn, KEYS, origin=ORIGIN)
    _ledger_more(conn, 25, 60)
    with conn.begin():
        latest = witness.verify_against(conn, kept, KEYS)
    assert latest.size == 60


def _ledger_more(conn: Connection, start: int, end: int) -> None:
    with conn.begin():
        _fill(conn, end - start, start=start)
        ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN)


def test_verify_against_fails_when_history_was_rewritten(conn: Connection) -> None:
    _ledger(conn, 25, (25,))
    with conn.begin():
        kept = witness.latest_note(conn, KEYS)
        drop_guards(conn)
        conn.execute(sa.delete(audit_records))
        conn.execute(sa.delete(audit_nodes))
        conn.execute(sa.delete(sa.table("audit_checkpoints")))
        conn.execute(sa.update(audit_frontier).values(size=0, hashes=b""))
        _fill(conn, 30, start=500)  # a different history of 30 records
        ledger.make_checkpoint(conn, checkpoint_key(), ORIGIN)
        with pytest.raises(SignatureError, match="history was rewritten"):
            witness.verify_against(conn, kept, KEYS)
        conn.rollback()


def test_verify_against_fails_when_the_log_shrank(conn: Connection) -> None:
    _ledger(conn, 25, (10, 25))
    with conn.begin():
        kept = witness.latest_note(conn, KEYS)
        drop_guards(conn)
        conn.execute(sa.text("DELETE FROM audit_checkpoints WHERE size = 25"))
        with pytest.raises(SignatureError, match="shrank"):
            witness.verify_against(conn, kept, KEYS)
        conn.rollback()


def test_verify_against_refuses_an_unsigned_kept_checkpoint(conn: Connection) -> None:
    _ledger(conn, 25, (25,))
    forged = sign_checkpoint(Checkpoint(ORIGIN, 25, leaf_hash(b"x")), checkpoint_key(3))
    with conn.begin(), pytest.raises(SignatureError, match="trusted"):
        witness.verify_against(conn, forged, KEYS)


def test_revision_0003_downgrades_and_upgrades_again(engine: Engine) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
        assert not {"audit_records", "audit_nodes", "audit_frontier", "audit_checkpoints"} & set(
            sa.inspect(conn).get_table_names())
        command.upgrade(config, "head")
        assert ledger.current_root(conn).size == 0
        assert ledger.append(conn, [disclosure(0)]) == [0]


def _compressions(conn: Connection) -> list[str | None]:
    """How PostgreSQL compressed each stored record body, in log order."""
    return list(conn.execute(sa.text("SELECT pg_column_compression(body) FROM audit_records"
                                     " ORDER BY seq")).scalars())


def _lz4_available(conn: Connection) -> bool:
    """Whether the server compresses with LZ4 (asked here, not through revision 0006's
    own check, so a wrong answer there fails these tests instead of skipping them)."""
    if conn.dialect.name != "postgresql":
        return False
    choices = conn.execute(sa.text("SELECT enumvals FROM pg_settings"
                                   " WHERE name = 'default_toast_compression'")).scalar()
    return choices is not None and "lz4" in choices


def test_a_full_record_is_stored_whole_and_lz4_compressed_on_postgresql(conn: Connection
                                                                        ) -> None:
    """A record of a full page is stored out of line on PostgreSQL, compressed with LZ4
    (revision 0006) where the server has it; it reads back byte for byte and verifies."""
    record = disclosure(0, count=MAX_ENTRIES)
    with conn.begin():
        assert ledger.append(conn, [record]) == [0]
        stored = conn.execute(sa.select(audit_records.c.body)).scalar_one()
        assert bytes(stored) == record_bytes(record, 0)
        assert len(stored) > 8192  # large enough to be compressed out of line
        assert ledger.verify_all(conn, KEYS).records == 1
        if _lz4_available(conn):
            assert _compressions(conn) == ["lz4"]


def test_revision_0006_downgrades_to_the_default_compression_and_back(engine: Engine
                                                                     ) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0005")
        ledger.append(conn, [disclosure(0, count=MAX_ENTRIES)])
        command.upgrade(config, "head")
        ledger.append(conn, [disclosure(1, count=MAX_ENTRIES)])
        if _lz4_available(conn):
            # written before and after the revision
            assert _compressions(conn) == ["pglz", "lz4"]
        assert [bytes(b) for b in conn.execute(
            sa.select(audit_records.c.body).order_by(audit_records.c.seq)).scalars()] == [
            record_bytes(disclosure(0, count=MAX_ENTRIES), 0),
            record_bytes(disclosure(1, count=MAX_ENTRIES), 1)]
        assert ledger.verify_all(conn, KEYS).records == 2


def test_latest_note_needs_a_checkpoint(conn: Connection) -> None:
    with conn.begin(), pytest.raises(SignatureError, match="no checkpoint yet"):
        witness.latest_note(conn, KEYS)


def test_a_failed_append_raises_and_leaves_nothing(conn: Connection) -> None:
    """Fail closed: the caller gets an error (and serves nothing); no record is half-written."""
    with conn.begin():
        _fill(conn, 250)

    def failing_read() -> None:
        with conn.begin():
            conn.exec_driver_sql("DROP TABLE audit_nodes")  # the 256th leaf needs it
            ledger.append(conn, [disclosure(i) for i in range(250, 260)])

    with pytest.raises(StorageError, match="could not append records"):
        failing_read()
    with conn.begin():
        assert ledger.current_root(conn).size == 250
        assert ledger.verify_all(conn, KEYS).records == 250
