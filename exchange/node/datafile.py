"""What the doors' strict YAML data files share: opening them, names, URLs, schedules.

The doors read their definitions from YAML files (``feeds/sources.yaml`` by
:mod:`exchange.feeds.sources`, ``feeds/misp-targets.yaml`` by :mod:`exchange.misp.targets`,
``feeds/flat-feeds.yaml`` by :mod:`exchange.node.feeddefs`) the way the policy files are
read (:mod:`exchange.policy.schema`): duplicate keys, unknown keys, wrong types and bad
values are refused with a :class:`~exchange.errors.ConfigError` naming the file, the key
path and the reason. The checks they have in common live here, one floor below the doors,
so that doors never import each other: the top of the file (``version: 1`` and one
mapping of named entries), entry names, secrets that are never written inline,
environment variable names, paths, https URLs (plain http only to a loopback address),
bounded numbers, interval-or-cron schedules, and tag or label lists with include and
exclude.

Pure code apart from :func:`read_data_file` (which only reads the file) and
:func:`min_interval` (which reads one test-only environment variable). What each file
means, and its own messages, stay with its door.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from exchange.errors import ConfigError
from exchange.policy.schema import SLUG, Node, parse_yaml

__all__ = [
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "Schedule",
    "env_name",
    "include_exclude",
    "is_loopback",
    "min_interval",
    "number",
    "open_data_file",
    "parse_schedule",
    "path_value",
    "read_data_file",
    "refuse_inline_secrets",
    "slug_name",
    "web_url",
]

#: Bounds for ``schedule.interval`` (seconds).
MIN_INTERVAL: Final = 60
MAX_INTERVAL: Final = 7 * 24 * 3600
#: Names of environment variables that may hold a secret.
_ENV_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
#: One cron field: numbers, ranges, steps, lists, ``*``, month and weekday names.
_CRON_FIELD: Final = re.compile(r"(?:\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?"
                                r"(?:,(?:\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?)*")
#: A tag or label: printable, at most 255 characters.
_TEXT: Final = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a job runs: every ``interval`` seconds, or on a five-field ``cron`` (UTC).

    Exactly one of the two is set.
    """

    interval: int | None = None
    cron: str | None = None

    def describe(self) -> str:
        """``every 900 s`` or ``cron '*/15 * * * *'``."""
        return f"every {self.interval} s" if self.interval is not None else \
            f"cron {self.cron!r}"


def read_data_file(path: Path, what: str) -> bytes:
    """The bytes of a data file.

    Args:
        path: The file.
        what: What it is, for the message (``TAXII sources``).

    Raises:
        ConfigError: ``<path>: cannot read the <what> file (<reason>)``.
    """
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} file ({e.strerror})") from None


def open_data_file(file: str, content: bytes, top: str) -> Node:
    """The mapping of named entries under ``top`` in a data file (``version: 1`` or none).

    Raises:
        ConfigError: Broken YAML, an empty file, a key other than ``top`` and
            ``version``, a version other than 1.
    """
    root = Node(parse_yaml(file, content), file)
    if root.value is None:
        root.fail(f"empty file; expected a mapping with {top!r}")
    fields = root.fields(required=(top,), optional=("version",))
    if "version" in fields and fields["version"].value != 1:
        fields["version"].fail(f"unsupported version {fields['version'].value!r} (use 1)")
    return fields[top]


def slug_name(name: str, node: Node, what: str) -> None:
    """Check an entry's name (its key in the file) is a slug.

    Raises:
        ConfigError: ``<what> name '<name>' is not lowercase letters, ...``.
    """
    if not SLUG.fullmatch(name):
        node.fail(f"{what} name {name!r} is not lowercase letters, digits, '.', '_' or '-'"
                  " (at most 64)")


def refuse_inline_secrets(node: Node, keys: Collection[str], advice: str) -> None:
    """Refuse an entry that writes a secret inline under one of ``keys``.

    Raises:
        ConfigError: ``<path>.<key>: <advice>`` (never the secret itself).
    """
    if isinstance(node.value, dict):
        for key in keys:
            if key in node.value:
                Node(None, node.file, f"{node.path}.{key}").fail(advice)


def env_name(node: Node) -> str:
    """An environment variable name (``A-Z``, ``0-9``, ``_``).

    Raises:
        ConfigError: Not a string, or not such a name.
    """
    return node.string(_ENV_NAME, "an environment variable name (A-Z, 0-9, '_')")


def path_value(node: Node) -> str:
    """A file path that is not blank.

    Raises:
        ConfigError: Not a string, or ``empty path``.
    """
    text = node.string()
    if not text.strip():
        node.fail("empty path")
    return text


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def web_url(node: Node, *, credentials: str, what: str) -> str:
    """An https URL with a host (plain http only to a loopback address), as written.

    Args:
        node: The value.
        credentials: Where the login goes instead of the URL, for the message
            (``api_key_file or api_key_env``).
        what: What the URL is, for the message (``the base URL``).

    Raises:
        ConfigError: Not a URL, not http(s) or without a host, carrying credentials, a
            query or a fragment, or plain http to another host.
    """
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
        node.fail(f"the URL must not carry credentials; use {credentials}")
    if parts.query or parts.fragment:
        node.fail(f"{text!r}: {what} takes no query or fragment")
    if parts.scheme == "http" and not is_loopback(host):
        node.fail(f"{text!r} must use https (plain http is allowed only to a loopback"
                  " address)")
    return text


def number(node: Node, low: float, high: float, *, whole: bool = False,
           seconds: bool = False) -> float:
    """A number in ``(low, high]``.

    Args:
        node: The value.
        low: The bound it must be above.
        high: The bound it may reach.
        whole: Only whole numbers.
        seconds: The number is seconds (the messages say so).

    Raises:
        ConfigError: Not a number (a boolean is not one), or outside the bounds.
    """
    value = node.value
    unit = " s" if seconds else ""
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (whole and not isinstance(value, int)):
        node.fail(f"expected a {'whole ' if whole else ''}number"
                  f"{' of seconds' if seconds else ''}, found {value!r}")
    if not low < value <= high:
        node.fail(f"{value}{unit} is outside ({low:g}, {high:g}]{unit}")
    return float(value)


def min_interval(test_env: str) -> int:
    """The shortest interval allowed: :data:`MIN_INTERVAL`, or lower for tests.

    Args:
        test_env: FOR TESTS ONLY: the environment variable that may lower it (whole
            seconds, 1..60), so an end-to-end test sees several scheduled runs in
            seconds. Production leaves it unset; a bad value is an error, never ignored.

    Raises:
        ConfigError: The test variable is set to anything but 1..60.
    """
    text = os.environ.get(test_env)
    if text is None:
        return MIN_INTERVAL
    if not text.isdigit() or not 1 <= int(text) <= MIN_INTERVAL:
        raise ConfigError(f"{test_env}={text!r}: expected whole seconds"
                          f" 1..{MIN_INTERVAL} (a setting for tests only)")
    return int(text)


def parse_schedule(node: Node, test_env: str) -> Schedule:
    """A schedule: ``interval`` (whole seconds) or ``cron`` (five fields), exactly one.

    Args:
        node: The ``schedule`` mapping.
        test_env: The test-only variable that may lower the shortest interval
            (:func:`min_interval`).

    Raises:
        ConfigError: Neither or both, an interval outside the bounds, a cron
            expression that is not five fields.
    """
    f = node.fields(optional=("interval", "cron"))
    if ("interval" in f) == ("cron" in f):
        node.fail("give exactly one of interval (seconds) and cron (five fields)")
    if "interval" in f:
        value = f["interval"].value
        if isinstance(value, bool) or not isinstance(value, int):
            f["interval"].fail(f"expected a whole number of seconds, found {value!r}")
        shortest = min_interval(test_env)
        if not shortest <= value <= MAX_INTERVAL:
            f["interval"].fail(f"{value} s is outside {shortest}..{MAX_INTERVAL} s")
        return Schedule(interval=value)
    cron = f["cron"].string()
    parts = cron.split()
    if len(parts) != 5 or not all(_CRON_FIELD.fullmatch(x) for x in parts):
        f["cron"].fail(f"{cron!r} is not a cron expression of five fields (minute hour"
                       " day-of-month month day-of-week)")
    return Schedule(cron=" ".join(parts))


def include_exclude(node: Node, what: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``include`` and ``exclude`` lists of tags or labels under ``node``.

    Args:
        node: The mapping with optional ``include`` and ``exclude``.
        what: ``tag`` or ``label``, for the messages.

    Raises:
        ConfigError: An unknown key, a value that is not 1-255 printable characters, one
            listed twice, one both included and excluded.
    """
    f = node.fields(optional=("include", "exclude"))
    include = _distinct(f["include"], what) if "include" in f else ()
    exclude = _distinct(f["exclude"], what) if "exclude" in f else ()
    both = set(include) & set(exclude)
    if both:
        node.fail(f"{what} {sorted(both)[0]!r} is both included and excluded")
    return include, exclude


def _distinct(node: Node, what: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in node.items():
        text = item.string(_TEXT, f"a {what} (1-255 printable characters)")
        if text in out:
            item.fail(f"{what} {text!r} is listed twice")
        out.append(text)
    return tuple(out)
