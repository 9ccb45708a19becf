"""The observable values an object names, normalised once, for search.

An analyst asks "is 203.0.113.7 in the exchange?"; the answer comes from an index of the
values indicators and cyber-observable objects (SCOs) name, filled when a version is
stored. This module decides what goes into that index and how a value is written there:

* from indicators with ``pattern_type`` ``stix`` (STIX 2.1 section 4.7), every comparison
  ``=`` or ``IN`` (not negated) on a property that holds an address, a domain, a URL, an
  e-mail address or a hash (``ISSUBSET`` on an address too: it is how a pattern names a
  network), whatever AND/OR/FOLLOWEDBY joins it: the index answers "which objects mention
  this value", not "which pattern matches this observation";
* from SCOs (STIX 2.1 section 6): ``ipv4-addr``, ``ipv6-addr``, ``domain-name``, ``url``,
  ``email-addr`` values and the ``hashes`` of ``file``, ``artifact`` and
  ``x509-certificate``; and from the ``objects`` an ``observed-data`` still embeds (the
  STIX 2.0 form, deprecated in 2.1 but found in exports).

Normal forms (one per kind, so equal values compare equal as text):

* ``ipv4``/``ipv6``: the canonical address (RFC 5952 for IPv6), or ``network/prefix``
  for a network shorter than the full length (host bits cleared: ``10.1.2.3/8`` is
  ``10.0.0.0/8``);
* ``domain``: lower case, no trailing dot, internationalised names in their ASCII
  (``xn--``) form; labels of letters, digits, ``-`` and ``_`` only;
* ``url``: scheme and host in lower case, the scheme's default port dropped, an empty
  path written ``/``; everything else (path, query, fragment) exactly as given, since
  servers may treat it case-sensitively;
* ``email``: lower case (local parts are case-sensitive by RFC 5321, but no mail system
  in use treats them so, and an analyst types what they saw);
* hashes: the algorithm as STIX 2.1 section 10.7 names it, hexadecimal values in lower
  case and checked for the algorithm's length; SSDEEP and TLSH values as given (TLSH in
  lower case).

Defanged values (``hxxp://``, ``example[.]com``, ``1.2.3[.]4``) are not valid values of
those properties and are never indexed, nor accepted as a search.

Pure code, no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from exchange.errors import ExchangeError, InvalidInput
from exchange.model.limits import Limits
from exchange.model.pattern import Comparison, comparisons

__all__ = [
    "HASH_KINDS",
    "KINDS",
    "Observable",
    "SearchTerm",
    "normalise",
    "observables_of",
    "search_terms",
]

#: Hash algorithms as STIX 2.1 section 10.7 names them -> the index kind.
_HASH_NAMES: Final = {
    "MD5": "md5", "SHA1": "sha1", "SHA-1": "sha1", "SHA256": "sha256", "SHA-256": "sha256",
    "SHA512": "sha512", "SHA-512": "sha512", "SHA3-256": "sha3-256", "SHA3256": "sha3-256",
    "SHA3-512": "sha3-512", "SHA3512": "sha3-512", "SSDEEP": "ssdeep", "TLSH": "tlsh",
}  # fmt: skip
#: Hexadecimal digits of each fixed-length hash.
_HEX_LENGTH: Final = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128,
                      "sha3-256": 64, "sha3-512": 128}
#: The hash kinds of the index.
HASH_KINDS: Final = (*_HEX_LENGTH, "ssdeep", "tlsh")
#: Every kind of the index.
KINDS: Final = ("ipv4", "ipv6", "domain", "url", "email", *HASH_KINDS)

#: Longest index key stored as text; longer keys (long URLs) are stored as their digest.
MAX_KEY: Final = 512
_DIGEST_PREFIX: Final = "#sha256:"

_HEX = re.compile(r"[0-9a-f]+", re.ASCII)
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.ASCII)
_SSDEEP = re.compile(r"[0-9]{1,10}:[A-Za-z0-9+/]{1,128}:[A-Za-z0-9+/]{1,128}(?:,\"?.*)?",
                     re.ASCII)
_TLSH = re.compile(r"(?:t1)?[0-9a-f]{70}", re.ASCII)
_DEFANGED_SCHEMES: Final = frozenset({"hxxp", "hxxps", "hxxxp", "fxp", "fxps", "meow"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
#: Email-message properties whose ``.value`` is an e-mail address.
_EMAIL_REFS: Final = frozenset({"from_ref", "sender_ref", "to_refs", "cc_refs", "bcc_refs"})
#: Properties of a pattern whose ``.value`` is an address or a domain name.
_ADDRESS_REFS: Final = frozenset({"src_ref", "dst_ref", "resolves_to_refs"})
#: Pattern operators whose values are observable values (``ISSUBSET``: addresses only).
_EXACT_OPERATORS: Final = frozenset({"EQ", "IN"})
#: A very permissive cap: pattern indexing never refuses what ingest accepted.
_PATTERN_LIMITS: Final = Limits(max_pattern_bytes=1 << 20, max_pattern_observations=1 << 16)


@dataclass(frozen=True, slots=True, order=True)
class Observable:
    """One normalised value an object names.

    Attributes:
        kind: One of :data:`KINDS`.
        value: The normal form (module docstring).
    """

    kind: str
    value: str

    @property
    def key(self) -> str:
        """The index key: the value; a domain as its labels reversed and ending in ``.``
        (``www.example.com`` -> ``com.example.www.``), so that a domain and its
        subdomains share a key prefix; any key longer than :data:`MAX_KEY` as its digest."""
        return index_key(self.kind, self.value)


def index_key(kind: str, value: str) -> str:
    """The index key of a normalised value (see :attr:`Observable.key`)."""
    key = ".".join(reversed(value.split("."))) + "." if kind == "domain" else value
    if len(key) > MAX_KEY:
        return _DIGEST_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key


def value_of_key(kind: str, key: str) -> str | None:
    """The normalised value of an index key (None for a digest key)."""
    if key.startswith(_DIGEST_PREFIX):
        return None
    if kind == "domain":
        return ".".join(reversed(key.rstrip(".").split(".")))
    return key


# -- normal forms -----------------------------------------------------------------------


def _ip(text: str) -> Observable | None:
    """An address or network, canonical; None when ``text`` is neither."""
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            kind = f"ipv{network.version}"
            if network.prefixlen == network.max_prefixlen:
                return Observable(kind, str(network.network_address))
            return Observable(kind, str(network))
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return Observable(f"ipv{address.version}", str(address))


def _domain(text: str) -> str | None:
    """A domain name in normal form; None when ``text`` is not one."""
    name = text.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if len(labels) == 1 or labels[-1].isdigit():
        return None  # a bare word, or an address (1.2.3.4 is not a domain name)
    return name


def _email(text: str) -> str | None:
    local, at, domain = text.strip().rpartition("@")
    if not at or not local or len(local) > 64 or any(c.isspace() for c in local):
        return None
    if "@" in local and not (local.startswith('"') and local.endswith('"')):
        return None
    normal = _domain(domain)
    if normal is None:
        return None
    return f"{local.lower()}@{normal}"


def _url(text: str) -> str | None:
    """A URL in the conservative normal form; None when ``text`` is not an absolute URL."""
    if any(c.isspace() or ord(c) < 0x20 for c in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or scheme in _DEFANGED_SCHEMES or not parts.netloc:
        return None
    host = parts.hostname or ""
    if not host:
        return None
    if host.startswith("[") or ":" in host:
        address = _ip(host.strip("[]"))
        if address is None or address.kind != "ipv6":
            return None
        host_text = f"[{address.value}]"
    else:
        as_ip = _ip(host)
        if as_ip is not None and as_ip.kind == "ipv4" and "/" not in as_ip.value:
            host_text = as_ip.value
        else:
            domain = _domain(host)
            if domain is None:
                return None
            host_text = domain
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + host_text
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def _hash(algorithm: str, text: str) -> Observable | None:
    kind = _HASH_NAMES.get(algorithm.upper())
    if kind is None:
        return None
    value = text.strip()
    length = _HEX_LENGTH.get(kind)
    if length is not None:
        value = value.lower()
        if len(value) != length or not _HEX.fullmatch(value):
            return None
    elif kind == "tlsh":
        value = value.lower()
        if not _TLSH.fullmatch(value):
            return None
    elif not _SSDEEP.fullmatch(value):
        return None
    return Observable(kind, value)


def normalise(kind: str, text: str) -> Observable | None:
    """The normal form of a value of a known kind; None when it is not a valid one.

    ``kind`` is ``ip`` (either version, address or network), ``domain``, ``url``,
    ``email``, or a STIX hash algorithm name (``MD5``, ``SHA-256``...).
    """
    if not isinstance(text, str) or not text or len(text) > 8192:
        return None
    if kind == "ip":
        return _ip(text.strip())
    if kind == "domain":
        domain = _domain(text)
        return Observable("domain", domain) if domain is not None else None
    if kind == "url":
        url = _url(text)
        return Observable("url", url) if url is not None else None
    if kind == "email":
        email = _email(text)
        return Observable("email", email) if email is not None else None
    return _hash(kind, text)


# -- from objects -----------------------------------------------------------------------


def _from_hashes(hashes: Any) -> Iterator[Observable]:
    if isinstance(hashes, Mapping):
        for algorithm, value in hashes.items():
            if isinstance(algorithm, str) and isinstance(value, str):
                found = _hash(algorithm, value)
                if found is not None:
                    yield found


def _from_sco(obj: Mapping[str, Any]) -> Iterator[Observable]:
    kind = obj.get("type")
    value = obj.get("value")
    found: Observable | None = None
    if kind in ("ipv4-addr", "ipv6-addr") and isinstance(value, str):
        found = _ip(value.strip())
        if found is not None and found.kind != f"ipv{kind[3]}":
            found = None
    elif kind == "domain-name" and isinstance(value, str):
        found = normalise("domain", value)
    elif kind == "url" and isinstance(value, str):
        found = normalise("url", value)
    elif kind == "email-addr" and isinstance(value, str):
        found = normalise("email", value)
    elif kind in ("file", "artifact", "x509-certificate"):
        yield from _from_hashes(obj.get("hashes"))
    if found is not None:
        yield found


def _address_or_domain(text: str) -> Observable | None:
    return _ip(text.strip()) or normalise("domain", text)


def _from_comparison(test: Comparison) -> Iterator[Observable]:
    if test.negated:
        return
    path = test.path
    names = [step for step in path if isinstance(step, str)]
    found: Observable | None
    if test.operator == "ISSUBSET" and test.object_type in ("ipv4-addr", "ipv6-addr") \
            and path == ("value",):
        for text in test.values:
            found = _ip(text.strip())
            if found is not None:
                yield found
        return
    if test.operator not in _EXACT_OPERATORS or not names:
        return
    for text in test.values:
        found = None
        if len(path) >= 2 and path[-2] == "hashes" and isinstance(path[-1], str):
            found = _hash(path[-1], text)
        elif names[-1] != "value":
            continue
        elif len(names) == 1:
            kind = test.object_type
            if kind in ("ipv4-addr", "ipv6-addr"):
                found = _ip(text.strip())
            elif kind == "domain-name":
                found = normalise("domain", text)
            elif kind == "url":
                found = normalise("url", text)
            elif kind == "email-addr":
                found = normalise("email", text)
        elif names[0] in _EMAIL_REFS:
            found = normalise("email", text)
        elif names[0] in _ADDRESS_REFS or names[-2] in _ADDRESS_REFS:
            found = _address_or_domain(text)
        if found is not None:
            yield found


def _from_pattern(pattern: str) -> Iterator[Observable]:
    try:
        tests = comparisons(pattern, _PATTERN_LIMITS)
    except ExchangeError:
        return  # ingest already refused invalid patterns; an old row is left unindexed
    for test in tests:
        yield from _from_comparison(test)


def observables_of(obj: Mapping[str, Any]) -> list[Observable]:
    """The distinct observable values one STIX object names, sorted.

    Indicators give the values of their STIX pattern, SCOs their own, observed-data the
    values of the objects it embeds; every other object names none.
    """
    found: set[Observable] = set()
    kind = obj.get("type")
    if kind == "indicator":
        pattern = obj.get("pattern")
        if isinstance(pattern, str) and obj.get("pattern_type", "stix") == "stix":
            found.update(_from_pattern(pattern))
    elif kind == "observed-data":
        embedded = obj.get("objects")
        if isinstance(embedded, Mapping):
            for item in embedded.values():
                if isinstance(item, Mapping):
                    found.update(_from_sco(item))
    else:
        found.update(_from_sco(obj))
    return sorted(found)


# -- searches ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """What one search value asks the index for.

    Attributes:
        value: The value in normal form (what a hit's matched value is compared with).
        kinds: The index kinds to look in.
        keys: Exact index keys: the value, and for an address every network that
            contains it (``203.0.113.7`` also looks up ``203.0.113.0/24``...).
        prefix: For a domain with subdomains, the key prefix every subdomain shares.
    """

    value: str
    kinds: tuple[str, ...]
    keys: tuple[str, ...]
    prefix: str | None = None

    def matches(self, observable: Observable) -> bool:
        """Whether an observable of a hit answers this search."""
        if observable.kind not in self.kinds:
            return False
        key = observable.key
        return key in self.keys or (self.prefix is not None and key.startswith(self.prefix))


def _containing_networks(found: Observable) -> tuple[str, ...]:
    """The keys of ``found`` and of every network that contains it, longest prefix first."""
    network = ipaddress.ip_network(found.value, strict=False)
    keys = [found.value]
    for prefix in range(network.prefixlen - 1, -1, -1):
        keys.append(str(network.supernet(new_prefix=prefix)))
    return tuple(keys)


def search_terms(text: str, *, subdomains: bool = False) -> SearchTerm:
    """What a search for ``text`` looks up: the kind is recognised from the value.

    An address (or network) is looked up with every network containing it; a hex string
    of 32, 40, 64 or 128 digits as the hashes of that length; a value with ``@`` as an
    e-mail address; one with ``://`` as a URL; else a domain name (with ``subdomains``,
    its subdomains too).

    Raises:
        InvalidInput: The value is none of these (a defanged value, an empty string, a
            bare word); the message says what is accepted.
    """
    value = text.strip()
    if not value or len(value) > 8192:
        raise InvalidInput("give a value to search for: an IP address or network, a domain,"
                           " a URL, an e-mail address or a hash")
    found = _ip(value)
    if found is not None:
        return SearchTerm(found.value, (found.kind,), _containing_networks(found))
    lowered = value.lower()
    if _HEX.fullmatch(lowered):
        kinds = tuple(k for k, n in _HEX_LENGTH.items() if n == len(lowered))
        if kinds:
            return SearchTerm(lowered, kinds, (lowered,))
    if _TLSH.fullmatch(lowered):
        return SearchTerm(lowered, ("tlsh",), (lowered,))
    if _SSDEEP.fullmatch(value):
        return SearchTerm(value, ("ssdeep",), (value,))
    if "://" in value:
        url = _url(value)
        if url is None:
            raise InvalidInput(f"{_shown(value)} is not a URL the exchange can search for"
                               " (defanged values such as hxxp:// or [.] are not accepted)")
        return SearchTerm(url, ("url",), (index_key("url", url),))
    if "@" in value:
        email = _email(value)
        if email is None:
            raise InvalidInput(f"{_shown(value)} is not an e-mail address")
        return SearchTerm(email, ("email",), (email,))
    domain = _domain(value)
    if domain is None:
        raise InvalidInput(
            f"{_shown(value)} is not an IP address or network, domain, URL, e-mail address"
            " or MD5/SHA-1/SHA-256/SHA-512 hash (defanged values such as example[.]com are"
            " not accepted)")
    key = index_key("domain", domain)
    return SearchTerm(domain, ("domain",), (key,), key if subdomains else None)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:61] + "...")


def keys_of(observables: Iterable[Observable]) -> list[tuple[str, str]]:
    """``(kind, key)`` pairs of observables, for the index rows."""
    return [(o.kind, o.key) for o in observables]
