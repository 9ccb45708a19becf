"""Property kinds for the STIX 2.1 tables of :mod:`exchange.model.stixtypes`.

A kind checks one property value the way ``stix2.parse(obj, allow_custom=False,
version="2.1")`` (stix2 3.0.2) would, minus its silent conversions: a value stix2 would
turn into another (``5`` into ``"5"``, ``"true"`` into ``true``, a string into a one-element
list) or drop (``null``, ``[]``) is refused, because the exchange stores the bytes it
received. Here too are the facts the kinds rest on: the types stix2 registers for STIX 2.1,
the identifier and timestamp formats, and stix2's hash-value sanity checks (hash and hex
values may end in one newline, as stix2's ``re.match`` with ``$`` allows).
``tests/unit/model/test_stix.py`` checks these facts against stix2 itself.

Pure code, no I/O.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any, Final

# --- what stix2 3.0.2 has registered for STIX 2.1 (checked by a test) ----------------

STIX_OBJECT_TYPES: Final = frozenset(
    {
        "attack-pattern", "bundle", "campaign", "course-of-action", "extension-definition",
        "grouping", "identity", "incident", "indicator", "infrastructure", "intrusion-set",
        "language-content", "location", "malware", "malware-analysis", "marking-definition",
        "note", "observed-data", "opinion", "relationship", "report", "sighting",
        "threat-actor", "tool", "vulnerability",
    }
)  # fmt: skip
SCO_TYPES: Final = frozenset(
    {
        "artifact", "autonomous-system", "directory", "domain-name", "email-addr",
        "email-message", "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex",
        "network-traffic", "process", "software", "url", "user-account",
        "windows-registry-key", "x509-certificate",
    }
)  # fmt: skip
#: Predefined SCO extensions (keys of ``extensions`` that are not extension-definition ids).
SCO_EXTENSIONS: Final = frozenset(
    {
        "archive-ext", "http-request-ext", "icmp-ext", "ntfs-ext", "pdf-ext",
        "raster-image-ext", "socket-ext", "tcp-ext", "unix-account-ext",
        "windows-pebinary-ext", "windows-process-ext", "windows-service-ext",
    }
)  # fmt: skip
SRO_TYPES: Final = frozenset({"relationship", "sighting"})
SDO_TYPES: Final = STIX_OBJECT_TYPES - SRO_TYPES - {
    "marking-definition", "bundle", "language-content"
}  # fmt: skip
ANY_OBJECT: Final = SDO_TYPES | SCO_TYPES | SRO_TYPES
RELATIONSHIP_ENDPOINTS: Final = (STIX_OBJECT_TYPES | SCO_TYPES) - {
    "bundle", "language-content", "marking-definition", "relationship", "sighting"
}  # fmt: skip

#: Hash algorithm names of hash-algorithm-ov and stix2's sanity check for each value.
HASH_VALUE_CHECKS: Final = {
    "MD5": re.compile(r"^[a-f0-9]{32}$", re.IGNORECASE),
    "SHA-1": re.compile(r"^[a-f0-9]{40}$", re.IGNORECASE),
    "SHA-256": re.compile(r"^[a-f0-9]{64}$", re.IGNORECASE),
    "SHA-512": re.compile(r"^[a-f0-9]{128}$", re.IGNORECASE),
    "SHA3-256": re.compile(r"^[a-f0-9]{64}$", re.IGNORECASE),
    "SHA3-512": re.compile(r"^[a-f0-9]{128}$", re.IGNORECASE),
    "SSDEEP": re.compile(r"^[a-z0-9/+:.]{1,128}$", re.IGNORECASE),
    "TLSH": re.compile(r"^[a-f0-9]{70}$", re.IGNORECASE),
}
_HEX_VALUE = re.compile(r"^([a-fA-F0-9]{2})+$")

#: ``<type>--<RFC 4122 UUID>`` in canonical lower case; group 1 is the type.
#: RFC 4122 section 3 writes UUIDs in lower-case hex and reads them in either case, so
#: ``indicator--ABC...`` and ``indicator--abc...`` would name one object; the exchange
#: accepts only the lower-case spelling (issue 18 item 3), so one object has one id.
IDENTIFIER: Final = re.compile(
    r"([a-z][a-z0-9]*(?:-[a-z0-9]+)*)--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}"
    r"-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
_IDENTIFIER_ANY_CASE: Final = re.compile(IDENTIFIER.pattern, re.IGNORECASE)


def non_canonical_case(value: object) -> bool:
    """Whether ``value`` is a STIX identifier spelt with upper-case letters.

    Such an id is refused everywhere (ingest, references, TAXII reads) rather than
    folded, so that no two spellings of one id can coexist.
    """
    return (isinstance(value, str) and IDENTIFIER.fullmatch(value) is None
            and _IDENTIFIER_ANY_CASE.fullmatch(value) is not None)


def case_reason(value: str) -> str:
    """Why an upper-case spelling of an identifier is refused, with the spelling to use:
    ``is <value> in upper case: STIX identifiers are lower-case (use <value>)``, to
    follow the name of what holds it."""
    return (f"is {value[:120]} in upper case: STIX identifiers are lower-case"
            f" (use {value[:120].lower()})")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?Z"
)
TIMESTAMP_HINT: Final = "a UTC timestamp such as 2024-01-31T12:00:00.000Z"


@functools.lru_cache(maxsize=8192)
def parse_timestamp(text: str) -> datetime | None:
    """A STIX timestamp (``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``) as a naive UTC datetime.

    At most six fractional digits (what stix2 can read); None when malformed or not a
    real instant (month 13, February 30, second 60).
    """
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction = m.groups()
    try:
        return datetime(  # naive UTC, compared only with its own kind
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((fraction or "").ljust(6, "0")),
        )  # fmt: skip
    except ValueError:
        return None


# --- property kinds ------------------------------------------------------------------


class Kind:
    """How one property's value is checked; :meth:`check` returns a reason or None."""

    __slots__ = ()

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is refused, or None when it is acceptable."""
        raise NotImplementedError


class Skip(Kind):
    """Checked elsewhere (``type``, ``spec_version``, ``id``, a marking's ``definition``)."""

    __slots__ = ()

    def check(self, value: Any) -> str | None:
        return None


class Str(Kind):
    __slots__ = ()

    def check(self, value: Any) -> str | None:
        return None if isinstance(value, str) else "must be a string"


class NonEmptyStr(Kind):
    """A string stix2 keeps only when non-empty (``Relationship(relationship_type=...)``)."""

    __slots__ = ()

    def check(self, value: Any) -> str | None:
        return None if isinstance(value, str) and value else "must be a non-empty string"


class Timestamp(Kind):
    __slots__ = ()

    def check(self, value: Any) -> str | None:
        if isinstance(value, str) and parse_timestamp(value) is not None:
            return None
        return f"must be {TIMESTAMP_HINT}"


class Bool(Kind):
    __slots__ = ()

    def check(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"


class Int(Kind):
    __slots__ = ("high", "low")

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low = low
        self.high = high

    def check(self, value: Any) -> str | None:
        if type(value) is not int:
            return "must be an integer"
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            return f"must be between {self.low} and {self.high}"
        return None


class Float(Kind):
    __slots__ = ("high", "low")

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        self.low = low
        self.high = high

    def check(self, value: Any) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "must be a number"
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            return f"must be between {self.low} and {self.high}"
        return None


class StrList(Kind):
    __slots__ = ()

    def check(self, value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return "must be a non-empty list of strings"
        for item in value:
            if not isinstance(item, str):
                return "must be a non-empty list of strings"
        return None


class Enum(Kind):
    __slots__ = ("values",)

    def __init__(self, values: frozenset[str]) -> None:
        self.values = values

    def check(self, value: Any) -> str | None:
        if isinstance(value, str) and value in self.values:
            return None
        return "must be one of " + ", ".join(sorted(self.values))


def _type_names(types: frozenset[str]) -> str:
    if types == ANY_OBJECT:
        return "an SDO, SCO or SRO"
    if types == RELATIONSHIP_ENDPOINTS:
        return "an SDO or SCO"
    if len(types) <= 4:
        return " or ".join(sorted(types))
    return "one of " + ", ".join(sorted(types))


def check_reference(value: Any, types: frozenset[str]) -> str | None:
    """Why ``value`` is not an identifier of one of ``types`` (None when it is)."""
    m = IDENTIFIER.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        if non_canonical_case(value):
            return case_reason(value)
        return "must be an identifier <type>--<RFC 4122 UUID>"
    if m.group(1) not in types:
        return f"must refer to {_type_names(types)}, not {m.group(1)}"
    return None


class Ref(Kind):
    __slots__ = ("types",)

    def __init__(self, types: frozenset[str]) -> None:
        self.types = types

    def check(self, value: Any) -> str | None:
        return check_reference(value, self.types)


class RefList(Kind):
    __slots__ = ("types",)

    def __init__(self, types: frozenset[str]) -> None:
        self.types = types

    def check(self, value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return "must be a non-empty list of identifiers"
        for item in value:
            reason = check_reference(item, self.types)
            if reason is not None:
                return reason.replace("must", "must each", 1)
        return None


def _closed_dict(value: Any, allowed: frozenset[str], what: str) -> str | None:
    if not isinstance(value, dict):
        return f"must be a list of {what} objects"
    unknown = value.keys() - allowed
    if unknown:
        return f"has a {what} with unknown propert{'ies' if len(unknown) > 1 else 'y'} " + (
            ", ".join(repr(k[:40]) for k in sorted(unknown))
        )
    return None


class KillChainPhases(Kind):
    __slots__ = ()
    _keys: Final = frozenset({"kill_chain_name", "phase_name"})

    def check(self, value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return "must be a non-empty list of kill-chain-phase objects"
        for item in value:
            reason = _closed_dict(item, self._keys, "kill-chain-phase")
            if reason is not None:
                return reason
            name, phase = item.get("kill_chain_name"), item.get("phase_name")
            if not isinstance(name, str) or not isinstance(phase, str):
                return "has a kill-chain-phase without string kill_chain_name and phase_name"
        return None


def check_hashes(value: Any) -> str | None:
    """Why ``value`` is not a hashes dictionary stix2 keeps unchanged (None when it is)."""
    if not isinstance(value, dict) or not value:
        return "must be a non-empty object of hash values"
    for name, digest in value.items():
        check = HASH_VALUE_CHECKS.get(name)
        if check is None:
            return f"uses hash algorithm {name[:40]!r}; use one of " + ", ".join(HASH_VALUE_CHECKS)
        if not isinstance(digest, str) or not check.match(digest):
            return f"has a {name} value that is not a valid {name} hash"
    return None


class Hashes(Kind):
    __slots__ = ()

    def check(self, value: Any) -> str | None:
        return check_hashes(value)


class ExternalReferences(Kind):
    __slots__ = ()
    _keys: Final = frozenset({"source_name", "description", "url", "hashes", "external_id"})

    def check(self, value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return "must be a non-empty list of external-reference objects"
        for item in value:
            reason = _closed_dict(item, self._keys, "external-reference")
            if reason is not None:
                return reason
            if not isinstance(item.get("source_name"), str):
                return "has an external-reference without a string source_name"
            for key in ("description", "url", "external_id"):
                if key in item and not isinstance(item[key], str):
                    return f"has an external-reference whose {key} is not a string"
            if "description" not in item and "url" not in item and "external_id" not in item:
                return "has an external-reference without description, url or external_id"
            if "hashes" in item:
                reason = check_hashes(item["hashes"])
                if reason is not None:
                    return "has an external-reference whose hashes " + reason
        return None


class Hex(Kind):
    __slots__ = ()

    def check(self, value: Any) -> str | None:
        if isinstance(value, str) and _HEX_VALUE.match(value):
            return None
        return "must be an even number of hexadecimal digits"


class Extensions(Kind):
    """Only extension-definition entries reach here; predefined SCO ones go to stix2."""

    __slots__ = ()

    def check(self, value: Any) -> str | None:
        if not isinstance(value, dict) or not value:
            return "must be a non-empty object"
        for key, content in value.items():
            if not key.startswith("extension-definition--"):
                return f"has unknown extension {key[:60]!r}"
            if not isinstance(content, dict):
                return f"entry {key[:60]!r} must be an object"
        return None


SKIP, STR, TIMESTAMP, BOOL, STR_LIST = Skip(), Str(), Timestamp(), Bool(), StrList()
HEX, HASHES = Hex(), Hashes()
KILL_CHAIN_PHASES, EXTERNAL_REFERENCES, EXTENSIONS = (
    KillChainPhases(), ExternalReferences(), Extensions()
)  # fmt: skip
