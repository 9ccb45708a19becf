"""STIX timestamps <-> integer microseconds since the Unix epoch (UTC).

The store keeps every time (``version``, ``date_added``, ``created_at``) as a signed 64-bit
count of microseconds, which sorts and compares exactly in SQL. These two pure functions
convert at the edges:

* :func:`to_micros` parses the STIX 2.1 timestamp form ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``
  (section 3.2), truncating sub-microsecond digits;
* :func:`from_micros` formats back, with millisecond precision when the value has no
  sub-millisecond part (``.123Z``, the precision most producers send) and microsecond
  precision otherwise (``.123456Z``), so common values round-trip as clients sent them.

A leap second (``:60``) is accepted and counts as the first second of the next minute.
"""

from __future__ import annotations

import functools
import re

from exchange.errors import InvalidInput

_PATTERN = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z",
    re.ASCII,
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND
#: Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
_EPOCH_DAYS = 719_468


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - _EPOCH_DAYS


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The (year, month, day) of a day count since 1970-01-01."""
    days += _EPOCH_DAYS
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


@functools.lru_cache(maxsize=4096)
def to_micros(stix_timestamp: str) -> int:
    """Parse a STIX 2.1 timestamp into microseconds since the Unix epoch.

    Pure, so the last few thousand answers are kept: an object's ``created``,
    ``modified`` and version are read several times on the way to the store (a refusal is
    an exception, never kept).

    Args:
        stix_timestamp: ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``; digits beyond the sixth
            fractional one are truncated.

    Returns:
        Microseconds since 1970-01-01T00:00:00Z (negative before it).

    Raises:
        InvalidInput: The text is not a STIX timestamp or names an impossible date/time.
    """
    m = _PATTERN.fullmatch(stix_timestamp)
    if m is None:
        raise InvalidInput(f"not a STIX timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z): {stix_timestamp!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (
        1 <= month <= 12
        and 1 <= day <= (29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1])
        and hour <= 23
        and minute <= 59
        and second <= 60
    ):
        raise InvalidInput(f"not a valid date and time: {stix_timestamp!r}")
    fraction = m.group(7)
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    seconds = ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second
    return seconds * _US_PER_SECOND + micros


def from_micros(us: int) -> str:
    """Format microseconds since the Unix epoch as a STIX 2.1 timestamp.

    Args:
        us: Microseconds since 1970-01-01T00:00:00Z, for a time in years 0000-9999.

    Returns:
        ``YYYY-MM-DDTHH:MM:SS.fffZ`` when ``us`` is a whole number of milliseconds,
        else ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
    """
    seconds, micros = divmod(us, _US_PER_SECOND)
    fraction = f"{micros // 1000:03d}" if micros % 1000 == 0 else f"{micros:06d}"
    return f"{_second_text(seconds)}.{fraction}Z"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch (cached: a page's rows share few)."""
    days, rest = divmod(seconds, 86_400)
    year, month, day = _civil_from_days(days)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
