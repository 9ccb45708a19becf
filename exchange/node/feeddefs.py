"""Flat feed definitions as data: ``feeds/flat-feeds.yaml`` read strictly.

Besides the per-collection feeds (``<api_root>/feeds/<collection>/<kind>.<format>``), an
operator names feeds for SOC tools: a collection, the observable kinds it lists (a
firewall's block list of IPv4 and IPv6 addresses is one feed), the formats it is served
in, and filters that narrow what the sharing policy lets each reader receive (never
widen it): a TLP ceiling, labels included or excluded, a minimum confidence, a maximum
age. Each is served at ``<api_root>/feeds/<name>.<format>`` (:mod:`exchange.taxii.feeds_api`)
and built by :mod:`exchange.node.feeds`.

Parsing follows the policy files (:mod:`exchange.policy.schema`): duplicate keys, unknown
keys, wrong types and bad values are refused with a :class:`~exchange.errors.ConfigError`
naming the file, the key path and the reason, e.g.
``feeds/flat-feeds.yaml: feeds.soc-block.kinds[1]: 'ip' is not one of ipv4, ipv6, ...``.

Pure code: :func:`parse_flat_feeds` takes bytes; :func:`load_flat_feeds` only reads the
file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchange.model.objects import Tlp
from exchange.node.datafile import include_exclude, open_data_file, read_data_file, slug_name
from exchange.policy.schema import SLUG, Node

__all__ = [
    "FEED_FORMATS",
    "FEED_KINDS",
    "FeedFilters",
    "FlatFeed",
    "load_flat_feeds",
    "parse_flat_feeds",
]

#: Observable kinds a feed may list (index kinds of :mod:`exchange.model.observables`).
FEED_KINDS: Final = ("ipv4", "ipv6", "domain", "url", "md5", "sha1", "sha256", "email")
#: Formats: one value a line, or CSV.
FEED_FORMATS: Final = ("txt", "csv")
#: The longest age a filter may ask for (ten years).
MAX_AGE_DAYS: Final = 3650
_DAY: Final = 86_400_000_000  # microseconds


@dataclass(frozen=True, slots=True)
class FeedFilters:
    """What a named feed leaves out of what the reader may receive.

    Attributes:
        tlp_ceiling: The most restrictive level listed (``amber`` leaves out
            AMBER+STRICT and RED).
        labels_include: When set, only indicators with at least one of these labels.
        labels_exclude: Never indicators with any of these labels.
        min_confidence: When set, only indicators whose ``confidence`` is at least this
            (an indicator without one is left out).
        max_age_days: When set, only indicators whose version (``modified``) is at most
            this many days old.
    """

    tlp_ceiling: Tlp = Tlp.RED
    labels_include: tuple[str, ...] = ()
    labels_exclude: tuple[str, ...] = ()
    min_confidence: int | None = None
    max_age_days: int | None = None

    @property
    def reads_labels(self) -> bool:
        """Whether judging an indicator needs its labels and confidence."""
        return bool(self.labels_include or self.labels_exclude
                    or self.min_confidence is not None)

    def oldest(self, now: int) -> int | None:
        """The oldest version (microseconds) :attr:`max_age_days` admits at ``now``."""
        return None if self.max_age_days is None else now - self.max_age_days * _DAY

    def admits_labels(self, labels: Sequence[str] | None, confidence: int | None) -> bool:
        """Whether an indicator with these labels and confidence passes the filters."""
        have = set(labels or ())
        if self.labels_include and not have.intersection(self.labels_include):
            return False
        if have.intersection(self.labels_exclude):
            return False
        return self.min_confidence is None or (
            confidence is not None and confidence >= self.min_confidence)


@dataclass(frozen=True, slots=True)
class FlatFeed:
    """One named flat feed.

    Attributes:
        name: The feed's name (the key in the file): its URL is ``<name>.<format>``.
        collection: The alias of the collection it reads.
        kinds: The observable kinds it lists, in file order.
        formats: The formats it is served in.
        filters: What it leaves out.
        description: What it is for (shown in the feed index).
    """

    name: str
    collection: str
    kinds: tuple[str, ...]
    formats: tuple[str, ...]
    filters: FeedFilters
    description: str = ""


_FEED_KEYS: Final = ("collection", "kinds")
_FEED_OPTIONAL: Final = ("formats", "filters", "description")


def parse_flat_feeds(file: str, content: bytes) -> tuple[FlatFeed, ...]:
    """Parse a flat feeds file.

    Args:
        file: The file's path, for messages.
        content: Its bytes (UTF-8 YAML).

    Returns:
        The feeds, in file order.

    Raises:
        ConfigError: Broken YAML, a duplicate or unknown key, a missing key, a wrong
            type or a bad value (an unknown kind or format, a label both included and
            excluded, a confidence outside 0..100, an age outside 1..3650 days).
    """
    top = open_data_file(file, content, "feeds")
    feeds = [_feed(name, node) for name, node in top.entries()]
    if not feeds:
        top.fail("no feeds; list at least one")
    return tuple(feeds)


def load_flat_feeds(path: Path) -> tuple[FlatFeed, ...]:
    """Read and parse a flat feeds file.

    Raises:
        ConfigError: The file cannot be read, or :func:`parse_flat_feeds` refuses it.
    """
    return parse_flat_feeds(str(path), read_data_file(path, "flat feeds"))


def _feed(name: str, node: Node) -> FlatFeed:
    slug_name(name, node, "feed")
    if name.endswith((".txt", ".csv")) or name == "misp":
        node.fail(f"feed name {name!r} would clash with a feed's URL; choose another")
    f = node.fields(required=_FEED_KEYS, optional=_FEED_OPTIONAL)
    description = f["description"].string() if "description" in f else ""
    collection = f["collection"].string(SLUG, "a collection alias")
    kinds = _choices(f["kinds"], FEED_KINDS, "kind")
    formats = _choices(f["formats"], FEED_FORMATS, "format") if "formats" in f \
        else FEED_FORMATS
    filters = _filters(f["filters"]) if "filters" in f else FeedFilters()
    return FlatFeed(name, collection, kinds, formats, filters, description)


def _choices(node: Node, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in node.items():
        text = item.string()
        if text not in allowed:
            item.fail(f"{text!r} is not one of {', '.join(allowed)}")
        if text in out:
            item.fail(f"{what} {text!r} is listed twice")
        out.append(text)
    if not out:
        node.fail(f"no {what}s; list at least one of {', '.join(allowed)}")
    return tuple(out)


def _whole(node: Node, low: int, high: int, unit: str) -> int:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int):
        node.fail(f"expected a whole number{unit}, found {value!r}")
    if not low <= value <= high:
        node.fail(f"{value} is outside {low}..{high}{unit}")
    return value


def _filters(node: Node) -> FeedFilters:
    f = node.fields(optional=("tlp_ceiling", "labels", "min_confidence", "max_age_days"))
    ceiling = f["tlp_ceiling"].level() if "tlp_ceiling" in f else Tlp.RED
    include, exclude = include_exclude(f["labels"], "label") if "labels" in f else ((), ())
    confidence = (_whole(f["min_confidence"], 0, 100, "")
                  if "min_confidence" in f else None)
    age = (_whole(f["max_age_days"], 1, MAX_AGE_DAYS, " days")
           if "max_age_days" in f else None)
    return FeedFilters(ceiling, include, exclude, confidence, age)
