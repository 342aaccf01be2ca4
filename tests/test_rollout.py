"""Grace periods (``core.rollout``) with the clock injected: the day before, of and after.

Each date is the start of a day; "the day of" is that very second, when the grace is over.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.states import NOW, enabled_state, interactive, mail, plain_state, run, with_passcode

from pam_twostep.core.account import Attr
from pam_twostep.core.codes import new_passcode
from pam_twostep.core.dates import format_date, from_generalized_time, parse_date
from pam_twostep.core.decision import Method, Outcome, PasswordCheck, Reason, wants_password
from pam_twostep.core.errors import RefusalReason, Refused
from pam_twostep.core.hashing import fast_digest
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Failure
from pam_twostep.core.revocation import live_credentials, revocation
from pam_twostep.core.rollout import (
    end_mail_password,
    ever_a_passcode,
    mail_password_accepted,
    reminder,
    required_now,
)
from pam_twostep.core.stale_records import RetiredPasscode

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


def _secrets_of_every_kind() -> tuple[object, dict[str, str]]:
    """An enrolled account holding a live, an expired, an old-password and a retired
    passcode, and one of each to present, with a password and a stranger's passcode."""
    state, live = with_passcode(enabled_state(), "Live")
    state, expired = with_passcode(state, "Expired", expires=DATE - 2 * DAY)
    state, old = with_passcode(state, "Old", stamp="f" * 32)
    retired = new_passcode(lambda n: b"\x07" * n)
    record = RetiredPasscode("r1", "Gone", fast_digest("passcode", retired), DATE - DAY, "revoked")
    state = replace(state, retired=(record,))
    stranger = new_passcode(lambda n: b"\x09" * n)
    return state, {
        "live": live,
        "expired": expired,
        "old": old,
        "retired": retired,
        "stranger": stranger,
        "password": "correct horse",
    }


@pytest.mark.parametrize("passcodes", [True, False], ids=["passcodes", "no-passcodes"])
@pytest.mark.parametrize("kind", ["live", "expired", "old", "retired", "stranger", "password"])
def test_in_the_grace_wants_password_and_decide_agree(kind: str, passcodes: bool) -> None:
    """Whatever is presented, the caller binds exactly when decide needs the answer (a
    disagreement raises, a temporary failure on every retry); a secret that was ever one
    of the account's passcodes is decided as one, unbound, and refused unless live."""
    state, presented = _secrets_of_every_kind()
    policy = Policy(mail_password_until=DATE, passcodes=passcodes)
    now = DATE - DAY
    secret = presented[kind]
    binds = wants_password(state, policy, mail(secret), now)  # type: ignore[arg-type]
    assert binds is (kind in ("stranger", "password"))
    check = PasswordCheck.WRONG if binds else PasswordCheck.NOT_CHECKED
    decision = run(state, mail(secret), policy=policy, now=now, password=check)  # type: ignore[arg-type]
    if kind == "live" and passcodes:
        assert decision.outcome is Outcome.ACCEPT and decision.method is Method.PASSCODE
    else:
        assert decision.outcome is Outcome.DENY
        assert decision.commit  # counted: every refused secret is
    if binds and kind == "password":
        right = run(state, mail(secret), policy=policy, now=now)  # type: ignore[arg-type]
        assert right.method is Method.PASSWORD


def test_the_password_at_mail_clears_password_failures_only() -> None:
    """With the password alone, a code guesser must not reset the count of the codes they
    guessed from the same address (the throttle and the lock are what stop them); the
    user's own mistyped passwords from there are forgotten, as a success forgets them."""
    at = "192.0.2.1"
    codes = tuple(
        Failure(DATE - DAY - 60 + i, f"{i:08x}0000", "code", "sshd", at) for i in range(3)
    )
    typo = Failure(DATE - DAY - 10, "000000ff0000", "password", "imap", at)
    elsewhere = Failure(DATE - DAY - 5, "000000fe0000", "password", "imap", "198.51.100.9")
    state = replace(enabled_state(), failures=(*codes, typo, elsewhere))
    policy = Policy(mail_password_until=DATE)
    decision = run(state, mail("pw"), policy=policy, now=DATE - DAY, remote=at)
    assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.PASSWORD)
    cleared = [
        v
        for m in decision.followups
        for c in m.changes
        if c.attribute == Attr.FAILURE
        for v in c.values
    ]
    assert cleared == [typo.dump()]
    # with two-step off the password is the only factor: its success clears all from there
    plain = run(replace(plain_state(), failures=(*codes, typo)), mail("pw"), now=DATE - DAY)
    assert Attr.FAILURE in {c.attribute for m in plain.followups for c in m.changes}


def test_a_user_ends_the_grace_for_their_own_account() -> None:
    policy = Policy(mail_password_until=DATE)
    state = enabled_state()
    now = DATE - 3 * DAY
    modify = end_mail_password(state, policy, now)
    [change] = modify.changes
    assert change.attribute == "twostepMailPasswordUntil"
    assert from_generalized_time(change.values[0]) == now
    ended = Policy(mail_password_until=now)  # the account's override, as the entry reads
    assert not mail_password_accepted(state, ended, now)
    for refused_state, refused_policy in (
        (state, ended),
        (plain_state(), policy),  # two-step off: the password is the only way in
        (state, Policy()),
        (state, Policy(mail_password=False, mail_password_until=DATE)),
    ):
        with pytest.raises(Refused) as caught:
            end_mail_password(refused_state, refused_policy, now)
        assert caught.value.reason is RefusalReason.NO_MAIL_PASSWORD
    # without passcodes, ending it would leave this account's mail nothing to sign in with
    with pytest.raises(Refused) as caught:
        end_mail_password(state, Policy(mail_password_until=DATE, passcodes=False), now)
    assert caught.value.reason is RefusalReason.PASSCODES_DISABLED


def test_ever_a_passcode_is_no_password_test() -> None:
    state, presented = _secrets_of_every_kind()
    assert [k for k, v in presented.items() if ever_a_passcode(state, v)] == [  # type: ignore[arg-type]
        "live",
        "expired",
        "old",
        "retired",
    ]
