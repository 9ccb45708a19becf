"""MISP sync targets as data: ``feeds/misp-targets.yaml`` read strictly.

Each target is one MISP instance the exchange keeps in sync: where it is, where its API
key is kept (a file or an environment variable, never the key itself), which member
organisation owns it (the recipient the sharing policy judges for a push), which way data
flows, how often, what is filtered out, and how the TLS connection is checked.

Parsing follows the policy files (:mod:`exchange.policy.schema`): duplicate keys, unknown
keys, wrong types and bad values are refused with a :class:`~exchange.errors.ConfigError`
naming the file, the key path and the reason, e.g.
``feeds/misp-targets.yaml: targets.pk-cert-misp.url: 'http://misp.example' must use
https (plain http is allowed only to a loopback address)``.

Pure code: :func:`parse_targets` takes bytes; :func:`load_targets` only reads the file.
Resolving the API key (reading the file or the environment) is left to the client that
connects, so a parsed target never holds a secret.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from exchange.errors import ConfigError
from exchange.model.objects import Tlp
from exchange.node.mispmap import EventGrouping, TargetFilters
from exchange.policy.model import PolicySet
from exchange.policy.schema import NAME, SLUG, Node, parse_yaml

__all__ = [
    "DEFAULT_TIMEOUT",
    "Direction",
    "EventGrouping",
    "MispTarget",
    "Schedule",
    "TargetFilters",
    "check_owners",
    "load_targets",
    "parse_targets",
]

#: Seconds PyMISP waits for MISP when a target does not say (PyMISP's own default waits
#: for ever).
DEFAULT_TIMEOUT: Final = 30.0
#: Bounds for ``timeout`` and ``schedule.interval`` (seconds).
MAX_TIMEOUT: Final = 600.0
MIN_INTERVAL: Final = 60
MAX_INTERVAL: Final = 7 * 24 * 3600
#: FOR TESTS ONLY: an environment variable that lowers the shortest interval allowed
#: (whole seconds, 1..60), so an end-to-end test sees several scheduled cycles in
#: seconds. Production leaves it unset; a bad value is an error, never ignored.
TEST_MIN_INTERVAL_ENV: Final = "CX_TEST_MISP_MIN_INTERVAL"
#: Names of environment variables that may hold an API key.
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
#: One cron field: numbers, ranges, steps, lists, ``*``, month and weekday names.
_CRON_FIELD = re.compile(r"(?:\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?"
                         r"(?:,(?:\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?)*")
_TAG = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_LOOPBACK_NAMES: Final = frozenset({"localhost"})
_E = TypeVar("_E", bound=enum.StrEnum)


class Direction(enum.StrEnum):
    """Which way a target is synchronised."""

    PUSH = "push"
    PULL = "pull"
    BOTH = "both"

    @property
    def pushes(self) -> bool:
        """Whether the exchange pushes to the target."""
        return self in (Direction.PUSH, Direction.BOTH)

    @property
    def pulls(self) -> bool:
        """Whether the exchange pulls from the target."""
        return self in (Direction.PULL, Direction.BOTH)




@dataclass(frozen=True, slots=True)
class Schedule:
    """When a target's jobs run: every ``interval`` seconds, or on a five-field ``cron``.

    Exactly one of the two is set.
    """

    interval: int | None = None
    cron: str | None = None

    def describe(self) -> str:
        """``every 900 s`` or ``cron '*/15 * * * *'``."""
        return f"every {self.interval} s" if self.interval is not None else \
            f"cron {self.cron!r}"




@dataclass(frozen=True, slots=True)
class MispTarget:
    """One MISP instance to keep in sync.

    Attributes:
        name: The target's name (the key in the file), used by ``exchange sync``.
        url: The instance's base URL (https, or http to a loopback address).
        api_key_file: A file holding the API key (one line), or None.
        api_key_env: An environment variable holding the API key, or None; exactly one
            of the two is set.
        owner: The member organisation that owns the instance: the recipient the
            sharing policy judges for every push (channel ``misp``).
        direction: Push, pull or both.
        schedule: When the jobs run.
        filters: What the target leaves out.
        ca_file: A CA bundle to verify the instance's certificate with, or None for the
            system's trust store (TLS is always verified).
        timeout: Seconds to wait for the instance on each request.
        event_grouping: Where indicators outside reports and groupings go.
    """

    name: str
    url: str
    api_key_file: str | None
    api_key_env: str | None
    owner: str
    direction: Direction
    schedule: Schedule
    filters: TargetFilters
    ca_file: str | None
    timeout: float
    event_grouping: EventGrouping


_TARGET_KEYS: Final = ("url", "owner", "direction", "schedule")
_TARGET_OPTIONAL: Final = ("api_key_file", "api_key_env", "filters", "ca_file", "timeout",
                           "event_grouping", "description")
#: Keys that would hold a secret inline; refused with advice.
_INLINE_SECRETS: Final = ("api_key", "key", "authkey", "auth_key", "token", "password")


def parse_targets(file: str, content: bytes) -> tuple[MispTarget, ...]:
    """Parse a MISP targets file.

    Args:
        file: The file's path, for messages.
        content: Its bytes (UTF-8 YAML).

    Returns:
        The targets, in file order.

    Raises:
        ConfigError: Broken YAML, a duplicate or unknown key, a missing key, a wrong
            type or a bad value; an API key given inline; a URL that is not https (except
            to a loopback address); two targets naming the same URL.
    """
    root = Node(parse_yaml(file, content), file)
    if root.value is None:
        root.fail("empty file; expected a mapping with 'targets'")
    fields = root.fields(required=("targets",), optional=("version",))
    if "version" in fields and fields["version"].value != 1:
        fields["version"].fail(f"unsupported version {fields['version'].value!r} (use 1)")
    targets: list[MispTarget] = []
    urls: dict[str, str] = {}
    for name, node in fields["targets"].entries():
        if not SLUG.fullmatch(name):
            node.fail(f"target name {name!r} is not lowercase letters, digits, '.', '_' or"
                      " '-' (at most 64)")
        target = _target(name, node)
        if target.url in urls:
            node.fail(f"url {target.url!r} is already the url of target {urls[target.url]!r}")
        urls[target.url] = name
        targets.append(target)
    if not targets:
        fields["targets"].fail("no targets; list at least one")
    return tuple(targets)


def load_targets(path: Path) -> tuple[MispTarget, ...]:
    """Read and parse a MISP targets file.

    Raises:
        ConfigError: The file cannot be read, or :func:`parse_targets` refuses it.
    """
    try:
        content = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the MISP targets file ({e.strerror})") from None
    return parse_targets(str(path), content)


def check_owners(targets: Collection[MispTarget], policy: PolicySet, file: str) -> None:
    """Check that every target's owner is a member organisation of the policy's community.

    Raises:
        ConfigError: An owner the community does not list as a member (a constituent or
            operator does not own a member's MISP instance).
    """
    members = set(policy.community.members)
    for target in targets:
        if target.owner not in members:
            raise ConfigError(
                f"{file}: targets.{target.name}.owner: {target.owner!r} is not a member of"
                f" community {policy.community.name!r} (members: {', '.join(sorted(members))})"
            )


def _target(name: str, node: Node) -> MispTarget:
    if isinstance(node.value, dict):
        for key in _INLINE_SECRETS:
            if key in node.value:
                Node(None, node.file, f"{node.path}.{key}").fail(
                    "an API key is never written in this file: put it in a file readable"
                    " only by the exchange (api_key_file) or in an environment variable"
                    " (api_key_env)")
    f = node.fields(required=_TARGET_KEYS, optional=_TARGET_OPTIONAL)
    if "description" in f:
        f["description"].string()
    key_file = f["api_key_file"].string() if "api_key_file" in f else None
    key_env = (f["api_key_env"].string(_ENV_NAME, "an environment variable name"
                                       " (A-Z, 0-9, '_')") if "api_key_env" in f else None)
    if (key_file is None) == (key_env is None):
        node.fail("give exactly one of api_key_file and api_key_env")
    if key_file is not None and not key_file.strip():
        f["api_key_file"].fail("empty path")
    ca_file = f["ca_file"].string() if "ca_file" in f else None
    if ca_file is not None and not ca_file.strip():
        f["ca_file"].fail("empty path")
    owner = f["owner"].string(NAME, "an organisation name")
    return MispTarget(
        name=name,
        url=_url(f["url"]),
        api_key_file=key_file,
        api_key_env=key_env,
        owner=owner,
        direction=_choice(f["direction"], Direction),
        schedule=_schedule(f["schedule"]),
        filters=_filters(f["filters"]) if "filters" in f else TargetFilters(),
        ca_file=ca_file,
        timeout=_timeout(f["timeout"]) if "timeout" in f else DEFAULT_TIMEOUT,
        event_grouping=(_choice(f["event_grouping"], EventGrouping)
                        if "event_grouping" in f else EventGrouping.PRODUCER_DAY),
    )


def _choice(node: Node, kind: type[_E]) -> _E:
    text = node.string()
    try:
        return kind(text)
    except ValueError:
        node.fail(f"{text!r} is not one of {', '.join(m.value for m in kind)}")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
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
        node.fail("the URL must not carry credentials; use api_key_file or api_key_env")
    if parts.query or parts.fragment:
        node.fail(f"{text!r}: the base URL takes no query or fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        node.fail(f"{text!r} must use https (plain http is allowed only to a loopback"
                  " address)")
    return text


def min_interval() -> int:
    """The shortest interval allowed: :data:`MIN_INTERVAL`, or lower for tests
    (:data:`TEST_MIN_INTERVAL_ENV`).

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
    fields = cron.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(x) for x in fields):
        f["cron"].fail(f"{cron!r} is not a cron expression of five fields (minute hour"
                       " day-of-month month day-of-week)")
    return Schedule(cron=" ".join(fields))


def _timeout(node: Node) -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        node.fail(f"expected a number of seconds, found {value!r}")
    if not 0 < value <= MAX_TIMEOUT:
        node.fail(f"{value} s is outside (0, {MAX_TIMEOUT:g}] s")
    return float(value)


def _filters(node: Node) -> TargetFilters:
    f = node.fields(optional=("collections", "tlp_ceiling", "tags"))
    collections: list[str] = []
    for item in f["collections"].items() if "collections" in f else ():
        alias = item.string(SLUG, "a collection alias")
        if alias in collections:
            item.fail(f"collection {alias!r} is listed twice")
        collections.append(alias)
    ceiling = f["tlp_ceiling"].level() if "tlp_ceiling" in f else Tlp.RED
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    if "tags" in f:
        tags = f["tags"].fields(optional=("include", "exclude"))
        include = _tags(tags["include"]) if "include" in tags else ()
        exclude = _tags(tags["exclude"]) if "exclude" in tags else ()
        both = set(include) & set(exclude)
        if both:
            f["tags"].fail(f"tag {sorted(both)[0]!r} is both included and excluded")
    return TargetFilters(tuple(collections), ceiling, include, exclude)


def _tags(node: Node) -> tuple[str, ...]:
    out: list[str] = []
    for item in node.items():
        tag = item.string(_TAG, "a tag (1-255 printable characters)")
        if tag in out:
            item.fail(f"tag {tag!r} is listed twice")
        out.append(tag)
    return tuple(out)
