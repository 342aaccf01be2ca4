"""Turning two-step on: the pure steps, and the whole wizard against the real slapd."""

from __future__ import annotations

import secrets

import pyotp
import pytest
from support.slapd import USERS, Slapd, user_dn
from support.states import KEYS, NOW, enabled_state, plain_state

from pam_twostep.account import Attr
from pam_twostep.audit import MemorySink
from pam_twostep.decision import Attempt, Flow, Method, Outcome
from pam_twostep.engine import Engine
from pam_twostep.enrollment import begin, confirm
from pam_twostep.errors import RefusalReason, Refused
from pam_twostep.policy import Policy
from pam_twostep.records import Pending
from pam_twostep.totp import TotpParams, decode_secret, totp


def start(state=None, policy=Policy()):  # type: ignore[no-untyped-def]
    return begin(
        state or plain_state(),
        policy,
        params=TotpParams(),
        issuer="Example",
        lifetime=3600,
        keys=KEYS,
        now=NOW,
        random=secrets.token_bytes,
    )


def test_begin_makes_a_pending_secret_of_160_bits() -> None:
    shown, modify = start()
    assert len(decode_secret(shown.secret)) == 20
    assert shown.grouped.replace(" ", "") == shown.secret
    assert all(len(part) == 4 for part in shown.grouped.split(" "))
    assert pyotp.parse_uri(shown.uri).secret == shown.secret
    assert shown.expires == NOW + 3600
    assert [c.attribute for c in modify.changes] == [Attr.PENDING]
    assert shown.secret not in repr(shown)


def test_begin_refused_where_policy_does_not_offer_it() -> None:
    with pytest.raises(Refused) as caught:
        start(policy=Policy(available=False))
    assert caught.value.reason is RefusalReason.NOT_AVAILABLE
    start(enabled_state(), Policy(available=False))  # re-enrolling stays possible


def test_confirm() -> None:
    shown, modify = start()
    pending = Pending.load(modify.changes[0].values[0])
    state = plain_state(pending=pending)
    key = decode_secret(shown.secret)
    codes, confirmation = confirm(
        state,
        Policy(backup_codes=4),
        totp(key, NOW),
        keys=KEYS,
        now=NOW,
        random=secrets.token_bytes,
    )
    assert len(codes) == 4 and all(len(c) == 11 and c[5] == "-" for c in codes)
    assert confirmation.guarded
    attributes = {c.attribute for c in confirmation.changes}
    assert {Attr.ENABLED, Attr.SECRET, Attr.LAST_STEP, Attr.BACKUP_CODE, Attr.PENDING} <= attributes


@pytest.mark.parametrize(
    ("pending_expires", "code_offset", "reason"),
    [
        (None, 0, RefusalReason.NO_PENDING_ENROLLMENT),
        (NOW, 0, RefusalReason.PENDING_EXPIRED),
        (NOW + 10, 300, RefusalReason.WRONG_CODE),
    ],
)
def test_confirm_refusals(
    pending_expires: int | None, code_offset: int, reason: RefusalReason
) -> None:
    shown, modify = start()
    pending = Pending.load(modify.changes[0].values[0])
    state = plain_state()
    if pending_expires is not None:
        state = plain_state(pending=Pending(pending.sealed, pending.params, NOW, pending_expires))
    with pytest.raises(Refused) as caught:
        confirm(
            state,
            Policy(),
            totp(decode_secret(shown.secret), NOW + code_offset),
            keys=KEYS,
            now=NOW,
            random=secrets.token_bytes,
        )
    assert caught.value.reason is reason


# -- against the real directory --------------------------------------------------------


def enroll(engine: Engine, now: float, user: str = "alice") -> tuple[bytes, list[str]]:
    shown = engine.enroll_begin(user, USERS[user])
    key = decode_secret(shown.secret)
    return key, engine.enroll_confirm(user, totp(key, now))


def test_the_wizard(engine: Engine, clock, slapd: Slapd, audit: MemorySink) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Refused) as caught:
        engine.enroll_begin("alice", "wrong password")
    assert caught.value.reason is RefusalReason.WRONG_PASSWORD
    key, codes = enroll(engine, clock.now)
    assert len(codes) == 10
    status = engine.status("alice")
    assert status.enabled and status.backup_codes == 10 and status.pending_expires is None
    entry = slapd.entry(user_dn("alice"))
    assert b"twostepAccount" in entry["objectclass"]
    assert key not in b"".join(entry[Attr.SECRET.lower()])
    # the confirming code cannot be used to log in again
    replay = engine.authenticate(
        "alice",
        Attempt(Flow.INTERACTIVE, USERS["alice"], code=totp(key, clock.now)),
        service="sshd",
    )
    assert replay.outcome is Outcome.DENY
    clock.advance(30)
    login = engine.authenticate(
        "alice",
        Attempt(Flow.INTERACTIVE, USERS["alice"], code=totp(key, clock.now)),
        service="sshd",
    )
    assert (login.outcome, login.method) == (Outcome.ACCEPT, Method.TOTP)
    assert [(e.action, e.outcome) for e in audit.events[:3]] == [
        ("enroll-begin", "refused"),
        ("enroll-begin", "ok"),
        ("enroll-confirm", "ok"),
    ]


def test_pending_enrollment_never_disturbs_the_active_one(engine: Engine, clock) -> None:  # type: ignore[no-untyped-def]
    key, _ = enroll(engine, clock.now)
    engine.enroll_begin("alice", USERS["alice"])  # a new phone, abandoned half way
    clock.advance(30)
    login = engine.authenticate(
        "alice",
        Attempt(Flow.INTERACTIVE, USERS["alice"], code=totp(key, clock.now)),
        service="sshd",
    )
    assert login.outcome is Outcome.ACCEPT
    clock.advance(3600)
    with pytest.raises(Refused) as caught:
        engine.enroll_confirm("alice", "123456")
    assert caught.value.reason is RefusalReason.PENDING_EXPIRED


def test_re_enrolling_replaces_the_secret(engine: Engine, clock) -> None:  # type: ignore[no-untyped-def]
    old_key, _ = enroll(engine, clock.now)
    clock.advance(30)
    new_key, _ = enroll(engine, clock.now)
    clock.advance(30)
    old = engine.authenticate(
        "alice",
        Attempt(Flow.INTERACTIVE, USERS["alice"], code=totp(old_key, clock.now)),
        service="sshd",
    )
    new = engine.authenticate(
        "alice",
        Attempt(Flow.INTERACTIVE, USERS["alice"], code=totp(new_key, clock.now)),
        service="sshd",
    )
    assert (old.outcome, new.outcome) == (Outcome.DENY, Outcome.ACCEPT)


def test_wrong_confirmation_codes_count_towards_lock_out(engine: Engine, clock) -> None:  # type: ignore[no-untyped-def]
    engine.enroll_begin("alice", USERS["alice"])
    for guess in range(10):
        with pytest.raises(Refused):
            engine.enroll_confirm("alice", f"{guess:06d}")
    assert engine.status("alice").locked
    with pytest.raises(Refused) as caught:
        engine.enroll_begin("alice", USERS["alice"])
    assert caught.value.reason is RefusalReason.LOCKED
