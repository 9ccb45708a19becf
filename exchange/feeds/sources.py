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
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchange.errors import ConfigError
from exchange.feeds.attest import MAX_WORKERS
from exchange.node.datafile import (
    Schedule,
    env_name,
    number,
    open_data_file,
    parse_schedule,
    path_value,
    read_data_file,
    refuse_inline_secrets,
    slug_name,
    web_url,
)
from exchange.policy.schema import NAME, SLUG, Node

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "Kind",
    "Schedule",
    "TaxiiSource",
    "client_certificate",
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
#: Bytes of a client key file looked at for an encryption header.
MAX_KEY_FILE_BYTES: Final = 64 * 1024
#: FOR TESTS ONLY: lowers the shortest interval allowed (whole seconds, 1..60; see
#: :func:`exchange.node.datafile.min_interval`).
TEST_MIN_INTERVAL_ENV: Final = "CX_TEST_SOURCE_MIN_INTERVAL"
_USER = re.compile(r"[^\x00-\x1f\x7f:]{1,128}")
_COLLECTION = re.compile(r"[^\x00-\x1f\x7f/?#]{1,256}")
_INLINE_SECRETS: Final = ("password", "api_key", "key", "token", "secret")


class Kind(enum.StrEnum):
    """What a source is."""

    PEER = "peer"  # another cert-exchange node: signatures verified with pinned keys
    VENDOR = "vendor"  # any TAXII 2.1 server: unsigned objects, attested by this node


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
        client_cert: A PEM file with the client certificate (and its chain) this node
            presents to a server that authenticates clients by certificate (mutual TLS);
            with ``client_key``.
        client_key: The PEM file of that certificate's private key (unencrypted, mode
            0600 or narrower).
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
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def endpoint(self) -> str:
        """Where the source reads and what it fills, as configured: its API root (else
        its discovery URL), collection and local collection. A cursor is a position
        there only (:class:`~exchange.storage.base.SourceState`)."""
        return (f"{self.api_root or self.discovery} collection {self.collection}"
                f" into {self.into}")


_REQUIRED: Final = ("kind", "collection", "org", "into", "schedule")
_OPTIONAL: Final = ("trust", "discovery", "api_root", "user", "password_file",
                    "password_env", "ca_file", "timeout", "page_size", "sign_workers",
                    "client_cert", "client_key", "description")


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
    top = open_data_file(file, content, "sources")
    sources: list[TaxiiSource] = []
    seen: dict[tuple[str, str], str] = {}
    for name, node in top.entries():
        slug_name(name, node, "source")
        source = _source(name, node)
        where = (source.api_root or source.discovery or "", source.collection)
        if where in seen:
            node.fail(f"collection {source.collection!r} of {where[0]} is already read by"
                      f" source {seen[where]!r}")
        seen[where] = name
        sources.append(source)
    if not sources:
        top.fail("no sources; list at least one")
    return tuple(sources)


def load_sources(path: Path) -> tuple[TaxiiSource, ...]:
    """Read and parse a TAXII sources file.

    Raises:
        ConfigError: The file cannot be read, or :func:`parse_sources` refuses it.
    """
    return parse_sources(str(path), read_data_file(path, "TAXII sources"))


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


def client_certificate(source: TaxiiSource) -> tuple[str, str] | None:
    """The (certificate, key) files a source presents for mutual TLS, checked, or None.

    The key file must be readable by its owner only and hold an unencrypted PEM key
    that belongs to the certificate: each is checked here, before any connection, so a
    run fails with the reason rather than with a TLS error from the server.

    Raises:
        ConfigError: A file cannot be read, the key is readable by others or encrypted,
            or the key is not the certificate's. The message never holds key material.
    """
    if source.client_cert is None or source.client_key is None:
        return None
    cert = Path(source.client_cert).expanduser()
    key = Path(source.client_key).expanduser()
    where = f"source {source.name!r}:"
    try:
        mode = key.stat().st_mode
        if mode & 0o077:
            raise ConfigError(f"{where} client key file {key} is readable by others (mode"
                              f" {mode & 0o777:o}); chmod 600 it")
        with key.open("rb") as f:
            head = f.read(MAX_KEY_FILE_BYTES)
        cert.stat()
    except OSError as e:
        raise ConfigError(f"{where} cannot read client certificate or key file"
                          f" {e.filename} ({e.strerror})") from None
    if b"ENCRYPTED" in head:
        raise ConfigError(f"{where} client key file {key} is encrypted; the exchange reads"
                          " an unencrypted key protected by its mode (openssl pkey -in KEY"
                          " -out NEW, then chmod 600 NEW)")
    try:
        ssl.create_default_context().load_cert_chain(str(cert), str(key))
    except ssl.SSLError as e:
        why = e.reason or "not PEM, or the key is not the certificate's"
        raise ConfigError(f"{where} client certificate {cert} and key {key} do not load"
                          f" as a pair ({why})") from None
    except OSError as e:
        raise ConfigError(f"{where} cannot read client certificate {cert}"
                          f" ({e.strerror})") from None
    return str(cert), str(key)


def _source(name: str, node: Node) -> TaxiiSource:
    refuse_inline_secrets(node, _INLINE_SECRETS,
                          "a password is never written in this file: put it in a file"
                          " readable only by the exchange (password_file) or in an"
                          " environment variable (password_env)")
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
    password_file = path_value(f["password_file"]) if "password_file" in f else None
    password_env = env_name(f["password_env"]) if "password_env" in f else None
    if password_env is not None and password_env.startswith("EXCHANGE_") \
            and not password_env.startswith("EXCHANGE_SOURCE_KEY_"):
        f["password_env"].fail("an EXCHANGE_ variable must be named EXCHANGE_SOURCE_KEY_..."
                               " (other EXCHANGE_ names are node settings)")
    if password_file is not None and password_env is not None:
        node.fail("give at most one of password_file and password_env")
    if (user is None) != (password_file is None and password_env is None):
        node.fail("a user needs a password (password_file or password_env), and a"
                  " password needs a user")
    client_cert = path_value(f["client_cert"]) if "client_cert" in f else None
    client_key = path_value(f["client_key"]) if "client_key" in f else None
    if (client_cert is None) != (client_key is None):
        node.fail("a client certificate needs its key: give both client_cert and"
                  " client_key, or neither")
    return TaxiiSource(
        name=name, kind=kind, trust=trust, discovery=discovery, api_root=api_root,
        collection=f["collection"].string(_COLLECTION, "a collection id or title"),
        org=f["org"].string(NAME, "an organisation name"),
        into=f["into"].string(SLUG, "a local collection alias or id"),
        user=user, password_file=password_file, password_env=password_env,
        ca_file=path_value(f["ca_file"]) if "ca_file" in f else None,
        schedule=parse_schedule(f["schedule"], TEST_MIN_INTERVAL_ENV),
        timeout=number(f["timeout"], 0, MAX_TIMEOUT) if "timeout" in f else DEFAULT_TIMEOUT,
        page_size=(int(number(f["page_size"], 0, MAX_PAGE_SIZE, whole=True))
                   if "page_size" in f else DEFAULT_PAGE_SIZE),
        sign_workers=(_sign_workers(f["sign_workers"], kind) if "sign_workers" in f else 0),
        client_cert=client_cert, client_key=client_key,
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


def _url(node: Node) -> str:
    text = web_url(node, credentials="user and password_file or password_env",
                   what="a TAXII URL")
    return text if text.endswith("/") else text + "/"
