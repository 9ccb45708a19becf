"""STIX timestamp <-> microseconds, checked against the standard library's datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import InvalidInput
from exchange.storage.timestamps import from_micros, to_micros

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reference_micros(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000001Z", 1),
        ("2016-05-12T08:17:27.000Z", reference_micros(datetime(2016, 5, 12, 8, 17, 27,
                                                               tzinfo=UTC))),
        ("2024-02-29T23:59:59.5Z", reference_micros(datetime(2024, 2, 29, 23, 59, 59, 500_000,
                                                             tzinfo=UTC))),
        ("2024-03-01T12:00:00.123456789Z", reference_micros(
            datetime(2024, 3, 1, 12, 0, 0, 123_456, tzinfo=UTC))),
        ("1969-12-31T23:59:59.999Z", -1000),
        ("0001-01-01T00:00:00Z", reference_micros(datetime(1, 1, 1, tzinfo=UTC))),
        ("9999-12-31T23:59:59.999999Z", reference_micros(
            datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))),
        ("2016-12-31T23:59:60Z", to_micros("2017-01-01T00:00:00Z")),
    ],
    ids=["epoch", "one-micro", "millis", "leap-day", "nanos-truncated", "before-epoch",
         "year-1", "year-9999", "leap-second"],
)
def test_to_micros(text: str, expected: int) -> None:
    assert to_micros(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2016-05-12T08:17:27.000", "2016-05-12 08:17:27.000Z", "2016-05-12t08:17:27.000z",
        "2016-05-12T08:17:27.000+00:00", "2016-05-12T08:17:27.Z", "2016-5-12T08:17:27Z",
        "2016-02-30T00:00:00Z", "2015-02-29T00:00:00Z", "2016-13-01T00:00:00Z",
        "2016-00-01T00:00:00Z", "2016-01-00T00:00:00Z", "2016-01-01T24:00:00Z",
        "2016-01-01T00:60:00Z", "2016-01-01T00:00:61Z",
        "\uff12\uff10\uff11\uff16-01-01T00:00:00Z", "", " 2016-01-01T00:00:00Z",
    ],
    ids=["no-zone", "space", "lowercase", "offset", "empty-fraction", "short-month",
         "feb-30", "feb-29-non-leap", "month-13", "month-0", "day-0", "hour-24",
         "minute-60", "second-61", "fullwidth-digits", "empty", "leading-space"],
)
def test_to_micros_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        to_micros(text)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (1000, "1970-01-01T00:00:00.001Z"),
        (123_450, "1970-01-01T00:00:00.123450Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (to_micros("2024-02-29T12:34:56.789Z"), "2024-02-29T12:34:56.789Z"),
    ],
    ids=["epoch", "micro", "milli", "trailing-zero-micros", "before-epoch", "leap-day"],
)
def test_from_micros(micros: int, text: str) -> None:
    assert from_micros(micros) == text


_moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59,
                                                                          59, 999_999))


@given(_moments)
def test_round_trip_agrees_with_datetime(moment: datetime) -> None:
    dt = moment.replace(tzinfo=UTC)
    us = reference_micros(dt)
    text = from_micros(us)
    fraction = (f"{dt.microsecond // 1000:03d}" if dt.microsecond % 1000 == 0
                else f"{dt.microsecond:06d}")
    assert text == (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
                    f"{dt.second:02d}.{fraction}Z")
    assert to_micros(text) == us
