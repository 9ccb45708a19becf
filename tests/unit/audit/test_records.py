"""Audit records: typed constructors, canonical bytes (= RFC 8785), strict parsing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.audit.records import (
    DISCLOSED_FIELDS,
    MAX_ENTRIES,
    MAX_RECORD_BYTES,
    Admin,
    Disclosed,
    Disclosure,
    DisclosureBatch,
    DisclosureBuilder,
    Entry,
    Kind,
    index_columns,
    object_digest,
    parse_record,
    record_bytes,
)
from exchange.errors import InvalidInput, MalformedJSON
from exchange.model.objects import Tlp
from exchange.signing.canonical import canonical
from tests.unit.audit.helpers import DIGEST, T0, disclosure, one_of_each
from tests.unit.audit.helpers import disclosed as helper_disclosed


@pytest.mark.parametrize("record", one_of_each(), ids=lambda r: r.KIND.value)
def test_every_kind_round_trips_through_its_canonical_bytes(record: Any) -> None:
    data = record_bytes(record, 42)
    assert data == canonical(json.loads(data))
    assert b"\n" not in data
    assert parse_record(data) == Entry(42, record)
    document = json.loads(data)
    assert document["v"] == 1
    assert document["seq"] == 42
    assert document["kind"] == record.KIND.value


def test_a_disclosure_holds_what_the_auditor_asks_for() -> None:
    document = json.loads(record_bytes(disclosure(7), 7))
    assert document == {
        "v": 1, "seq": 7, "kind": "disclosure", "time": "2026-01-01T00:00:00.007Z",
        "channel": "taxii:get_objects", "recipient_account": "acct-pk-soc",
        "recipient_org": "org-pk", "collection": "91a7b528-80eb-42ed-a74d-c6fbd5a26116",
        "policy_digest": DIGEST, "request_id": "req-0",
        "objects": [[
            "indicator--00000007-0000-4000-8000-000000000000",
            T0 - 5_000_000 + 7, T0 - 1_000_000 + 7,
            base64.b64encode(hashlib.sha256(b"object 7").digest()).decode(), 0,
        ]],
        "groups": [["org-uz", "green", "tlp-green-community"]],
    }
    assert DISCLOSED_FIELDS == ("object_id", "object_version", "date_added", "object_digest",
                                "producer_org", "tlp", "rule")
    assert disclosure(7).objects[0].object_digest == object_digest(b"object 7")


def test_a_disclosure_names_each_group_once_in_order_of_first_use() -> None:
    record = dataclasses.replace(disclosure(1), objects=(
        helper_disclosed(1, producer="org-kz"), helper_disclosed(2, tlp="amber"),
        helper_disclosed(3, producer="org-kz"), helper_disclosed(4, producer=None)))
    document = json.loads(record_bytes(record, 0))
    assert document["groups"] == [["org-kz", "green", "tlp-green-community"],
                                  ["org-uz", "amber", "tlp-amber-community"],
                                  [None, "green", "tlp-green-community"]]
    assert [entry[4] for entry in document["objects"]] == [0, 1, 0, 2]
    assert parse_record(record_bytes(record, 0)).record == record


def test_a_batch_names_each_disclosure_and_reads_back() -> None:
    record = disclosure(10, count=MAX_ENTRIES)
    data = record_bytes(record, 3)
    assert len(data) < MAX_RECORD_BYTES
    back = parse_record(data).record
    assert isinstance(back, Disclosure)
    assert [e.object_id for e in back.objects] == [
        f"indicator--{i:08d}-0000-4000-8000-000000000000" for i in range(10, 10 + MAX_ENTRIES)
    ]
    with pytest.raises(InvalidInput, match="1 to 256"):
        disclosure(0, count=MAX_ENTRIES + 1)
    with pytest.raises(InvalidInput, match="1 to 256"):
        dataclasses.replace(record, objects=())


def test_index_columns() -> None:
    publish, disclosed, denial, admin, reload = one_of_each()
    assert index_columns(publish) == (None, "org-uz", "indicator--x")
    assert isinstance(disclosed, Disclosure)
    assert index_columns(disclosed) == ("org-pk", "org-uz", disclosed.objects[0].object_id)
    # A batch of several objects and producers has no single value to index.
    mixed = dataclasses.replace(
        disclosed, objects=(helper_disclosed(1), helper_disclosed(2, producer="org-kz"))
    )
    assert index_columns(mixed) == ("org-pk", None, None)
    assert index_columns(denial) == ("org-kz", None, None)
    assert index_columns(admin) == (None, None, None)
    assert index_columns(reload) == (None, None, None)


def test_kinds_are_the_five_of_issue_5() -> None:
    assert {k.value for k in Kind} == {
        "publish", "disclosure", "denial", "admin", "policy-reload"
    }


def test_admin_details_cannot_change_after_the_check() -> None:
    admin = one_of_each()[3]
    assert isinstance(admin, Admin)
    with pytest.raises(TypeError):
        admin.details["account"] = "someone else"  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"time": -1}, "microseconds", id="negative-time"),
        pytest.param({"time": 1.5}, "microseconds", id="float-time"),
        pytest.param({"time": True}, "microseconds", id="bool-time"),
        pytest.param({"channel": "TAXII GET"}, "channel", id="bad-channel"),
        pytest.param({"recipient_org": ""}, "1 to 512", id="empty-text"),
        pytest.param({"recipient_org": "a" * 513}, "1 to 512", id="long-text"),
        pytest.param({"request_id": "line\nbreak"}, "control", id="control-char"),
        pytest.param({"request_id": "\ud800"}, "surrogate", id="lone-surrogate"),
        pytest.param({"policy_digest": "sha256:AB"}, "sha256", id="bad-digest"),
        pytest.param({"recipient_org": 5}, "string", id="number-for-text"),
        pytest.param({"request_id": None}, "string", id="null-required"),
        pytest.param({"objects": [helper_disclosed(1)]}, "tuple", id="list-of-entries"),
    ],
)
def test_constructors_refuse_bad_values(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        dataclasses.replace(disclosure(1), **change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"rule": "line\nbreak"}, "control", id="control-char"),
        pytest.param({"object_digest": "sha256:AB"}, "sha256", id="bad-digest"),
        pytest.param({"tlp": "white"}, "one of", id="unknown-tlp"),
        pytest.param({"producer_org": 5}, "string", id="number-for-text"),
        pytest.param({"object_version": -5}, "microseconds", id="bad-version"),
    ],
)
def test_entries_refuse_bad_values(change: dict[str, Any], message: str) -> None:
    bad = helper_disclosed(1)._replace(**change)
    with pytest.raises(InvalidInput, match=message) as refused:
        dataclasses.replace(disclosure(1), objects=(helper_disclosed(2), bad))
    assert "objects[1]." in str(refused.value)


@pytest.mark.parametrize(
    ("details", "message"),
    [
        pytest.param({"Bad Key": 1}, "member names", id="key"),
        pytest.param({"n": 2**60}, "2\\*\\*53", id="big-int"),
        pytest.param({"n": 1.5}, "string", id="float"),
        pytest.param({"n": [1]}, "string", id="list"),
        pytest.param({f"k{i}": i for i in range(65)}, "at most 64", id="too-many"),
    ],
)
def test_admin_details_refusals(details: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Admin(time=T0, actor="a", action="x.y", target="t", details=details, request_id=None)


def _mutated(change: Any) -> bytes:
    document = json.loads(record_bytes(disclosure(3), 3))
    change(document)
    return canonical(document)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param(b"\xff", MalformedJSON, "UTF-8", id="not-utf8"),
        pytest.param(b"{", MalformedJSON, "not JSON", id="not-json"),
        pytest.param(b'{"v":1,"v":1}', MalformedJSON, "duplicate", id="duplicate"),
        pytest.param(b'{"v":NaN}', MalformedJSON, "NaN", id="nan"),
        pytest.param(b"[1]", InvalidInput, "object", id="array"),
        pytest.param(_mutated(lambda d: d.update(v=2)), InvalidInput, "version", id="v2"),
        pytest.param(_mutated(lambda d: d.update(v=True)), InvalidInput, "version", id="v-bool"),
        pytest.param(_mutated(lambda d: d.update(seq=-1)), InvalidInput, "seq", id="neg-seq"),
        pytest.param(_mutated(lambda d: d.pop("seq")), InvalidInput, "seq", id="no-seq"),
        pytest.param(_mutated(lambda d: d.update(kind="read")), InvalidInput, "kind", id="kind"),
        pytest.param(_mutated(lambda d: d.pop("request_id")), InvalidInput,
                     "missing request_id", id="missing"),
        pytest.param(_mutated(lambda d: d["objects"][0].pop()), InvalidInput,
                     "objects\\[0\\].*array of 5", id="entry-missing"),
        pytest.param(_mutated(lambda d: d["groups"][0].__setitem__(1, "white")),
                     InvalidInput, "groups\\[0\\].tlp", id="group-bad-tlp"),
        pytest.param(_mutated(lambda d: d["objects"][0].__setitem__(0, None)),
                     InvalidInput, "objects\\[0\\].object_id", id="entry-null-id"),
        pytest.param(_mutated(lambda d: d["objects"][0].__setitem__(4, 1)),
                     InvalidInput, "objects\\[0\\].group.*index", id="entry-no-such-group"),
        pytest.param(_mutated(lambda d: d["objects"][0].__setitem__(3, "sha256:" + "0" * 64)),
                     InvalidInput, "objects\\[0\\].object_digest.*base64",
                     id="entry-digest-hex"),
        pytest.param(_mutated(lambda d: d["objects"][0].__setitem__(
                         3, d["objects"][0][3][:42] + "B=")),
                     InvalidInput, "object_digest", id="entry-digest-not-canonical"),
        pytest.param(_mutated(lambda d: d["groups"].append(["org-kz", "green", "r"])),
                     InvalidInput, "canonical", id="group-unused"),
        pytest.param(_mutated(lambda d: d.pop("groups")), InvalidInput, "missing groups",
                     id="no-groups"),
        pytest.param(_mutated(lambda d: d.update(objects=[])), InvalidInput, "1 to 256",
                     id="no-entries"),
        pytest.param(_mutated(lambda d: d.update(objects={})), InvalidInput, "array",
                     id="entries-not-array"),
        pytest.param(_mutated(lambda d: d.update(extra=1)), InvalidInput, "unknown extra",
                     id="unknown"),
        pytest.param(_mutated(lambda d: d.update(collection=None)), InvalidInput, "null",
                     id="null"),
        pytest.param(_mutated(lambda d: d.update(time="yesterday")), InvalidInput, "timestamp",
                     id="bad-time"),
        pytest.param(_mutated(lambda d: d.update(time="2026-01-01T00:00:00.0070Z")),
                     InvalidInput, "canonical", id="time-not-canonical"),
        pytest.param(record_bytes(disclosure(3), 3).replace(b",", b", ", 1), InvalidInput,
                     "canonical", id="whitespace"),
        pytest.param(b'{"pad":"' + b"x" * 1_100_000 + b'"}', InvalidInput, "larger",
                     id="too-large"),
    ],
)
def test_parse_refuses(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_record(data)


def test_record_bytes_refuses_a_bad_seq() -> None:
    with pytest.raises(InvalidInput, match="seq"):
        record_bytes(disclosure(1), -1)


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(
    rule=TEXT, org=TEXT, request=TEXT,
    detail=st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), TEXT),
    seq=st.integers(0, 2**53 - 1), when=st.integers(0, 253_402_300_799_999_999),
)
def test_record_bytes_are_exactly_rfc_8785(
    rule: str, org: str, request: str, detail: Any, seq: int, when: int
) -> None:
    record = dataclasses.replace(
        disclosure(1), recipient_org=org, request_id=request, time=when,
        objects=(helper_disclosed(1)._replace(rule=rule, producer_org=org),),
    )
    data = record_bytes(record, seq)
    assert data == canonical(json.loads(data))
    assert parse_record(data) == Entry(seq, record)
    admin = Admin(time=when, actor=org, action="x.y", target=rule,
                  details={"detail": detail, "z": 1, "a_b": rule}, request_id=None)
    data = record_bytes(admin, seq)
    assert data == canonical(json.loads(data))
    assert parse_record(data) == Entry(seq, admin)


ENTRY_TEXT = st.one_of(
    TEXT,
    st.sampled_from(["UZ-CERT", "PK-CERT", "naïve \"quoted\" \\ org", "tlp-clear"]),
)
STIX_ID = st.builds(lambda t, u: f"{t}--{u}", st.sampled_from(["indicator", "x-cx-y", "a1"]),
                    st.uuids().map(str))
ENTRY_ID = st.one_of(STIX_ID, TEXT)
MICROS = st.integers(0, 253_402_300_799_999_999)
#: The producer, level and rule of an entry.
GROUP = (st.one_of(st.none(), ENTRY_TEXT), st.sampled_from([level.value for level in Tlp]),
         ENTRY_TEXT)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(ENTRY_ID, MICROS, MICROS, st.one_of(st.none(), st.binary(max_size=64)),
                  *GROUP),
        min_size=1, max_size=600,
    ),
    seq=st.integers(0, 2**53 - 1),
    account=ENTRY_TEXT,
    cuts=st.lists(st.integers(1, 600), max_size=8),
)
def test_the_fast_builder_writes_exactly_the_reference_bytes(
    rows: list[tuple[Any, ...]], seq: int, account: str, cuts: list[int]
) -> None:
    # The rows arrive in calls of add_many: split at the drawn cuts and wherever the rows
    # switch between served bytes and metadata only (one call holds one or the other).
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows)),
                     *(i for i in range(1, len(rows))
                       if (rows[i][3] is None) != (rows[i - 1][3] is None))})
    _check_builder(rows, seq, account, bounds)


def test_the_fast_builder_fills_each_record_across_calls() -> None:
    """Calls that end inside a record and calls longer than one record."""
    rows = [(f"indicator--00000000-0000-4000-8000-{i:012d}", T0 + i, T0 + 2 * i,
             b"object %d" % i, "UZ-CERT" if i % 3 else "PK-CERT", "green", f"rule-{i % 2}")
            for i in range(700)]
    _check_builder(rows, 9, "pk-soc", [0, 100, 400, 700])


def _check_builder(rows: list[tuple[Any, ...]], seq: int, account: str,
                   bounds: list[int]) -> None:
    common = {"time": T0, "channel": "taxii:get_objects", "recipient_account": account,
              "recipient_org": "PK-CERT", "collection": "c-1", "policy_digest": DIGEST,
              "request_id": "req-1"}
    builder = DisclosureBuilder(**common)
    for start, end in itertools.pairwise(bounds):
        part = rows[start:end]
        builder.add_many(
            [row[0] for row in part], [row[1] for row in part], [row[2] for row in part],
            None if part[0][3] is None else [hashlib.sha256(row[3]).digest() for row in part],
            [builder.group(row[4], row[5], row[6]) for row in part])
    prepared = builder.records()
    assert len(prepared) == -(-len(rows) // MAX_ENTRIES)
    for number, record in enumerate(prepared):
        part = rows[number * MAX_ENTRIES:(number + 1) * MAX_ENTRIES]
        typed = Disclosure(**common, objects=tuple(
            Disclosed(oid, version, added, None if body is None else object_digest(body),
                      producer, tlp, rule)
            for oid, version, added, body, producer, tlp, rule in part))
        assert record.data(seq) == record_bytes(typed, seq)
        assert parse_record(record.data(seq)) == Entry(seq, typed)
        assert (record.recipient_org, record.producer_org, record.object_id) == \
            index_columns(typed)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param(("x" * 513, 1, 1, None, None, "green", "r"), "object_id", id="long-id"),
        pytest.param(("a--b", -1, 1, None, None, "green", "r"), "object_version",
                     id="negative-version"),
        pytest.param(("a--b", 1, 1, b"short", None, "green", "r"), "object_digest",
                     id="not-a-digest"),
        pytest.param(("a--b", 1, 1, None, "bad\norg", "green", "r"), "producer_org",
                     id="control-char"),
        pytest.param(("a--b", 1, 1, None, None, "white", "r"), "tlp", id="unknown-tlp"),
        pytest.param(("a--b", 1, 1, None, None, "green", ""), "rule", id="empty-rule"),
    ],
)
def test_the_fast_builder_refuses_what_a_record_may_not_hold(
    row: tuple[Any, ...], message: str
) -> None:
    builder = DisclosureBuilder(time=T0, channel="taxii:get_objects", recipient_account="a",
                                recipient_org="o", collection="c", policy_digest=DIGEST,
                                request_id="r")
    oid, version, added, digest, producer, tlp, rule = row
    with pytest.raises(InvalidInput, match=message):
        builder.add_many([oid], [version], [added], None if digest is None else [digest],
                         [builder.group(producer, tlp, rule)])


def test_the_fast_builder_refuses_a_group_it_did_not_give() -> None:
    builder = DisclosureBuilder(time=T0, channel="taxii:get_objects", recipient_account="a",
                                recipient_org="o", collection="c", policy_digest=DIGEST,
                                request_id="r")
    with pytest.raises(InvalidInput, match="group"):
        builder.add_many(["a--b"], [1], [1], None, [0])


BATCH_HEADER = {"time": T0, "channel": "taxii:get_objects", "recipient_org": "PK-CERT",
                "collection": "c-1", "policy_digest": DIGEST, "request_id": "req-1"}


def _batch_of(rows: list[tuple[Any, ...]], served: bool, account: str = "pk-soc"
              ) -> DisclosureBatch:
    """rows: (id, version, date_added, producer, tlp, rule); bodies b"object <i>"."""
    groups = list(dict.fromkeys(row[3:] for row in rows))
    return DisclosureBatch(
        **BATCH_HEADER, recipient_account=account, groups=groups,
        object_ids=[row[0] for row in rows], object_versions=[row[1] for row in rows],
        dates_added=[row[2] for row in rows],
        digests=[hashlib.sha256(b"object %d" % i).digest() for i in range(len(rows))]
        if served else None,
        group_of=[groups.index(row[3:]) for row in rows])


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(ENTRY_ID, MICROS, MICROS, *GROUP),
        max_size=600,
    ),
    served=st.booleans(),
    seq=st.integers(0, 2**53 - 1),
    account=ENTRY_TEXT,
)
def test_a_disclosure_batch_renders_the_reference_records_after_its_round_trip(
    rows: list[tuple[Any, ...]], served: bool, seq: int, account: str
) -> None:
    """What the read path spools renders, in the sequencer, to exactly the records of the
    typed disclosures: before and after its bytes are written and read back."""
    batch = _batch_of(rows, served, account)
    assert len(batch) == len(rows)
    read_back = DisclosureBatch.decode(batch.encode())
    for prepared in (batch.records(), read_back.records()):
        assert len(prepared) == -(-len(rows) // MAX_ENTRIES)
        for number, record in enumerate(prepared):
            start = number * MAX_ENTRIES
            typed = Disclosure(**BATCH_HEADER, recipient_account=account, objects=tuple(
                Disclosed(oid, version, added,
                          object_digest(b"object %d" % (start + i)) if served else None,
                          producer, tlp, rule)
                for i, (oid, version, added, producer, tlp, rule)
                in enumerate(rows[start:start + MAX_ENTRIES])))
            assert record.data(seq) == record_bytes(typed, seq)
            assert (record.kind, record.time) == (Kind.DISCLOSURE, T0)
            assert (record.recipient_org, record.producer_org, record.object_id) == \
                index_columns(typed)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"object_ids": ["x" * 513]}, "object_id", id="long-id"),
        pytest.param({"object_ids": ["a--b\nc--d"]}, "object_id", id="newline-in-id"),
        pytest.param({"object_ids": [7]}, "object_id", id="id-not-text"),
        pytest.param({"object_versions": [-1]}, "object_version", id="negative-version"),
        pytest.param({"dates_added": [True]}, "date_added", id="bool-date"),
        pytest.param({"object_versions": [1.5]}, "object_version", id="float-version"),
        pytest.param({"digests": [b"short"]}, "object_digest", id="not-a-digest"),
        pytest.param({"groups": [("bad\norg", "green", "r")]}, "producer_org",
                     id="control-char"),
        pytest.param({"groups": [(None, "white", "r")]}, "tlp", id="unknown-tlp"),
        pytest.param({"groups": [(None, "green", "")]}, "rule", id="empty-rule"),
        pytest.param({"group_of": [1]}, "group", id="group-out-of-range"),
        pytest.param({"group_of": [-1]}, "group", id="negative-group"),
        pytest.param({"dates_added": []}, "one value per entry", id="short-column"),
        pytest.param({"policy_digest": "sha256:no"}, "policy_digest", id="bad-policy"),
        pytest.param({"channel": "TAXII"}, "channel", id="bad-channel"),
    ],
)
def test_a_disclosure_batch_refuses_what_a_record_may_not_hold(
    change: dict[str, Any], message: str
) -> None:
    """Refused on the request's thread, so the sequencer never meets a batch it cannot
    render (and the response is not served: the ledger could not be written)."""
    fields: dict[str, Any] = {
        **BATCH_HEADER, "recipient_account": "a", "groups": [(None, "green", "r")],
        "object_ids": ["a--b"], "object_versions": [1], "dates_added": [1],
        "digests": [bytes(32)], "group_of": [0]}
    with pytest.raises(InvalidInput, match=message):
        DisclosureBatch(**{**fields, **change})


def test_a_disclosure_batch_cut_short_or_padded_is_refused() -> None:
    rows = [(f"indicator--{i}", T0 + i, T0 + i, "UZ-CERT" if i % 2 else None, "green",
             "rule") for i in range(3)]
    data = _batch_of(rows, served=True).encode()
    assert DisclosureBatch.decode(data).records() == _batch_of(rows, served=True).records()
    for cut in range(len(data)):
        with pytest.raises(InvalidInput, match="disclosure batch"):
            DisclosureBatch.decode(data[:cut])
    with pytest.raises(InvalidInput, match="bytes after"):
        DisclosureBatch.decode(data + b"\x00")
    with pytest.raises(InvalidInput, match="version 2"):
        DisclosureBatch.decode(b"\x02" + data[1:])


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param(b"indicator--1", b"indic\nator-1", "one value per entry",
                     id="extra-id"),
        pytest.param(b"indicator--1", b"indic\x01tor--1", "object_id", id="control-char"),
        pytest.param(b"indicator--1", b'indic"tor--1', None, id="quote-is-escaped"),
        pytest.param(struct.pack("<q", T0 + 1), struct.pack("<q", -1), "object_version",
                     id="negative-version"),
    ],
)
def test_a_spooled_batch_is_checked_again_when_rendered(
    old: bytes, new: bytes, message: str | None
) -> None:
    """Bytes that decode (a spool frame is checksummed, not signed) but hold a value no
    record may hold are refused by the renderer, as the constructor refuses them; a value
    that needs a JSON escape renders as the typed record does."""
    rows = [(f"indicator--{i}", T0 + i, T0 + 10 * i, "UZ-CERT", "green", "rule")
            for i in range(3)]
    data = _batch_of(rows, served=True).encode()
    assert data.count(old) == 1
    assert len(old) == len(new)
    changed = DisclosureBatch.decode(data.replace(old, new))
    if message is not None:
        with pytest.raises(InvalidInput, match=message):
            changed.records()
        return
    (record,) = changed.records()
    entry = parse_record(record.data(7))
    assert isinstance(entry.record, Disclosure)
    assert [d.object_id for d in entry.record.objects] == [
        "indicator--0", 'indic"tor--1', "indicator--2"]
    assert record.data(7) == record_bytes(entry.record, 7)
