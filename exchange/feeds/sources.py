"""TAXII sources as data: ``feeds/sources.yaml`` read strictly.

Each source is one TAXII 2.1 collection the exchange pulls into a local collection: a
peer exchange (``kind: peer``, whose objects keep their authors' cx-sig signatures and
are verified with keys the operator pinned for the peer named by ``trust``) or any other
TAXII 2.1 server (``kind: vendor``, whose objects the node attests). Every source names
the organisation it stands for (the contributor of everything imported from it), the
local collection to import into, where the server is (a discovery URL or an API root,
and the collection's id or title), how to log in (a user and a password kept in a file
or an environment variable, never in this file), the CA bundle, the schedule and the
timeout.

Parsing follows the policy files and ``feeds/misp-targets.yaml``: duplicate keys,
unknown keys, wrong types and bad values are refused with a
:class:`~exchange.errors.ConfigError` naming the file, the key path and the reason, e.g.
``feeds/sources.yaml: sources.pk-node.trust: a vendor source takes no trust (only
kind: peer does)``.

Pure code: :func:`parse_sources` takes bytes; :func:`load_sources` only reads the file.
Reading the password is :func:`read_password`'s, at connection time, so a parsed source
never holds a secret.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from exchange.errors import ConfigError
from exchange.feeds.attest import MAX_WORKERS
from exchange.policy.schema import NAME, SLUG, Node, parse_yaml

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "Kind",
    "Schedule",
    "TaxiiSource",
    "load_sources",
    "parse_sources",
    "read_password",
]

#: Seconds to wait for the server on each request when a source does not say.
DEFAULT_TIMEOUT: Final = 30.0
MAX_TIMEOUT: Final = 600.0
#: Objects asked for per page when a source does not say (servers may send fewer).
DEFAULT_PAGE_SIZE: Final = 1000
MAX_PAGE_SIZE: Final = 10_000
MIN_INTERVAL: Final = 60
MAX_INTERVAL: Final = 7 * 24 * 3600
#: FOR TESTS ONLY: lowers the shortest interval allowed (whole seconds, 1..60).
TEST_MIN_INTERVAL_ENV: Final = "CX_TEST_SOURCE_MIN_INTERVAL"
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_USER = re.compile(r"[^\x00-\x1f\x7f:]{1,128}")
_COLLECTION = re.compile(r"[^\x00-\x1f\x7f/?#]{1,256}")
_CRON_FIELD = re.compile(r"(?:\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?"
                         r"(?:,(?:\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?)*")
_INLINE_SECRETS: Final = ("password", "api_key", "key", "token", "secret")


class Kind(enum.StrEnum):
    """What a source is."""

    PEER = "peer"  # another cert-exchange node: signatures verified with pinned keys
    VENDOR = "vendor"  # any TAXII 2.1 server: unsigned objects, attested by this node


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every ``interval`` seconds, or on a five-field ``cron`` (UTC); exactly one set."""

    interval: int | None = None
    cron: str | None = None

    def describe(self) -> str:
        """``every 900 s`` or ``cron '*/15 * * * *'``."""
        return f"every {self.interval} s" if self.interval is not None else \
            f"cron {self.cron!r}"


@dataclass(frozen=True, slots=True)
class TaxiiSource:
    """One TAXII 2.1 collection to pull.

    Attributes:
        name: The source's name (its key in the file), used by ``exchange sync``.
        kind: Peer or vendor.
        trust: For a peer, the pinned peer whose registry and keys verify its objects
            (``exchange peer trust``); None for a vendor.
        discovery: The server's discovery URL, or None when ``api_root`` is given.
        api_root: The API root URL, or None to use the discovery's default root.
        collection: The collection's id or title on the server.
        org: The organisation the source stands for: the contributor of every object
            imported from it (a registered organisation of this node).
        into: The alias (or id) of the local collection to import into.
        user: The HTTP Basic user, or None for a server that takes no login.
        password_file: A file holding the password (or API key), or None.
        password_env: An environment variable holding it, or None.
        ca_file: A CA bundle for the server's certificate, or None for the system's.
        schedule: When the scheduler runs it.
        timeout: Seconds per request.
        page_size: Objects asked for per page.
        sign_workers: For a vendor source, processes that sign its objects beside the
            importing one (:class:`~exchange.feeds.attest.Attester`); 0 signs in it.
    """

    name: str
    kind: Kind
    trust: str | None
    discovery: str | None
    api_root: str | None
    collection: str
    org: str
    into: str
    user: str | None
    password_file: str | None
    password_env: str | None
    ca_file: str | None
    schedule: Schedule
    timeout: float
    page_size: int
    sign_workers: int = 0


_REQUIRED: Final = ("kind", "collection", "org", "into", "schedule")
_OPTIONAL: Final = ("trust", "discovery", "api_root", "user", "password_file",
                    "password_env", "ca_file", "timeout", "page_size", "sign_workers",
                    "description")


def parse_sources(file: str, content: bytes) -> tuple[TaxiiSource, ...]:
    """Parse a TAXII sources file.

    Args:
        file: The file's path, for messages.
        content: Its bytes (UTF-8 YAML).

    Returns:
        The sources, in file order.

    Raises:
        ConfigError: Broken YAML, a duplicate or unknown key, a missing key, a wrong type
            or a bad value; a password given inline; a URL that is not https (except to a
            loopback address); two sources reading the same collection.
    """
    root = Node(parse_yaml(file, content), file)
    if root.value is None:
        root.fail("empty file; expected a mapping with 'sources'")
    fields = root.fields(required=("sources",), optional=("version",))
    if "version" in fields and fields["version"].value != 1:
        fields["version"].fail(f"unsupported version {fields['version'].value!r} (use 1)")
    sources: list[TaxiiSource] = []
    seen: dict[tuple[str, str], str] = {}
    for name, node in fields["sources"].entries():
        if not SLUG.fullmatch(name):
            node.fail(f"source name {name!r} is not lowercase letters, digits, '.', '_' or"
                      " '-' (at most 64)")
        source = _source(name, node)
        where = (source.api_root or source.discovery or "", source.collection)
        if where in seen:
            node.fail(f"collection {source.collection!r} of {where[0]} is already read by"
                      f" source {seen[where]!r}")
        seen[where] = name
        sources.append(source)
    if not sources:
        fields["sources"].fail("no sources; list at least one")
    return tuple(sources)


def load_sources(path: Path) -> tuple[TaxiiSource, ...]:
    """Read and parse a TAXII sources file.

    Raises:
        ConfigError: The file cannot be read, or :func:`parse_sources` refuses it.
    """
    try:
        content = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the TAXII sources file ({e.strerror})") from None
    return parse_sources(str(path), content)


def read_password(source: TaxiiSource, environ: dict[str, str] | None = None) -> str | None:
    """The source's password (or API key), from its file or environment variable.

    A password file must be readable by its owner only (mode 0600 or narrower).

    Raises:
        ConfigError: The file cannot be read, is readable by others or is empty; the
            variable is unset or empty. The message never contains the secret.
    """
    if source.password_env is not None:
        value = (os.environ if environ is None else environ).get(source.password_env, "")
        if not value.strip():
            raise ConfigError(f"source {source.name!r}: environment variable"
                              f" {source.password_env} is not set or empty")
        return value.strip()
    if source.password_file is None:
        return None
    path = Path(source.password_file).expanduser()
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(f"source {source.name!r}: password file {path} is readable by"
                              f" others (mode {mode & 0o777:o}); chmod 600 it")
        value = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"source {source.name!r}: cannot read password file {path}"
                          f" ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"source {source.name!r}: password file {path} is not"
                          " UTF-8 text") from None
    if not value:
        raise ConfigError(f"source {source.name!r}: password file {path} is empty")
    return value


def _source(name: str, node: Node) -> TaxiiSource:
    if isinstance(node.value, dict):
        for key in _INLINE_SECRETS:
            if key in node.value:
                Node(None, node.file, f"{node.path}.{key}").fail(
                    "a password is never written in this file: put it in a file readable"
                    " only by the exchange (password_file) or in an environment variable"
                    " (password_env)")
    f = node.fields(required=_REQUIRED, optional=_OPTIONAL)
    if "description" in f:
        f["description"].string()
    text = f["kind"].string()
    try:
        kind = Kind(text)
    except ValueError:
        f["kind"].fail(f"{text!r} is not one of {', '.join(k.value for k in Kind)}")
    trust = None
    if kind is Kind.PEER:
        if "trust" not in f:
            node.fail("a peer source names the pinned peer that verifies its objects"
                      " (trust: <peer name>, see 'exchange peer trust')")
        trust = f["trust"].string(SLUG, "a peer name")
    elif "trust" in f:
        f["trust"].fail("a vendor source takes no trust (only kind: peer does)")
    discovery = _url(f["discovery"]) if "discovery" in f else None
    api_root = _url(f["api_root"]) if "api_root" in f else None
    if discovery is None and api_root is None:
        node.fail("give discovery (the server's discovery URL) or api_root (an API root"
                  " URL), or both")
    user = f["user"].string(_USER, "a user name without ':' or control characters") \
        if "user" in f else None
    password_file = _path(f["password_file"]) if "password_file" in f else None
    password_env = (f["password_env"].string(_ENV_NAME, "an environment variable name"
                                             " (A-Z, 0-9, '_')")
                    if "password_env" in f else None)
    if password_env is not None and password_env.startswith("EXCHANGE_") \
            and not password_env.startswith("EXCHANGE_SOURCE_KEY_"):
        f["password_env"].fail("an EXCHANGE_ variable must be named EXCHANGE_SOURCE_KEY_..."
                               " (other EXCHANGE_ names are node settings)")
    if password_file is not None and password_env is not None:
        node.fail("give at most one of password_file and password_env")
    if (user is None) != (password_file is None and password_env is None):
        node.fail("a user needs a password (password_file or password_env), and a"
                  " password needs a user")
    return TaxiiSource(
        name=name, kind=kind, trust=trust, discovery=discovery, api_root=api_root,
        collection=f["collection"].string(_COLLECTION, "a collection id or title"),
        org=f["org"].string(NAME, "an organisation name"),
        into=f["into"].string(SLUG, "a local collection alias or id"),
        user=user, password_file=password_file, password_env=password_env,
        ca_file=_path(f["ca_file"]) if "ca_file" in f else None,
        schedule=_schedule(f["schedule"]),
        timeout=_number(f["timeout"], 0, MAX_TIMEOUT) if "timeout" in f else DEFAULT_TIMEOUT,
        page_size=(int(_number(f["page_size"], 0, MAX_PAGE_SIZE, whole=True))
                   if "page_size" in f else DEFAULT_PAGE_SIZE),
        sign_workers=(_sign_workers(f["sign_workers"], kind) if "sign_workers" in f else 0),
    )


def _sign_workers(node: Node, kind: Kind) -> int:
    count = node.value
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_WORKERS:
        node.fail(f"expected a whole number 0..{MAX_WORKERS}, found {count!r}")
    if count == 1:
        node.fail("1 would sign in one other process while this one waits; give 0 (sign"
                  f" here) or 2..{MAX_WORKERS}")
    if count and kind is not Kind.VENDOR:
        node.fail("only a vendor source's objects are signed by this node (a peer's keep"
                  " their signatures)")
    return count


def _path(node: Node) -> str:
    text = node.string()
    if not text.strip():
        node.fail("empty path")
    return text


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(node: Node) -> str:
    text = node.string()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        node.fail(f"{text!r} is not a URL ({e})")
    if parts.scheme not in ("https", "http") or not host:
        node.fail(f"{text!r} is not an https URL with a host")
    if parts.username is not None or parts.password is not None:
        node.fail("the URL must not carry credentials; use user and password_file or"
                  " password_env")
    if parts.query or parts.fragment:
        node.fail(f"{text!r}: a TAXII URL takes no query or fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        node.fail(f"{text!r} must use https (plain http is allowed only to a loopback"
                  " address)")
    return text if text.endswith("/") else text + "/"


def _number(node: Node, low: float, high: float, *, whole: bool = False) -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (whole and not isinstance(value, int)):
        node.fail(f"expected a {'whole ' if whole else ''}number, found {value!r}")
    if not low < value <= high:
        node.fail(f"{value} is outside ({low:g}, {high:g}]")
    return float(value)


def min_interval() -> int:
    """The shortest interval allowed (lower for tests, :data:`TEST_MIN_INTERVAL_ENV`).

    Raises:
        ConfigError: The test variable is set to anything but 1..60.
    """
    text = os.environ.get(TEST_MIN_INTERVAL_ENV)
    if text is None:
        return MIN_INTERVAL
    if not text.isdigit() or not 1 <= int(text) <= MIN_INTERVAL:
        raise ConfigError(f"{TEST_MIN_INTERVAL_ENV}={text!r}: expected whole seconds"
                          f" 1..{MIN_INTERVAL} (a setting for tests only)")
    return int(text)


def _schedule(node: Node) -> Schedule:
    f = node.fields(optional=("interval", "cron"))
    if ("interval" in f) == ("cron" in f):
        node.fail("give exactly one of interval (seconds) and cron (five fields)")
    if "interval" in f:
        value = f["interval"].value
        if isinstance(value, bool) or not isinstance(value, int):
            f["interval"].fail(f"expected a whole number of seconds, found {value!r}")
        shortest = min_interval()
        if not shortest <= value <= MAX_INTERVAL:
            f["interval"].fail(f"{value} s is outside {shortest}..{MAX_INTERVAL} s")
        return Schedule(interval=value)
    cron = f["cron"].string()
    parts = cron.split()
    if len(parts) != 5 or not all(_CRON_FIELD.fullmatch(x) for x in parts):
        f["cron"].fail(f"{cron!r} is not a cron expression of five fields (minute hour"
                       " day-of-month month day-of-week)")
    return Schedule(cron=" ".join(parts))
