"""Lock-out arithmetic: window, limit, duration, repeats, and who clears what."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

from support.states import NOW, plain_state

from pam_twostep.core.account import AccountState, Attr
from pam_twostep.core.changes import Op
from pam_twostep.core.lockout import (
    address_wait,
    clear_changes,
    fingerprint,
    lock_state,
    missing_lock,
    record_failure,
)
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Failure
from pam_twostep.core.totp import time_step

POLICY = Policy(lockout_max_failures=3, lockout_window=600, lockout_duration=900)


def fail(
    state: AccountState,
    presented: str,
    now: int = NOW,
    address: str = "192.0.2.1",
    policy: Policy = POLICY,
    *,
    kind: str = "password",
    step: int | None = None,
) -> tuple[AccountState, bool, bool]:
    """Apply one failure to an in-memory state: (new state, counted, locks)."""
    commit, _, locks = record_failure(
        state,
        policy,
        now=now,
        kind=kind,
        service="imap",
        address=address,
        presented=presented,
        random=secrets.token_bytes,
        step=step,
    )
    failures = list(state.failures)
    locked_at = state.locked_at
    for change in commit.changes:
        if change.attribute == Attr.FAILURE:
            failures += [Failure.load(v) for v in change.values]
        if change.attribute == Attr.LOCKED_AT:
            locked_at = now
    return replace(state, failures=tuple(failures), locked_at=locked_at), bool(commit), locks


def test_locks_at_the_limit() -> None:
    state = plain_state()
    for attempt in range(3):
        state, counted, locks = fail(state, f"guess{attempt}")
        assert counted
        assert locks == (attempt == 2)
    lock = lock_state(state, POLICY, NOW + 1)
    assert lock.locked
    assert lock.until == NOW + 900


def test_failures_that_reach_the_limit_at_once_lock_though_none_wrote_the_lock() -> None:
    # three guesses decided in parallel: each read the same empty count, none locked
    start = plain_state()
    commits = [
        record_failure(
            start,
            POLICY,
            now=NOW + i,
            kind="password",
            service="imap",
            address="192.0.2.1",
            presented=f"guess{i}",
            random=secrets.token_bytes,
        )
        for i in range(3)
    ]
    assert not any(locks for _, _, locks in commits)
    failures = tuple(Failure.load(c.changes[0].values[0]) for c, _, _ in commits)
    state = replace(start, failures=failures)
    lock = lock_state(state, POLICY, NOW + 10)
    assert lock.locked and lock.until == NOW + 2 + 900
    written = missing_lock(state, POLICY, NOW + 10)
    assert [(c.attribute, c.op) for c in written.changes] == [(Attr.LOCKED_AT, Op.REPLACE)]
    assert not lock_state(state, POLICY, NOW + 2 + 900).locked
    assert not missing_lock(replace(state, locked_at=NOW + 2), POLICY, NOW + 10)


def test_lock_expires_and_old_failures_do_not_count_again() -> None:
    state = plain_state()
    for attempt in range(3):
        state, _, _ = fail(state, f"guess{attempt}")
    assert not lock_state(state, POLICY, NOW + 900).locked
    state, _, locks = fail(state, "guess-after", now=NOW + 901)
    assert not locks
    assert lock_state(state, POLICY, NOW + 902).recent == 1


def test_duration_zero_means_until_unlocked() -> None:
    state = replace(plain_state(), locked_at=NOW)
    policy = replace(POLICY, lockout_duration=0)
    lock = lock_state(state, policy, NOW + 10 * 365 * 86400)
    assert lock.locked and lock.until is None


def test_failures_outside_the_window_do_not_count() -> None:
    state = plain_state()
    state, _, _ = fail(state, "a", now=NOW)
    state, _, _ = fail(state, "b", now=NOW + 300)
    assert lock_state(state, POLICY, NOW + 601).recent == 1
    _, prune, _ = record_failure(
        state,
        POLICY,
        now=NOW + 601,
        kind="code",
        service="sshd",
        address="",
        presented="c",
        random=secrets.token_bytes,
    )
    assert prune.changes[0].op is Op.DELETE
    assert len(prune.changes[0].values) == 1  # the stale one only


def test_the_same_wrong_secret_counts_once() -> None:
    """A stale mail client retrying an old password must not lock its owner out."""
    state = plain_state()
    for _ in range(10):
        state, _, locks = fail(state, "old-password")
        assert not locks
    assert lock_state(state, POLICY, NOW).recent == 1
    state, counted, _ = fail(state, "another-guess")
    assert counted


# the same wrong verification code, period 30 (NOW starts a step): (seconds after NOW,
# counted, locks). Each new step brings a code not tried before into the window, so the
# same code is a new guess there; within one step a retry tries nothing new.
SAME_CODE_BY_STEP = (
    (0, True, False),
    (29, False, False),  # same step: a repeat
    (30, True, False),  # next step: a new guess
    (59, False, False),
    (60, True, True),  # the third counted failure locks, as any would
)


def test_the_same_wrong_code_counts_once_per_time_step() -> None:
    state = plain_state()
    for offset, counted, locks in SAME_CODE_BY_STEP:
        now = NOW + offset
        state, was_counted, was_locking = fail(
            state, "000000", now, kind="code", step=time_step(now, 30)
        )
        assert (offset, was_counted, was_locking) == (offset, counted, locks)
    assert lock_state(state, POLICY, NOW + 61).locked


def test_static_secrets_repeat_across_steps() -> None:
    """A password, a passcode or a backup code never comes right by waiting: no step."""
    for kind, presented in (
        ("password", "old-password"),
        ("passcode", "abcdabcdabcdabcd"),
        ("code", "2222222222"),
    ):
        state = plain_state()
        for offset in (0, 30, 60, 300):
            state, counted, _ = fail(state, presented, NOW + offset, kind=kind)
            assert counted == (offset == 0), (kind, offset)
        assert lock_state(state, POLICY, NOW + 301).recent == 1


def test_fingerprint_is_salted_per_account_and_kind() -> None:
    one = plain_state()
    other = replace(one, uuid="another-uuid")
    assert fingerprint(one, "password", "x") != fingerprint(other, "password", "x")
    assert fingerprint(one, "password", "x") != fingerprint(one, "code", "x")
    assert len(fingerprint(one, "password", "x")) == 8


def test_fingerprint_of_a_code_includes_its_step_and_others_are_unchanged() -> None:
    state = plain_state()
    assert fingerprint(state, "code", "000000", 7) != fingerprint(state, "code", "000000", 8)
    assert fingerprint(state, "code", "000000", 7) != fingerprint(state, "code", "000000")
    # without a step, as before: failures already stored still spot their repeats
    before = hashlib.sha256(f"twostep-failure\0{state.uuid}\0password\0x".encode())
    assert fingerprint(state, "password", "x") == before.hexdigest()[:8]


def test_success_clears_only_its_own_address() -> None:
    state = plain_state()
    state, _, _ = fail(state, "a", address="192.0.2.1")
    state, _, _ = fail(state, "b", address="198.51.100.7")
    changes = clear_changes(state, "192.0.2.1").changes
    assert [(c.op, len(c.values)) for c in changes] == [(Op.DELETE, 1)]
    assert "192.0.2.1" in changes[0].values[0]
    mine = replace(state, failures=state.failures[:1])
    assert [(c.op, c.values) for c in clear_changes(mine, "192.0.2.1").changes] == [
        (Op.REPLACE, ())
    ]
    assert not clear_changes(plain_state(), "192.0.2.1")


# -- the per-address throttle ------------------------------------------------------------

THROTTLE = Policy(
    lockout_max_failures=100, lockout_window=3600, throttle_failures=3, throttle_delay=30
)


def failures_from(address: str, times: list[int], start: int = 0) -> tuple[Failure, ...]:
    return tuple(
        Failure(time=t, nonce=f"{start + i:08x}0000", kind="passcode", service="imap", address=a)
        for i, (t, a) in enumerate((t, address) for t in times)
    )


def test_an_address_waits_after_its_free_failures_and_the_wait_doubles() -> None:
    guesser = "192.0.2.66"
    state = replace(plain_state(), failures=failures_from(guesser, [NOW, NOW + 1]))
    assert address_wait(state, THROTTLE, guesser, NOW + 2) is None  # two of three free
    state = replace(state, failures=failures_from(guesser, [NOW, NOW + 1, NOW + 2]))
    assert address_wait(state, THROTTLE, guesser, NOW + 3) == NOW + 2 + 30
    assert address_wait(state, THROTTLE, guesser, NOW + 32) is None
    state = replace(state, failures=failures_from(guesser, [NOW, NOW + 1, NOW + 2, NOW + 40]))
    assert address_wait(state, THROTTLE, guesser, NOW + 41) == NOW + 40 + 60
    many = failures_from(guesser, [NOW + i for i in range(40)])
    assert address_wait(replace(state, failures=many), THROTTLE, guesser, NOW + 40) == (
        NOW + 39 + 3600  # the doubling stops at the window
    )


def test_the_wait_is_per_address_and_by_ipv6_network() -> None:
    state = replace(
        plain_state(), failures=failures_from("2001:db8:0:1::66", [NOW, NOW + 1, NOW + 2])
    )
    assert address_wait(state, THROTTLE, "2001:db8:0:1::99", NOW + 3) is not None  # same /64
    assert address_wait(state, THROTTLE, "2001:db8:0:2::66", NOW + 3) is None
    assert address_wait(state, THROTTLE, "198.51.100.7", NOW + 3) is None
    assert address_wait(state, THROTTLE, "", NOW + 3) is None


def test_failures_leave_the_throttle_as_they_leave_the_window() -> None:
    guesser = "192.0.2.66"
    state = replace(plain_state(), failures=failures_from(guesser, [NOW, NOW + 1, NOW + 2]))
    assert address_wait(state, THROTTLE, guesser, NOW + 20) is not None
    later = replace(THROTTLE, lockout_window=10, throttle_delay=3600)
    assert address_wait(state, later, guesser, NOW + 9) == NOW + 2 + 10  # at most the window
    assert address_wait(state, later, guesser, NOW + 10) is None  # the first has aged out


def test_the_account_lock_needs_many_addresses() -> None:
    """With the defaults one address is throttled long before the account could lock."""
    policy = Policy()
    state = plain_state()
    now = NOW
    checked = 0
    while now < NOW + 3600:
        if address_wait(state, policy, "192.0.2.66", now) is None:
            state, counted, _ = fail(state, f"g{checked}", now, "192.0.2.66", policy)
            checked += counted
        now += 1
    assert checked <= 13 and not lock_state(state, policy, now).locked
