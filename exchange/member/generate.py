"""Synthetic but realistic STIX 2.1 indicators and identities for the demo and benchmarks.

:func:`generate_indicators` yields indicator dicts that look like a national CERT's
feed: IPv4 addresses, domains, URLs, email addresses and file hashes, with names,
descriptions, indicator types, kill-chain phases, confidence, labels and TLP markings
drawn from a seeded :class:`random.Random`. The same arguments always give the same
objects, and every object passes ``stix2.parse(..., allow_custom=False)``.

Everything generated is fake, but IPv4 addresses come from public ranges and domains
from real TLDs, so a value may belong to someone. Every indicator therefore carries the
label ``synthetic`` and says so in its description; never publish generated data to a
real exchange.

Dicts are built directly (no ``stix2`` objects) so that a million indicators take well
under a minute. Pure code: no I/O; the clock is read only when ``start`` is omitted.
"""

from __future__ import annotations

import bisect
import random
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from exchange.errors import InvalidInput
from exchange.member.iocs import check_identity_id, indicator_pattern, stix_timestamp
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS

#: Default share of each TLP level among generated indicators.
DEFAULT_TLP_WEIGHTS: Mapping[Tlp, float] = {
    Tlp.CLEAR: 0.10,
    Tlp.GREEN: 0.40,
    Tlp.AMBER: 0.35,
    Tlp.AMBER_STRICT: 0.10,
    Tlp.RED: 0.05,
}

#: The label every generated indicator carries.
SYNTHETIC_LABEL = "synthetic"

#: Namespace of generated ids: identities by name, indicators by (identity, seed, index).
GENERATOR_NAMESPACE = uuid.UUID("3c9e7a41-2b6d-4f0e-8d15-7a4b9c2e6f13")

#: How far back ``created`` timestamps reach from ``start``.
SPREAD = timedelta(days=90)

_KILL_CHAIN = "lockheed-martin-cyber-kill-chain"

# fmt: off
# (kind, weight)
_KINDS = (("ipv4", 25), ("domain", 24), ("url", 20), ("sha256", 12), ("email", 8),
          ("md5", 6), ("sha1", 5))

# Public first octets (no private, loopback, CGNAT, link-local, documentation,
# benchmarking or multicast ranges live under these).
_FIRST_OCTETS = (2, 5, 23, 31, 37, 45, 46, 62, 77, 78, 79, 80, 81, 82, 85, 89, 91, 93, 94,
                 95, 103, 104, 107, 109, 116, 138, 141, 146, 151, 154, 159, 162, 167, 176,
                 178, 179, 185, 188, 193, 194, 195, 212, 213, 217)

_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v",
           "w", "z", "br", "cl", "dr", "fl", "gr", "kr", "pl", "pr", "sh", "st", "tr", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou")
_CODAS = ("", "", "", "n", "r", "s", "x", "l", "t", "m")
_TLDS = ("com", "com", "com", "net", "net", "org", "xyz", "top", "ru", "info", "biz", "online",
         "site", "club", "cc", "io", "su", "pw")
_WORDS = ("secure", "login", "update", "account", "verify", "cloud", "mail", "portal", "cdn",
          "api", "support", "billing", "docs", "auth", "service", "office", "drive")
_PATH_DIRS = ("wp-content", "wp-includes", "images", "admin", "uploads", "css", "js", "gate",
              "panel", "files", "tmp", "assets", "inc", "data")
_PATH_FILES = ("index.php", "gate.php", "login.php", "update.php", "load.php", "config.bin",
               "invoice.zip", "doc.html", "post.php", "check.php", "payload.exe", "i.php")
_QUERY_KEYS = ("id", "u", "token", "ref", "s", "q", "session")
_MAILBOXES = ("info", "support", "billing", "noreply", "admin", "hr", "invoice", "security",
              "service", "accounts", "payroll", "it-helpdesk")

# Fictitious campaigns, malware families and sectors: nothing here names a real actor.
_CAMPAIGNS = ("Glass Heron", "Silent Lantern", "Copper Fox", "Autumn Ledger", "Blue Quarry",
              "Iron Meadow", "Paper Falcon", "Quiet Harbor", "Amber Tide", "Northern Loom")
_FAMILIES = ("NightMarten", "CopperLoader", "HollowStar", "GreyWisp", "TallyRAT", "ShardLock",
             "MistStealer", "LarchBot", "OrbitDropper", "FernShell")
_SECTORS = ("government", "energy", "healthcare", "finance", "telecommunications",
            "transport", "education", "defence", "water", "manufacturing")
_VECTORS = ("malicious email attachments", "drive-by downloads", "trojanised installers",
            "exploited VPN appliances", "malicious advertisements")
_LABELS = ("phishing", "c2", "botnet", "ransomware", "apt", "banking-trojan", "malspam",
           "credential-harvesting", "scanning", "exploit-kit", "infostealer", "loader")
_PHASES = ("reconnaissance", "weaponization", "delivery", "exploitation", "installation",
           "command-and-control", "actions-on-objectives")

# (indicator_types, weight) drawn from the STIX 2.1 indicator-type-ov.
_TYPES = ((["malicious-activity"], 70), (["anomalous-activity"], 10), (["compromised"], 8),
          (["attribution"], 6), (["malicious-activity", "attribution"], 6))

# fmt: on

_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "ipv4": (
        "C2 server observed in the {campaign} phishing campaign against the {sector} sector.",
        "Scanning host probing {sector} networks; linked to {family} deployment.",
        "Exfiltration endpoint used by {family} during the {campaign} intrusion set.",
    ),
    "domain": (
        "C2 domain of {family} observed in the {campaign} campaign.",
        "Phishing domain impersonating a {sector} organisation ({campaign}).",
        "Domain serving {family} payloads delivered via {vector}.",
    ),
    "url": (
        "Payload download URL used by the {family} loader, spread via {vector}.",
        "Credential-harvesting page targeting {sector} staff in the {campaign} campaign.",
        "{family} panel gate URL seen in incident reports from the {sector} sector.",
    ),
    "email": (
        "Sender address of the {campaign} malspam wave against the {sector} sector.",
        "Reply-to address used in {family} phishing lures.",
    ),
    "hash": (
        "{family} sample delivered via {vector} in the {campaign} campaign.",
        "Dropper of {family} recovered from a {sector} sector incident.",
        "Second-stage {family} payload; {hash} digest.",
    ),
}

_KIND_NOUNS = {
    "ipv4": "IPv4 address",
    "domain": "domain",
    "url": "URL",
    "email": "email address",
    "md5": "file MD5",
    "sha1": "file SHA-1",
    "sha256": "file SHA-256",
}
_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
_HASH_BITS = {"md5": 128, "sha1": 160, "sha256": 256}


def generate_identity(name: str, *, country: str, seed: int) -> dict[str, Any]:
    """A STIX 2.1 identity for a (synthetic) national CERT.

    The id is uuid5 over the case-folded name, so the same organisation name always gives
    the same identity id; the timestamps and contact details come from ``seed``, so the
    whole object is reproducible.

    Args:
        name: The organisation name, e.g. ``"CERT-XX"``.
        country: ISO 3166-1 alpha-2 country code.
        seed: Seed for the reproducible parts (timestamps, contact details).

    Returns:
        The identity as a JSON-ready dict.

    Raises:
        InvalidInput: ``name`` is empty or ``country`` is not two letters.
    """
    clean = name.strip()
    if not clean:
        raise InvalidInput("an identity needs a non-empty name")
    if not re.fullmatch(r"[A-Za-z]{2}", country):
        raise InvalidInput(f"{country!r} is not an ISO 3166-1 alpha-2 country code")
    code = country.upper()
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    created = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3 * 365 * 86400))
    slug = re.sub(r"[^a-z0-9]+", "-", clean.casefold()).strip("-") or "cert"
    fingerprint = " ".join(f"{rng.getrandbits(16):04X}" for _ in range(10))
    stamp = stix_timestamp(created)
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id_for(clean),
        "created": stamp,
        "modified": stamp,
        "name": clean,
        "description": f"National CERT/CSIRT of {code} (synthetic demo organisation).",
        "roles": ["national-csirt"],
        "identity_class": "organization",
        "sectors": ["government-national"],
        "contact_information": f"incident@{slug}.example (PGP {fingerprint})",
    }


def identity_id_for(name: str) -> str:
    """The deterministic identity id :func:`generate_identity` gives ``name``."""
    return f"identity--{uuid.uuid5(GENERATOR_NAMESPACE, name.strip().casefold())}"


def generate_indicators(
    count: int,
    *,
    identity_id: str,
    seed: int,
    tlp_weights: Mapping[Tlp, float] | None = None,
    start: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` synthetic STIX 2.1 indicators published by ``identity_id``.

    Each indicator's values, id and TLP depend only on ``seed``, ``identity_id`` and its
    position; its timestamps depend on ``start`` too, so pass ``start`` for fully
    reproducible output. ``created`` lies within :data:`SPREAD` before ``start``;
    ``modified`` and ``valid_from`` are no earlier than ``created`` and no later than
    ``start``. Ids are uuid5 over (identity, seed, index), hence unique within one call.

    Arguments are checked when this function is called, not on the first ``next()``.

    Args:
        count: How many indicators.
        identity_id: ``created_by_ref`` of every indicator.
        seed: Seed of the :class:`random.Random` that draws everything.
        tlp_weights: Relative weight of each TLP level (missing levels get 0);
            defaults to :data:`DEFAULT_TLP_WEIGHTS`.
        start: The newest timestamp (aware); defaults to the current UTC time.

    Returns:
        An iterator of JSON-ready indicator dicts.

    Raises:
        InvalidInput: ``count`` is negative, ``identity_id`` is not an identity id,
            a weight is negative or all are zero, or ``start`` is naive.
    """
    if count < 0:
        raise InvalidInput(f"count must not be negative, not {count}")
    check_identity_id(identity_id)
    weights = DEFAULT_TLP_WEIGHTS if tlp_weights is None else tlp_weights
    levels = [level for level in Tlp if weights.get(level, 0.0) > 0]
    if any(weight < 0 for weight in weights.values()) or not levels:
        raise InvalidInput("TLP weights must be non-negative and not all zero")
    cumulative: list[float] = []
    total = 0.0
    for level in levels:
        total += weights[level]
        cumulative.append(total)
    markings = [[TLP2_IDS[level]] for level in levels]
    moment = start if start is not None else datetime.now(UTC)
    stix_timestamp(moment)  # refuses a naive datetime now rather than later
    end_ms = int(moment.timestamp() * 1000)
    namespace = uuid.uuid5(GENERATOR_NAMESPACE, f"{identity_id}/{seed}")
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    return _indicators(
        count,
        identity_id=identity_id,
        rng=rng,
        cumulative=cumulative,
        markings=markings,
        end_ms=end_ms,
        namespace=namespace,
    )


def _indicators(
    count: int,
    *,
    identity_id: str,
    rng: random.Random,
    cumulative: list[float],
    markings: list[list[str]],
    end_ms: int,
    namespace: uuid.UUID,
) -> Iterator[dict[str, Any]]:
    kinds = [kind for kind, _ in _KINDS]
    kind_weights = [weight for _, weight in _KINDS]
    types = [value for value, _ in _TYPES]
    type_weights = [weight for _, weight in _TYPES]
    spread_ms = int(SPREAD.total_seconds() * 1000)
    total_weight = cumulative[-1]
    last_marking = len(markings) - 1
    random_ = rng.random
    randrange = rng.randrange
    choice = rng.choice
    for index in range(count):
        kind = rng.choices(kinds, kind_weights)[0]
        value = _VALUES[kind](rng)
        created_ms = end_ms - randrange(spread_ms)
        modified_ms = created_ms if random_() < 0.7 else randrange(created_ms, end_ms + 1)
        created = _ms_stamp(created_ms)
        modified = created if modified_ms == created_ms else _ms_stamp(modified_ms)
        family = choice(_FAMILIES)
        template = choice(_DESCRIPTIONS["hash" if kind in _HASH_NAMES else kind])
        description = template.format(
            campaign=choice(_CAMPAIGNS),
            family=family,
            sector=choice(_SECTORS),
            vector=choice(_VECTORS),
            hash=_HASH_NAMES.get(kind, ""),
        )
        labels = [SYNTHETIC_LABEL, *rng.sample(_LABELS, randrange(1, 3))]
        marking = bisect.bisect_right(cumulative, random_() * total_weight)
        indicator: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(namespace, str(index))}",
            "created": created,
            "modified": modified,
            "created_by_ref": identity_id,
            "name": f"{family} {_KIND_NOUNS[kind]} {value}",
            "description": f"{description} Synthetic test data.",
            "indicator_types": list(rng.choices(types, type_weights)[0]),
            "pattern": indicator_pattern(kind, value),
            "pattern_type": "stix",
            "pattern_version": "2.1",
            "valid_from": created,
            "confidence": randrange(30, 96),
            "labels": labels,
            "object_marking_refs": list(markings[min(marking, last_marking)]),
        }
        if random_() < 0.5:
            days = randrange(30, 366)
            indicator["valid_until"] = _ms_stamp(created_ms + days * 86_400_000)
        if random_() < 0.4:
            phases = rng.sample(_PHASES, randrange(1, 3))
            indicator["kill_chain_phases"] = [
                {"kill_chain_name": _KILL_CHAIN, "phase_name": phase} for phase in phases
            ]
        yield indicator


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms_stamp(epoch_ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def _ipv4(rng: random.Random) -> str:
    bits = rng.getrandbits(24)
    last = (bits & 0xFF) % 254 + 1
    return f"{rng.choice(_FIRST_OCTETS)}.{bits >> 16}.{(bits >> 8) & 0xFF}.{last}"


def _word(rng: random.Random) -> str:
    syllables = rng.randrange(2, 4)
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + (
        rng.choice(_CODAS)
    )


def _domain(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        base = _word(rng)
    elif roll < 0.8:
        base = f"{rng.choice(_WORDS)}-{_word(rng)}"
    else:
        base = f"{_word(rng)}{rng.randrange(10, 1000)}"
    if rng.random() < 0.25:
        base = f"{rng.choice(_WORDS)}.{base}"
    return f"{base}.{rng.choice(_TLDS)}"


def _url(rng: random.Random) -> str:
    scheme = "https" if rng.random() < 0.6 else "http"
    host = _domain(rng) if rng.random() < 0.85 else _ipv4(rng)
    dirs = "/".join(rng.choice(_PATH_DIRS) for _ in range(rng.randrange(0, 3)))
    path = f"/{dirs}/" if dirs else "/"
    query = ""
    if rng.random() < 0.5:
        query = f"?{rng.choice(_QUERY_KEYS)}={rng.getrandbits(40):x}"
    return f"{scheme}://{host}{path}{rng.choice(_PATH_FILES)}{query}"


def _email(rng: random.Random) -> str:
    local = rng.choice(_MAILBOXES) if rng.random() < 0.6 else f"{_word(rng)}.{_word(rng)}"
    return f"{local}@{_domain(rng)}"


def _hasher(kind: str) -> Callable[[random.Random], str]:
    bits = _HASH_BITS[kind]
    width = bits // 4

    def make(rng: random.Random) -> str:
        return f"{rng.getrandbits(bits):0{width}x}"

    return make


_VALUES = {
    "ipv4": _ipv4,
    "domain": _domain,
    "url": _url,
    "email": _email,
    "md5": _hasher("md5"),
    "sha1": _hasher("sha1"),
    "sha256": _hasher("sha256"),
}
