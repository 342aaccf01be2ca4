"""Continuations: a password checked moments ago, for this user and this peer only."""

from __future__ import annotations

import pytest

from pam_twostep.continuation import LIFETIME, Continuations

NOW = 1_800_000_000.0


def test_valid_for_the_same_user_peer_and_time() -> None:
    keeper = Continuations(b"k" * 32)
    token = keeper.issue("alice", 104, NOW)
    assert keeper.valid(token, "alice", 104, NOW + LIFETIME - 1)
    assert not keeper.valid(token, "alice", 104, NOW + LIFETIME)
    assert not keeper.valid(token, "bob", 104, NOW)
    assert not keeper.valid(token, "alice", 0, NOW)
    assert not Continuations(b"x" * 32).valid(token, "alice", 104, NOW)


@pytest.mark.parametrize(
    "token",
    [
        None,
        5,
        "",
        ".",
        "abc",
        "9" * 13 + ".x",
        "1800000100.",
        "1800000100.AAAA",
        "x" * 100,
        "\u0661800000100.AAAA",
        f"{int(NOW) + 10 * LIFETIME}.AAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_anything_else_is_not_valid(token: object) -> None:
    assert not Continuations(b"k" * 32).valid(token, "alice", 104, NOW)
