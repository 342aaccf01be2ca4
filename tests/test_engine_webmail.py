"""The webmail sessions part of the engine (engine/webmail.py) against a real slapd:
what a credential opens, what ends it, and what a verify peer cannot do with it."""

from __future__ import annotations

import pytest
from conftest import Clock
from support.flows import enroll, interactive_login, mail_login
from support.slapd import USERS, Slapd, user_dn

from pam_twostep.audit import MemorySink
from pam_twostep.core.account import Attr
from pam_twostep.core.decision import Method, Outcome, Reason
from pam_twostep.core.errors import NotFound
from pam_twostep.core.totp import decode_secret, totp
from pam_twostep.core.websessions import MAX_SESSIONS
from pam_twostep.engine import Engine

WEBMAIL = "127.0.0.1"


def start(engine: Engine, user: str = "alice") -> str:
    token = engine.webmail.start(user, bind=(WEBMAIL,), idle=600, browser="198.51.100.7")
    assert token is not None
    return token


def test_only_an_account_that_keeps_its_password_from_mail_gets_one(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    assert engine.webmail.start("alice", bind=(WEBMAIL,), idle=600, browser="") is None
    assert not slapd.entry(user_dn("alice")).get(Attr.WEB_SESSION.lower())
    enroll(engine, clock.now)
    token = start(engine)
    assert mail_login(engine, "alice", token, remote=WEBMAIL).method is Method.WEB_SESSION


def test_bad_bind_or_idle_writes_nothing(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    enroll(engine, clock.now)
    for bind, idle in (((), 600), (("mail.example.org",), 600), ((WEBMAIL,), 10)):
        with pytest.raises(ValueError):
            engine.webmail.start("alice", bind=bind, idle=idle, browser="")
    assert not slapd.entry(user_dn("alice")).get(Attr.WEB_SESSION.lower())


def test_check_end_and_revoke(engine: Engine, clock: Clock, audit: MemorySink) -> None:
    enroll(engine, clock.now)
    enroll(engine, clock.now, user="bob")
    token, other = start(engine), start(engine, "bob")
    assert engine.webmail.check("alice", token, "198.51.100.8")
    # another user's credential, a forged one, an unknown user: no, and nothing ends
    for user, presented in (
        ("alice", other),
        ("alice", token[:-1] + ("B" if token.endswith("A") else "A")),
        ("nobody", token),
        ("alice", "x" * 200),
    ):
        assert not engine.webmail.check(user, presented, "")
        assert not engine.webmail.end(user, presented)
    assert engine.webmail.check("bob", other, "")
    assert engine.webmail.end("alice", token)
    assert not engine.webmail.check("alice", token, "")
    assert not engine.webmail.end("alice", token)  # ended already: no second event
    decision = mail_login(engine, "alice", token, remote=WEBMAIL)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.SESSION_ENDED)
    listed = engine.status("bob").web_sessions
    assert len(listed) == 1
    with pytest.raises(NotFound):
        engine.webmail.revoke("bob", "zzzzzzzz", actor="root")
    engine.webmail.revoke("bob", listed[0].id, actor="root")
    assert not engine.webmail.check("bob", other, "")
    actions = [e.action for e in audit.events if e.action.startswith("webmail-")]
    assert actions == [
        "webmail-session-start",
        "webmail-session-start",
        "webmail-session-end",
        "webmail-session-revoke",
        "webmail-session-revoke",
    ]


def test_a_password_change_and_a_lock_end_it(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    enroll(engine, clock.now)
    token = start(engine)
    engine.change_password("alice", USERS["alice"], "new-" + USERS["alice"])
    assert not engine.webmail.check("alice", token, "")
    enroll(engine, clock.now, user="bob")
    other = start(engine, "bob")
    slapd.set_attributes(user_dn("bob"), twostepLockoutMaxFailures=["1"])
    interactive_login(engine, "bob", "000000", remote="192.0.2.30")
    assert engine.status("bob").locked
    assert not engine.webmail.check("bob", other, "")
    assert not slapd.entry(user_dn("bob")).get(Attr.WEB_SESSION.lower())
    engine.unlock("bob")
    assert mail_login(engine, "bob", other, remote=WEBMAIL).reason is Reason.SESSION_ENDED


def test_at_most_the_newest_sessions_are_kept(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    enroll(engine, clock.now)
    tokens = []
    for _ in range(MAX_SESSIONS + 3):
        clock.now += 1
        tokens.append(start(engine))
    stored = slapd.entry(user_dn("alice"))[Attr.WEB_SESSION.lower()]
    assert len(stored) == MAX_SESSIONS
    assert not engine.webmail.check("alice", tokens[0], "")
    assert engine.webmail.check("alice", tokens[-1], "")


def test_a_new_authenticator_ends_every_session(engine: Engine, clock: Clock) -> None:
    key, _ = enroll(engine, clock.now)
    token = start(engine)
    clock.now += 60
    shown = engine.enroll_begin("alice", USERS["alice"], code=totp(key, clock.now))
    engine.enroll_confirm("alice", totp(decode_secret(shown.secret), clock.now))
    assert not engine.webmail.check("alice", token, "")
