"""Turning two-step on: the pure steps, and the whole wizard against the real slapd."""

from __future__ import annotations

import secrets

import pyotp
import pytest
from conftest import Clock
from support.slapd import USERS, Slapd, user_dn
from support.states import KEYS, NOW, enabled_state, plain_state

from pam_twostep.audit import MemorySink
from pam_twostep.core.account import Attr
from pam_twostep.core.decision import Attempt, Flow, Method, Outcome
from pam_twostep.core.enrollment import begin, confirm
from pam_twostep.core.errors import RefusalReason, Refused
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Pending
from pam_twostep.core.totp import TotpParams, decode_secret, totp
from pam_twostep.engine import Engine


def start(state=None, policy=Policy(), second_factor=False):  # type: ignore[no-untyped-def]
    return begin(
        state or plain_state(),
        policy,
        params=TotpParams(),
        issuer="Example",
        lifetime=3600,
        keys=KEYS,
        now=NOW,
        random=secrets.token_bytes,
        second_factor=second_factor,
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
    # replacing the authenticator stays possible, with the current second factor
    start(enabled_state(), Policy(available=False), second_factor=True)


def test_begin_refuses_an_enabled_account_without_its_second_factor() -> None:
    """H1: the password alone must never replace an authenticator that is on."""
    with pytest.raises(Refused) as caught:
        start(enabled_state())
    assert caught.value.reason is RefusalReason.ALREADY_ENABLED
    _, modify = start(enabled_state(), second_factor=True)
    assert [c.attribute for c in modify.changes] == [Attr.PENDING]


def test_begin_replaces_a_pending_enrollment_by_compare_and_swap() -> None:
    """The pending value read is deleted by value: if it changed meanwhile (confirmed by
    its owner, replaced by another begin), the write conflicts instead of landing a
    pending secret nobody proved anything for on an account that is now on."""
    _, first = start()
    earlier = Pending.load(first.changes[0].values[0])
    _, modify = start(plain_state(pending=earlier))
    assert modify.guarded
    assert [(c.op.value, c.attribute) for c in modify.changes] == [
        ("delete", Attr.PENDING),
        ("add", Attr.PENDING),
    ]
    assert modify.changes[0].values == (earlier.dump(),)


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


def test_a_pending_secret_begun_while_off_never_replaces_an_active_one() -> None:
    """A begin that read no pending value has nothing to compare-and-swap against, so
    its write can land after the owner turned two-step on; its secret must then not be
    confirmable, or the password alone would replace the owner's authenticator."""
    shown, modify = start()
    pending = Pending.load(modify.changes[0].values[0])
    assert not pending.replaces and "replaces" not in modify.changes[0].values[0]
    code = totp(decode_secret(shown.secret), NOW)
    with pytest.raises(Refused) as caught:
        confirm(
            enabled_state(pending=pending),
            Policy(),
            code,
            keys=KEYS,
            now=NOW,
            random=secrets.token_bytes,
        )
    assert caught.value.reason is RefusalReason.ALREADY_ENABLED
    # begun with the second factor while on: it replaces the active key
    shown, modify = start(enabled_state(), second_factor=True)
    pending = Pending.load(modify.changes[0].values[0])
    assert pending.replaces
    codes, _ = confirm(
        enabled_state(pending=pending),
        Policy(),
        totp(decode_secret(shown.secret), NOW),
        keys=KEYS,
        now=NOW,
        random=secrets.token_bytes,
    )
    assert codes


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


def test_pending_enrollment_never_disturbs_the_active_one(engine: Engine, clock: Clock) -> None:
    key, _ = enroll(engine, clock.now)
    clock.advance(30)
    # a new phone, abandoned half way
    engine.enroll_begin("alice", USERS["alice"], code=totp(key, clock.now))
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


def test_re_enrolling_needs_the_current_second_factor_given_now(
    engine: Engine, clock: Clock, audit: MemorySink
) -> None:
    """H1: while two-step is on, the password alone never begins a new key; a code of
    the current key (or a backup code) must come with it, checked like a sign-in."""
    old_key, old_codes = enroll(engine, clock.now)
    clock.advance(30)
    with pytest.raises(Refused) as caught:
        engine.enroll_begin("alice", USERS["alice"])
    assert caught.value.reason is RefusalReason.ALREADY_ENABLED
    assert engine.status("alice").pending_expires is None
    for password, code, reason in (
        (USERS["alice"], "000000", RefusalReason.WRONG_CODE),
        (USERS["alice"], "", RefusalReason.ALREADY_ENABLED),
        ("wrong password", totp(old_key, clock.now), RefusalReason.WRONG_PASSWORD),
    ):
        with pytest.raises(Refused) as caught:
            engine.enroll_begin("alice", password, code=code)
        assert caught.value.reason is reason
    status = engine.status("alice")
    assert status.pending_expires is None and status.recent_failures == 2
    shown = engine.enroll_begin("alice", USERS["alice"], code=totp(old_key, clock.now))
    new_key = decode_secret(shown.secret)
    new_codes = engine.enroll_confirm("alice", totp(new_key, clock.now))
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
    assert set(old_codes).isdisjoint(new_codes)
    begins = [(e.outcome, e.reason) for e in audit.events if e.action == "enroll-begin"]
    assert begins == [
        ("ok", None),
        ("refused", "already-enabled"),
        ("refused", "wrong-code"),
        ("refused", "already-enabled"),
        ("refused", "wrong-password"),
        ("ok", None),
    ]


def test_a_backup_code_may_begin_the_new_key_and_is_used_up(engine: Engine, clock: Clock) -> None:
    """The phone is lost: a backup code stands for it, once."""
    _, codes = enroll(engine, clock.now)
    engine.enroll_begin("alice", USERS["alice"], code=codes[0])
    assert engine.status("alice").backup_codes == len(codes) - 1
    with pytest.raises(Refused) as caught:
        engine.enroll_begin("alice", USERS["alice"], code=codes[0])
    assert caught.value.reason is RefusalReason.WRONG_CODE


def test_a_trusted_device_or_a_passcode_is_no_second_factor(engine: Engine, clock: Clock) -> None:
    from support.flows import interactive_login

    key, _ = enroll(engine, clock.now)
    clock.advance(30)
    device = interactive_login(engine, "alice", totp(key, clock.now), trust=True)
    passcode = engine.add_passcode("alice", "Phone").passcode
    for stand_in in (str(device.device_token), passcode, passcode.replace("-", "")):
        with pytest.raises(Refused) as caught:
            engine.enroll_begin("alice", USERS["alice"], code=stand_in)
        assert caught.value.reason is RefusalReason.WRONG_CODE
    assert engine.status("alice").pending_expires is None


@pytest.mark.parametrize("how", ["reset", "disable"])
def test_after_an_admin_reset_the_password_enrolls_again(
    engine: Engine, clock: Clock, how: str
) -> None:
    """How an administrator gets a user onto a new phone: ``twostep reset`` (or
    ``disable``), then the user (or the admin, with the user's password) enrolls."""
    enroll(engine, clock.now)
    if how == "reset":
        engine.reset("alice", actor="root")
    else:
        engine.disable("alice", admin=True, actor="root")
    key, codes = enroll(engine, clock.now + 30)
    assert engine.status("alice").enabled and len(codes) == 10 and key


def test_an_owner_confirming_meanwhile_makes_a_racing_begin_conflict(
    engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A begin that read the account while it was off must not land its pending secret
    after the owner turned two-step on: that secret could then be confirmed without the
    owner's second factor. The owner's confirmation is slipped in between the racing
    begin's read and its write."""
    shown = engine.enroll_begin("alice", USERS["alice"])  # the owner, with the new phone
    owner_key = decode_secret(shown.secret)
    check = engine.directory.check_password
    slipped: list[list[str]] = []

    def owner_confirms_meanwhile(dn: str, password: str) -> bool:
        if not slipped:
            slipped.append(engine.enroll_confirm("alice", totp(owner_key, clock.now)))
        return check(dn, password)

    monkeypatch.setattr(engine.directory, "check_password", owner_confirms_meanwhile)
    with pytest.raises(Refused) as caught:
        engine.enroll_begin("alice", USERS["alice"])  # someone who has the password only
    assert caught.value.reason is RefusalReason.CONFLICT
    status = engine.status("alice")
    assert slipped and status.enabled and status.pending_expires is None
    with pytest.raises(Refused) as caught:
        engine.enroll_confirm("alice", "123456")
    assert caught.value.reason is RefusalReason.NO_PENDING_ENROLLMENT


def test_a_racing_begin_that_read_no_pending_secret_cannot_replace_the_key(
    engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the operations contract (issue 20): the racing begin reads the account
    off with no pending secret; the owner begins and confirms in between; the racing
    write (a plain add) lands. Its secret must not be confirmable."""
    check = engine.directory.check_password
    owner: list[bytes] = []

    def owner_enrolls_meanwhile(dn: str, password: str) -> bool:
        if not owner:
            owner.append(b"")  # the owner's own begin checks the password too
            shown = engine.enroll_begin("alice", USERS["alice"])
            owner[0] = decode_secret(shown.secret)
            engine.enroll_confirm("alice", totp(owner[0], clock.now))
        return check(dn, password)

    monkeypatch.setattr(engine.directory, "check_password", owner_enrolls_meanwhile)
    try:
        racing = engine.enroll_begin("alice", USERS["alice"])  # the password only
    except Refused as exc:
        assert exc.reason is RefusalReason.CONFLICT
        return
    monkeypatch.undo()
    with pytest.raises(Refused) as caught:
        engine.enroll_confirm("alice", totp(decode_secret(racing.secret), clock.now))
    assert caught.value.reason is RefusalReason.ALREADY_ENABLED
    clock.advance(30)
    assert (
        engine.authenticate(
            "alice",
            Attempt(Flow.INTERACTIVE, USERS["alice"], code=totp(owner[0], clock.now)),
            service="sshd",
        ).outcome
        is Outcome.ACCEPT
    )


# -- through the daemon's handler -------------------------------------------------------


def _ask(engine: Engine, **fields: object) -> dict[str, object]:
    from pam_twostep.access import Peer, Right
    from pam_twostep.handlers import handle

    peer = Peer(1, 0, 0, "root", frozenset())
    return handle(
        engine, {"service": "web", "remote": "192.0.2.9", **fields}, peer, frozenset(Right)
    )


def test_the_enroll_begin_request_needs_the_code_while_two_step_is_on(
    engine: Engine, clock: Clock
) -> None:
    key, _ = enroll(engine, clock.now)
    clock.advance(30)
    request = {"op": "enroll-begin", "user": "alice", "password": USERS["alice"]}
    refused = _ask(engine, **request)
    assert (refused["result"], refused["reason"]) == ("refused", "already-enabled")
    assert "secret" not in refused and "uri" not in refused
    wrong = _ask(engine, **request, code="000000")
    assert (wrong["result"], wrong["reason"]) == ("refused", "wrong-code")
    for hostile in (123, None, ["000000"], "0" * 65, "\ud800"):
        assert _ask(engine, **request, code=hostile) == {"result": "error", "error": "malformed"}
    assert engine.status("alice").pending_expires is None
    begun = _ask(engine, **request, code=totp(key, clock.now))
    assert begun["result"] == "ok" and str(begun["uri"]).startswith("otpauth://totp/")


def test_wrong_confirmation_codes_count_towards_lock_out(engine: Engine, clock) -> None:  # type: ignore[no-untyped-def]
    engine.enroll_begin("alice", USERS["alice"])
    for guess in range(100):  # the lock is at 100, from any number of addresses
        with pytest.raises(Refused):
            engine.enroll_confirm("alice", f"{guess:06d}", remote=f"192.0.2.{guess + 1}")
    assert engine.status("alice").locked
    with pytest.raises(Refused) as caught:
        engine.enroll_begin("alice", USERS["alice"])
    assert caught.value.reason is RefusalReason.LOCKED
