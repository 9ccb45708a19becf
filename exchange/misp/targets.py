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
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from exchange.errors import ConfigError
from exchange.model.objects import Tlp
from exchange.node.datafile import (
    Schedule,
    env_name,
    include_exclude,
    number,
    open_data_file,
    parse_schedule,
    path_value,
    read_data_file,
    refuse_inline_secrets,
    slug_name,
    web_url,
)
from exchange.node.mispmap import EventGrouping, TargetFilters
from exchange.policy.model import PolicySet
from exchange.policy.schema import NAME, SLUG, Node

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
#: Requests at once for a new event's attributes (MISP runs four workers by default).
DEFAULT_PUSH_PARTS: Final = 2
MAX_PUSH_PARTS: Final = 8
#: The longest ``timeout`` (seconds).
MAX_TIMEOUT: Final = 600.0
#: FOR TESTS ONLY: an environment variable that lowers the shortest interval allowed
#: (whole seconds, 1..60), so an end-to-end test sees several scheduled cycles in
#: seconds. Production leaves it unset; a bad value is an error, never ignored.
TEST_MIN_INTERVAL_ENV: Final = "CX_TEST_MISP_MIN_INTERVAL"
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
        push_parts: Requests at once for the attributes of a new event of many
            (:mod:`exchange.misp.client`); 1 adds every event in one request.
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
    push_parts: int = DEFAULT_PUSH_PARTS


_TARGET_KEYS: Final = ("url", "owner", "direction", "schedule")
_TARGET_OPTIONAL: Final = ("api_key_file", "api_key_env", "filters", "ca_file", "timeout",
                           "event_grouping", "push_parts", "description")
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
    top = open_data_file(file, content, "targets")
    targets: list[MispTarget] = []
    urls: dict[str, str] = {}
    for name, node in top.entries():
        slug_name(name, node, "target")
        target = _target(name, node)
        if target.url in urls:
            node.fail(f"url {target.url!r} is already the url of target {urls[target.url]!r}")
        urls[target.url] = name
        targets.append(target)
    if not targets:
        top.fail("no targets; list at least one")
    return tuple(targets)


def load_targets(path: Path) -> tuple[MispTarget, ...]:
    """Read and parse a MISP targets file.

    Raises:
        ConfigError: The file cannot be read, or :func:`parse_targets` refuses it.
    """
    return parse_targets(str(path), read_data_file(path, "MISP targets"))


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
    refuse_inline_secrets(node, _INLINE_SECRETS,
                          "an API key is never written in this file: put it in a file"
                          " readable only by the exchange (api_key_file) or in an"
                          " environment variable (api_key_env)")
    f = node.fields(required=_TARGET_KEYS, optional=_TARGET_OPTIONAL)
    if "description" in f:
        f["description"].string()
    key_node = f.get("api_key_file")
    key_env = env_name(f["api_key_env"]) if "api_key_env" in f else None
    if (key_node is None) == (key_env is None):
        node.fail("give exactly one of api_key_file and api_key_env")
    key_file = path_value(key_node) if key_node is not None else None
    ca_file = path_value(f["ca_file"]) if "ca_file" in f else None
    owner = f["owner"].string(NAME, "an organisation name")
    return MispTarget(
        name=name,
        url=_url(f["url"]),
        api_key_file=key_file,
        api_key_env=key_env,
        owner=owner,
        direction=_choice(f["direction"], Direction),
        schedule=parse_schedule(f["schedule"], TEST_MIN_INTERVAL_ENV),
        filters=_filters(f["filters"]) if "filters" in f else TargetFilters(),
        ca_file=ca_file,
        timeout=(number(f["timeout"], 0, MAX_TIMEOUT, seconds=True) if "timeout" in f
                 else DEFAULT_TIMEOUT),
        event_grouping=(_choice(f["event_grouping"], EventGrouping)
                        if "event_grouping" in f else EventGrouping.PRODUCER_DAY),
        push_parts=(int(number(f["push_parts"], 0, MAX_PUSH_PARTS, whole=True))
                    if "push_parts" in f else DEFAULT_PUSH_PARTS),
    )


def _choice(node: Node, kind: type[_E]) -> _E:
    text = node.string()
    try:
        return kind(text)
    except ValueError:
        node.fail(f"{text!r} is not one of {', '.join(m.value for m in kind)}")


def _url(node: Node) -> str:
    return web_url(node, credentials="api_key_file or api_key_env", what="the base URL")


def _filters(node: Node) -> TargetFilters:
    f = node.fields(optional=("collections", "tlp_ceiling", "tags"))
    collections: list[str] = []
    for item in f["collections"].items() if "collections" in f else ():
        alias = item.string(SLUG, "a collection alias")
        if alias in collections:
            item.fail(f"collection {alias!r} is listed twice")
        collections.append(alias)
    ceiling = f["tlp_ceiling"].level() if "tlp_ceiling" in f else Tlp.RED
    include, exclude = include_exclude(f["tags"], "tag") if "tags" in f else ((), ())
    return TargetFilters(tuple(collections), ceiling, include, exclude)
