"""The pure stale-client rules: which denied secrets are a stale client, what is written
(once, bounded), what is counted (once), and that a guess is never one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

import pytest
from support.states import KEYS, NOW, enabled_state, interactive, mail, plain_state, with_passcode

from pam_twostep.core.account import AccountState, Attr, RawEntry
from pam_twostep.core.changes import Modify, Op
from pam_twostep.core.decision import (
    Attempt,
    Context,
    Decision,
    PasswordCheck,
    Reason,
    decide,
)
from pam_twostep.core.errors import NotFound
from pam_twostep.core.keyring import Keyring
from pam_twostep.core.policy import Policy
from pam_twostep.core.stale_records import PasswordVerifier, StaleClient, load_retired
from pam_twostep.core.staleclients import (
    MAX_RETIRED,
    MAX_STALE,
    STALE_INTERVAL,
    dismiss,
    observe,
    password_replaced,
    recorded,
    remember,
    retire_passcodes,
    shown,
)

OTHER_STAMP = "1" * 32


def _apply(state: AccountState, *modifies: Modify) -> AccountState:
    """What the directory would hold after these modifies (the two new attributes),
    read back as ``parse_account`` reads them."""
    retired = [r.dump() for r in state.retired] + list(state.unreadable.get(Attr.RETIRED, ()))
    stale = [c.dump() for c in state.stale_clients]
    stale += list(state.unreadable.get(Attr.STALE_CLIENT, ()))
    for modify in modifies:
        for change in modify.changes:
            target = {Attr.RETIRED: retired, Attr.STALE_CLIENT: stale}.get(change.attribute)
            if target is None:
                continue
            if change.op is Op.ADD:
                target.extend(change.values)
            elif change.op is Op.DELETE:
                for value in change.values:
                    target.remove(value)  # raises, as the directory would refuse
            else:
                target[:] = list(change.values)
    entry = RawEntry(
        state.dn,
        {
            "twostepretired": tuple(v.encode() for v in retired),
            "twostepstaleclient": tuple(v.encode() for v in stale),
        },
    )
    parsed = _lenient_view(entry)
    return replace(state, **parsed)


def _lenient_view(entry: RawEntry) -> dict[str, object]:
    from pam_twostep.core.account import _lenient

    retired, junk_retired = _lenient(entry, Attr.RETIRED, load_retired, lambda r: r.dump())
    stale, junk_stale = _lenient(entry, Attr.STALE_CLIENT, StaleClient.load, StaleClient.dump)
    return {
        "retired": retired,
        "stale_clients": stale,
        "unreadable": {Attr.RETIRED: junk_retired, Attr.STALE_CLIENT: junk_stale},
    }


@dataclass(frozen=True)
class Seen:
    """A login as twostepd makes it: the decision, then (later) the two writes."""

    decision: Decision
    new: StaleClient | None
    retired: Modify
    stale: Modify


def _login(
    state: AccountState,
    attempt: Attempt,
    *,
    password: PasswordCheck = PasswordCheck.NOT_CHECKED,
    bound: bool = False,
    remote: str = "192.0.2.7",
    service: str = "imap",
    now: int = NOW,
    policy: Policy | None = None,
    keys: Keyring = KEYS,
    per_day: int = 0,
) -> tuple[Seen, AccountState]:
    ctx = Context(service, remote, now)
    decision = decide(
        state,
        policy or Policy(),
        attempt,
        ctx,
        password=password,
        keys=keys,
        random=secrets.token_bytes,
    )
    observed = observe(
        decision,
        state,
        attempt,
        ctx,
        password=password,
        bound=bound,
        keys=keys,
    )
    fresh = _apply(state, *observed.decision.followups)
    retired = remember(fresh, observed.remembered, now)
    stale, new = Modify(()), None
    if observed.match is not None:
        stale, new = recorded(fresh, observed.match, ctx, secrets.token_bytes, per_day)
    seen = Seen(observed.decision, new, retired, stale)
    return seen, _apply(fresh, retired, stale)


def _revoked(label: str = "Thunderbird") -> tuple[AccountState, str]:
    state, plain = with_passcode(enabled_state(), label)
    retired = _apply(state, retire_passcodes(state, state.passcodes, NOW - 10, "revoked"))
    return replace(retired, passcodes=()), plain


def _with_verifier(state: AccountState, password: str, stamp: str | None = None) -> AccountState:
    """The verifier a bound login under ``stamp`` would have written."""
    before = replace(state, stamp=stamp or state.stamp)
    seen, after = _login(before, interactive(password), password=PasswordCheck.RIGHT, bound=True)
    assert seen.retired
    return replace(after, stamp=state.stamp)


def test_a_revoked_passcode_is_a_stale_client_counted_once() -> None:
    state, plain = _revoked()
    first, state = _login(state, mail(plain))
    assert first.decision.reason is Reason.WRONG_PASSCODE and first.decision.counted
    assert first.new is not None and (first.new.kind, first.new.label) == (
        "passcode",
        "Thunderbird",
    )
    assert plain not in first.stale.changes[-1].values[0]
    again, after = _login(state, mail(plain), now=NOW + 7200)  # past the lock-out window
    assert again.new is None and not again.decision.commit and not again.decision.counted
    assert again.decision.reason is Reason.WRONG_PASSCODE
    [client] = after.stale_clients
    assert client.last == NOW + 7200 and client.first == NOW
    soon, unchanged = _login(after, mail(plain), now=NOW + 7200 + STALE_INTERVAL - 1)
    assert not soon.stale and not soon.retired and not soon.decision.commit
    assert unchanged == after


@pytest.mark.parametrize(
    "guess",
    ["AAAA-BBBB-CCCC-DDDD-EEEE-FFFF", "hunter2", "", "x" * 1024, "\x00\x1b[0m", "Thunderbird"],
)
def test_a_guess_is_never_a_stale_client(guess: str) -> None:
    state, _ = _revoked()
    state = _with_verifier(state, "old-password", OTHER_STAMP)
    observed, after = _login(state, mail(guess))
    assert observed.new is None and after.stale_clients == ()
    assert observed.decision.counted  # an ordinary failure


def test_an_expired_or_password_killed_passcode_still_on_the_entry() -> None:
    expired, plain = with_passcode(enabled_state(), "Old", expires=NOW - 5)
    observed, _ = _login(expired, mail(plain))
    assert observed.decision.reason is Reason.PASSCODE_EXPIRED
    assert observed.new is not None and observed.new.since == NOW - 5
    killed, plain = with_passcode(enabled_state(), "Pre", stamp=OTHER_STAMP)
    observed, _ = _login(killed, mail(plain))
    assert observed.new is not None and observed.new.label == "Pre"


def test_a_live_passcode_at_the_wrong_service_is_not_stale() -> None:
    state, plain = with_passcode(enabled_state(), "Scoped", services=("smtp",))
    observed, _ = _login(state, mail(plain))
    assert observed.decision.reason is Reason.PASSCODE_SCOPE and observed.new is None


def test_passwords_old_and_current() -> None:
    state = _with_verifier(plain_state(), "first-password", OTHER_STAMP)
    state = _with_verifier(state, "second-password")
    # two-step off, the bind said wrong: only a password from before counts
    observed, _ = _login(state, mail("first-password"), password=PasswordCheck.WRONG)
    assert observed.new is not None and observed.new.kind == "old-password"
    assert observed.new.since == NOW  # when the second one was first seen
    observed, _ = _login(state, mail("second-password"), password=PasswordCheck.WRONG)
    assert observed.new is None  # the bind refused it: not the current password after all
    # two-step on: the current password sent to mail is recognised without a bind
    on = replace(enabled_state(), retired=state.retired)
    observed, _ = _login(on, mail("second-password"))
    assert observed.decision.reason is Reason.WRONG_PASSCODE
    assert observed.new is not None and observed.new.kind == "password"
    # interactive, the password right: never a stale client
    observed, _ = _login(on, interactive("second-password"), password=PasswordCheck.RIGHT)
    assert observed.new is None


def test_the_verifier_is_written_once_and_only_after_a_bind() -> None:
    state = plain_state()
    secret = "Correct-Horse-9"
    _, state = _login(state, interactive(secret), password=PasswordCheck.RIGHT, bound=True)
    [verifier] = state.retired
    assert isinstance(verifier, PasswordVerifier) and secret not in verifier.dump()
    again, _ = _login(state, interactive(secret), password=PasswordCheck.RIGHT, bound=True)
    assert not again.retired
    _, unchanged = _login(
        plain_state(), interactive("pw"), password=PasswordCheck.RIGHT, bound=False
    )
    assert unchanged.retired == ()


def test_at_most_three_verifiers_and_a_rotated_key_never_breaks_a_login() -> None:
    state = plain_state()
    for number in range(6):
        stamp = f"{number:032x}"
        state = _with_verifier(replace(state, stamp=stamp), f"pw-{number}")
    assert len(state.retired) == 3
    other = Keyring({"k2": bytes(32)}, "k2")
    observed, _ = _login(state, mail("pw-4"), password=PasswordCheck.WRONG, keys=other)
    assert observed.new is None and observed.decision.reason is Reason.WRONG_PASSWORD
    observed, _ = _login(state, mail("pw-4"), password=PasswordCheck.WRONG)
    assert observed.new is not None


def test_password_replaced_keeps_both_sides() -> None:
    state = _with_verifier(plain_state(), "old")
    modify = password_replaced(state, "old", OTHER_STAMP, "new", KEYS, NOW + 50)
    after = replace(_apply(state, modify), stamp=OTHER_STAMP)
    observed, _ = _login(after, mail("old"), password=PasswordCheck.WRONG)
    assert observed.new is not None and observed.new.since == NOW + 50
    assert len(after.retired) == 2


def test_bounds() -> None:
    state, _ = with_passcode(enabled_state())
    many = tuple(
        replace(state.passcodes[0], id="".join("abcdefghjk"[int(d)] for d in f"{i:08d}"))
        for i in range(30)
    )
    retired = _apply(state, retire_passcodes(state, many[:25], NOW, "revoked"))
    assert len(retired.retired) == MAX_RETIRED
    retired = _apply(retired, retire_passcodes(retired, many[25:], NOW, "revoked"))
    assert len(retired.retired) == MAX_RETIRED
    assert {r.id for r in retired.retired} == {p.id for p in many[10:]}  # the newest
    revoked, plain = _revoked()
    for last in range(MAX_STALE + 5):
        _, revoked = _login(revoked, mail(plain), remote=f"192.0.2.{last}", now=NOW + last)
    # no more new ones than are kept in a day: the rest are ordinary failures
    assert len(revoked.stale_clients) == MAX_STALE
    assert min(c.last for c in revoked.stale_clients) == NOW
    hop, _ = _login(revoked, mail(plain), remote="192.0.2.200", now=NOW + 60)
    assert hop.new is None and not hop.stale and hop.decision.counted  # an ordinary failure
    # a day on, a new one takes the place of the one tried longest ago
    day, after = _login(revoked, mail(plain), remote="198.51.100.7", now=NOW + 86400 + 9)
    assert day.new is not None and len(after.stale_clients) == MAX_STALE
    assert min(c.last for c in after.stale_clients) == NOW + 1
    # forgotten a month after the last try
    _, after = _login(revoked, mail(plain), remote="198.51.100.1", now=NOW + 40 * 86400)
    assert len(after.stale_clients) == 1


def test_dismiss_and_shown() -> None:
    state, plain = _revoked()
    _, state = _login(state, mail(plain))
    [client] = shown(state, NOW)
    state = _apply(state, dismiss(state, client.id))
    assert shown(state, NOW) == ()
    assert not dismiss(state, client.id)  # twice is nothing
    with pytest.raises(NotFound):
        dismiss(state, "zzzzzzzz")
    again, _ = _login(state, mail(plain), now=NOW + 7200)
    assert again.new is None and not again.decision.counted


def test_the_daily_allowance_of_notices() -> None:
    state, plain = _revoked()
    told = []
    for last in range(5):
        observed, state = _login(state, mail(plain), remote=f"192.0.2.{last}", per_day=3)
        told.append(observed.new is not None and observed.new.told)
    assert told == [True, True, True, False, False]
    observed, _ = _login(state, mail(plain), remote="192.0.2.99")
    assert observed.new is not None and not observed.new.told  # telling off: never told


def test_privacy_addresses_of_one_network_are_one_stale_client() -> None:
    state, plain = _revoked()
    first, state = _login(state, mail(plain), remote="2001:db8:1:2::1")
    hopped, after = _login(state, mail(plain), remote="2001:db8:1:2:aaaa::7", now=NOW + 60)
    assert first.new is not None and hopped.new is None and not hopped.decision.counted
    assert len(after.stale_clients) == 1
    other, _ = _login(state, mail(plain), remote="2001:db8:1:3::1", now=NOW + 60)
    assert other.new is not None


def test_an_aged_password_is_forgotten_and_a_rotated_key_rewritten() -> None:
    state = _with_verifier(plain_state(), "years-old", OTHER_STAMP)
    state = _with_verifier(state, "current")  # marks "years-old" replaced as of NOW
    observed, _ = _login(state, mail("years-old"), password=PasswordCheck.WRONG)
    assert observed.new is not None
    later = NOW + 91 * 86400
    observed, _ = _login(state, mail("years-old"), password=PasswordCheck.WRONG, now=later)
    assert observed.new is None
    rotated = Keyring({"k1": bytes(range(32)), "k2": bytes(32)}, "k2")
    _, after = _login(
        state, interactive("current"), password=PasswordCheck.RIGHT, bound=True, keys=rotated
    )
    assert {v.key_id for v in after.retired if isinstance(v, PasswordVerifier)} >= {"k2"}
    assert len([v for v in after.retired if v.stamp == state.stamp]) == 1  # type: ignore[union-attr]


def test_one_change_never_deletes_a_value_twice() -> None:
    """A password change where pruning by age and by count pick the same verifier."""
    state = plain_state()
    for number in range(3):
        state = _with_verifier(replace(state, stamp=f"{number:032x}"), f"pw-{number}")
    state, phone = with_passcode(state, "Phone")
    later = NOW + 200 * 86400
    modify = password_replaced(state, "pw-2", OTHER_STAMP, "pw-new", KEYS, later, state.passcodes)
    deletes = [v for c in modify.changes if c.op is Op.DELETE for v in c.values]
    assert len(deletes) == len(set(deletes))
    after = replace(_apply(state, modify), stamp=OTHER_STAMP, passcodes=())
    observed, _ = _login(after, mail(phone), now=later + 60, password=PasswordCheck.WRONG)
    assert observed.new is not None and observed.new.label == "Phone"


def test_a_password_retried_is_never_quieter_than_a_guess() -> None:
    """Past the window an old password's failure is written like a wrong one's: whether
    a guess was a password of the account must not show in what a login writes."""
    state = _with_verifier(plain_state(), "old-one", OTHER_STAMP)
    state = _with_verifier(state, "current")
    first, state = _login(state, mail("old-one"), password=PasswordCheck.WRONG)
    assert first.new is not None
    later = NOW + 7200
    again, _ = _login(state, mail("old-one"), password=PasswordCheck.WRONG, now=later)
    guess, _ = _login(state, mail("never-used"), password=PasswordCheck.WRONG, now=later)
    assert bool(again.decision.commit) == bool(guess.decision.commit) is True
    assert again.decision.counted and guess.decision.counted


def test_logins_decided_at_once_record_from_the_entry_as_written() -> None:
    """The writes are computed from the entry re-read in its turn: a burst decided on
    one read cannot pass the day's cap or add one stale client twice."""
    state, plain = _revoked()
    ctx_state = state
    pending = []
    for n in range(3 * MAX_STALE):
        ctx = Context("imap", f"2001:db8:{n:x}::1", NOW)
        decision = decide(
            ctx_state,
            Policy(),
            mail(plain),
            ctx,
            password=PasswordCheck.NOT_CHECKED,
            keys=KEYS,
            random=secrets.token_bytes,
        )
        observed = observe(
            decision,
            ctx_state,
            mail(plain),
            ctx,
            password=PasswordCheck.NOT_CHECKED,
            bound=False,
            keys=KEYS,
        )
        pending.append((observed, ctx))
        pending.append((observed, ctx))  # the same login's job twice: no duplicate
    for observed, ctx in pending:  # the background worker, one job after the other
        assert observed.match is not None
        modify, _ = recorded(state, observed.match, ctx, secrets.token_bytes, 3)
        state = _apply(state, modify)
    assert len(state.stale_clients) == MAX_STALE
    assert sum(c.told for c in state.stale_clients) == 3


def test_a_verifier_of_a_password_changed_meanwhile_is_not_kept() -> None:
    state = plain_state()
    ctx = Context("sshd", "", NOW)
    accepted = decide(
        state,
        Policy(),
        interactive("before"),
        ctx,
        password=PasswordCheck.RIGHT,
        keys=KEYS,
        random=secrets.token_bytes,
    )
    observed = observe(
        accepted,
        state,
        interactive("before"),
        ctx,
        password=PasswordCheck.RIGHT,
        bound=True,
        keys=KEYS,
    )
    assert accepted.outcome.value == "accept" and observed.remembered
    changed = replace(state, stamp=OTHER_STAMP)  # the job runs after a password change
    assert not remember(changed, observed.remembered, NOW + 5)


def test_junk_in_front_is_deleted_not_grown_past() -> None:
    """Damage the parser leaves out is deleted by the next write, so it cannot crowd
    the records out or grow until the entry is unreadable."""
    state, plain = _revoked()
    junk = tuple(f'{{"junk":{n}}}' for n in range(120))
    state = replace(state, unreadable={Attr.RETIRED: junk, Attr.STALE_CLIENT: junk})
    seen, after = _login(state, mail(plain))
    assert seen.new is not None
    assert set(junk) <= {v for c in seen.stale.changes if c.op is Op.DELETE for v in c.values}
    assert after.unreadable[Attr.STALE_CLIENT] == () and len(after.stale_clients) == 1
    cleaned = _apply(state, remember(state, (), NOW))
    assert cleaned.unreadable[Attr.RETIRED] == () and cleaned.retired == state.retired
