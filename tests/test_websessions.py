"""Webmail session credentials (core/websessions.py), and what the mail decision makes
of them: the credential opens the mail services from the webmail's addresses while
its session lives, and nothing else; an ended one is refused without counting."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.states import NOW, enabled_state, interactive, mail, plain_state, run

from pam_twostep.core.account import AccountState, Attr
from pam_twostep.core.changes import Op
from pam_twostep.core.decision import Method, Outcome, PasswordCheck, Reason, wants_password
from pam_twostep.core.lockout import record_failure
from pam_twostep.core.management import (
    disable_modify,
    reset_modify,
    revoke_all_devices,
    revoke_all_passcodes,
    status,
)
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Failure, Pending, Usage, WebSession
from pam_twostep.core.totp import decode_secret
from pam_twostep.core.usage import USAGE_INTERVAL
from pam_twostep.core.websessions import (
    MAX_LIFETIME,
    MAX_SESSIONS,
    end_session,
    find_session,
    is_session_token,
    issue_session,
    session_is_live,
    touch_session,
)

WEBMAIL = "127.0.0.1"


def opened(
    state: AccountState, *, idle: int = 600, now: int = NOW, bind: tuple[str, ...] = (WEBMAIL,)
) -> tuple[AccountState, str, WebSession]:
    token, record, modify, _ = issue_session(
        state, now=now, idle=idle, bind=bind, browser="198.51.100.7", random=secrets.token_bytes
    )
    assert [c.op for c in modify.changes][-1] is Op.ADD
    return replace(state, web_sessions=(*state.web_sessions, record)), token, record


def test_a_credential_is_random_shaped_and_stored_as_a_digest_only() -> None:
    _state, token, record = opened(enabled_state())
    assert is_session_token(token) and len(token) == 55
    assert token not in record.dump() and token.split(".")[1] not in record.dump()
    assert WebSession.load(record.dump()) == record
    assert record.bind == (WEBMAIL,) and record.browser == "198.51.100.7"
    assert record.idle == 600 + USAGE_INTERVAL and record.expires == NOW + MAX_LIFETIME
    assert opened(enabled_state())[1] != token


@pytest.mark.parametrize(
    ("service", "remote", "reason"),
    [
        ("imap", WEBMAIL, None),
        ("smtp", WEBMAIL, None),
        ("sieve", WEBMAIL, None),
        ("imap", "::ffff:127.0.0.1", None),
        ("pop3", WEBMAIL, Reason.SESSION_SCOPE),
        ("sshd", WEBMAIL, Reason.SESSION_SCOPE),
        ("imap", "192.0.2.1", Reason.SESSION_SCOPE),
        ("imap", "", Reason.SESSION_SCOPE),
    ],
)
def test_it_opens_mail_from_the_webmail_only(service: str, remote: str, reason: Reason) -> None:
    state, token, _ = opened(enabled_state())
    decision = run(state, mail(token), service=service, remote=remote)
    if reason is None:
        assert (decision.outcome, decision.method) == (Outcome.ACCEPT, Method.WEB_SESSION)
    else:
        assert (decision.outcome, decision.reason) == (Outcome.DENY, reason)
        assert not decision.commit and not decision.counted


def test_an_ended_or_forged_credential_is_refused_without_counting() -> None:
    state, token, _record = opened(enabled_state())
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    gone = replace(state, web_sessions=())
    for case, presented in ((state, forged), (gone, token)):
        decision = run(case, mail(presented), remote=WEBMAIL)
        assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.SESSION_ENDED)
        assert not decision.commit and not decision.counted


def test_it_is_never_tried_as_a_password() -> None:
    state, token, _ = opened(plain_state())
    assert not wants_password(state, Policy(), mail(token), NOW)
    decision = run(state, mail(token), remote=WEBMAIL, password=PasswordCheck.NOT_CHECKED)
    assert decision.method is Method.WEB_SESSION  # two-step off, password kept from mail


def test_it_dies_with_the_password_it_was_made_under() -> None:
    state, token, _ = opened(enabled_state())
    changed = replace(state, stamp="f" * 32)
    decision = run(changed, mail(token), remote=WEBMAIL)
    assert decision.reason is Reason.SESSION_ENDED


def test_idle_sessions_die_and_used_ones_live_until_the_lifetime() -> None:
    state, _token, record = opened(enabled_state(), idle=600)
    assert session_is_live(state, record, NOW + 600 + USAGE_INTERVAL - 1)
    assert not session_is_live(state, record, NOW + 600 + USAGE_INTERVAL)
    used = replace(state, usage=(Usage(record.id, NOW + MAX_LIFETIME - 10, WEBMAIL),))
    assert session_is_live(used, record, NOW + MAX_LIFETIME - 1)
    assert not session_is_live(used, record, NOW + MAX_LIFETIME)


def test_use_writes_the_note_that_keeps_it_alive_at_most_every_interval() -> None:
    state, token, record = opened(enabled_state())
    first = touch_session(state, record, NOW + 10, "198.51.100.7")
    assert [c.attribute for c in first.changes] == [Attr.USAGE]
    noted = replace(state, usage=(Usage(record.id, NOW + 10, "198.51.100.7"),))
    assert not touch_session(noted, record, NOW + 10 + USAGE_INTERVAL - 1, "198.51.100.7")
    accepted = run(noted, mail(token), remote=WEBMAIL, now=NOW + 10 + USAGE_INTERVAL)
    notes = [c for f in accepted.followups for c in f.changes if c.attribute == Attr.USAGE]
    assert notes and "198.51.100.7" in notes[-1].values[0]  # the browser, not the webmail


def test_sign_out_ends_that_session_only() -> None:
    state, token, record = opened(enabled_state())
    state, other, _ = opened(state)
    modify = end_session(state, record)
    assert [(c.attribute, c.op) for c in modify.changes] == [(Attr.WEB_SESSION, Op.DELETE)]
    after = replace(state, web_sessions=state.web_sessions[1:])
    assert find_session(after, token, NOW) is None and find_session(after, other, NOW)


def test_the_oldest_beyond_the_limit_and_the_dead_go_in_the_same_write() -> None:
    state = enabled_state()
    for n in range(MAX_SESSIONS):
        state = opened(state, now=NOW + n)[0]
    dead = replace(state.web_sessions[0], id="zzzzzzzz", stamp="e" * 32)
    state = replace(state, web_sessions=(*state.web_sessions, dead))
    noted = replace(state, usage=(Usage(dead.id, NOW, WEBMAIL), Usage("keptkept", NOW, WEBMAIL)))
    _, _, modify, cleanup = issue_session(
        noted, now=NOW + 50, idle=600, bind=(WEBMAIL,), browser="", random=secrets.token_bytes
    )
    deleted = modify.changes[0]
    assert deleted.op is Op.DELETE and len(deleted.values) == 2
    assert dead.dump() in deleted.values and state.web_sessions[0].dump() in deleted.values
    # the ended sessions' notes go afterwards (bookkeeping), the others' stay
    assert [(c.op, c.values) for c in cleanup.changes] == [
        (Op.DELETE, (Usage(dead.id, NOW, WEBMAIL).dump(),))
    ]


@pytest.mark.parametrize(
    ("idle", "bind"),
    [
        (299, (WEBMAIL,)),
        (86401, (WEBMAIL,)),
        (600, ()),
        (600, ("webmail.example",)),
        (600, ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5")),
    ],
)
def test_bad_idle_or_bind_is_refused_before_anything_is_made(
    idle: int, bind: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        issue_session(
            enabled_state(), now=NOW, idle=idle, bind=bind, browser="", random=secrets.token_bytes
        )


def test_disable_reset_revoke_all_and_a_lock_out_end_every_session() -> None:
    state = opened(opened(enabled_state())[0])[0]
    for modify in (
        disable_modify(state),
        reset_modify(state),
        revoke_all_passcodes(state, NOW)[0],
        revoke_all_devices(state)[0],
    ):
        assert any(
            c.attribute == Attr.WEB_SESSION and c.op is Op.REPLACE and not c.values
            for c in modify.changes
        )
    policy = Policy(lockout_max_failures=1)
    commit, _, locks = record_failure(
        state,
        policy,
        now=NOW,
        kind="code",
        service="webmail",
        address="192.0.2.1",
        presented="000000",
        random=secrets.token_bytes,
    )
    assert locks and any(c.attribute == Attr.WEB_SESSION for c in commit.changes)


def test_without_sessions_nothing_names_the_attribute() -> None:
    """A directory whose schema predates the attribute must still take these writes."""
    state = enabled_state()
    policy = Policy(lockout_max_failures=1)
    commit, _, _ = record_failure(
        state,
        policy,
        now=NOW,
        kind="code",
        service="webmail",
        address="192.0.2.1",
        presented="000000",
        random=secrets.token_bytes,
    )
    for modify in (
        disable_modify(state),
        reset_modify(state),
        commit,
        revoke_all_passcodes(state, NOW)[0],
        revoke_all_devices(state)[0],
    ):
        assert all(c.attribute != Attr.WEB_SESSION for c in modify.changes)


def test_status_lists_open_sessions_apart_from_passcodes() -> None:
    state, _, record = opened(enabled_state())
    dead = replace(record, id="zzzzzzzz", stamp="e" * 32)
    state = replace(state, web_sessions=(*state.web_sessions, dead))
    shown = status(state, Policy(), None, NOW + 1)
    assert [(w.id, w.browser, w.created) for w in shown.web_sessions] == [
        (record.id, "198.51.100.7", NOW)
    ]
    assert shown.passcodes == ()


@given(st.text(max_size=300))
def test_the_stored_form_parser_takes_only_what_it_writes(text: str) -> None:
    try:
        record = WebSession.load(text)
    except ValueError:
        return
    assert record.dump() == text or WebSession.load(record.dump()) == record


@pytest.mark.parametrize(
    "damage",
    [
        {"bind": []},
        {"bind": ["127.0.0.1"] * 5},
        {"bind": ["localhost"]},
        {"bind": ["::ffff:127.0.0.1"]},  # stored normalized only
        {"from": "<script>"},
        {"idle": -1},
        {"idle": True},
        {"h": "x"},
        {"extra": 1},
    ],
)
def test_damaged_stored_values_are_refused(damage: dict[str, object]) -> None:
    import json

    _, _, record = opened(enabled_state())
    data = json.loads(record.dump())
    data.update(damage)
    with pytest.raises(ValueError):
        WebSession.load(json.dumps(data))


def test_notes_of_records_that_are_gone_are_swept_at_the_next_login() -> None:
    """A session that just expired leaves its note; 500 of them would make the entry
    unreadable for every service."""
    state, token, record = opened(enabled_state())
    orphan = Usage("gonegone", NOW - 10, WEBMAIL)
    state = replace(state, usage=(orphan, Usage(record.id, NOW, "198.51.100.7")))
    decision = run(state, mail(token), remote=WEBMAIL, now=NOW + 1)
    deletes = [
        c
        for f in decision.followups
        for c in f.changes
        if c.attribute == Attr.USAGE and c.op is Op.DELETE
    ]
    assert [c.values for c in deletes] == [(orphan.dump(),)]


def test_a_login_with_it_clears_no_failures() -> None:
    """Roundcube replays it from the webmail host: it says nothing of where its user
    is, so the failures of someone guessing codes from that address must stay."""
    state, token, _ = opened(enabled_state())
    failure = Failure(
        time=NOW - 5, nonce="abcdef12", kind="code", service="webmail", address=WEBMAIL
    )
    state = replace(state, failures=(failure,))
    decision = run(state, mail(token), remote=WEBMAIL)
    assert decision.outcome is Outcome.ACCEPT
    assert all(c.attribute != Attr.FAILURE for f in decision.followups for c in f.changes)


def test_a_new_enrollment_ends_sessions_opened_with_less() -> None:
    from support.states import KEYS

    from pam_twostep.core.enrollment import begin, confirm
    from pam_twostep.core.totp import TotpParams, time_step, totp

    state, _, _ = opened(plain_state())  # two-step off, mail_password off: a credential
    start, write = begin(
        state,
        Policy(),
        params=TotpParams(),
        issuer="t",
        lifetime=600,
        keys=KEYS,
        now=NOW,
        random=secrets.token_bytes,
    )
    pending = Pending.load(next(c.values[0] for c in write.changes if c.attribute == Attr.PENDING))
    state = replace(state, pending=pending)
    code = totp(decode_secret(start.secret), time_step(NOW, 30) * 30)
    _, modify = confirm(state, Policy(), code, keys=KEYS, now=NOW, random=secrets.token_bytes)
    assert any(c.attribute == Attr.WEB_SESSION and c.op is Op.REPLACE for c in modify.changes)


def test_an_empty_password_is_refused_uncounted() -> None:
    """What a code page sends once its continuation ran out: not a guess."""
    decision = run(
        enabled_state(), interactive("", "123456"), password=PasswordCheck.WRONG, service="webmail"
    )
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.WRONG_PASSWORD)
    assert not decision.commit and not decision.counted


def test_of_two_notes_for_one_record_the_newest_counts_and_the_other_goes() -> None:
    """Two first uses at once each add a note; the older must not make it look idle."""
    state, token, record = opened(enabled_state(), idle=600)
    older = Usage(record.id, NOW + 10, "198.51.100.7")
    newer = Usage(record.id, NOW + 800, "198.51.100.7")
    state = replace(state, usage=(older, newer))
    assert state.usage_of(record.id) == newer
    assert session_is_live(state, record, NOW + 1500)
    decision = run(state, mail(token), remote=WEBMAIL, now=NOW + 1000)
    deletes = [
        c.values
        for f in decision.followups
        for c in f.changes
        if c.attribute == Attr.USAGE and c.op is Op.DELETE
    ]
    assert (older.dump(),) in deletes and all(newer.dump() not in v for v in deletes)
