"""Typed, frozen settings for one exchange node.

Precedence, lowest to highest: built-in defaults < ``exchange.toml`` in the exchange home
< ``EXCHANGE_*`` environment variables. Unknown keys in the file or unknown
``EXCHANGE_*`` variables are errors, so a typo never silently falls back to a default.

Secrets (the server secret that keys API-key HMACs, database passwords) come from a file
in the home or from the environment, never from a command-line flag, and are redacted in
``repr`` and in :meth:`Settings.redacted`.

This module reads files and the environment; it never creates anything. ``exchange init``
(see :mod:`exchange.node.service`) writes the home.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from exchange.errors import ConfigError

CONFIG_FILE = "exchange.toml"
SECRET_FILE = "server-secret"  # noqa: S105 - a file name, not a secret
DEFAULT_HOME = Path.home() / ".cert-exchange"
TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")


class Secret:
    """A secret string that never shows itself in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is used, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


#: ``user:password@`` in a URL's authority (RFC 3986 section 3.2.1).
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@\s]*@")
#: A secret given as a key=value pair: a URL query parameter (libpq reads ``password``
#: and ``sslpassword`` from the query of a ``postgresql://`` URL) or a libpq
#: keyword/value connection string quoted in a driver's error message.
_SECRET_PARAMETER = re.compile(
    r"(?i)\b((?:ssl)?password|passwd|pwd|secret|token|api_?key)\s*=\s*"
    r"('(?:[^'\\]|\\.)*'|[^&\s'\"]*)")


def redact_url(url: str) -> str:
    """Hide the secrets of a database URL or of text that quotes one.

    ``user:pass@`` becomes ``user:***@``; a ``password=``, ``sslpassword=`` (or any
    parameter named like a secret) in the query or in a libpq ``key=value`` string keeps
    its name and loses its value.
    """
    url = _URL_PASSWORD.sub(r"\1:***@", url)
    return _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}=***", url)


@dataclass(frozen=True)
class Settings:
    """Effective settings of one node. Build with :func:`load_settings`."""

    home: Path
    database_url: str = ""
    server_secret: Secret | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8421
    workers: int = 2
    api_root: str = "cx"
    title: str = "cert-exchange"
    description: str = "TAXII 2.1 threat-intelligence exchange for national CERTs"
    contact: str = ""
    max_content_length: int = 10 * 1024 * 1024
    max_objects_per_envelope: int = 1000
    max_object_bytes: int = 256 * 1024
    max_json_depth: int = 32
    max_pattern_bytes: int = 8 * 1024
    max_pattern_observations: int = 256
    max_page_size: int = 1000
    # the front door (exchange.taxii.front): a request's head must arrive within this many
    # seconds of the connection (or the previous response); its body may pause this long
    # between reads and must end within this plus one second per 64 KiB
    request_header_timeout: int = 10
    request_body_timeout: int = 30
    default_tlp: str = "amber"
    log_level: str = "INFO"
    cache_seconds: int = 5  # how long a worker trusts an authentication it checked
    policy_dir: str = ""  # the policies/ directory in force; empty: the built-in baseline
    # the MISP targets file (feeds/misp-targets.yaml); empty: no MISP sync configured
    misp_targets: str = ""
    # the TAXII sources file (feeds/sources.yaml); empty: no TAXII sources configured
    taxii_sources: str = ""
    # the named flat feeds file (feeds/flat-feeds.yaml); empty: only the per-collection feeds
    flat_feeds: str = ""
    audit_origin: str = ""  # the audit log's checkpoint origin; empty: from the title
    audit_checkpoint_seconds: int = 60  # sign a checkpoint this often when the log grew
    audit_spool_dir: str = ""  # where disclosures wait to be sequenced; empty: <home>/audit-spool
    audit_sequence_ms: int = 200  # how often a server process moves the spool into the log
    # "always": each response's disclosures are fsynced before it leaves; "interval":
    # written before it leaves, fsynced every audit_sequence_ms
    audit_spool_sync: str = "always"
    # the niceness `exchange audit sequence --watch` takes (0-19): reads come first, the
    # spool holds their records meanwhile
    audit_sequencer_nice: int = 10
    # refuse reads (503) while the spool holds this many MiB not yet in the log (0: only
    # the disk's free space limits it); see README "Fail closed, and nothing lost"
    audit_spool_max_mb: int = 256

    @property
    def policy_path(self) -> Path | None:
        """The policy directory (relative paths are relative to the home), or None."""
        if not self.policy_dir:
            return None
        path = Path(self.policy_dir).expanduser()
        return path if path.is_absolute() else self.home / path

    @property
    def flat_feeds_path(self) -> Path | None:
        """The named flat feeds file (relative paths are relative to the home), or None."""
        if not self.flat_feeds:
            return None
        path = Path(self.flat_feeds).expanduser()
        return path if path.is_absolute() else self.home / path

    @property
    def misp_targets_path(self) -> Path | None:
        """The MISP targets file (relative paths are relative to the home), or None."""
        if not self.misp_targets:
            return None
        path = Path(self.misp_targets).expanduser()
        return path if path.is_absolute() else self.home / path

    @property
    def taxii_sources_path(self) -> Path | None:
        """The TAXII sources file (relative paths are relative to the home), or None."""
        if not self.taxii_sources:
            return None
        path = Path(self.taxii_sources).expanduser()
        return path if path.is_absolute() else self.home / path

    @property
    def effective_database_url(self) -> str:
        """The database URL in force; defaults to a SQLite file in the home."""
        return self.database_url or f"sqlite:///{self.home / 'exchange.db'}"

    def secret_bytes(self) -> bytes:
        """The server secret as bytes.

        Raises:
            ConfigError: No server secret is configured (run ``exchange init``).
        """
        if self.server_secret is None:
            raise ConfigError(
                f"no server secret: run 'exchange init' or put one in {self.home / SECRET_FILE}"
                " or EXCHANGE_SERVER_SECRET"
            )
        return self.server_secret.reveal().encode()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    __str__ = __repr__

    def redacted(self) -> dict[str, Any]:
        """The settings as a JSON-able dict with every secret hidden."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "server_secret":
                out[f.name] = "********" if value is not None else None
            elif f.name == "database_url":
                out[f.name] = redact_url(self.effective_database_url)
            elif isinstance(value, Path):
                out[f.name] = str(value)
            else:
                out[f.name] = value
        return out


_TYPED_KEYS: dict[str, type] = {
    f.name: (int if f.type == "int" else str)
    for f in fields(Settings)
    if f.name not in ("home", "server_secret")
}


def _coerce(key: str, raw: object, source: str) -> object:
    want = _TYPED_KEYS[key]
    if want is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{source}: {key} must be an integer")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"-?[0-9]+", raw.strip()):
            return int(raw.strip())
        raise ConfigError(f"{source}: {key} must be an integer")
    if not isinstance(raw, str):
        raise ConfigError(f"{source}: {key} must be a string")
    return raw


def _validate(s: Settings) -> Settings:
    if s.default_tlp not in TLP_LEVELS:
        raise ConfigError(f"default_tlp must be one of {', '.join(TLP_LEVELS)}")
    if not 1 <= s.port <= 65535:
        raise ConfigError("port must be between 1 and 65535")
    if not 1 <= s.workers <= 64:
        raise ConfigError("workers must be between 1 and 64")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", s.api_root):
        raise ConfigError("api_root must be 1-64 letters, digits, '-' or '_'")
    if s.max_page_size < 1 or s.max_objects_per_envelope < 1:
        raise ConfigError("max_page_size and max_objects_per_envelope must be positive")
    if not 1 <= s.request_header_timeout <= 300 or not 1 <= s.request_body_timeout <= 300:
        raise ConfigError("request_header_timeout and request_body_timeout must be between 1"
                          " and 300 seconds")
    if not 0 <= s.cache_seconds <= 300:
        raise ConfigError("cache_seconds must be between 0 and 300")
    if not 0 <= s.audit_checkpoint_seconds <= 86_400:
        raise ConfigError("audit_checkpoint_seconds must be between 0 (never on its own)"
                          " and 86400")
    if s.audit_spool_sync not in ("always", "interval"):
        raise ConfigError("audit_spool_sync must be 'always' (durable before each response"
                          " leaves) or 'interval' (written before it leaves, durable within"
                          " audit_sequence_ms)")
    if s.audit_spool_sync == "interval" and s.audit_sequence_ms == 0:
        raise ConfigError("audit_spool_sync 'interval' needs audit_sequence_ms above 0")
    if not 0 <= s.audit_sequence_ms <= 60_000:
        raise ConfigError("audit_sequence_ms must be between 0 (only on demand) and 60000")
    if not 0 <= s.audit_spool_max_mb <= 1_048_576:
        raise ConfigError("audit_spool_max_mb must be between 0 (no limit but the disk's)"
                          " and 1048576")
    if not 0 <= s.audit_sequencer_nice <= 19:
        raise ConfigError("audit_sequencer_nice must be between 0 (the servers' own"
                          " priority) and 19 (the lowest)")
    if s.audit_origin and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}",
                                           s.audit_origin):
        raise ConfigError("audit_origin must be 1-200 letters, digits or . _ / : - "
                          "(e.g. audit.exchange.example/log1)")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level must be DEBUG, INFO, WARNING or ERROR")
    url = s.effective_database_url
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError("database_url must be a sqlite:// or postgresql:// URL")
    return s


def load_settings(
    home: Path | str | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load the effective settings.

    Args:
        home: The exchange home; defaults to ``EXCHANGE_HOME`` or ``~/.cert-exchange``.
        env: The environment to read (defaults to ``os.environ``).

    Returns:
        The frozen, validated settings.

    Raises:
        ConfigError: The file is unreadable or invalid, a key or variable is unknown,
            or a value has the wrong type.
    """
    environ = os.environ if env is None else env
    home_path = Path(home or environ.get("EXCHANGE_HOME") or DEFAULT_HOME).expanduser()
    values: dict[str, object] = {}

    cfg = home_path / CONFIG_FILE
    if cfg.exists():
        try:
            data = tomllib.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{cfg}: cannot read configuration: {e}") from e
        for key, raw in data.items():
            if key == "server_secret":
                raise ConfigError(
                    f"{cfg}: server_secret must not be in the configuration file;"
                    f" it lives in {home_path / SECRET_FILE} or EXCHANGE_SERVER_SECRET"
                )
            if key not in _TYPED_KEYS:
                raise ConfigError(f"{cfg}: unknown key {key!r}")
            values[key] = _coerce(key, raw, str(cfg))

    secret: Secret | None = None
    secret_file = home_path / SECRET_FILE
    if secret_file.exists():
        text = secret_file.read_text(encoding="utf-8").strip()
        if text:
            secret = Secret(text)

    for name, raw in environ.items():
        if not name.startswith("EXCHANGE_") or name == "EXCHANGE_HOME":
            continue
        key = name.removeprefix("EXCHANGE_").lower()
        if key == "server_secret":
            secret = Secret(raw)
            continue
        if key in ("passphrase", "api_key", "password", "url", "user", "identity",
                   "signing_key"):
            continue  # client-side variables read by the CLI, not node settings
        if key == "node_key_passphrase":
            continue  # a secret read by exchange.node.keyring.ensure_node_key, never stored here
        if key.startswith("misp_key_"):
            continue  # a MISP API key a target's api_key_env names (feeds/misp-targets.yaml)
        if key.startswith("source_key_"):
            continue  # a TAXII source's password its password_env names (feeds/sources.yaml)
        if key not in _TYPED_KEYS:
            raise ConfigError(f"unknown environment variable {name}")
        values[key] = _coerce(key, raw, name)

    settings = Settings(home=home_path, server_secret=secret)
    settings = replace(settings, **values)  # type: ignore[arg-type]
    return _validate(settings)
