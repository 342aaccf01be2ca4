from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        (45, 45),
        ("45", 45),
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("30d", 2592000),
        ("2w", 1209600),
        (" 90D ", 7776000),
    ],
)
def test_parse(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "1y", "-5", -5, "1.5h", True, None, 1.5, [], "1h30m", "99999999999", "١h"]
)
def test_parse_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=100 * 365 * 86400))
def test_format_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_picks_the_largest_unit() -> None:
    assert format_duration(90 * 86400) == "90d"
    assert format_duration(3600) == "1h"
    assert format_duration(61) == "61s"
