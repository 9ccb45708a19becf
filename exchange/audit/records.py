"""Audit records: what the ledger says happened, as typed values and canonical JSON bytes.

One record is one leaf of the audit log (DESIGN.md decision 6, research/security.md 2.3).
Five kinds, each a frozen dataclass validated when built:

* :class:`Publish`: a member stored object versions (who, through which channel, and per
  version the signing key and signature status; the policy in force);
* :class:`Disclosure`: object versions made available to one recipient by one response,
  on any path out, with the policy digest and, per version, the rule that allowed it;
* :class:`Denial`: a recipient was refused a collection (rule, reason, policy digest);
* :class:`Admin`: an administrative change (accounts, API keys, keys, collections);
* :class:`PolicyReload`: the sharing policy changed (old and new digest).

A disclosure is one recipient receiving one object version; the ledger keeps the
disclosures of one response, and the versions of one publish, as the entries of one record
(at most :data:`MAX_ENTRIES` each; a larger response is several records appended as one
batch). Each entry is still individually named, proven and counted (``exchange audit
report`` counts entries), but the per-leaf cost (canonical JSON, hashing, a row, an index
entry) is paid once per response rather than once per object: one leaf per object version
measured about 18 us per object on the reference machine, two thirds of a full read's own
cost, against the 15 % budget of issue 5.

The leaf data is :func:`record_bytes`: the record as an RFC 8785 (JCS) canonical JSON
object with three envelope members, ``"v": 1``, ``"seq"`` (the record's position in the
log, so a moved, dropped or duplicated record is named by the verifier) and ``"kind"``.
Times are integer microseconds in Python and STIX timestamps in JSON, except inside the
entries of a disclosure, where they stay integer microseconds.

A disclosure's entries are compact, because the read path writes one per object served:
``"groups"`` lists each (producer, level, rule) triple once (arrays in the order of
:data:`DISCLOSURE_GROUP_MEMBERS`, in order of first use) and ``"objects"`` holds one array
per disclosure in the order of :data:`DISCLOSURE_ENTRY_MEMBERS`, naming its group by
index, with the SHA-256 of the bytes served as 32 bytes in base64 (RFC 4648 section 4).
In Python the entry is the whole :class:`Disclosed`, digest ``sha256:<hex>``. Only
strings, safe integers, booleans and null occur, and member names are ASCII, so the
standard library's sorted, compact, non-ASCII-preserving encoder writes exactly the RFC
8785 bytes (UTF-16 and code point order agree on ASCII; the string escapes are the same);
a property test checks the equality against :func:`exchange.signing.canonical.canonical`.

:func:`parse_record` is the one way back from bytes: strict JSON, the exact members of the
kind, and canonical form (the bytes must re-encode to themselves).

Errors: :class:`~exchange.errors.InvalidInput` for a field value a record may not hold,
:class:`~exchange.errors.MalformedJSON` for bytes that are not strict JSON, and
:class:`~exchange.errors.InvalidInput` for JSON that is not a version 1 record.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import functools
import hashlib
import json
import re
import struct
import sys
from array import array
from binascii import b2a_base64 as _b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, NamedTuple, get_args

from exchange.errors import InvalidInput, MalformedJSON
from exchange.model.objects import Tlp
from exchange.storage.timestamps import from_micros, to_micros

__all__ = [
    "DISCLOSED_FIELDS",
    "DISCLOSURE_ENTRY_MEMBERS",
    "DISCLOSURE_GROUP_MEMBERS",
    "MAX_ENTRIES",
    "MAX_RECORD_BYTES",
    "RECORD_VERSION",
    "Admin",
    "Denial",
    "Disclosed",
    "Disclosure",
    "DisclosureBatch",
    "DisclosureBuilder",
    "Entry",
    "Kind",
    "PolicyReload",
    "Prepared",
    "Publish",
    "Published",
    "Record",
    "index_columns",
    "object_digest",
    "parse_record",
    "prepare",
    "record_bytes",
]

#: The ``"v"`` member of every record this code writes and reads.
RECORD_VERSION: Final = 1

#: The most object versions one publish or disclosure record holds.
MAX_ENTRIES: Final = 256

#: The largest record :func:`parse_record` accepts (256 entries of the longest fields fit).
MAX_RECORD_BYTES: Final = 1024 * 1024

_MAX_TEXT: Final = 512
_MAX_REASON: Final = 1024
_MAX_DETAILS: Final = 64
_SAFE_INT: Final = 2**53 - 1
_MAX_TIME: Final = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Text a field may hold, in one match: no control character, no lone surrogate.
_CLEAN = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]+")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9:._/-]{0,63}", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_DETAIL_KEY = re.compile(r"[a-z0-9_.-]{1,64}", re.ASCII)


class Kind(enum.StrEnum):
    """The kinds of audit record."""

    PUBLISH = "publish"
    DISCLOSURE = "disclosure"
    DENIAL = "denial"
    ADMIN = "admin"
    POLICY_RELOAD = "policy-reload"


SignatureStatus = Literal["verified", "unsigned"]
_SIGNATURE_STATUSES: Final = get_args(SignatureStatus)


# -- field codecs ----------------------------------------------------------------------


class _Codec:
    """How one field is checked, written to JSON and read back."""

    nullable = False

    def check(self, name: str, value: Any) -> None:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value

    def load(self, name: str, value: Any) -> Any:
        self.check(name, value)
        return value


def _refuse(name: str, what: str) -> InvalidInput:
    return InvalidInput(f"audit record field {name!r} {what}")


class _Text(_Codec):
    def __init__(self, max_len: int = _MAX_TEXT, *, nullable: bool = False) -> None:
        self.max_len = max_len
        self.nullable = nullable

    def check(self, name: str, value: Any) -> None:
        if value is None and self.nullable:
            return
        if type(value) is str and len(value) <= self.max_len and _CLEAN.fullmatch(value):
            return  # the common case in one match; the checks below say what is wrong
        if not isinstance(value, str):
            raise _refuse(name, "must be a string")
        if not 0 < len(value) <= self.max_len:
            raise _refuse(name, f"must hold 1 to {self.max_len} characters")
        if _CONTROL.search(value):
            raise _refuse(name, "must not contain control characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(name, "must be valid Unicode (a lone surrogate)") from None


class _Pattern(_Codec):
    def __init__(self, pattern: re.Pattern[str], description: str, *, nullable: bool = False):
        self.pattern = pattern
        self.description = description
        self.nullable = nullable

    def check(self, name: str, value: Any) -> None:
        if value is None and self.nullable:
            return
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise _refuse(name, f"must be {self.description}")


class _Choice(_Codec):
    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or value not in self.choices:
            raise _refuse(name, f"must be one of {', '.join(self.choices)}")


class _Time(_Codec):
    """Integer microseconds since the epoch in Python; a STIX timestamp in JSON."""

    def check(self, name: str, value: Any) -> None:
        if type(value) is not int or not 0 <= value <= _MAX_TIME:
            raise _refuse(name, "must be microseconds since 1970 (an int, years 1970-9999)")

    def dump(self, value: Any) -> Any:
        return from_micros(value)

    def load(self, name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise _refuse(name, "must be a timestamp string")
        try:
            micros = to_micros(value)
        except InvalidInput:
            raise _refuse(name, "must be a timestamp YYYY-MM-DDTHH:MM:SS.sssZ") from None
        self.check(name, micros)
        return micros


class _Micros(_Codec):
    """Integer microseconds since the epoch, also in JSON (compact: entries of a batch)."""

    def check(self, name: str, value: Any) -> None:
        if type(value) is not int or not 0 <= value <= _MAX_TIME:
            raise _refuse(name, "must be microseconds since 1970 (an int, years 1970-9999)")


class _Details(_Codec):
    """A flat object of ASCII names to strings, safe integers, booleans or null."""

    _value = _Text(_MAX_REASON)

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise _refuse(name, "must be an object")
        if len(value) > _MAX_DETAILS:
            raise _refuse(name, f"must have at most {_MAX_DETAILS} members")
        for key, item in value.items():
            if not isinstance(key, str) or not _DETAIL_KEY.fullmatch(key):
                raise _refuse(name, "member names must be 1-64 of a-z 0-9 _ . -")
            if item is None or isinstance(item, bool):
                continue
            if type(item) is int:
                if abs(item) > _SAFE_INT:
                    raise _refuse(f"{name}.{key}", "must be within +-(2**53-1)")
                continue
            self._value.check(f"{name}.{key}", item)

    def dump(self, value: Any) -> Any:
        return dict(value)

    def load(self, name: str, value: Any) -> Any:
        self.check(name, value)
        return dict(value)


class _Entries(_Codec):
    """A non-empty tuple (JSON: array) of at most MAX_ENTRIES entries of one class."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, tuple) or not 0 < len(value) <= MAX_ENTRIES:
            raise _refuse(name, f"must be a tuple of 1 to {MAX_ENTRIES} entries")
        for item in value:
            if type(item) is not self.cls:
                raise _refuse(name, f"must hold {self.cls.__name__} entries")

    def dump(self, value: Any) -> Any:
        return [_to_json_fields(item, _ENTRY_FIELDS[self.cls]) for item in value]

    def load(self, name: str, value: Any) -> Any:
        if not isinstance(value, list) or not 0 < len(value) <= MAX_ENTRIES:
            raise _refuse(name, f"must be an array of 1 to {MAX_ENTRIES} entries")
        fields = _ENTRY_FIELDS[self.cls]
        names = {field_name for field_name, _ in fields}
        items = []
        for index, item in enumerate(value):
            where = f"{name}[{index}]"
            if not isinstance(item, dict):
                raise _refuse(where, "must be an object")
            if item.keys() != names:
                raise InvalidInput(
                    f"audit record entry {where} has the wrong members"
                    f" ({_member_difference(names, item.keys())})"
                )
            items.append(self.cls(**_load_fields(item, fields, prefix=f"{where}.")))
        return tuple(items)


_TEXT = _Text()
_OPT_TEXT = _Text(nullable=True)
_REASON = _Text(_MAX_REASON)
_CHANNEL_CODEC = _Pattern(_CHANNEL, "a channel name such as taxii:get_objects")
_DIGEST_CODEC = _Pattern(_DIGEST, "'sha256:' followed by 64 lowercase hex digits")
_OPT_DIGEST = _Pattern(_DIGEST, "null or 'sha256:' and 64 hex digits", nullable=True)
_TIME = _Time()
_MICROS = _Micros()
_TLP = _Choice(tuple(level.value for level in Tlp))
_SIGNATURE = _Choice(_SIGNATURE_STATUSES)
_DETAILS = _Details()


def _codec(codec: _Codec) -> Any:
    return field(metadata={"codec": codec})


class _Checked:
    """Validation shared by records and entries (each field names its codec)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for name, codec in _checks(type(self)):
            codec.check(name, getattr(self, name))


_CHECKS: dict[type[Any], tuple[tuple[str, _Codec], ...]] = {}


def _checks(cls: type[Any]) -> tuple[tuple[str, _Codec], ...]:
    found = _CHECKS.get(cls)
    if found is None:
        found = tuple((f.name, f.metadata["codec"]) for f in dataclasses.fields(cls))
        _CHECKS[cls] = found
    return found


class _RecordBase(_Checked):
    """A record: a kind and checked fields."""

    __slots__ = ()
    KIND: ClassVar[Kind]


@dataclass(frozen=True, slots=True, kw_only=True)
class Published(_Checked):
    """One object version of a :class:`Publish` record.

    Attributes:
        object_id: The STIX id.
        object_version: The version (``modified``), microseconds.
        date_added: The server-assigned ``date_added``, microseconds.
        signed_kid: The cx-sig key id that signed it, or None when unsigned.
        signature: ``"verified"`` or ``"unsigned"``.
    """

    object_id: str = _codec(_TEXT)
    object_version: int = _codec(_TIME)
    date_added: int = _codec(_TIME)
    signed_kid: str | None = _codec(_OPT_TEXT)
    signature: SignatureStatus = _codec(_SIGNATURE)  # noqa: RUF009 - a field(), not a default


class Disclosed(NamedTuple):
    """One object version of a :class:`Disclosure` record: one disclosure.

    A named tuple, not a checked dataclass: a response builds thousands of them, so
    they are checked all at once when the :class:`Disclosure` holding them is built. In
    the record's JSON an entry is an array of five values (:data:`DISCLOSURE_ENTRY_MEMBERS`:
    its producer, level and rule are a shared group), its two times as integer
    microseconds since the epoch (reports show them as timestamps).

    Attributes:
        object_id: The STIX id (of the copy served, when it was a derived copy).
        object_version: The version (``modified``), microseconds.
        date_added: Its ``date_added``, microseconds.
        object_digest: ``sha256:`` of the exact bytes served (:func:`object_digest`),
            or None when only the version's metadata was served (version lists,
            manifests).
        producer_org: The organisation that produced the object, if known.
        tlp: Its effective TLP level.
        rule: The rule id that allowed it.
    """

    object_id: str
    object_version: int
    date_added: int
    object_digest: str | None
    producer_org: str | None
    tlp: str
    rule: str


#: The values of one disclosure (a :class:`Disclosed`), as reports and queries name them.
DISCLOSED_FIELDS: Final = Disclosed._fields
_DISCLOSED_CODECS: Final[tuple[tuple[str, _Codec], ...]] = (
    ("object_id", _TEXT), ("object_version", _MICROS), ("date_added", _MICROS),
    ("object_digest", _OPT_DIGEST), ("producer_org", _OPT_TEXT), ("tlp", _TLP),
    ("rule", _TEXT),
)


def _disclosed_ok(item: Disclosed) -> bool:
    """The common case of a valid entry, checked inline (no per-field calls)."""
    object_id, version, added, digest, producer, tlp, rule = item
    return bool(
        type(object_id) is str and len(object_id) <= _MAX_TEXT and _CLEAN.fullmatch(object_id)
        and type(rule) is str and len(rule) <= _MAX_TEXT and _CLEAN.fullmatch(rule)
        and (producer is None or (type(producer) is str and len(producer) <= _MAX_TEXT
                                  and _CLEAN.fullmatch(producer)))
        and (digest is None or (type(digest) is str and _DIGEST.fullmatch(digest)))
        and type(version) is int and 0 <= version <= _MAX_TIME
        and type(added) is int and 0 <= added <= _MAX_TIME
        and tlp in _TLP.choices
    )


class _DisclosedEntries(_Codec):
    """The entries of a disclosure: a tuple of :class:`Disclosed` (checked in bulk).

    Their JSON is two members of the record, written by :func:`_compact_entries` and read
    by :func:`_expand_entries`, not one.
    """

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, tuple) or not 0 < len(value) <= MAX_ENTRIES:
            raise _refuse(name, f"must be a tuple of 1 to {MAX_ENTRIES} entries")
        for index, item in enumerate(value):
            if type(item) is not Disclosed:
                raise _refuse(name, "must hold Disclosed entries")
            if not _disclosed_ok(item):
                for (field_name, codec), field_value in zip(_DISCLOSED_CODECS, item,
                                                            strict=True):
                    codec.check(f"{name}[{index}].{field_name}", field_value)


#: The members of an entry of ``"objects"`` and of ``"groups"`` in a disclosure's JSON.
DISCLOSURE_ENTRY_MEMBERS: Final = ("object_id", "object_version", "date_added",
                                   "object_digest", "group")
DISCLOSURE_GROUP_MEMBERS: Final = ("producer_org", "tlp", "rule")
_B64_DIGEST = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=", re.ASCII)


def _digest_json(digest: str) -> str:
    """``sha256:<hex>`` as the entry writes it: the 32 bytes in base64 (RFC 4648 section 4)."""
    return binascii.b2a_base64(bytes.fromhex(digest[7:]), newline=False).decode("ascii")


def _compact_entries(entries: tuple[Disclosed, ...]) -> tuple[list[list[Any]], list[list[Any]]]:
    """The ``"objects"`` and ``"groups"`` members of a disclosure.

    A response's entries repeat a few (producer, level, rule) triples, so each triple is
    written once, in ``"groups"`` in order of first use, and an entry names it by index:
    ``[object_id, object_version, date_added, object_digest, group]``, the digest the
    32 bytes of SHA-256 in base64 (44 characters, against 71 for ``sha256:`` and hex).
    """
    groups: dict[tuple[str | None, str, str], int] = {}
    objects: list[list[Any]] = []
    for object_id, version, added, digest, producer, tlp, rule in entries:
        index = groups.setdefault((producer, tlp, rule), len(groups))
        objects.append([object_id, version, added,
                        None if digest is None else _digest_json(digest), index])
    return objects, [list(group) for group in groups]


def _expand_entries(objects: Any, groups: Any) -> tuple[Disclosed, ...]:
    """Read back :func:`_compact_entries` (its canonical form is checked by the caller).

    Raises:
        InvalidInput: Not arrays of the shapes written, a group index out of range or a
            value an entry may not hold.
    """
    if not isinstance(groups, list) or not 0 < len(groups) <= MAX_ENTRIES:
        raise _refuse("groups", f"must be an array of 1 to {MAX_ENTRIES} groups")
    triples: list[tuple[str | None, str, str]] = []
    for index, group in enumerate(groups):
        where = f"groups[{index}]"
        if not isinstance(group, list) or len(group) != len(DISCLOSURE_GROUP_MEMBERS):
            raise _refuse(where, "must be an array of 3 values"
                                 f" ({', '.join(DISCLOSURE_GROUP_MEMBERS)})")
        producer, tlp, rule = group
        _OPT_TEXT.check(f"{where}.producer_org", producer)
        _TLP.check(f"{where}.tlp", tlp)
        _TEXT.check(f"{where}.rule", rule)
        triples.append((producer, tlp, rule))
    if not isinstance(objects, list) or not 0 < len(objects) <= MAX_ENTRIES:
        raise _refuse("objects", f"must be an array of 1 to {MAX_ENTRIES} entries")
    items = []
    for index, item in enumerate(objects):
        where = f"objects[{index}]"
        if not isinstance(item, list) or len(item) != len(DISCLOSURE_ENTRY_MEMBERS):
            raise _refuse(where, "must be an array of 5 values"
                                 f" ({', '.join(DISCLOSURE_ENTRY_MEMBERS)})")
        object_id, version, added, digest, group = item
        _TEXT.check(f"{where}.object_id", object_id)
        _MICROS.check(f"{where}.object_version", version)
        _MICROS.check(f"{where}.date_added", added)
        if digest is not None and not (isinstance(digest, str)
                                       and _B64_DIGEST.fullmatch(digest)):
            raise _refuse(f"{where}.object_digest",
                          "must be null or 32 bytes in base64 (44 characters)")
        if type(group) is not int or not 0 <= group < len(triples):
            raise _refuse(f"{where}.group", f"must be an index into groups (0-{len(triples) - 1})")
        items.append(Disclosed(
            object_id, version, added,
            None if digest is None else "sha256:" + binascii.a2b_base64(digest).hex(),
            *triples[group]))
    return tuple(items)


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish(_RecordBase):
    """A member stored object versions (one envelope, or up to MAX_ENTRIES of it).

    Attributes:
        time: When (microseconds since the epoch).
        channel: How it arrived: ``taxii:add_objects``, ``cli:publish``, ``misp:pull``...
        account: The account that published.
        org: The account's organisation (the producer).
        collection: The collection it was stored in.
        policy_digest: The sharing policy in force when it was accepted.
        request_id: The request that carried it (the TAXII status id).
        objects: The versions stored, in ``date_added`` order.
    """

    KIND: ClassVar[Kind] = Kind.PUBLISH
    time: int = _codec(_TIME)
    channel: str = _codec(_CHANNEL_CODEC)
    account: str = _codec(_TEXT)
    org: str = _codec(_TEXT)
    collection: str = _codec(_TEXT)
    policy_digest: str = _codec(_DIGEST_CODEC)
    request_id: str = _codec(_TEXT)
    objects: tuple[Published, ...] = _codec(_Entries(Published))


@dataclass(frozen=True, slots=True, kw_only=True)
class Disclosure(_RecordBase):
    """Object versions made available to one recipient by one response.

    Attributes:
        time: When the response was committed (microseconds since the epoch).
        channel: The path out: ``taxii:get_objects``, ``taxii:get_object``,
            ``taxii:get_versions``, ``taxii:get_manifest``, ``misp:push``,
            ``peer:export``, ``feed``...
        recipient_account: The account that received it.
        recipient_org: That account's organisation.
        collection: The collection it was read from.
        policy_digest: The digest of the policy that allowed it.
        request_id: The request it answered.
        objects: The disclosures, one per object version, in the order served.
    """

    KIND: ClassVar[Kind] = Kind.DISCLOSURE
    time: int = _codec(_TIME)
    channel: str = _codec(_CHANNEL_CODEC)
    recipient_account: str = _codec(_TEXT)
    recipient_org: str = _codec(_TEXT)
    collection: str = _codec(_TEXT)
    policy_digest: str = _codec(_DIGEST_CODEC)
    request_id: str = _codec(_TEXT)
    objects: tuple[Disclosed, ...] = _codec(_DisclosedEntries())


@dataclass(frozen=True, slots=True, kw_only=True)
class Denial(_RecordBase):
    """A recipient was refused access to a collection.

    Attributes:
        time: When (microseconds since the epoch).
        channel: The path it was asked on.
        recipient_account: The account refused.
        recipient_org: Its organisation.
        collection: The collection asked for.
        rule: The rule id that refused.
        reason: Why, in one sentence.
        policy_digest: The policy in force.
        request_id: The request refused.
    """

    KIND: ClassVar[Kind] = Kind.DENIAL
    time: int = _codec(_TIME)
    channel: str = _codec(_CHANNEL_CODEC)
    recipient_account: str = _codec(_TEXT)
    recipient_org: str = _codec(_TEXT)
    collection: str = _codec(_TEXT)
    rule: str = _codec(_TEXT)
    reason: str = _codec(_REASON)
    policy_digest: str = _codec(_DIGEST_CODEC)
    request_id: str = _codec(_TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Admin(_RecordBase):
    """An administrative change.

    Attributes:
        time: When (microseconds since the epoch).
        actor: Who made it (an account id, or ``cli:<os user>`` for the command line).
        action: What, as ``<thing>.<verb>``: ``account.create``, ``apikey.revoke``,
            ``key.add``, ``collection.create``, ``grant.set``...
        target: The id of the thing changed.
        details: Further facts, a flat object (never a secret: no API key, no password);
            kept as a read-only mapping, so an Admin record is not hashable.
        request_id: The request, when made over HTTP.
    """

    KIND: ClassVar[Kind] = Kind.ADMIN
    time: int = _codec(_TIME)
    actor: str = _codec(_TEXT)
    action: str = _codec(_TEXT)
    target: str = _codec(_TEXT)
    details: Mapping[str, str | int | bool | None] = _codec(_DETAILS)
    request_id: str | None = _codec(_OPT_TEXT)

    def __post_init__(self) -> None:
        _RecordBase.__post_init__(self)
        # A read-only copy: the record cannot change after it was checked.
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyReload(_RecordBase):
    """The sharing policy changed.

    Attributes:
        time: When (microseconds since the epoch).
        actor: Who reloaded it.
        old_digest: The digest of the policy replaced, or None for the first load.
        new_digest: The digest now in force.
        request_id: The request, when made over HTTP.
    """

    KIND: ClassVar[Kind] = Kind.POLICY_RELOAD
    time: int = _codec(_TIME)
    actor: str = _codec(_TEXT)
    old_digest: str | None = _codec(_OPT_DIGEST)
    new_digest: str = _codec(_DIGEST_CODEC)
    request_id: str | None = _codec(_OPT_TEXT)


Record = Publish | Disclosure | Denial | Admin | PolicyReload

_CLASSES: Final[dict[str, type[Record]]] = {
    cls.KIND.value: cls for cls in (Publish, Disclosure, Denial, Admin, PolicyReload)
}
_FIELDS: Final = {kind: _checks(cls) for kind, cls in _CLASSES.items()}
# The members written field by field (a disclosure's entries are two members, see
# _compact_entries).
_JSON_FIELDS: Final = {kind: tuple(f for f in fields if (kind, f[0]) != ("disclosure", "objects"))
                       for kind, fields in _FIELDS.items()}
_EXTRA_MEMBERS: Final = {kind: frozenset({"objects", "groups"} if kind == "disclosure" else ())
                         for kind in _FIELDS}
_ENTRY_FIELDS: Final = {Published: _checks(Published)}
_ENVELOPE: Final = frozenset({"v", "seq", "kind"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A record at its place in the log.

    Attributes:
        seq: Its index (leaf number), from 0.
        record: The record.
    """

    seq: int
    record: Record


def object_digest(body: bytes) -> str:
    """``"sha256:" + hex`` of the bytes of an object as served (for :class:`Disclosure`)."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _to_json_fields(value: Any, fields: tuple[tuple[str, _Codec], ...]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, codec in fields:
        item = getattr(value, name)
        document[name] = None if item is None else codec.dump(item)
    return document


def _to_json(record: Record, seq: int) -> dict[str, Any]:
    kind = record.KIND.value
    document: dict[str, Any] = {"v": RECORD_VERSION, "seq": seq, "kind": kind}
    document.update(_to_json_fields(record, _JSON_FIELDS[kind]))
    if isinstance(record, Disclosure):
        document["objects"], document["groups"] = _compact_entries(record.objects)
    return document


def _member_difference(expected: set[str] | frozenset[str], got: Any) -> str:
    missing = sorted(expected - got)
    unknown = sorted(got - expected)
    return "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unknown {', '.join(unknown)}" if unknown else "",
        )
        if part
    )


def _load_fields(
    document: dict[str, Any], fields: tuple[tuple[str, _Codec], ...], *, prefix: str = ""
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, codec in fields:
        value = document[name]
        if value is None and not codec.nullable:
            raise _refuse(prefix + name, "must not be null")
        values[name] = None if value is None else codec.load(prefix + name, value)
    return values


def record_bytes(record: Record, seq: int) -> bytes:
    """The leaf data of a record: its RFC 8785 canonical JSON with ``v``, ``seq`` and ``kind``.

    Args:
        record: A record (validated when it was built).
        seq: Its index in the log.

    Returns:
        UTF-8 bytes without any newline (control characters are escaped), so one record
        fits one line of an export.

    Raises:
        InvalidInput: ``seq`` is not an integer in ``[0, 2**53 - 1]``.
    """
    if type(seq) is not int or not 0 <= seq <= _SAFE_INT:
        raise InvalidInput(f"audit record seq must be an integer in [0, 2**53-1], not {seq!r}")
    return json.dumps(
        _to_json(record, seq), ensure_ascii=False, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A record rendered ahead of its place in the log: the leaf data is
    ``head + str(seq) + tail``, so the ledger's writer only adds the number.

    Attributes:
        kind: The record's kind.
        time: Its time (microseconds).
        head: The canonical bytes up to the value of ``"seq"``.
        tail: The canonical bytes after it.
        recipient_org: Index column (see :func:`index_columns`).
        producer_org: Index column.
        object_id: Index column.
    """

    kind: Kind
    time: int
    head: bytes
    tail: bytes
    recipient_org: str | None
    producer_org: str | None
    object_id: str | None

    def data(self, seq: int) -> bytes:
        """The leaf data at ``seq``."""
        if type(seq) is not int or not 0 <= seq <= _SAFE_INT:
            raise InvalidInput(f"audit record seq must be an integer in [0, 2**53-1], not {seq!r}")
        return self.head + str(seq).encode("ascii") + self.tail


def prepare(record: Record) -> Prepared:
    """A typed record, rendered (:func:`record_bytes` at any seq is ``prepare(r).data(seq)``)."""
    data = record_bytes(record, 0)
    head, separator, tail = data.partition(b'"seq":0,')
    # "seq" is a top-level member, never the last ("time" and "v" sort after it), and
    # cannot occur unescaped inside a string value.
    assert separator, "a canonical record always has a seq member"
    recipient, producer, object_id = index_columns(record)
    return Prepared(record.KIND, record.time, head + b'"seq":', b"," + tail, recipient,
                    producer, object_id)


# A character JSON escapes in ASCII text (RFC 8259 section 7), or DEL (no field holds it).
_ESCAPED = re.compile(r'[\x00-\x1f\x7f"\\]')


def _json_text(value: str) -> str:
    if value.isascii() and _ESCAPED.search(value) is None:
        return f'"{value}"'  # what the encoder writes, without the encoder's cost
    return json.dumps(value, ensure_ascii=False)


def _check_disclosure_header(time: int, channel: str, recipient_account: str,
                             recipient_org: str, collection: str, policy_digest: str,
                             request_id: str) -> tuple[bytes, str]:
    """The record-level fields of a disclosure, checked as :class:`Disclosure` does; the
    requester's fields rendered (:func:`_context_json`)."""
    _TIME.check("time", time)
    context = _context_json(channel, recipient_account, recipient_org, collection,
                            policy_digest)
    _TEXT.check("request_id", request_id)
    return context


def _render_context(channel: str, recipient_account: str, recipient_org: str,
                    collection: str, policy_digest: str) -> tuple[bytes, str]:
    """The fields a response's records share with the requester's other responses,
    checked, as canonical JSON: the bytes up to the groups, and the text from the end
    of the groups up to the value of ``"request_id"``."""
    _CHANNEL_CODEC.check("channel", channel)
    for name, value in (("recipient_account", recipient_account),
                        ("recipient_org", recipient_org), ("collection", collection)):
        _TEXT.check(name, value)
    _DIGEST_CODEC.check("policy_digest", policy_digest)
    head = (f'{{"channel":{_json_text(channel)},"collection":{_json_text(collection)},'
            f'"groups":[').encode()
    middle = (f'],"policy_digest":{_json_text(policy_digest)},'
              f'"recipient_account":{_json_text(recipient_account)},'
              f'"recipient_org":{_json_text(recipient_org)},"request_id":')
    return head, middle


# One node serves a few hundred (account, collection) pairs under one policy at a time:
# checking and rendering them once per pair, not once per response, is most of what a
# small response costs the sequencer (tests/perf/README.md, sixth pass).
_cached_context = functools.lru_cache(maxsize=1024)(_render_context)


def _context_json(channel: str, recipient_account: str, recipient_org: str,
                  collection: str, policy_digest: str) -> tuple[bytes, str]:
    """:func:`_render_context`, cached for plain strings (anything else is checked, and
    refused, every time)."""
    if (type(channel) is str and type(recipient_account) is str
            and type(recipient_org) is str and type(collection) is str
            and type(policy_digest) is str):
        return _cached_context(channel, recipient_account, recipient_org, collection,
                               policy_digest)
    return _render_context(channel, recipient_account, recipient_org, collection,
                           policy_digest)


def _render_group(producer_org: str | None, tlp: str, rule: str) -> str:
    """A (producer, level, rule) group of disclosure entries, checked, as JSON."""
    _OPT_TEXT.check("producer_org", producer_org)
    _TLP.check("tlp", tlp)
    _TEXT.check("rule", rule)
    return (f"[{'null' if producer_org is None else _json_text(producer_org)},"
            f"{_json_text(tlp)},{_json_text(rule)}]")


_cached_group = functools.lru_cache(maxsize=1024)(_render_group)


def _group_json(producer_org: str | None, tlp: str, rule: str) -> str:
    """:func:`_render_group`, cached for plain strings."""
    if (producer_org is None or type(producer_org) is str) and type(tlp) is str \
            and type(rule) is str:
        return _cached_group(producer_org, tlp, rule)
    return _render_group(producer_org, tlp, rule)


def _check_ids(object_ids: Sequence[str], joined: str | None,
               escaped: re.Pattern[str]) -> bool:
    """A column of object ids, checked in bulk (each one only when the bulk check fails,
    to say which is wrong); whether JSON writes every id as it is.

    Args:
        object_ids: The ids.
        joined: The ids joined with a separator ``escaped`` does not match, or None when
            not all of them are strings.
        escaped: What JSON escapes (ids read from storage never hold it).
    """
    plain = (joined is not None and joined.isascii() and escaped.search(joined) is None
             and min(map(len, object_ids)) >= 1 and max(map(len, object_ids)) <= _MAX_TEXT)
    if not plain:
        for object_id in object_ids:
            _TEXT.check("object_id", object_id)
    return plain


def _check_micros_column(name: str, column: Sequence[int]) -> None:
    """A non-empty column of microseconds, in bulk (each value checked only on failure,
    to say which one is wrong)."""
    if not (set(map(type, column)) == {int} and min(column) >= 0
            and max(column) <= _MAX_TIME):
        for value in column:
            _MICROS.check(name, value)


def _check_digests(digests: Sequence[bytes]) -> None:
    """A column of SHA-256 digests: 32 bytes each."""
    if not (set(map(type, digests)) == {bytes} and set(map(len, digests)) == {32}):
        raise _refuse("object_digest", "must be None or the 32 bytes of a SHA-256")


class DisclosureBuilder:
    """The disclosure records of one response, rendered straight to canonical bytes.

    The fast path of :class:`Disclosure` for the read path, where the ledger's cost per
    object is the budget (issue 5: at most 15 % of a full read). It writes exactly the
    bytes :func:`record_bytes` writes for the equivalent :class:`Disclosure` (a property
    test holds the two equal) and checks every value as the record's codecs do, but
    checks and encodes the requester's fields and each (producer, level, rule) group
    once per process (cached), and ids that need no JSON escape without the JSON encoder.

    Args:
        time, channel, recipient_account, recipient_org, collection, policy_digest,
        request_id: The record-level fields of :class:`Disclosure`.

    Raises:
        InvalidInput: A field or an entry value a disclosure may not hold.
    """

    def __init__(self, *, time: int, channel: str, recipient_account: str,
                 recipient_org: str, collection: str, policy_digest: str,
                 request_id: str) -> None:
        self._head, middle = _check_disclosure_header(
            time, channel, recipient_account, recipient_org, collection, policy_digest,
            request_id)
        self.time = time
        self.recipient_org = recipient_org
        self._middle = f'{middle}{_json_text(request_id)},"seq":'.encode()
        # A timestamp holds nothing JSON escapes.
        self._tail = f',"time":"{from_micros(time)}","v":{RECORD_VERSION}}}'.encode()
        # Per group (an index of group()): its JSON and its producer.
        self._group_json: list[str] = []
        self._group_producer: list[str | None] = []
        self._group_index: dict[tuple[str | None, str, str], int] = {}
        self._chunks: list[_Chunk] = []
        self._chunk = _Chunk()

    def group(self, producer_org: str | None, tlp: str, rule: str) -> int:
        """The handle of a (producer, level, rule) group, checked once, for :meth:`add_many`.

        Raises:
            InvalidInput: A value a disclosure entry may not hold.
        """
        key = (producer_org, tlp, rule)
        found = self._group_index.get(key)
        if found is not None:
            return found
        handle = len(self._group_json)
        self._group_json.append(_group_json(producer_org, tlp, rule))
        self._group_producer.append(producer_org)
        self._group_index[key] = handle
        return handle

    def add_many(self, object_ids: Sequence[str], object_versions: Sequence[int],
                 dates_added: Sequence[int], digests: Sequence[bytes] | None,
                 groups: Sequence[int]) -> None:
        """Disclosures, in the order served: the columns of their entries.

        Every value is checked column by column, in bulk (one regular-expression match
        over all the ids for what JSON escapes, set-wise type checks), because this is the
        per-object cost of a read.

        Args:
            object_ids, object_versions, dates_added: As in :class:`Disclosed`.
            digests: The SHA-256 (32 bytes each) of the exact bytes served, or None when
                only the versions' metadata was served.
            groups: Each entry's producer, level and rule, from :meth:`group`.

        Raises:
            InvalidInput: A value a disclosure may not hold, or columns of different
                lengths.
        """
        count = len(object_ids)
        if not (len(object_versions) == len(dates_added) == len(groups) == count
                and (digests is None or len(digests) == count)):
            raise InvalidInput("disclosure columns must all have one value per entry")
        if not count:
            return
        plain = _check_ids(object_ids, "".join(object_ids)
                           if set(map(type, object_ids)) == {str} else None, _ESCAPED)
        _check_micros_column("object_version", object_versions)
        _check_micros_column("date_added", dates_added)
        if not (set(map(type, groups)) == {int} and min(groups) >= 0
                and max(groups) < len(self._group_json)):
            raise _refuse("group", "must be a handle from DisclosureBuilder.group")
        if digests is not None:
            _check_digests(digests)
        self._extend(object_ids, plain, object_versions, dates_added,
                     None if digests is None else b"".join(digests), groups)

    def _extend(self, object_ids: Sequence[str], plain: bool, object_versions: Sequence[int],
                dates_added: Sequence[int], digests: bytes | None,
                groups: Sequence[int]) -> None:
        """Checked columns into the records: ``plain`` when no id needs a JSON escape,
        ``digests`` the 32-byte digests joined (or None)."""
        count = len(object_ids)
        # Base64 of every digest in a few calls: each encodes to 44 characters and a
        # newline, which splits them.
        shown_digests: Sequence[str] = [] if digests is None else b"".join(
            map(_b2a_base64, _EACH_DIGEST.findall(digests))).decode("ascii").split("\n")
        shown_ids = object_ids if plain else [_json_text(i) for i in object_ids]
        one_group = len(self._group_json) == 1
        done = 0
        while done < count:
            chunk = self._chunk
            if chunk.count == MAX_ENTRIES:
                self._chunks.append(chunk)
                chunk = self._chunk = _Chunk()
            end = min(count, done + MAX_ENTRIES - chunk.count)
            if done == 0 and end == count:  # the usual case: the whole column at once
                ids, shown, versions, dates, handles, hashes = (
                    object_ids, shown_ids, object_versions, dates_added, groups,
                    shown_digests)
            else:
                ids, shown, versions, dates, handles, hashes = (
                    object_ids[done:end], shown_ids[done:end], object_versions[done:end],
                    dates_added[done:end], groups[done:end], shown_digests[done:end])
            if not chunk.count:
                chunk.first_id = ids[0]
            if not chunk.mixed and list(ids).count(chunk.first_id) != end - done:
                chunk.mixed = True
            local = chunk.groups
            in_record: Iterable[int]
            if one_group:
                in_record = repeat(local.setdefault(handles[0], len(local)))
            else:
                in_record = [local.setdefault(g, len(local)) for g in handles]
            # Not strict: repeat() is endless, and the digests' split ends with "".
            values = (zip(shown, versions, dates, hashes, in_record, strict=False)
                      if digests is not None else
                      zip(shown, versions, dates, in_record, strict=False))
            chunk.parts.append(_entries(end - done, plain, digests is not None)
                               % tuple(chain.from_iterable(values)))
            chunk.count += end - done
            done = end

    def __len__(self) -> int:
        return sum(c.count for c in self._chunks) + self._chunk.count

    def records(self) -> list[Prepared]:
        """The records, :data:`MAX_ENTRIES` entries each, in the order added."""
        out = []
        chunks = [*self._chunks, self._chunk] if self._chunk.count else self._chunks
        for chunk in chunks:
            handles = list(chunk.groups)  # in order of first use, as _compact_entries
            producers = {self._group_producer[h] for h in handles}
            body = (",".join(self._group_json[h] for h in handles)
                    + '],"kind":"disclosure","objects":['
                    + ",".join(chunk.parts)).encode("utf-8")
            out.append(Prepared(
                Kind.DISCLOSURE, self.time, self._head + body + self._middle, self._tail,
                self.recipient_org, next(iter(producers)) if len(producers) == 1 else None,
                None if chunk.mixed else chunk.first_id,
            ))
        return out


@functools.lru_cache(maxsize=4 * MAX_ENTRIES)
def _entries(count: int, plain: bool, digests: bool) -> str:
    """The format of ``count`` entries: id (already JSON text unless ``plain``), version,
    date added, the digest's base64 (or null without ``digests``) and group."""
    entry = ("[%s,%d,%d,", '["%s",%d,%d,')[plain] + ('"%s",%d]' if digests else "null,%d]")
    return ",".join([entry] * count)


#: Each 32-byte digest of a column of them.
_EACH_DIGEST = re.compile(rb".{32}", re.DOTALL)


class _Chunk:
    """The entries of one record being built (:class:`DisclosureBuilder`)."""

    __slots__ = ("count", "first_id", "groups", "mixed", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []  # runs of rendered entries, joined with commas
        self.count = 0
        self.groups: dict[int, int] = {}  # builder handle -> index in this record
        self.first_id = ""
        self.mixed = False  # entries with different ids (no object_id index column)


# What DisclosureBatch.encode writes: a version byte, the time, the six record-level texts,
# the groups, the entry count and whether digests follow; then the columns.
_BATCH_VERSION: Final = 1
_BATCH_HEAD = struct.Struct("<BqH")  # version, time, number of groups
_BATCH_COUNTS = struct.Struct("<IB")  # entries, digests present
_BATCH_TEXT = struct.Struct("<H")
_BATCH_NONE: Final = 0xFFFF
_MAX_GROUPS: Final = 0xFFFF
# Text an id may hold in the fast path: ASCII without control characters (the newline
# that joins the ids is counted separately).
_NOT_PLAIN_ID = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# What JSON escapes in ids joined with newlines (as _ESCAPED, but for the newline).
_ESCAPED_JOINED = re.compile(r'[\x00-\x09\x0b-\x1f\x7f"\\]')


def _packed(name: str, column: Sequence[int]) -> array[int]:
    """A column of microseconds as signed 64-bit integers, little-endian, checked."""
    _check_micros_column(name, column)
    packed = array("q", column)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed


class DisclosureBatch:
    """The disclosures of one response as checked columns: what the read path spools.

    Rendering a response's records (:class:`DisclosureBuilder`) costs about a
    microsecond per object, on the request's own thread. The batch carries the same
    content in a binary form that costs a third of that to build and write (the ids
    joined, the numbers as 64-bit integers, the digests as raw bytes), and is checked as
    strictly as the records are, so what the sequencer reads back always renders
    (:meth:`records`). Rendering is deterministic: the records, and so the log, are the
    same whichever process renders them.

    Args:
        time, channel, recipient_account, recipient_org, collection, policy_digest,
        request_id: The record-level fields of :class:`Disclosure`.
        groups: The (producer, level, rule) triples the entries name, by index.
        object_ids, object_versions, dates_added: As in :class:`Disclosed`, in the order
            served.
        digests: The SHA-256 (32 bytes each) of the bytes served, or None when only the
            versions' metadata was served.
        group_of: Each entry's index in ``groups``.

    Raises:
        InvalidInput: A value a disclosure may not hold, columns of different lengths,
            or a group index out of range.
    """

    __slots__ = ("_dates", "_digests", "_group_of", "_ids", "_versions", "channel",
                 "collection", "count", "groups", "policy_digest", "recipient_account",
                 "recipient_org", "request_id", "time")

    def __init__(self, *, time: int, channel: str, recipient_account: str,
                 recipient_org: str, collection: str, policy_digest: str, request_id: str,
                 groups: Sequence[tuple[str | None, str, str]], object_ids: Sequence[str],
                 object_versions: Sequence[int], dates_added: Sequence[int],
                 digests: Sequence[bytes] | None, group_of: Sequence[int]) -> None:
        _check_disclosure_header(time, channel, recipient_account, recipient_org,
                                 collection, policy_digest, request_id)
        if len(groups) > _MAX_GROUPS:
            raise _refuse("groups", f"must number at most {_MAX_GROUPS} in one response")
        for group in groups:
            _group_json(*group)
        count = len(object_ids)
        if not (len(object_versions) == len(dates_added) == len(group_of) == count
                and (digests is None or len(digests) == count)):
            raise InvalidInput("disclosure columns must all have one value per entry")
        self.time, self.channel, self.collection = time, channel, collection
        self.recipient_account, self.recipient_org = recipient_account, recipient_org
        self.policy_digest, self.request_id = policy_digest, request_id
        self.groups = tuple(groups)
        self.count = count
        if not count:
            self._ids, self._digests = "", None if digests is None else b""
            self._versions, self._dates, self._group_of = array("q"), array("q"), array("H")
            return
        plain = set(map(type, object_ids)) == {str}
        joined = "\n".join(object_ids) if plain else ""
        if not (plain and joined.isascii() and _NOT_PLAIN_ID.search(joined) is None
                and joined.count("\n") == count - 1 and min(map(len, object_ids)) >= 1
                and max(map(len, object_ids)) <= _MAX_TEXT):
            for object_id in object_ids:  # says which id is wrong (no id holds a newline)
                _TEXT.check("object_id", object_id)
            joined = "\n".join(object_ids)
        self._ids = joined
        self._versions = _packed("object_version", object_versions)
        self._dates = _packed("date_added", dates_added)
        if digests is None:
            self._digests = None
        else:
            _check_digests(digests)
            self._digests = b"".join(digests)
        if not (set(map(type, group_of)) == {int} and min(group_of) >= 0
                and max(group_of) < len(self.groups)):
            raise _refuse("group", "must be an index into the batch's groups")
        self._group_of = array("H", group_of)
        if sys.byteorder == "big":
            self._group_of.byteswap()

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"DisclosureBatch(recipient_org={self.recipient_org!r}, "
                f"channel={self.channel!r}, entries={self.count})")

    def encode(self) -> bytes:
        """The batch as bytes, read back by :meth:`decode` (little-endian throughout)."""
        texts: list[str | None] = [self.channel, self.recipient_account,
                                   self.recipient_org, self.collection, self.policy_digest,
                                   self.request_id]
        for producer_org, tlp, rule in self.groups:
            texts += [producer_org, tlp, rule]
        parts = [_BATCH_HEAD.pack(_BATCH_VERSION, self.time, len(self.groups))]
        for text in texts:
            if text is None:
                parts.append(_BATCH_TEXT.pack(_BATCH_NONE))
            else:
                data = text.encode("utf-8")  # checked: at most 512 characters, < 0xFFFF
                parts += [_BATCH_TEXT.pack(len(data)), data]
        ids = self._ids.encode("utf-8")
        parts += [_BATCH_COUNTS.pack(self.count, self._digests is not None),
                  struct.pack("<I", len(ids)), ids, self._versions.tobytes(),
                  self._dates.tobytes(), self._digests or b"", self._group_of.tobytes()]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> DisclosureBatch:
        """A batch from :meth:`encode`'s bytes. Its structure is checked here; its values
        when :meth:`records` renders them, with the checks the constructor makes.

        Raises:
            InvalidInput: The bytes are not a whole batch of this version, or a field a
                disclosure must hold is missing.
        """
        try:
            version, time, group_count = _BATCH_HEAD.unpack_from(data, 0)
            if version != _BATCH_VERSION:
                raise InvalidInput(f"disclosure batch version {version} is not known")
            at = _BATCH_HEAD.size
            texts: list[str | None] = []
            for _ in range(6 + 3 * group_count):
                (size,) = _BATCH_TEXT.unpack_from(data, at)
                at += _BATCH_TEXT.size
                if size == _BATCH_NONE:
                    texts.append(None)
                    continue
                if at + size > len(data):
                    raise InvalidInput("disclosure batch is cut short")
                texts.append(data[at:at + size].decode("utf-8"))
                at += size
            count, has_digests = _BATCH_COUNTS.unpack_from(data, at)
            at += _BATCH_COUNTS.size
            (id_bytes,) = struct.unpack_from("<I", data, at)
            at += 4
            ids = data[at:at + id_bytes].decode("utf-8")
            at += id_bytes

            def column(width: int) -> bytes:
                nonlocal at
                chunk = data[at:at + width * count]
                at += width * count
                if len(chunk) != width * count:
                    raise InvalidInput("disclosure batch is cut short")
                return chunk

            versions, dates = array("q", column(8)), array("q", column(8))
            raw_digests = column(32) if has_digests else b""
            group_of = array("H", column(2))
            if at != len(data) or has_digests not in (0, 1):
                raise InvalidInput("disclosure batch has bytes after its columns")
            if count and max(group_of) >= group_count:
                raise InvalidInput("disclosure batch names a group it does not hold")
        except (struct.error, UnicodeDecodeError) as e:
            raise InvalidInput(f"disclosure batch is malformed ({e})") from None
        header, group_texts = texts[:6], texts[6:]
        if None in header or None in group_texts[1::3] or None in group_texts[2::3]:
            raise InvalidInput("disclosure batch lacks a field a disclosure must hold")
        # The values are checked when the records are rendered (records(): the same
        # checks as at construction), not twice in the sequencer.
        batch = cls.__new__(cls)
        (batch.channel, batch.recipient_account, batch.recipient_org, batch.collection,
         batch.policy_digest, batch.request_id) = header  # type: ignore[assignment]
        batch.time, batch.count = time, count
        levels_and_rules: list[Any] = group_texts[1:]  # no None among them (checked)
        batch.groups = tuple(zip(group_texts[0::3], levels_and_rules[0::3],
                                 levels_and_rules[1::3], strict=True))
        batch._ids = ids
        batch._versions, batch._dates, batch._group_of = versions, dates, group_of
        batch._digests = raw_digests if has_digests else None
        return batch  # its arrays hold little-endian values, as a built batch's do

    def records(self) -> list[Prepared]:
        """The records of the batch, rendered (:data:`MAX_ENTRIES` entries each).

        Raises:
            InvalidInput: A value a disclosure may not hold (the checks of the
                constructor, for a batch read back by :meth:`decode`).
        """
        builder = DisclosureBuilder(
            time=self.time, channel=self.channel, recipient_account=self.recipient_account,
            recipient_org=self.recipient_org, collection=self.collection,
            policy_digest=self.policy_digest, request_id=self.request_id)
        if not self.count:
            return []
        handles = [builder.group(*group) for group in self.groups]
        joined = self._ids
        ids = joined.split("\n")
        if len(ids) != self.count:
            raise InvalidInput("disclosure columns must all have one value per entry")
        plain = _check_ids(ids, joined, _ESCAPED_JOINED)
        versions, dates, group_of = (self._versions, self._dates, self._group_of)
        if sys.byteorder == "big":
            versions, dates, group_of = (array(a.typecode, a) for a in (versions, dates,
                                                                        group_of))
            for a in (versions, dates, group_of):
                a.byteswap()
        _check_micros_column("object_version", versions)
        _check_micros_column("date_added", dates)
        builder._extend(  # the columns are checked above, as add_many checks them
            ids, plain, versions, dates, self._digests,
            group_of if handles == list(range(len(handles))) else
            [handles[g] for g in group_of])
        return builder.records()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedJSON("audit record has a duplicate member name")
    return result


def _no_constant(name: str) -> Any:
    raise MalformedJSON(f"audit record holds {name}, which is not JSON")


def parse_record(data: bytes) -> Entry:
    """Read a record back from its leaf data, accepting nothing but a canonical v1 record.

    Args:
        data: The bytes (from the ledger or an export line without its newline).

    Returns:
        The entry: its ``seq`` and the typed record.

    Raises:
        MalformedJSON: The bytes are not UTF-8 or not strict JSON (duplicate names,
            NaN or Infinity).
        InvalidInput: Too large; not an object; ``v`` is not 1; ``seq`` or ``kind`` is
            missing or wrong; a member is missing, unknown or holds a value the field may
            not hold; or the bytes are not in canonical form.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidInput(f"audit record is larger than {MAX_RECORD_BYTES} bytes")
    try:
        document = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except UnicodeDecodeError:
        raise MalformedJSON("audit record is not UTF-8") from None
    except (json.JSONDecodeError, RecursionError):
        raise MalformedJSON("audit record is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidInput("audit record is not a JSON object")
    if document.get("v") != RECORD_VERSION or type(document.get("v")) is not int:
        raise InvalidInput(f"audit record is not version {RECORD_VERSION} (member 'v')")
    seq = document.get("seq")
    if type(seq) is not int or not 0 <= seq <= _SAFE_INT:
        raise InvalidInput("audit record 'seq' must be a non-negative integer")
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in _CLASSES:
        raise InvalidInput(f"audit record kind {kind!r} is unknown")
    fields = _JSON_FIELDS[kind]
    expected = _ENVELOPE | _EXTRA_MEMBERS[kind] | {name for name, _ in fields}
    if document.keys() != expected:
        detail = _member_difference(expected, document.keys())
        raise InvalidInput(f"{kind} audit record has the wrong members ({detail})")
    values = _load_fields(document, fields)
    if kind == "disclosure":
        values["objects"] = _expand_entries(document["objects"], document["groups"])
    record = _CLASSES[kind](**values)
    if record_bytes(record, seq) != data:
        raise InvalidInput(f"audit record {seq} is not in RFC 8785 canonical form")
    return Entry(seq, record)


def _single(values: set[str | None]) -> str | None:
    return next(iter(values)) if len(values) == 1 else None


def index_columns(record: Record) -> tuple[str | None, str | None, str | None]:
    """The ledger's query columns of a record: recipient org, producer org, object id.

    Args:
        record: Any record.

    Returns:
        ``(recipient_org, producer_org, object_id)``, each None when the kind has none
        or, for the entries of a batch, when they do not all share one value (queries
        then match the record's bytes, see :mod:`exchange.audit.query`).
    """
    if isinstance(record, Disclosure):
        return (
            record.recipient_org,
            _single({e.producer_org for e in record.objects}),
            _single({e.object_id for e in record.objects}),
        )
    if isinstance(record, Publish):
        return None, record.org, _single({e.object_id for e in record.objects})
    if isinstance(record, Denial):
        return record.recipient_org, None, None
    if isinstance(record, Admin) and "--" in record.target:  # a change to a STIX object
        return None, None, record.target
    return None, None, None
