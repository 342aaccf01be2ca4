"""Policy dates (``core.dates``): as people write them, as the directory stores them."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.dates import (
    format_date,
    from_generalized_time,
    parse_date,
    to_generalized_time,
)

JAN15 = 1799971200  # 2027-01-15T00:00:00Z

WRITTEN = [
    ("2027-01-15", JAN15),
    (" 2027-01-15 ", JAN15),
    ("2027-01-15T00:00Z", JAN15),
    ("2027-01-15T01:00:00+01:00", JAN15),
    ("2027-01-14 23:00-01:00", JAN15),
    (datetime.date(2027, 1, 15), JAN15),
    (
        datetime.datetime(2027, 1, 15, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
        JAN15,
    ),
    (JAN15, JAN15),
]

REFUSED = [
    ("2027-02-30", "not a date on the calendar"),
    ("2027-1-15", "must be a date"),
    ("15.01.2027", "must be a date"),
    ("2027-01-15T09:00", "must be a date"),  # no offset: whose 09:00?
    (datetime.datetime(2027, 1, 15, 9), "UTC offset"),
    ("1999-12-31", "between 2000-01-01"),
    (0, "between 2000-01-01"),
    (-1, "between 2000-01-01"),
    (True, "must be a date"),
    (1.5, "must be a date"),
    ("", "must be a date"),
    ("２０２７-01-15", "must be a date"),
    (None, "must be a date"),
]

STORED = [
    ("20270115000000Z", JAN15),
    ("202701150000Z", JAN15),
    ("2027011500Z", JAN15),
    ("20270115000000.123Z", JAN15),
    ("20270115010000+0100", JAN15),
    ("20270114230000-01", JAN15),
    ("20270115000000,5Z", JAN15),
    ("20270114235960Z", JAN15 - 1),  # a leap second, as slapd lets one in
]


@pytest.mark.parametrize(("value", "epoch"), WRITTEN)
def test_dates_as_written(value: object, epoch: int) -> None:
    assert parse_date(value) == epoch


@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_what_is_no_date(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_date(value)


@pytest.mark.parametrize(("text", "epoch"), STORED)
def test_every_generalized_time_slapd_lets_in(text: str, epoch: int) -> None:
    assert from_generalized_time(text) == epoch


@pytest.mark.parametrize(
    "text", ["20270115", "20270115000000", "2027011500000Z", "20271315000000Z"]
)
def test_stored_values_that_are_no_time(text: str) -> None:
    with pytest.raises(ValueError):
        from_generalized_time(text)


def test_shown_back() -> None:
    assert format_date(JAN15) == "2027-01-15"
    assert format_date(JAN15 + 3600) == "2027-01-15T01:00:00Z"
    assert format_date(0) == ""
    assert to_generalized_time(JAN15) == "20270115000000Z"


@given(st.integers(min_value=946684800, max_value=253402300799))
def test_stored_form_round_trips(epoch: int) -> None:
    assert from_generalized_time(to_generalized_time(epoch)) == epoch
    assert parse_date(format_date(epoch)) == epoch


@given(st.text(max_size=40))
def test_any_text_is_a_date_or_a_value_error(text: str) -> None:
    for parse in (parse_date, from_generalized_time):
        with contextlib.suppress(ValueError):
            parse(text)
