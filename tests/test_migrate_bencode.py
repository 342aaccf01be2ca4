"""Bencoding as Zimbra stores passcode records: decoded strictly, bounded."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.migrate.bencode import decode


def test_values() -> None:
    assert decode("i42e") == 42
    assert decode("i-3e") == -3
    assert decode("4:spam") == "spam"
    assert decode("l4:spami1ee") == ["spam", 1]
    assert decode("d1:ni7e1:p3:abce") == {"n": 7, "p": "abc"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "i",
        "ie",
        "i1x",
        "5:abc",
        "l",
        "d1:ae",
        "di1ei2ee",
        "x",
        "4:spamx",
        "l" * 50 + "e" * 50,
        "99999999:a",
        "i" + "9" * 30 + "e",
    ],
)
def test_what_is_not_bencoding(text: str) -> None:
    with pytest.raises(ValueError):
        decode(text)


@given(st.text(max_size=200))
def test_any_text_decodes_or_is_refused(text: str) -> None:
    with contextlib.suppress(ValueError):
        decode(text)
