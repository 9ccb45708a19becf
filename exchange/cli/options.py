"""Options shared by the commands that talk to a node over HTTP, and the API key they send.

The key comes from a file or the ``EXCHANGE_API_KEY`` environment variable, never from a
flag (a flag would show in the process list and shell history).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from exchange.errors import InvalidInput
from exchange.storage.timestamps import to_micros


def read_api_key(key_file: str | None) -> str:
    """The API key from ``key_file``, else from ``EXCHANGE_API_KEY``; never from a flag.

    Raises:
        InvalidInput: The file cannot be read, or no key is set.
    """
    if key_file:
        try:
            return Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InvalidInput(f"cannot read API key file {key_file}: {e.strerror}") from e
    key = os.environ.get("EXCHANGE_API_KEY", "").strip()
    if not key:
        raise InvalidInput("no API key: set EXCHANGE_API_KEY or pass --api-key-file")
    return key


def http_options(*, required: bool, url_help: str, user_help: str = "Account name."
                 ) -> Callable[[Any], Any]:
    """The options of a command that talks to a node: --url, --user, --api-key-file,
    --insecure (the API key itself never comes from a flag)."""
    options = [
        click.option("--url", required=required, envvar="EXCHANGE_URL", help=url_help),
        click.option("--user", required=required, envvar="EXCHANGE_USER", help=user_help),
        click.option("--api-key-file", type=click.Path(dir_okay=False),
                     help="File holding the API key (default: $EXCHANGE_API_KEY)."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates."),
    ]

    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def parse_when(text: str | None, option: str) -> int | None:
    """A ``--since``/``--until`` value: a date (``2026-07-01``, midnight UTC) or a STIX
    timestamp, as microseconds since the epoch; None when not given.

    Raises:
        InvalidInput: Neither a date nor a timestamp (the message names ``option``).
    """
    if not text:
        return None
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            day = date.fromisoformat(text)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) \
                * 1_000_000
        return to_micros(text)
    except (ValueError, InvalidInput):
        raise InvalidInput(f"{option} must be a date YYYY-MM-DD or a timestamp"
                           f" YYYY-MM-DDTHH:MM:SSZ, not {text!r}") from None
