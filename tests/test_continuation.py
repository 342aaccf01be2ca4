"""Continuations: a password checked moments ago, for this user, this peer and this login
state only: one login at most, never renewed from itself."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from support.flows import enroll
from support.slapd import USERS, Slapd
from support.states import enabled_state

from pam_twostep.continuation import LIFETIME, Continuations, login_state
from pam_twostep.core.totp import totp

NOW = 1_800_000_000.0
STATE = login_state(enabled_state())


def test_valid_for_the_same_user_peer_state_and_time() -> None:
    keeper = Continuations(b"k" * 32)
    token = keeper.issue("alice", 104, STATE, NOW)
    assert keeper.valid(token, "alice", 104, STATE, NOW + LIFETIME - 1)
    assert not keeper.valid(token, "alice", 104, STATE, NOW + LIFETIME)
    assert not keeper.valid(token, "bob", 104, STATE, NOW)
    assert not keeper.valid(token, "alice", 0, STATE, NOW)
    assert not keeper.valid(token, "alice", 104, "another state", NOW)
    assert not Continuations(b"x" * 32).valid(token, "alice", 104, STATE, NOW)


def test_it_serves_one_login_in_any_serving_process() -> None:
    """Serving processes share the key: the login state in the MAC is what stops a
    second use once a code was accepted, in whichever process it is shown."""
    first, second = Continuations(b"k" * 32), Continuations(b"k" * 32)
    state = enabled_state()
    token = first.issue("alice", 104, login_state(state), NOW)
    assert second.valid(token, "alice", 104, login_state(state), NOW)
    moved = replace(state, last_step=(state.last_step or 0) + 1)  # the code was accepted
    assert not second.valid(token, "alice", 104, login_state(moved), NOW)
    assert not first.valid(token, "alice", 104, login_state(moved), NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"stamp": "a password changed since"},
        {"last_step": 123456789},
        {"backup_codes": ("$argon2id$another",)},
        {"locked_at": 1_800_000_000},
        {"enabled": False},
    ],
)
def test_the_login_state_changes_with_every_second_factor_event(change: dict[str, object]) -> None:
    state = enabled_state()
    assert login_state(replace(state, **change)) != login_state(state)  # type: ignore[arg-type]


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
    assert not Continuations(b"k" * 32).valid(token, "alice", 104, STATE, NOW)


# -- through the handler, against a real directory --------------------------------------


def _ask(engine: Any, continuations: Continuations, **fields: object) -> dict[str, Any]:
    from pam_twostep.access import Peer, Right
    from pam_twostep.handlers import handle

    request = {"op": "auth", "service": "sshd", "remote": "192.0.2.1", **fields}
    peer = Peer(1, 0, 0, "root", frozenset())
    return handle(engine, request, peer, frozenset(Right), continuations)


def _challenge(engine: Any, keeper: Continuations) -> str:
    reply = _ask(engine, keeper, user="alice", password=USERS["alice"])
    assert reply["result"] == "challenge"
    return str(reply["continuation"])


def test_an_empty_code_is_no_code_and_never_renews_a_continuation(engine: Any, clock: Any) -> None:
    enroll(engine, clock.now)
    keeper = Continuations()
    token = _challenge(engine, keeper)
    renewed = _ask(engine, keeper, user="alice", password="wrong", code="", continuation=token)
    assert renewed["result"] == "deny" and "continuation" not in renewed


def test_a_continuation_opens_one_login_at_most(engine: Any, clock: Any) -> None:
    key, backup = enroll(engine, clock.now)
    keeper = Continuations()
    token = _challenge(engine, keeper)
    clock.advance(60)
    first = _ask(
        engine, keeper, user="alice", password="", code=totp(key, clock.now), continuation=token
    )
    assert first["result"] == "accept" and "continuation" not in first
    clock.advance(60)
    again = _ask(engine, keeper, user="alice", password="wrong", code=backup[0], continuation=token)
    assert again["result"] == "deny"
    with_password = _ask(engine, keeper, user="alice", password=USERS["alice"], code=backup[0])
    assert with_password["result"] == "accept"  # the backup code was not spent above


def test_a_mistyped_code_may_be_typed_again(engine: Any, clock: Any) -> None:
    key, _ = enroll(engine, clock.now)
    keeper = Continuations()
    token = _challenge(engine, keeper)
    wrong = _ask(engine, keeper, user="alice", password="", code="000000", continuation=token)
    assert wrong["result"] == "deny" and "continuation" not in wrong
    clock.advance(60)
    right = _ask(
        engine, keeper, user="alice", password="", code=totp(key, clock.now), continuation=token
    )
    assert right["result"] == "accept"


def test_a_password_change_ends_every_continuation(engine: Any, clock: Any, slapd: Slapd) -> None:
    key, _ = enroll(engine, clock.now)
    keeper = Continuations()
    token = _challenge(engine, keeper)
    slapd.user_changes_password("alice", "a-new-password-9")
    clock.advance(60)
    reply = _ask(
        engine, keeper, user="alice", password="", code=totp(key, clock.now), continuation=token
    )
    assert reply["result"] == "deny"


def test_a_continuation_never_stands_in_beside_a_device_token(engine: Any, clock: Any) -> None:
    """A trusted device's use moves no login state, so a continuation shown with one could
    be reused without the password: with a device token, the password is checked."""
    from support.flows import interactive_login

    key, _ = enroll(engine, clock.now)
    clock.advance(60)
    trusted = interactive_login(engine, "alice", totp(key, clock.now), trust=True)
    assert trusted.device_token
    keeper = Continuations()
    token = _challenge(engine, keeper)
    for _ in range(3):
        reply = _ask(
            engine,
            keeper,
            user="alice",
            password="",
            code="123456",
            device_token=trusted.device_token,
            continuation=token,
        )
        assert reply["result"] != "accept"
