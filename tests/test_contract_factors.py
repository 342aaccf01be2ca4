"""One contract for every second factor (style.md section 5), through the Engine's façade.

Each row of FACTORS says how to present the factor, how to obtain a valid value and
an invalid one (django-otp's ``valid_token()``/``invalid_token()``), and what the design
promises about it; every test runs on every row:

* replay: TOTP codes (the step watermark) and backup codes work once; an application
  passcode and a trusted device's token stay usable until revoked;
* lock-out: ``lockout_max_failures`` failures within the window lock the account, after
  which even a valid value is refused as locked (and not used up) until an admin unlocks;
* the per-address throttle (``address_wait``): an address past ``throttle_failures``
  waits, other addresses do not; a success clears the failures of its own address only
  (``clear_changes``), so another address stays throttled.

An invalid device token is not a failure (a trusted device only spares the code after
the right password; a token that does not match asks for the code): for that row the
failures that lock and throttle are wrong passwords, and the tests assert that the
invalid tokens themselves count for nothing.

Time is the injected clock; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from conftest import Clock
from support.flows import interactive_login, mail_login
from support.slapd import POLICIES, USERS, Slapd

from pam_twostep.audit import MemorySink
from pam_twostep.core.codes import ALPHABET
from pam_twostep.core.decision import Decision, Method, Outcome, Reason
from pam_twostep.core.totp import decode_secret, time_step, totp
from pam_twostep.engine import Engine

USER = "alice"
LOCK_AFTER = 10
"""The policy's lockout_max_failures for these tests (each failure from its own address,
so that the lock, not the per-address throttle, is what stops them)."""
LOCK_DURATION = 3600  # the built-in lockout_duration
THROTTLE_AFTER = 5  # the built-in throttle_failures
THROTTLE_DELAY = 30  # the built-in throttle_delay
HERE, THERE = "192.0.2.66", "198.51.100.7"
PERIOD = 30


@dataclass
class Account:
    """Alice enrolled, with one passcode and one trusted device, at ``clock.now``."""

    engine: Engine
    clock: Clock
    key: bytes
    backup_codes: list[str]
    passcode: str
    device: str
    device_token: str
    last_step: int
    """The last TOTP step handed out (or spent by the set-up)."""
    audit: MemorySink = field(repr=False)


def fresh_totp(account: Account) -> str:
    """A code for a step after every one handed out so far, within the window at now.

    The set-up leaves the three steps of the window (now-1, now, now+1) unspent; asking
    for a fourth is a test's mistake, not a reason to move the clock behind its back."""
    now_step = time_step(account.clock.now, PERIOD)
    step = max(account.last_step + 1, now_step - 1)
    if step > now_step + 1:
        raise AssertionError("no unspent TOTP step left in the window")
    account.last_step = step
    return totp(account.key, step * PERIOD)


def wrong_totp(account: Account, i: int) -> str:
    """A six-digit code that matches no step of the window (different for each ``i``)."""
    now_step = time_step(account.clock.now, PERIOD)
    right = {totp(account.key, s * PERIOD) for s in range(now_step - 2, now_step + 3)}
    candidate = i
    while f"{candidate:06d}" in right:
        candidate += 100_000
    return f"{candidate:06d}"


def wrong_backup_code(account: Account, i: int) -> str:
    return f"2345{i:06d}"  # ten symbols: shaped like a backup code


def wrong_passcode(account: Account, i: int) -> str:
    tail = "".join(ALPHABET[(i >> (5 * k)) & 31] for k in range(4))
    return "Z" * 20 + tail  # 24 symbols of the alphabet: shaped like a passcode


def wrong_device_token(account: Account, i: int) -> str:
    return f"{account.device}.{'x' * 40}{i:03d}"  # the real device, the wrong proof


def present_code(account: Account, value: str, remote: str) -> Decision:
    return interactive_login(account.engine, USER, value, remote=remote)


def present_passcode(account: Account, value: str, remote: str) -> Decision:
    return mail_login(account.engine, USER, value, remote=remote)


def present_device(account: Account, value: str, remote: str) -> Decision:
    return interactive_login(account.engine, USER, device_token=value, remote=remote)


def wrong_password(account: Account, i: int, remote: str) -> Decision:
    return interactive_login(account.engine, USER, password=f"wrong password {i}", remote=remote)


@dataclass(frozen=True)
class Factor:
    name: str
    method: Method
    present: Callable[[Account, str, str], Decision]
    valid: Callable[[Account], str]
    invalid: Callable[[Account, int], str]
    invalid_reason: Reason | None
    """Why an invalid value is denied; None: it is not a failure (nothing counted)."""
    single_use: bool
    replay_reason: Reason | None = None
    """Why a spent value is denied (single-use factors)."""
    revoke: Callable[[Account], None] | None = None
    """Ends a reusable factor; then its value is refused with ``revoked``."""
    revoked: tuple[Outcome, Reason] | None = None


FACTORS = [
    Factor(
        "totp",
        Method.TOTP,
        present_code,
        fresh_totp,
        wrong_totp,
        Reason.WRONG_CODE,
        single_use=True,
        replay_reason=Reason.REPLAYED,
    ),
    Factor(
        "backup-code",
        Method.BACKUP_CODE,
        present_code,
        lambda account: account.backup_codes.pop(0),
        wrong_backup_code,
        Reason.WRONG_CODE,
        single_use=True,
        replay_reason=Reason.WRONG_CODE,  # used up: no longer stored, so simply wrong
    ),
    Factor(
        "passcode",
        Method.PASSCODE,
        present_passcode,
        lambda account: account.passcode,
        wrong_passcode,
        Reason.WRONG_PASSCODE,
        single_use=False,
        revoke=lambda account: account.engine.revoke_passcode(USER, "Thunderbird"),
        revoked=(Outcome.DENY, Reason.WRONG_PASSCODE),
    ),
    Factor(
        "trusted-device",
        Method.TRUSTED_DEVICE,
        present_device,
        lambda account: account.device_token,
        wrong_device_token,
        None,
        single_use=False,
        revoke=lambda account: account.engine.revoke_device(USER, account.device),
        revoked=(Outcome.CHALLENGE, Reason.CODE_REQUIRED),
    ),
]


@pytest.fixture(params=FACTORS, ids=[f.name for f in FACTORS])
def factor(request: pytest.FixtureRequest) -> Factor:
    factor: Factor = request.param
    return factor


@pytest.fixture
def account(engine: Engine, clock: Clock, slapd: Slapd, audit: MemorySink) -> Iterator[Account]:
    # five backup codes: each one presented is checked (argon2id) against all that are left
    slapd.set_attributes(
        f"cn=default,{POLICIES}",
        twostepLockoutMaxFailures=[str(LOCK_AFTER)],
        twostepBackupCodeCount=["5"],
    )
    start = clock.now
    clock.now = start - 3 * PERIOD  # enrolled and the device trusted a little while ago
    shown = engine.enroll_begin(USER, USERS[USER])
    key = decode_secret(shown.secret)
    codes = engine.enroll_confirm(USER, totp(key, clock.now))
    clock.advance(PERIOD)
    trusted = interactive_login(engine, USER, totp(key, clock.now), trust=True)
    assert trusted.device is not None and trusted.device_token is not None
    passcode = engine.add_passcode(USER, "Thunderbird").passcode
    last_step = time_step(clock.now, PERIOD)
    clock.now = start
    assert engine.status(USER).recent_failures == 0
    yield Account(
        engine, clock, key, codes, passcode, trusted.device, trusted.device_token, last_step, audit
    )


def fail(factor: Factor, account: Account, i: int, remote: str) -> Decision:
    """One counted failure on this factor's route: its invalid value where that counts,
    else a wrong password."""
    if factor.invalid_reason is None:
        return wrong_password(account, i, remote)
    return factor.present(account, factor.invalid(account, i), remote)


def failure_reason(factor: Factor) -> Reason:
    return factor.invalid_reason or Reason.WRONG_PASSWORD


def assert_accepted(factor: Factor, decision: Decision) -> None:
    assert (decision.outcome, decision.method) == (Outcome.ACCEPT, factor.method), decision


# -- replay ------------------------------------------------------------------------------


def test_a_value_is_single_use_or_reusable_as_designed(factor: Factor, account: Account) -> None:
    value = factor.valid(account)
    assert_accepted(factor, factor.present(account, value, HERE))
    again = factor.present(account, value, THERE)  # from elsewhere: no address is spared
    if factor.single_use:
        assert (again.outcome, again.reason) == (Outcome.DENY, factor.replay_reason)
        assert account.engine.status(USER).recent_failures == 1  # a replay counts
        assert_accepted(factor, factor.present(account, factor.valid(account), HERE))
    else:
        assert_accepted(factor, again)
        assert_accepted(factor, factor.present(account, value, HERE))
        assert account.engine.status(USER).recent_failures == 0
        assert factor.revoke is not None and factor.revoked is not None
        factor.revoke(account)
        ended = factor.present(account, value, HERE)
        assert (ended.outcome, ended.reason) == factor.revoked


def test_an_invalid_value_is_refused(factor: Factor, account: Account) -> None:
    decision = factor.present(account, factor.invalid(account, 1), HERE)
    if factor.invalid_reason is None:  # asks for the code instead; nothing counted
        assert (decision.outcome, decision.reason) == (Outcome.CHALLENGE, Reason.CODE_REQUIRED)
        assert account.engine.status(USER).recent_failures == 0
    else:
        assert (decision.outcome, decision.reason) == (Outcome.DENY, factor.invalid_reason)
        assert account.engine.status(USER).recent_failures == 1


# -- lock-out ----------------------------------------------------------------------------


def test_failures_lock_the_account_until_an_admin_unlocks(factor: Factor, account: Account) -> None:
    engine = account.engine
    if factor.invalid_reason is None:
        for i in range(LOCK_AFTER + THROTTLE_AFTER):  # invalid tokens never lock...
            decision = factor.present(account, factor.invalid(account, i), HERE)
            assert decision.outcome is Outcome.CHALLENGE
        status = engine.status(USER)
        assert not status.locked and status.recent_failures == 0
    for i in range(LOCK_AFTER - 1):  # ...whereas LOCK_AFTER failures lock it
        decision = fail(factor, account, i, f"203.0.113.{i + 1}")
        assert (decision.outcome, decision.reason) == (Outcome.DENY, failure_reason(factor))
    assert not engine.status(USER).locked
    last = fail(factor, account, LOCK_AFTER, "203.0.113.200")
    assert last.reason is failure_reason(factor)
    status = engine.status(USER)
    assert status.locked and status.locked_until == int(account.clock.now) + LOCK_DURATION

    value = factor.valid(account)
    refused = factor.present(account, value, HERE)
    assert (refused.outcome, refused.reason) == (Outcome.DENY, Reason.LOCKED)
    assert refused.retry_at == status.locked_until
    assert engine.status(USER).recent_failures == LOCK_AFTER  # refused unchecked, not counted

    engine.unlock(USER, actor="root")
    assert not engine.status(USER).locked
    assert_accepted(factor, factor.present(account, value, HERE))  # not used up by the lock


# -- the per-address throttle and what a success clears ---------------------------------------


def test_failures_throttle_their_address_and_no_other(factor: Factor, account: Account) -> None:
    engine = account.engine
    for i in range(THROTTLE_AFTER):
        assert fail(factor, account, i, HERE).reason is failure_reason(factor)
    value = factor.valid(account)
    waiting = factor.present(account, value, HERE)
    assert (waiting.outcome, waiting.reason) == (Outcome.DENY, Reason.THROTTLED)
    assert waiting.retry_at == int(account.clock.now) + THROTTLE_DELAY
    assert fail(factor, account, THROTTLE_AFTER, HERE).reason is Reason.THROTTLED
    assert engine.status(USER).recent_failures == THROTTLE_AFTER  # a wait is not a count
    assert_accepted(factor, factor.present(account, value, THERE))  # not used up by the wait
    assert not engine.status(USER).locked


def test_a_success_clears_the_failures_of_its_own_address_only(
    factor: Factor, account: Account
) -> None:
    engine = account.engine
    for i in range(THROTTLE_AFTER):
        fail(factor, account, i, THERE)
    for i in range(THROTTLE_AFTER - 2):
        fail(factor, account, 100 + i, HERE)
    assert engine.status(USER).recent_failures == 2 * THROTTLE_AFTER - 2

    assert_accepted(factor, factor.present(account, factor.valid(account), HERE))
    assert engine.status(USER).recent_failures == THROTTLE_AFTER  # THERE's are left
    still = factor.present(account, factor.valid(account), THERE)
    assert (still.outcome, still.reason) == (Outcome.DENY, Reason.THROTTLED)
    # HERE starts again from nothing: with its three kept, the third of these would wait
    # (and a fifth would reach LOCK_AFTER with THERE's five)
    for i in range(THROTTLE_AFTER - 1):
        assert fail(factor, account, 200 + i, HERE).reason is failure_reason(factor)
    assert engine.status(USER).recent_failures == 2 * THROTTLE_AFTER - 1
