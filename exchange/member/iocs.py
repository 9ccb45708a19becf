"""Turn analyst IOC input (plain lists, CSV) into STIX 2.1 indicator dicts.

Analysts paste indicators of compromise as they find them in reports: one per line,
often "defanged" (``hxxp://``, ``example[.]com``, ``user[@]example.com``), or as a CSV
export with a ``type`` column. :func:`parse_ioc_text` turns such text into validated
:class:`Ioc` values or refuses it with one :class:`~exchange.errors.InvalidInput` naming
every bad line (up to :data:`MAX_REPORTED_ERRORS`); :func:`read_ioc_text` returns the
valid IOCs and every bad line with its reason, for callers that report and go on.
:func:`ioc_to_indicator` turns one :class:`Ioc` into a STIX 2.1 ``indicator`` dict with
a deterministic id, so republishing the same IOC by the same organisation makes a version
of the same object, never a new object (:mod:`exchange.member.iocstate` keeps an
unchanged IOC from making a new version at all).

Pure code: no I/O, no clock unless ``now`` is omitted. What happens to the dicts next
(strict validation, signing, storage, publishing) belongs to other modules.

Kinds and their STIX patterns:

======== =============================================
ipv4     ``[ipv4-addr:value = '198.51.100.7']`` (``ISSUBSET`` for a network)
ipv6     ``[ipv6-addr:value = '2001:db8::1']`` (``ISSUBSET`` for a network)
domain   ``[domain-name:value = 'example.com']``
url      ``[url:value = 'http://example.com/a.php']``
email    ``[email-addr:value = 'user@example.com']``
md5      ``[file:hashes.MD5 = '...']``
sha1     ``[file:hashes.'SHA-1' = '...']``
sha256   ``[file:hashes.'SHA-256' = '...']``
======== =============================================
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from exchange.errors import InvalidInput
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS

#: The kinds an :class:`Ioc` may have.
IOC_KINDS: tuple[str, ...] = ("ipv4", "ipv6", "domain", "url", "email", "md5", "sha1", "sha256")

#: Namespace of the deterministic indicator ids (uuid5 over identity, kind and value).
INDICATOR_NAMESPACE = uuid.UUID("6f0b8f3e-5c1a-4d57-9a39-2b7c1e4d8a90")

#: How many bad lines one :class:`~exchange.errors.InvalidInput` lists at most.
MAX_REPORTED_ERRORS = 20

#: Longest URL accepted, in UTF-8 bytes (keeps the pattern well inside the pattern limit).
MAX_URL_LENGTH = 2048

#: Shortest network prefix accepted; anything broader would match a large part of the
#: address space and is almost certainly a typo.
MIN_PREFIX = {"ipv4": 8, "ipv6": 16}

URL_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "sftp", "ws", "wss"})

# CSV ``type`` values and the kind they mean; "ip" is decided by the value (v4 or v6).
_TYPE_ALIASES: dict[str, str] = {
    "ip": "ip",
    "ip-dst": "ip",
    "ip-src": "ip",
    "ipv4": "ipv4",
    "ipv4-addr": "ipv4",
    "ipv6": "ipv6",
    "ipv6-addr": "ipv6",
    "domain": "domain",
    "domain-name": "domain",
    "hostname": "domain",
    "url": "url",
    "uri": "url",
    "email": "email",
    "email-addr": "email",
    "email-src": "email",
    "email-dst": "email",
    "md5": "md5",
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
}

_CSV_COLUMNS = ("type", "value", "description", "labels")

_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}

_PATTERN_PATHS = {
    "ipv4": "ipv4-addr:value",
    "ipv6": "ipv6-addr:value",
    "domain": "domain-name:value",
    "url": "url:value",
    "email": "email-addr:value",
    "md5": "file:hashes.MD5",
    "sha1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
}

_DEFANGED_SCHEME = re.compile(r"^(h[tx]{2}p|f[tx]p)(s?)(?:\[:\]//|\[://\]|://)", re.IGNORECASE)
_DEFANGED_DOT = re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}", re.IGNORECASE)
_DEFANGED_AT = re.compile(r"\[@\]|\(@\)|\{@\}|\[at\]", re.IGNORECASE)
_INLINE_COMMENT = re.compile(r"\s+#")
_HEX = re.compile(r"[0-9a-fA-F]+")
_IP_LIKE = re.compile(r"[0-9./]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_IDENTITY_ID = re.compile(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# File extensions that are not top-level domains: "invoice.exe" is a file name.
_FILE_SUFFIXES = frozenset(
    {"bat", "bin", "cmd", "dat", "dll", "doc", "docm", "docx", "elf", "exe", "hta", "iso",
     "jar", "js", "lnk", "msi", "pdf", "ps1", "rar", "scr", "sys", "tmp", "txt", "vbs", "xls",
     "xlsm", "xlsx"}
)  # fmt: skip


@dataclass(frozen=True)
class Ioc:
    """One validated indicator of compromise.

    Attributes:
        kind: One of :data:`IOC_KINDS`.
        value: The normalised value (refanged; lower-case for hosts and hashes;
            networks in ``address/prefix`` form with host bits cleared).
        line: The 1-based line of the input it came from.
        description: Free text from the CSV ``description`` column or a list line's
            trailing ``# comment``; empty when none.
        labels: Labels from the CSV ``labels`` column.
    """

    kind: str
    value: str
    line: int
    description: str = ""
    labels: tuple[str, ...] = ()


class _BadValueError(Exception):
    """A value failed validation; ``message`` says why (without the line number)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IocParse:
    """What :func:`read_ioc_text` found.

    Attributes:
        iocs: The valid IOCs, de-duplicated, in input order.
        bad_lines: ``(line, reason)`` of every line that is not a valid IOC, in order.
    """

    iocs: list[Ioc]
    bad_lines: list[tuple[int, str]]


def read_ioc_text(text: str, *, fmt: Literal["auto", "csv", "list"] = "auto") -> IocParse:
    """Parse analyst IOC input, keeping the valid IOCs and every bad line with its reason.

    Two formats are understood:

    * ``list``: one IOC per line; blank lines and lines starting with ``#`` are ignored;
      text after whitespace and ``#`` becomes the IOC's description. The kind is
      detected from the value.
    * ``csv``: a header row naming the columns (case-insensitive) ``value`` and,
      optionally, ``type``, ``description`` and ``labels`` (semicolon-separated). An
      empty or missing ``type`` is detected from the value; otherwise it must be a kind
      or an alias such as ``ip-dst``, ``hostname``, ``uri`` or ``email-src``.

    ``auto`` picks ``csv`` when the first non-comment line has a ``value`` column, else
    ``list``. Defanged values (``hxxp://``, ``hxxps://``, ``[.]``, ``(.)``, ``[dot]``,
    ``[@]``, ``[:]``) are refanged first. When the same (kind, value) pair appears
    twice, the first one is kept.

    Args:
        text: The input, as pasted or read from a file.
        fmt: ``auto``, ``csv`` or ``list``.

    Returns:
        The valid IOCs and the bad lines (``line 7: 'foo' is not a valid ipv4 address``).

    Raises:
        InvalidInput: The format is unknown or the CSV header is unusable (then no line
            can be read).
    """
    text = text.removeprefix("\ufeff")
    if fmt == "auto":
        fmt = "csv" if _looks_like_csv(text) else "list"
    if fmt == "csv":
        iocs, errors = _parse_csv(text)
    elif fmt == "list":
        iocs, errors = _parse_list(text)
    else:
        raise InvalidInput(f"unknown IOC format {fmt!r}; use auto, csv or list")
    seen: set[tuple[str, str]] = set()
    unique: list[Ioc] = []
    for ioc in iocs:
        if (ioc.kind, ioc.value) not in seen:
            seen.add((ioc.kind, ioc.value))
            unique.append(ioc)
    return IocParse(unique, errors)


def parse_ioc_text(text: str, *, fmt: Literal["auto", "csv", "list"] = "auto") -> list[Ioc]:
    """Parse analyst IOC input into validated, de-duplicated IOCs, refusing any bad line.

    The formats are those of :func:`read_ioc_text`.

    Args:
        text: The input, as pasted or read from a file.
        fmt: ``auto``, ``csv`` or ``list``.

    Returns:
        The IOCs in input order; an empty list when the input holds none.

    Raises:
        InvalidInput: Any line is bad, or the CSV header is unusable. The reason names
            the first :data:`MAX_REPORTED_ERRORS` bad lines and what is wrong with each
            (``line 7: 'foo' is not a valid ipv4 address``).
    """
    parsed = read_ioc_text(text, fmt=fmt)
    if parsed.bad_lines:
        raise InvalidInput(_summarise(parsed.bad_lines))
    return parsed.iocs


def _looks_like_csv(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cells = next(csv.reader([line]), [])
        return "value" in {cell.strip().lower() for cell in cells}
    return False


def _summarise(errors: list[tuple[int, str]]) -> str:
    shown = "; ".join(f"line {line}: {message}" for line, message in errors[:MAX_REPORTED_ERRORS])
    more = len(errors) - MAX_REPORTED_ERRORS
    noun = "line" if len(errors) == 1 else "lines"
    suffix = f"; and {more} more" if more > 0 else ""
    return f"{len(errors)} invalid {noun}: {shown}{suffix}"


def _parse_list(text: str) -> tuple[list[Ioc], list[tuple[int, str]]]:
    iocs: list[Ioc] = []
    errors: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = _INLINE_COMMENT.split(line, maxsplit=1)
        value = parts[0]
        comment = parts[1].strip() if len(parts) > 1 else ""
        try:
            if "," in value:
                raise _BadValueError(
                    f"{_show(value)} contains a comma; CSV input needs a header row"
                    " such as 'type,value'"
                )
            if any(ch.isspace() for ch in value):
                raise _BadValueError(f"{_show(value)} contains whitespace; put one IOC per line")
            kind, normalised = _detect(_refang(value))
        except _BadValueError as e:
            errors.append((number, e.message))
            continue
        iocs.append(Ioc(kind=kind, value=normalised, line=number, description=comment))
    return iocs, errors


def _parse_csv(text: str) -> tuple[list[Ioc], list[tuple[int, str]]]:
    iocs: list[Ioc] = []
    errors: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    columns: dict[str, int] | None = None
    width = 0
    last_line = 0
    try:
        for row in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if columns is None:
                columns = _csv_header(row, first_line)
                width = len(row)
                continue
            try:
                ioc = _csv_row(row, columns, width, first_line)
            except _BadValueError as e:
                errors.append((first_line, e.message))
                continue
            iocs.append(ioc)
    except csv.Error as e:
        errors.append((reader.line_num, f"unreadable CSV ({e})"))
    if columns is None and not errors:
        return [], []
    return iocs, errors


def _csv_header(row: list[str], line: int) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, cell in enumerate(row):
        name = cell.strip().lower()
        if name not in _CSV_COLUMNS:
            raise InvalidInput(
                f"line {line}: unknown CSV column {_show(cell.strip())}"
                f" (expected {', '.join(_CSV_COLUMNS)})"
            )
        if name in columns:
            raise InvalidInput(f"line {line}: CSV column {name!r} appears twice")
        columns[name] = index
    if "value" not in columns:
        raise InvalidInput(f"line {line}: the CSV header has no 'value' column")
    return columns


def _csv_row(row: list[str], columns: dict[str, int], width: int, line: int) -> Ioc:
    if len(row) > width and any(cell.strip() for cell in row[width:]):
        raise _BadValueError(f"{len(row)} fields but the header has {width}")

    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    value = cell("value")
    if not value:
        raise _BadValueError("the value is empty")
    type_name = cell("type").lower()
    refanged = _refang(value)
    if not type_name:
        kind, normalised = _detect(refanged)
    else:
        wanted = _TYPE_ALIASES.get(type_name)
        if wanted is None:
            raise _BadValueError(
                f"unknown type {_show(cell('type'))} (use one of {', '.join(IOC_KINDS)},"
                " or an alias such as ip-dst, hostname, uri, email-src)"
            )
        kind, normalised = _validate_as(wanted, refanged)
    labels = tuple(
        dict.fromkeys(part.strip() for part in cell("labels").split(";") if part.strip())
    )
    return Ioc(
        kind=kind, value=normalised, line=line, description=cell("description"), labels=labels
    )


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------


def _refang(value: str) -> str:
    value = _DEFANGED_SCHEME.sub(_scheme_repl, value)
    value = _DEFANGED_DOT.sub(".", value)
    value = _DEFANGED_AT.sub("@", value)
    return value.replace("[:]", ":")


def _scheme_repl(match: re.Match[str]) -> str:
    scheme = "http" if match[1][0] in "hH" else "ftp"
    return f"{scheme}{match[2].lower()}://"


def _show(value: str) -> str:
    """Quote a value for an error reason: short, on one line."""
    if len(value) > 80:
        value = value[:77] + "..."
    return repr(value)


def _detect(value: str) -> tuple[str, str]:
    """The kind and normalised value of ``value``, guessing the kind."""
    if "://" in value:
        return "url", _url(value)
    if _HEX.fullmatch(value):
        kind = _HASH_LENGTHS.get(len(value))
        if kind is not None:
            return kind, value.lower()
        if len(value) > 16:
            raise _BadValueError(
                f"{_show(value)} looks like a hash but has {len(value)} hex digits"
                " (MD5 has 32, SHA-1 40, SHA-256 64)"
            )
    if _IP_LIKE.fullmatch(value):
        return "ipv4", _ip(value, "ipv4")
    if ":" in value and "@" not in value:
        return "ipv6", _ip(value, "ipv6")
    if "@" in value:
        return "email", _email(value)
    if "/" in value:
        raise _BadValueError(f"{_show(value)} looks like a URL without a scheme such as http://")
    if "." in value:
        return "domain", _domain(value)
    raise _BadValueError(
        f"{_show(value)} is not a recognised IOC (expected {', '.join(IOC_KINDS)})"
    )


def _validate_as(kind: str, value: str) -> tuple[str, str]:
    """Validate ``value`` as ``kind`` (a kind or ``ip``); return kind and value."""
    if kind == "ip":
        for version in ("ipv4", "ipv6"):
            try:
                return version, _ip(value, version)
            except _BadValueError:
                continue
        raise _BadValueError(f"{_show(value)} is not a valid IP address")
    validator = _VALIDATORS[kind]
    return kind, validator(value)


def _ip(value: str, kind: str) -> str:
    address_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
    network_type: type[ipaddress.IPv4Network] | type[ipaddress.IPv6Network]
    if kind == "ipv4":
        address_type, network_type = ipaddress.IPv4Address, ipaddress.IPv4Network
    else:
        address_type, network_type = ipaddress.IPv6Address, ipaddress.IPv6Network
    if "%" in value:  # IPv6 zone ids mean nothing outside the host that wrote them
        raise _BadValueError(f"{_show(value)} is not a valid {kind} address (zone id)")
    try:
        if "/" not in value:
            return str(address_type(value))
        network = network_type(value, strict=False)
    except ValueError:
        raise _BadValueError(f"{_show(value)} is not a valid {kind} address") from None
    if network.prefixlen < MIN_PREFIX[kind]:
        raise _BadValueError(
            f"{_show(value)} is too broad a network (prefix shorter than /{MIN_PREFIX[kind]})"
        )
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _ipv4(value: str) -> str:
    return _ip(value, "ipv4")


def _ipv6(value: str) -> str:
    return _ip(value, "ipv6")


def _domain(value: str) -> str:
    name = value.lower()
    name = name.removesuffix(".")
    bad = _BadValueError(f"{_show(value)} is not a valid domain name")
    if name.isascii():
        ascii_name = name
    else:
        try:
            ascii_name = name.encode("idna").decode("ascii")
            mapped = ascii_name.encode("ascii").decode("idna")
        except UnicodeError:
            raise bad from None
        if mapped != name:
            raise _BadValueError(
                f"{_show(value)} is not a valid domain name (IDNA maps it to {_show(mapped)})"
            )
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253:
        raise bad
    if not all(_LABEL.fullmatch(label) for label in labels) or not _TLD.fullmatch(labels[-1]):
        raise bad
    for label in labels:
        if label.startswith("xn--"):
            try:
                label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                raise bad from None
    if labels[-1] in _FILE_SUFFIXES:
        raise _BadValueError(f"{_show(value)} looks like a file name, not a domain name")
    return name


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    bad = _BadValueError(f"{_show(value)} is not a valid email address")
    if not at or len(local) > 64 or len(value) > 254 or not _EMAIL_LOCAL.fullmatch(local):
        raise bad
    try:
        host = _domain(domain)
    except _BadValueError:
        raise bad from None
    return f"{local}@{host}"


def _url(value: str) -> str:
    bad = _BadValueError(
        f"{_show(value)} is not a valid URL (needs a scheme such as http://, https:// or"
        " ftp:// and a host)"
    )
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise _BadValueError(
            f"{_show(value)} is not a valid URL (whitespace or control characters)"
        )
    if len(value.encode("utf-8")) > MAX_URL_LENGTH:
        raise _BadValueError(f"{_show(value)} is longer than {MAX_URL_LENGTH} bytes")
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in URL_SCHEMES:
        raise bad
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host_port = authority.rpartition("@")[2]
    if host_port.startswith("["):
        host, bracket, port = host_port[1:].partition("]")
        if not bracket:
            raise bad
        try:
            _ip(host, "ipv6")
        except _BadValueError:
            raise bad from None
        if port and not (port.startswith(":") and port[1:].isdigit()):
            raise bad
    else:
        host, _, port = host_port.partition(":")
        if port and not (port.isdigit() and int(port) < 65536):
            raise bad
        try:
            if _IP_LIKE.fullmatch(host):
                _ip(host, "ipv4")
            else:
                _domain(host)
        except _BadValueError:
            raise bad from None
    return f"{scheme}://{rest}"


def _hash(kind: str) -> Callable[[str], str]:
    length = {"md5": 32, "sha1": 40, "sha256": 64}[kind]

    def check(value: str) -> str:
        if len(value) != length or not _HEX.fullmatch(value):
            raise _BadValueError(f"{_show(value)} is not a valid {kind} hash ({length} hex digits)")
        return value.lower()

    return check


_VALIDATORS: dict[str, Callable[[str], str]] = {
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "domain": _domain,
    "url": _url,
    "email": _email,
    "md5": _hash("md5"),
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
}


# ---------------------------------------------------------------------------------------
# STIX
# ---------------------------------------------------------------------------------------


def indicator_pattern(kind: str, value: str) -> str:
    """The STIX 2.1 pattern matching one IOC.

    ``'`` and ``\\`` in the value are escaped as the STIX patterning grammar requires.
    Networks (``a.b.c.d/n``) use ``ISSUBSET``. The value is not validated here: pass a
    normalised :attr:`Ioc.value`.

    Args:
        kind: One of :data:`IOC_KINDS`.
        value: The normalised value.

    Returns:
        The pattern, e.g. ``[domain-name:value = 'example.com']``.

    Raises:
        InvalidInput: ``kind`` is not one of :data:`IOC_KINDS`.
    """
    path = _PATTERN_PATHS.get(kind)
    if path is None:
        raise InvalidInput(f"unknown IOC kind {kind!r}")
    literal = value.replace("\\", "\\\\").replace("'", "\\'")
    operator = "ISSUBSET" if kind in ("ipv4", "ipv6") and "/" in value else "="
    return f"[{path} {operator} '{literal}']"


def stix_timestamp(moment: datetime) -> str:
    """Format a timezone-aware datetime as a STIX timestamp with millisecond precision.

    Args:
        moment: An aware datetime; it is converted to UTC and truncated to milliseconds.

    Returns:
        ``YYYY-MM-DDTHH:MM:SS.sssZ``.

    Raises:
        InvalidInput: ``moment`` has no timezone.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput("timestamps must be timezone-aware")
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _instant(moment: datetime) -> str:
    """``valid_from`` / ``valid_until`` spelt as the reference library re-emits them.

    STIX 2.1 section 3.2 fixes millisecond precision for ``created`` and ``modified``
    only; for the other timestamps stix2 drops trailing zeros of the fraction (and a
    zero fraction). Spelling them so keeps generated indicators in normal form, so
    signing them never has to rewrite (and report) them.
    """
    stamp = stix_timestamp(moment)
    head, _, fraction = stamp[:-1].partition(".")
    fraction = fraction.rstrip("0")
    return f"{head}.{fraction}Z" if fraction else f"{head}Z"


def check_identity_id(identity_id: str) -> str:
    """Return ``identity_id`` if it is a STIX identity id (``identity--<RFC 4122 uuid>``).

    Raises:
        InvalidInput: It is not.
    """
    if not _IDENTITY_ID.fullmatch(identity_id) or (
        uuid.UUID(identity_id.removeprefix("identity--")).variant != uuid.RFC_4122
    ):
        raise InvalidInput(f"{identity_id!r} is not a STIX identity id")
    return identity_id


def indicator_id(ioc: Ioc, *, identity_id: str, id_namespace: uuid.UUID | None = None) -> str:
    """The deterministic STIX id of the indicator for ``ioc`` published by ``identity_id``.

    It is uuid5 over (identity, kind, value) in :data:`INDICATOR_NAMESPACE` (or
    ``id_namespace``): description, labels and time do not change it.
    """
    name = json.dumps([identity_id, ioc.kind, ioc.value], ensure_ascii=False)
    return f"indicator--{uuid.uuid5(id_namespace or INDICATOR_NAMESPACE, name)}"


def ioc_to_indicator(
    ioc: Ioc,
    *,
    identity_id: str,
    tlp: Tlp,
    now: datetime | None = None,
    valid_days: int | None = None,
    id_namespace: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Build the STIX 2.1 indicator for one IOC.

    The id is deterministic (see :func:`indicator_id`), so republishing the same IOC as
    the same organisation yields the same id; ``created``, ``modified`` and
    ``valid_from`` are all ``now``, so a later ``now`` makes a new *version* of that
    object rather than a new object.

    Args:
        ioc: The IOC; it is validated again, so a hand-built :class:`Ioc` is safe.
        identity_id: The publishing organisation (``created_by_ref``).
        tlp: The TLP level; the TLP 2.0 marking definition is referenced.
        now: The creation time (aware); defaults to the current UTC time.
        valid_days: When given, ``valid_until`` is ``now`` plus this many days.
        id_namespace: Overrides :data:`INDICATOR_NAMESPACE`.

    Returns:
        The indicator as a JSON-ready dict.

    Raises:
        InvalidInput: The IOC's kind or value is invalid, ``identity_id`` is not an
            identity id, ``now`` is naive, or ``valid_days`` is below 1.
    """
    check_identity_id(identity_id)
    validator = _VALIDATORS.get(ioc.kind)
    if validator is None:
        raise InvalidInput(f"unknown IOC kind {ioc.kind!r}; use one of {', '.join(IOC_KINDS)}")
    try:
        value = validator(ioc.value)
    except _BadValueError as e:
        raise InvalidInput(e.message) from None
    if valid_days is not None and valid_days < 1:
        raise InvalidInput(f"valid_days must be at least 1, not {valid_days}")
    moment = now if now is not None else datetime.now(UTC)
    stamp = stix_timestamp(moment)
    normalised = Ioc(kind=ioc.kind, value=value, line=ioc.line)
    indicator: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": indicator_id(normalised, identity_id=identity_id, id_namespace=id_namespace),
        "created": stamp,
        "modified": stamp,
        "created_by_ref": identity_id,
        "name": _indicator_name(ioc.kind, value),
        "indicator_types": ["malicious-activity"],
        "pattern": indicator_pattern(ioc.kind, value),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": _instant(moment),
        "object_marking_refs": [TLP2_IDS[tlp]],
    }
    if ioc.description:
        indicator["description"] = ioc.description
    if valid_days is not None:
        indicator["valid_until"] = _instant(moment + timedelta(days=valid_days))
    if ioc.labels:
        indicator["labels"] = list(ioc.labels)
    return indicator


def iocs_to_objects(
    iocs: Iterable[Ioc],
    *,
    identity_id: str,
    tlp: Tlp,
    now: datetime | None = None,
    valid_days: int | None = None,
    id_namespace: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """Build one indicator per IOC, all with the same timestamp.

    IOCs that map to the same id (same kind and value) yield one indicator, the first.

    Args:
        iocs: The IOCs, e.g. from :func:`parse_ioc_text`.
        identity_id: As for :func:`ioc_to_indicator`.
        tlp: As for :func:`ioc_to_indicator`.
        now: As for :func:`ioc_to_indicator`; read once for the whole batch.
        valid_days: As for :func:`ioc_to_indicator`.
        id_namespace: As for :func:`ioc_to_indicator`.

    Returns:
        The indicators in input order.

    Raises:
        InvalidInput: As for :func:`ioc_to_indicator`.
    """
    moment = now if now is not None else datetime.now(UTC)
    objects: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ioc in iocs:
        indicator = ioc_to_indicator(
            ioc,
            identity_id=identity_id,
            tlp=tlp,
            now=moment,
            valid_days=valid_days,
            id_namespace=id_namespace,
        )
        if indicator["id"] not in seen:
            seen.add(indicator["id"])
            objects.append(indicator)
    return objects


def _indicator_name(kind: str, value: str) -> str:
    shown = value if len(value) <= 120 else value[:117] + "..."
    if kind in ("ipv4", "ipv6"):
        noun = "network" if "/" in value else "address"
        return f"Malicious {'IPv4' if kind == 'ipv4' else 'IPv6'} {noun} {shown}"
    if kind in _HASH_NAMES:
        return f"Malicious file {_HASH_NAMES[kind]} {shown}"
    noun = {"domain": "domain", "url": "URL", "email": "email address"}[kind]
    return f"Malicious {noun} {shown}"
