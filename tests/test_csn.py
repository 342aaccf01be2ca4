"""Has a returning provider caught up? contextCSN values compared per server ID."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.directory._csn import caught_up


def csn(time: str, sid: int) -> bytes:
    return f"{time}.000000Z#000000#{sid:03x}#000000".encode()


T1, T2 = "20261202170000", "20261202170005"

CASES = [
    ("equal", [csn(T1, 1), csn(T1, 2)], [csn(T1, 1), csn(T1, 2)], True),
    ("ahead", [csn(T2, 1), csn(T1, 2)], [csn(T1, 1), csn(T1, 2)], True),
    ("behind on one server", [csn(T2, 1), csn(T1, 2)], [csn(T1, 1), csn(T2, 2)], False),
    ("lacks a server ID", [csn(T2, 1)], [csn(T1, 1), csn(T1, 2)], False),
    ("has one more server ID", [csn(T1, 1), csn(T1, 3)], [csn(T1, 1)], True),
    ("nothing to compare", [], [], None),
    ("returning has none", [], [csn(T1, 1)], False),
    ("in use has none: the timer decides", [csn(T1, 1)], [], None),
    (
        "two-digit server IDs (before 2.4)",
        [f"{T2}.000000Z#000000#01#000000".encode()],
        [f"{T1}.000000Z#000000#01#000000".encode()],
        True,
    ),
    ("not a CSN", [b"yesterday"], [csn(T1, 1)], False),
    ("in use not a CSN", [csn(T1, 1)], [b"20261202170000Z"], False),
]


@pytest.mark.parametrize(
    ("returning", "in_use", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_caught_up(returning: list[bytes], in_use: list[bytes], expected: bool | None) -> None:
    assert caught_up(returning, in_use) is expected


@given(st.lists(st.binary(max_size=60)), st.lists(st.binary(max_size=60)))
def test_any_stored_value_gives_an_answer_never_an_error(
    returning: list[bytes], in_use: list[bytes]
) -> None:
    assert caught_up(returning, in_use) in (True, False, None)
