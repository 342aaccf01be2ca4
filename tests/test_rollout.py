"""Grace periods (``core.rollout``) with the clock injected: the day before, of and after.

Each date is the start of a day; "the day of" is that very second, when the grace is over.
"""

from __future__ import annotations

import pytest
from support.states import NOW, enabled_state, interactive, mail, plain_state, run, with_passcode

from pam_twostep.core.dates import format_date, parse_date
from pam_twostep.core.decision import Method, Outcome, PasswordCheck, Reason, wants_password
from pam_twostep.core.policy import Policy
from pam_twostep.core.revocation import live_credentials, revocation
from pam_twostep.core.rollout import mail_password_accepted, reminder, required_now

DAY = 86400
DATE = parse_date("2027-01-15")
DAYS = [(-DAY, "day-before"), (0, "day-of"), (DAY, "day-after")]


@pytest.mark.parametrize(("offset", "when"), DAYS, ids=[w for _, w in DAYS])
def test_required_from(offset: int, when: str) -> None:
    policy = Policy(required=True, required_from=DATE)
    now = DATE + offset
    decision = run(plain_state(), interactive(), service="sshd", policy=policy, now=now)
    if when == "day-before":
        assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.PASSWORD)
        assert decision.required_from == DATE
        assert not required_now(policy, now)
    else:
        assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.ENROLLMENT_REQUIRED)
        assert decision.required_from is None
        assert required_now(policy, now)


def test_required_from_does_nothing_without_required_nor_for_the_enrolled() -> None:
    before = DATE - DAY
    exempt = Policy(required=False, required_from=DATE)
    for now in (before, DATE + DAY):
        decision = run(plain_state(), interactive(), service="sshd", policy=exempt, now=now)
        assert decision.outcome is Outcome.ACCEPT and decision.required_from is None
    policy = Policy(required=True, required_from=DATE)
    assert reminder(enabled_state(), policy, before) is None
    assert reminder(plain_state(), policy, before) == DATE
    # no date: required at once, no reminder ever
    assert reminder(plain_state(), Policy(required=True), before) is None
    assert required_now(Policy(required=True), 0)


@pytest.mark.parametrize(("offset", "when"), DAYS, ids=[w for _, w in DAYS])
def test_mail_password_until(offset: int, when: str) -> None:
    policy = Policy(mail_password_until=DATE)
    now = DATE + offset
    state, passcode = with_passcode(enabled_state())
    open_ = when == "day-before"
    assert mail_password_accepted(state, policy, now) is open_
    assert wants_password(state, policy, mail("pw"), now) is open_
    # a passcode is tried first and costs no bind, grace or not
    assert not wants_password(state, policy, mail(passcode), now)
    assert run(state, mail(passcode), policy=policy, now=now).method is Method.PASSCODE
    if open_:
        right = run(state, mail("pw"), policy=policy, now=now, password=PasswordCheck.RIGHT)
        assert (right.outcome, right.method) == (Outcome.ACCEPT, Method.PASSWORD)
        wrong = run(state, mail("pw"), policy=policy, now=now, password=PasswordCheck.WRONG)
        assert (wrong.outcome, wrong.reason) == (Outcome.DENY, Reason.WRONG_PASSWORD)
        assert wrong.commit  # counted like any wrong password
    else:
        # the caller said RIGHT, as a confused one might: still not accepted
        late = run(state, mail("pw"), policy=policy, now=now, password=PasswordCheck.RIGHT)
        assert (late.outcome, late.reason) == (Outcome.DENY, Reason.WRONG_PASSCODE)


def test_mail_password_until_never_reopens_what_mail_password_closed() -> None:
    policy = Policy(mail_password=False, mail_password_until=DATE)
    state, _ = with_passcode(enabled_state())
    assert not mail_password_accepted(state, policy, DATE - DAY)
    assert not wants_password(state, policy, mail("pw"), DATE - DAY)
    decision = run(state, mail("pw"), policy=policy, now=DATE - DAY, password=PasswordCheck.RIGHT)
    assert decision.outcome is Outcome.DENY
    # nor does it touch interactive sign-ins: with two-step on, a code is still asked
    challenge = run(state, interactive(), service="sshd", policy=Policy(mail_password_until=DATE))
    assert challenge.outcome is Outcome.CHALLENGE


def test_the_password_at_mail_is_a_live_credential_until_the_date() -> None:
    """Enrolling in the grace takes nothing from mail (no session ends); the date does."""
    policy = Policy(mail_password_until=DATE)
    before, after = plain_state(), enabled_state()
    assert any(t.startswith("password:") for t in live_credentials(after, policy, DATE - 1))
    assert not any(t.startswith("password:") for t in live_credentials(after, policy, DATE))
    assert not revocation(before, policy, after, policy, DATE - 1)
    ended = revocation(before, Policy(), after, Policy(), DATE - 1)
    assert [c.tag.split(":")[0] for c in ended.revoked] == ["password"]


@pytest.mark.parametrize(
    ("text", "epoch", "shown"),
    [
        ("2027-01-15", DATE, "2027-01-15"),
        ("2027-01-15T09:30:00+01:00", DATE + 30 * 60 + 8 * 3600, "2027-01-15T08:30:00Z"),
        ("2027-01-15T00:00Z", DATE, "2027-01-15"),
    ],
)
def test_dates_as_written(text: str, epoch: int, shown: str) -> None:
    assert parse_date(text) == epoch
    assert format_date(epoch) == shown
    assert NOW  # the shared states' clock is unrelated: dates are absolute
