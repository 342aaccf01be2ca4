"""The portal's safety rules on their own: tokens, session time limits, return paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.portal import security


def test_tokens_are_random_and_compared_exactly() -> None:
    one, two = security.new_token(), security.new_token()
    assert one != two and len(one) >= 40
    assert security.tokens_match(one, one)
    for given_token in (two, one[:-1], one + "x", "", None, 7, one.upper()):
        assert not security.tokens_match(one, given_token)
    assert not security.tokens_match(None, None)
    assert not security.tokens_match("", "")


@pytest.mark.parametrize(
    ("session", "now", "ended"),
    [
        ({"started": 1000, "seen": 1000}, 1900, False),
        ({"started": 1000, "seen": 1000}, 1901, True),  # idle
        ({"started": 1000, "seen": 44000}, 44100, False),
        ({"started": 1000, "seen": 44190}, 44201, True),  # too old, though in use
        ({"started": "1000", "seen": 1000}, 1001, True),
        ({}, 1001, True),
    ],
)
def test_sessions_end_when_idle_or_old(session: dict[str, object], now: int, ended: bool) -> None:
    assert security.session_ended(session, now, idle=900, lifetime=43200) is ended


def test_recent_authentication() -> None:
    assert security.recent({"strong": 1000}, 1300, 300)
    assert not security.recent({"strong": 1000}, 1301, 300)
    assert not security.recent({"strong": None}, 1000, 300)
    assert not security.recent({"strong": 2000}, 1000, 300)  # from the future: no


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "evil",
        "/a\nb",
        "/" + "a" * 300,
        None,
        "",
    ],
)
def test_only_local_paths_are_returned_to(target: object) -> None:
    assert security.safe_next(target) == "/"


@given(st.text(max_size=300))
def test_safe_next_is_always_a_local_path(target: str) -> None:
    result = security.safe_next(target)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result
    assert result in ("/", target)


def test_headers_forbid_what_the_pages_do_not_need() -> None:
    csp = security.HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
