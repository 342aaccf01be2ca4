"""The login decision, as a pure function: every path without a directory in sight."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from support.states import (
    NOW,
    STAMP,
    code,
    enabled_state,
    interactive,
    mail,
    plain_state,
    run,
    with_backup_codes,
    with_passcode,
)

from pam_twostep.core.account import Attr, format_time
from pam_twostep.core.changes import Op
from pam_twostep.core.codes import group, new_device_token, new_id
from pam_twostep.core.decision import (
    MAX_DEVICES,
    USAGE_INTERVAL,
    Attempt,
    Context,
    Flow,
    Method,
    Outcome,
    PasswordCheck,
    Reason,
    conflicted,
    throttled,
    wants_password,
)
from pam_twostep.core.hashing import fast_digest
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Device, Failure, Usage
from pam_twostep.core.totp import time_step


def failure_written(decision) -> bool:  # type: ignore[no-untyped-def]
    return any(c.attribute == Attr.FAILURE and c.op is Op.ADD for c in decision.commit.changes)


# -- mail services ---------------------------------------------------------------------


def test_mail_password_while_two_step_is_off() -> None:
    state = plain_state()
    assert wants_password(state, Policy(), mail("pw"), NOW)
    decision = run(state, mail("pw"), password=PasswordCheck.RIGHT)
    assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.PASSWORD)
    wrong = run(state, mail("nope"), password=PasswordCheck.WRONG)
    assert (wrong.outcome, wrong.reason) == (Outcome.DENY, Reason.WRONG_PASSWORD)
    assert failure_written(wrong)


def test_mail_password_forbidden_by_policy() -> None:
    policy = Policy(mail_password=False)
    assert not wants_password(plain_state(), policy, mail("pw"), NOW)
    decision = run(plain_state(), mail("pw"), policy=policy, password=PasswordCheck.NOT_CHECKED)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.PASSWORD_NOT_ACCEPTED)


def test_mail_with_two_step_on_takes_passcodes_only() -> None:
    state, passcode = with_passcode(enabled_state())
    assert not wants_password(state, Policy(), mail(passcode), NOW)
    for typed in (passcode, passcode.lower(), group(passcode, 4), group(passcode.lower(), 4, " ")):
        decision = run(state, mail(typed), password=PasswordCheck.NOT_CHECKED)
        assert (decision.outcome, decision.method, decision.label) == (
            Outcome.ACCEPT,
            Method.PASSCODE,
            "Thunderbird",
        )
        assert not decision.commit  # no guarded write: passcodes are reusable


@pytest.mark.parametrize("secret", ["pw", "pw" + code(), code(), "", "A" * 24, "\x00" * 24])
def test_mail_with_two_step_on_refuses_everything_else(secret: str) -> None:
    state, _ = with_passcode(enabled_state())
    decision = run(state, mail(secret), password=PasswordCheck.NOT_CHECKED)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.WRONG_PASSCODE)
    assert decision.commit  # counted


def test_passcode_scope_expiry_and_password_change() -> None:
    state, scoped = with_passcode(enabled_state(), services=("imap",))
    assert run(state, mail(scoped), service="imap").outcome is Outcome.ACCEPT
    assert run(state, mail(scoped), service="smtp").reason is Reason.PASSCODE_SCOPE

    state, expiring = with_passcode(enabled_state(), expires=NOW + 10)
    assert run(state, mail(expiring), now=NOW + 9).outcome is Outcome.ACCEPT
    assert run(state, mail(expiring), now=NOW + 10).reason is Reason.PASSCODE_EXPIRED

    state, old = with_passcode(enabled_state(), stamp="f" * 32)  # made under another password
    decision = run(state, mail(old))
    assert decision.reason is Reason.WRONG_PASSCODE


def test_passcodes_disabled_by_policy() -> None:
    state, passcode = with_passcode(enabled_state())
    decision = run(state, mail(passcode), policy=Policy(passcodes=False))
    assert decision.reason is Reason.PASSCODES_DISABLED


def test_passcode_usage_is_noted_but_not_on_every_login() -> None:
    state, passcode = with_passcode(enabled_state())
    first = run(state, mail(passcode), remote="192.0.2.9")
    notes = [c for m in first.followups for c in m.changes if c.attribute == Attr.USAGE]
    assert notes and notes[-1].op is Op.ADD
    used = replace(state, usage=(Usage(state.passcodes[0].id, NOW, "192.0.2.9"),))
    soon = run(used, mail(passcode), remote="192.0.2.9", now=NOW + USAGE_INTERVAL - 1)
    assert not [c for m in soon.followups for c in m.changes if c.attribute == Attr.USAGE]
    later = run(used, mail(passcode), remote="192.0.2.9", now=NOW + USAGE_INTERVAL)
    changes = [c for m in later.followups for c in m.changes if c.attribute == Attr.USAGE]
    assert [c.op for c in changes] == [Op.DELETE, Op.ADD]


def test_dead_passcodes_are_swept_after_a_success() -> None:
    state, _ = with_passcode(enabled_state(), "old", stamp="f" * 32)
    state, live = with_passcode(state, "new")
    decision = run(state, mail(live))
    sweeps = [
        c
        for m in decision.followups
        for c in m.changes
        if c.attribute == Attr.PASSCODE and c.op is Op.DELETE
    ]
    assert len(sweeps) == 1 and '"label":"old"' in sweeps[0].values[0]


# -- interactive services --------------------------------------------------------------


def test_interactive_without_two_step() -> None:
    decision = run(plain_state(), interactive(), service="sshd")
    assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.PASSWORD)
    required = run(plain_state(), interactive(), service="sshd", policy=Policy(required=True))
    assert (required.outcome, required.reason) == (Outcome.DENY, Reason.ENROLLMENT_REQUIRED)
    assert not required.commit  # the password was right: nothing to count


def test_interactive_asks_for_a_code() -> None:
    decision = run(enabled_state(), interactive(), service="sshd")
    assert (decision.outcome, decision.reason) == (Outcome.CHALLENGE, Reason.CODE_REQUIRED)
    wrong_password = run(
        enabled_state(), interactive(code=code()), password=PasswordCheck.WRONG, service="sshd"
    )
    assert wrong_password.reason is Reason.WRONG_PASSWORD


def test_totp_advances_the_watermark_by_compare_and_swap() -> None:
    state = enabled_state()
    decision = run(state, interactive(code=code()), service="sshd")
    assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.TOTP)
    assert decision.commit.guarded
    changes = [(c.op, c.attribute, c.values) for c in decision.commit.changes]
    assert changes == [
        (Op.DELETE, Attr.LAST_STEP, (str(state.last_step),)),
        (Op.ADD, Attr.LAST_STEP, (str(time_step(NOW, 30)),)),
    ]


def test_totp_replay_and_wrong_code() -> None:
    state = replace(enabled_state(), last_step=time_step(NOW, 30))
    assert run(state, interactive(code=code()), service="sshd").reason is Reason.REPLAYED
    assert run(enabled_state(), interactive(code="000000"), service="sshd").reason in (
        Reason.WRONG_CODE,
    )


def test_totp_window_from_policy() -> None:
    state = enabled_state()
    early = code(NOW + 60)
    assert run(state, interactive(code=early), service="sshd").reason is Reason.WRONG_CODE
    accepted = run(state, interactive(code=early), service="sshd", policy=Policy(totp_window=2))
    assert accepted.outcome is Outcome.ACCEPT


def test_backup_code_is_consumed_by_deleting_its_value() -> None:
    state, codes = with_backup_codes(enabled_state())
    decision = run(state, interactive(code=group(codes[1], 5).lower()), service="sshd")
    assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.BACKUP_CODE)
    assert decision.commit.guarded
    assert [(c.op, c.values) for c in decision.commit.changes] == [
        (Op.DELETE, (state.backup_codes[1],))
    ]
    assert run(state, interactive(code="2222222222"), service="sshd").reason is Reason.WRONG_CODE


def test_trusted_device_skips_the_code() -> None:
    device_id = new_id(secrets.token_bytes)
    token = new_device_token(secrets.token_bytes, device_id)
    device = Device(
        id=device_id,
        label="Laptop",
        digest=fast_digest("device", token),
        created=NOW - 10,
        expires=NOW + 100,
        stamp=STAMP,
    )
    state = enabled_state(devices=(device,))
    decision = run(state, interactive(device_token=token), service="sshd")
    assert (decision.outcome, decision.method, decision.device) == (
        Outcome.ACCEPT,
        Method.TRUSTED_DEVICE,
        device_id,
    )
    # expired, made under another password, forged, or not allowed by policy: code asked
    for variant, policy in (
        (replace(state, devices=(replace(device, expires=NOW),)), Policy()),
        (replace(state, devices=(replace(device, stamp="f" * 32),)), Policy()),
        (state, Policy(trusted_devices=False)),
    ):
        assert (
            run(variant, interactive(device_token=token), service="sshd", policy=policy).outcome
            is Outcome.CHALLENGE
        )
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert run(state, interactive(device_token=forged), service="sshd").outcome is (
        Outcome.CHALLENGE
    )


def test_trusting_a_device_after_a_code() -> None:
    attempt = interactive(code=code(), trust_device=True, device_label="Firefox on laptop")
    decision = run(enabled_state(), attempt, service="portal")
    assert decision.device_token and decision.device
    assert decision.device_token.startswith(decision.device + ".")
    added = [c for c in decision.commit.changes if c.attribute == Attr.DEVICE]
    assert added and '"label":"Firefox on laptop"' in added[0].values[0]
    assert decision.device_token not in repr(decision)
    refused = run(enabled_state(), attempt, service="portal", policy=Policy(trusted_devices=False))
    assert refused.outcome is Outcome.ACCEPT and refused.device_token is None


def test_oldest_devices_make_room() -> None:
    devices = tuple(
        Device(
            id=f"dev{i:05d}".replace("0", "a").replace("1", "b"),
            label="d",
            digest="A" * 43,
            created=NOW - 1000 + i,
            expires=NOW + 1000,
            stamp=STAMP,
        )
        for i in range(MAX_DEVICES)
    )
    decision = run(
        enabled_state(devices=devices),
        interactive(code=code(), trust_device=True),
        service="portal",
    )
    dropped = [
        c
        for m in decision.followups
        for c in m.changes
        if c.attribute == Attr.DEVICE and c.op is Op.DELETE
    ]
    assert dropped and devices[0].dump() in dropped[0].values


# -- lock-out and conflicts ------------------------------------------------------------


def test_locked_accounts_get_nowhere_and_nothing_is_written() -> None:
    state, passcode = with_passcode(enabled_state(locked_at=NOW - 10))
    assert not wants_password(state, Policy(), interactive(), NOW)
    for attempt in (mail(passcode), interactive(code=code())):
        decision = run(state, attempt)
        assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.LOCKED)
        assert not decision.commit and not decision.followups


def test_failure_that_reaches_the_limit_locks() -> None:
    state = plain_state()
    policy = Policy(lockout_max_failures=1)
    decision = run(state, mail("x"), password=PasswordCheck.WRONG, policy=policy)
    assert decision.locks
    assert any(
        c.attribute == Attr.LOCKED_AT and c.values == (format_time(NOW),)
        for c in decision.commit.changes
    )


def written(state, decision):  # type: ignore[no-untyped-def]
    """The state after the decision's commit, as far as failures and the lock go."""
    failures = state.failures
    locked_at = state.locked_at
    for change in decision.commit.changes:
        if change.attribute == Attr.FAILURE:
            failures += tuple(Failure.load(v) for v in change.values)
        if change.attribute == Attr.LOCKED_AT:
            locked_at = NOW
    return replace(state, failures=failures, locked_at=locked_at)


# one address retrying the same wrong code (period 30; NOW starts a step), with 2 free
# failures, then 30 s, 60 s, ... of wait, and a lock at 4: (seconds after NOW, reason,
# counted, repeat)
SAME_WRONG_CODE = (
    (0, Reason.WRONG_CODE, True, False),
    (29, Reason.WRONG_CODE, False, True),  # same step: nothing new tried
    (30, Reason.WRONG_CODE, True, False),  # next step: a new guess; 2 failures, 30 s wait
    (59, Reason.THROTTLED, False, False),
    (60, Reason.WRONG_CODE, True, False),  # 3 failures: 60 s wait
    (90, Reason.THROTTLED, False, False),
    (120, Reason.WRONG_CODE, True, False),  # 4: locked
    (150, Reason.LOCKED, False, False),
)


def test_the_same_wrong_code_is_a_new_guess_at_each_time_step() -> None:
    """A fixed code comes right at some step: retried every step it is counted each time."""
    policy = Policy(lockout_max_failures=4, throttle_failures=2, throttle_delay=30)
    state = enabled_state()
    for offset, reason, counted, repeat in SAME_WRONG_CODE:
        decision = run(
            state, interactive(code="000000"), service="sshd", policy=policy, now=NOW + offset
        )
        assert (offset, decision.reason, decision.counted, decision.repeat) == (
            offset,
            reason,
            counted,
            repeat,
        )
        assert decision.locks == (offset == 120)
        state = written(state, decision)
    assert len(state.failures) == 4 and state.locked_at is not None


def test_a_replayed_code_at_the_next_step_counts_again() -> None:
    state = replace(enabled_state(), last_step=time_step(NOW, 30))
    first = run(state, interactive(code=code()), service="sshd")
    again = run(written(state, first), interactive(code=code()), service="sshd", now=NOW + 30)
    assert (first.reason, again.reason) == (Reason.REPLAYED, Reason.REPLAYED)
    assert first.counted and again.counted and not again.repeat


def test_static_secrets_retried_at_later_steps_count_once() -> None:
    """A mail client re-sending an old password or a revoked passcode, a wrong backup code
    typed again: none comes right by waiting, so the retries are repeats."""
    passcoded, passcode = with_passcode(enabled_state())
    revoked = replace(passcoded, passcodes=())
    with_codes, _ = with_backup_codes(enabled_state())
    for start, attempt, password, reason in (
        (plain_state(), mail("old-password"), PasswordCheck.WRONG, Reason.WRONG_PASSWORD),
        (enabled_state(), interactive("old"), PasswordCheck.WRONG, Reason.WRONG_PASSWORD),
        (revoked, mail(passcode), PasswordCheck.NOT_CHECKED, Reason.WRONG_PASSCODE),
        (with_codes, interactive(code="2222222222"), PasswordCheck.RIGHT, Reason.WRONG_CODE),
    ):
        state = start
        for offset in (0, 29, 30, 60, 300):
            decision = run(state, attempt, password=password, now=NOW + offset)
            assert decision.reason is reason
            assert (decision.counted, decision.repeat) == (offset == 0, offset != 0), (
                reason,
                offset,
            )
            state = written(state, decision)
        assert len(state.failures) == 1


def test_conflict_becomes_a_counted_replay() -> None:
    state = enabled_state()
    attempt = interactive(code=code())
    decision = conflicted(state, Policy(), attempt, Context("sshd", "", NOW), secrets.token_bytes)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.REPLAYED)
    assert failure_written(decision)


def test_unchecked_password_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        run(plain_state(), mail("pw"), password=PasswordCheck.NOT_CHECKED)
    with pytest.raises(ValueError):
        run(enabled_state(), interactive(code=code()), password=PasswordCheck.NOT_CHECKED)


def test_attempt_repr_hides_secrets() -> None:
    attempt = Attempt(Flow.INTERACTIVE, "hunter2", code="123456", device_token="abc.def")
    assert "hunter2" not in repr(attempt)
    assert "123456" not in repr(attempt)
    assert "abc.def" not in repr(attempt)


# -- throttles ---------------------------------------------------------------------------


def test_a_throttled_address_gets_nowhere_unchecked_and_others_go_on() -> None:
    """Past its free failures an address is refused before any check; the owner is not."""
    policy = Policy(throttle_failures=2, throttle_delay=30)
    state, passcode = with_passcode(enabled_state())
    guesser, owner = "192.0.2.66", "198.51.100.7"
    for i in range(2):
        wrong = run(state, mail(f"wrong {i}"), policy=policy, remote=guesser)
        assert wrong.reason is Reason.WRONG_PASSCODE and wrong.counted
        state = replace(
            state,
            failures=state.failures
            + tuple(Failure.load(v) for c in wrong.commit.changes for v in c.values),
        )
    for attempt in (mail(passcode), interactive(code=code())):
        assert not wants_password(state, policy, attempt, NOW + 1, guesser)
        refused = run(state, attempt, policy=policy, remote=guesser, now=NOW + 1)
        assert (refused.outcome, refused.reason) == (Outcome.DENY, Reason.THROTTLED)
        assert refused.retry_at == NOW + 30
        assert not refused.commit and not refused.followups and not refused.counted
    assert wants_password(state, policy, interactive(), NOW + 1, owner)
    assert run(state, mail(passcode), policy=policy, remote=owner, now=NOW + 1).outcome is (
        Outcome.ACCEPT
    )
    assert run(state, mail(passcode), policy=policy, remote=guesser, now=NOW + 30).outcome is (
        Outcome.ACCEPT  # the wait is over
    )


def test_the_lock_comes_before_the_throttle_and_says_when_it_ends() -> None:
    many = tuple(
        Failure(NOW - 20 + i, f"{i:08x}0000", "password", "imap", "192.0.2.1") for i in range(5)
    )
    state = plain_state(locked_at=NOW - 10, failures=many)
    decision = run(state, mail("pw"), password=PasswordCheck.NOT_CHECKED)
    assert (decision.reason, decision.retry_at) == (Reason.LOCKED, NOW - 10 + 3600)
    unlocked = run(replace(state, locked_at=None), mail("pw"), password=PasswordCheck.NOT_CHECKED)
    assert (unlocked.reason, unlocked.retry_at) == (Reason.THROTTLED, NOW - 16 + 30)
    source = throttled("alice", Reason.SOURCE_THROTTLED, NOW + 5)
    assert (source.outcome, source.reason, source.retry_at) == (
        Outcome.DENY,
        Reason.SOURCE_THROTTLED,
        NOW + 5,
    )
