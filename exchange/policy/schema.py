"""A small typed reader for policy YAML: strict parsing and path-aware checks.

:func:`parse_yaml` turns one file's bytes into plain Python values with PyYAML's safe
loader, tightened: duplicate keys are refused, and timestamps stay strings (the policy
reads them itself, so ``2026-01-01`` without a time or zone is an error, not a silent
midnight in some zone). :class:`Node` wraps a parsed value with the file and key path it
came from; each accessor returns a typed value or raises :class:`ConfigError` naming the
file, the key path and what is wrong, e.g.
``agreements/uz-pk-jwg-2026.yaml: reshare.misp[1]: unknown TLP level 'orange'``.

Pure code: the caller supplies bytes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import yaml

from exchange.errors import ConfigError, InvalidObject
from exchange.model.objects import Tlp
from exchange.model.tlp import parse_level

__all__ = ["IDENTITY_ID", "NAME", "SLUG", "Node", "parse_timestamp", "parse_yaml"]

#: Organisation names, as the exchange registers them.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
#: Agreement ids, profile names, collection aliases, community names.
SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
IDENTITY_ID = re.compile(rf"identity--{_UUID}")
MARKING_ID = re.compile(rf"marking-definition--{_UUID}")
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and leaves timestamps as strings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise _DuplicateKey(
                        "while reading a mapping", node.start_mark,
                        f"duplicate key {key!r}", key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


#: Deepest nesting of mappings and sequences a policy file may have (the real ones use 5).
MAX_YAML_DEPTH = 32


def _check_depth(file: str, text: str) -> None:
    """Refuse deep nesting before PyYAML's recursive composer meets it (found by fuzzing:
    ``a: [[[[...`` five thousand deep raised RecursionError). The event parser is not
    recursive, so counting its start and end events is safe at any depth."""
    depth = 0
    for event in yaml.parse(text, Loader=_StrictLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                mark = event.start_mark
                where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
                raise ConfigError(f"{file}: {where}nests deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_yaml(file: str, content: bytes) -> Any:
    """Parse one policy file.

    Args:
        file: The file's relative path, for messages.
        content: Its bytes (UTF-8).

    Returns:
        The parsed document (None for an empty file).

    Raises:
        ConfigError: Not UTF-8, broken YAML, several documents, a duplicate key, or
            nesting deeper than :data:`MAX_YAML_DEPTH`.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not UTF-8 text (byte {e.start})") from None
    try:
        _check_depth(file, text)
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise ConfigError(f"{file}: line {line}: {e.problem} (each key may appear once)"
                          ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{file}: {where}broken YAML: {problem}") from None


def parse_timestamp(text: str) -> int:
    """An RFC 3339 timestamp with a zone (``2026-01-01T00:00:00Z``) in microseconds.

    Raises:
        ValueError: Not such a timestamp, or not a real date and time.
    """
    if not _TIMESTAMP.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a timestamp like 2026-01-01T00:00:00Z"
            " (date, 'T', time and a zone: Z or +HH:MM)"
        )
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(microseconds=1)


class Node:
    """A parsed YAML value with the file and key path it came from.

    Attributes:
        value: The parsed value.
        file: The file's relative path.
        path: The key path inside the file (``reshare.misp[1]``), empty at the top.
    """

    __slots__ = ("file", "path", "value")

    def __init__(self, value: Any, file: str, path: str = "") -> None:
        self.value = value
        self.file = file
        self.path = path

    def fail(self, what: str) -> NoReturn:
        """Raise a ConfigError about this value.

        Raises:
            ConfigError: Always: "<file>: <path>: <what>".
        """
        where = self.path or "top level"
        raise ConfigError(f"{self.file}: {where}: {what}")

    def _sub(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def fields(self, required: Collection[str] = (), optional: Collection[str] = ()
               ) -> dict[str, Node]:
        """Read a mapping with a fixed set of keys.

        Returns:
            Key -> child node, for the keys present.

        Raises:
            ConfigError: Not a mapping, an unknown key, or a required key missing.
        """
        entries = dict(self.entries())
        allowed = set(required) | set(optional)
        for key in entries:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                Node(None, self.file, self._sub(key)).fail(
                    f"unknown key {key!r} (allowed here: {hint})"
                )
        for key in required:
            if key not in entries:
                self.fail(f"missing required key {key!r}")
        return entries

    def entries(self) -> list[tuple[str, Node]]:
        """Read a mapping with free string keys, in file order.

        Raises:
            ConfigError: Not a mapping, or a key that is not a string.
        """
        if not isinstance(self.value, dict):
            self.fail(f"expected a mapping, found {_kind(self.value)}")
        out: list[tuple[str, Node]] = []
        for key, value in self.value.items():
            if not isinstance(key, str):
                self.fail(f"key {key!r} is not a string (quote it)")
            out.append((key, Node(value, self.file, self._sub(key))))
        return out

    def items(self) -> list[Node]:
        """Read a list.

        Raises:
            ConfigError: Not a list.
        """
        if not isinstance(self.value, list):
            self.fail(f"expected a list, found {_kind(self.value)}")
        return [Node(v, self.file, self._sub(i)) for i, v in enumerate(self.value)]

    def string(self, pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        """Read a string, optionally matching ``pattern`` in full.

        Raises:
            ConfigError: Not a string, or not matching.
        """
        if not isinstance(self.value, str):
            self.fail(f"expected a string, found {_kind(self.value)}")
        if pattern is not None and not pattern.fullmatch(self.value):
            self.fail(f"{self.value!r} is not {hint or 'valid here'}")
        return self.value

    def optional_string(self, pattern: re.Pattern[str] | None = None, hint: str = ""
                        ) -> str | None:
        """Read a string or null.

        Raises:
            ConfigError: Neither null nor a matching string.
        """
        return None if self.value is None else self.string(pattern, hint)

    def boolean(self) -> bool:
        """Read true or false.

        Raises:
            ConfigError: Not a boolean.
        """
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, found {_kind(self.value)}")
        return self.value

    def scalar(self) -> str | int | bool:
        """Read a string, integer or boolean.

        Raises:
            ConfigError: Anything else (null, float, list, mapping).
        """
        if not isinstance(self.value, str | int | bool):
            self.fail(f"expected a string, integer or boolean, found {_kind(self.value)}")
        return self.value

    def level(self, allowed: Collection[Tlp] = tuple(Tlp)) -> Tlp:
        """Read a TLP level name (``amber+strict``, ``TLP:GREEN``; ``white`` is CLEAR).

        Raises:
            ConfigError: Not a level, or not one of ``allowed``.
        """
        text = self.string()
        try:
            level = parse_level(text)
        except InvalidObject as e:
            self.fail(e.reason)
        if level not in allowed:
            names = ", ".join(lv.value for lv in Tlp if lv in allowed)
            self.fail(f"TLP level {text!r} is not allowed here (use {names})")
        return level

    def levels(self, allowed: Collection[Tlp] = tuple(Tlp)) -> frozenset[Tlp]:
        """Read a list of TLP levels.

        Raises:
            ConfigError: Not a list, an invalid level, or a level listed twice.
        """
        out: set[Tlp] = set()
        for item in self.items():
            level = item.level(allowed)
            if level in out:
                item.fail(f"TLP level {level.value!r} is listed twice")
            out.add(level)
        return frozenset(out)

    def timestamp(self) -> int:
        """Read an RFC 3339 timestamp with a zone, in microseconds since the epoch.

        Raises:
            ConfigError: Not a string, not such a timestamp, or not a real date.
        """
        text = self.string()
        try:
            return parse_timestamp(text)
        except ValueError as e:
            self.fail(str(e) if "not a timestamp" in str(e) else
                      f"{text!r} is not a valid date and time ({e})")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
