"""core.revocation: what a change took away, and which sessions end, as tables."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.states import NOW, enabled_state, plain_state, with_passcode

from pam_twostep.core.account import AccountState
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Usage
from pam_twostep.core.revocation import (
    Kick,
    RevocationCause,
    kick_plan,
    live_credentials,
    password_changed,
    revocation,
)

POLICY = Policy()


def _used(state: AccountState, label: str, address: str) -> AccountState:
    passcode = next(p for p in state.passcodes if p.label == label)
    notes = tuple(u for u in state.usage if u.id != passcode.id)
    return replace(state, usage=(*notes, Usage(passcode.id, NOW - 10, address)))


def _two_passcodes() -> AccountState:
    state, _ = with_passcode(enabled_state(), "Phone")
    state, _ = with_passcode(state, "Laptop")
    state = _used(state, "Phone", "192.0.2.7")
    return _used(state, "Laptop", "198.51.100.3")


def _without(state: AccountState, label: str) -> AccountState:
    return replace(state, passcodes=tuple(p for p in state.passcodes if p.label != label))


def _plan(before: AccountState, after: AccountState, policy: Policy = POLICY) -> Kick | None:
    return kick_plan(revocation(before, POLICY, after, policy, NOW), by_address=True)


def test_one_passcode_revoked_ends_sessions_from_where_it_was_used() -> None:
    before = _two_passcodes()
    assert _plan(before, _without(before, "Phone")) == Kick("alice", ("192.0.2.7",))


def test_by_default_every_session_of_the_user_ends() -> None:
    """A copy of the passcode idling elsewhere (stolen) is not missed."""
    before = _two_passcodes()
    change = revocation(before, POLICY, _without(before, "Phone"), POLICY, NOW)
    assert kick_plan(change) == Kick("alice", None)


@pytest.mark.parametrize("address", ["mail.example.org", "fe80::1%eth0", "12345", ""])
def test_an_address_that_is_not_an_ip_ends_every_session(address: str) -> None:
    before = _used(_two_passcodes(), "Phone", address)
    assert _plan(before, _without(before, "Phone")) == Kick("alice", None)


def test_a_locked_account_still_loses_what_a_change_takes() -> None:
    before = replace(_two_passcodes(), locked_at=NOW - 5)
    after = replace(before, passcodes=())
    assert _plan(before, after) == Kick("alice", None)


def test_nothing_taken_away_ends_nothing() -> None:
    before = _two_passcodes()
    assert _plan(before, before) is None
    state, _ = with_passcode(before, "New")
    assert _plan(before, state) is None  # a passcode added takes nothing away


@pytest.mark.parametrize(
    ("case", "after"),
    [
        ("every passcode revoked", lambda s: replace(s, passcodes=())),
        ("two-step disabled, the password not for mail", lambda s: replace(s, enabled=False)),
        ("the password changed", lambda s: replace(s, stamp="1" * 32)),
        ("locked", lambda s: replace(s, locked_at=NOW - 5)),
    ],
)
def test_when_everything_goes_every_session_ends(case: str, after: object) -> None:
    before = _two_passcodes()
    changed = after(before)  # type: ignore[operator]
    policy = replace(POLICY, mail_password=False)
    change = revocation(before, policy, changed, policy, NOW)
    assert kick_plan(change, by_address=True) == Kick("alice", None), case


def test_a_revoked_passcode_never_used_ends_every_session_not_none() -> None:
    before, _ = with_passcode(_two_passcodes(), "Unused")
    assert _plan(before, _without(before, "Unused")) == Kick("alice", None)


def test_two_step_turned_on_takes_the_password_away_from_mail() -> None:
    before = plain_state()
    assert "password:" + before.stamp in live_credentials(before, POLICY, NOW)
    after = replace(enabled_state(), stamp=before.stamp)
    assert _plan(before, after) == Kick("alice", None)


def test_a_password_changed_elsewhere_is_seen_by_its_stale_records() -> None:
    state = _two_passcodes()
    assert password_changed(state) is None
    moved = replace(state, stamp="2" * 32)
    change = password_changed(moved)
    assert change is not None and change.cause is RevocationCause.PASSWORD_CHANGED
    assert kick_plan(change) == Kick("alice", None)


def test_no_credential_and_nothing_to_end_for_a_locked_account() -> None:
    state = replace(_two_passcodes(), locked_at=NOW - 1)
    assert live_credentials(state, POLICY, NOW) == {}
