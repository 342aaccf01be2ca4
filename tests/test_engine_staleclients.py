"""Stale clients end to end against the real slapd (its schema and ACL as shipped):
recognised, recorded once, counted once, shown, dismissed, told; guessers never."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock
from support.engines import engine_for
from support.flows import enroll, interactive_login, mail_login
from support.slapd import SCHEMA_DIR, USERS, Slapd, ssha, user_dn

from pam_twostep.audit import MemorySink
from pam_twostep.config import Config, StaleNoticeConfig
from pam_twostep.core.decision import Method, Outcome, Reason
from pam_twostep.core.errors import NotFound
from pam_twostep.core.staleclients import STALE_INTERVAL
from pam_twostep.engine import Engine
from pam_twostep.stalenotice import StaleNotices
from pam_twostep.staletext import describe


def _stale(engine: Engine, user: str = "alice") -> list[dict[str, object]]:
    return [
        {
            "id": c.id,
            "credential": c.kind,
            "label": c.label,
            "address": c.address,
            "service": c.service,
            "since": c.since or None,
            "first": c.first,
            "last": c.last,
        }
        for c in engine.status(user).stale_clients
    ]


def _stored_text(slapd: Slapd, user: str = "alice") -> bytes:
    return b"\n".join(v for values in slapd.entry(user_dn(user)).values() for v in values)


def _recorded(audit: MemorySink) -> list[str | None]:
    return [e.reason for e in audit.events if e.action == "stale-client"]


def test_a_revoked_passcode_retried_is_one_stale_client_counted_once(
    engine: Engine, clock: Clock, slapd: Slapd, audit: MemorySink
) -> None:
    enroll(engine, clock.now)
    phone = engine.add_passcode("alice", "Thunderbird").passcode
    engine.add_passcode("alice", "Tablet")
    engine.revoke_passcode("alice", "Thunderbird")
    for _ in range(5):
        assert mail_login(engine, "alice", phone).reason is Reason.WRONG_PASSCODE
        clock.advance(60)
    [client] = _stale(engine)
    assert (client["credential"], client["label"]) == ("passcode", "Thunderbird")
    assert (client["address"], client["service"]) == ("192.0.2.10", "imap")
    assert engine.status("alice").recent_failures == 1
    assert _recorded(audit) == ["passcode"]
    text = describe(client)
    assert "192.0.2.10 (imap) still uses the revoked passcode 'Thunderbird'" in text

    # past the lock-out window it still counts nothing; "last tried" moves hourly at most
    first_last = client["last"]
    clock.advance(2 * 3600)
    mail_login(engine, "alice", phone)
    assert engine.status("alice").recent_failures == 0
    [client] = _stale(engine)
    assert client["last"] == int(clock.now) and client["last"] != first_last
    before = slapd.entry(user_dn("alice"))
    clock.advance(STALE_INTERVAL // 2)
    mail_login(engine, "alice", phone)
    assert slapd.entry(user_dn("alice")) == before, "a retry within the hour wrote"

    # the same passcode from another address or service is another stale client
    mail_login(engine, "alice", phone, service="pop3")
    assert len(_stale(engine)) == 2
    stored = _stored_text(slapd)
    assert phone.encode() not in stored and phone.replace("-", "").encode() not in stored


def test_a_guesser_is_never_a_stale_client(
    engine: Engine, clock: Clock, slapd: Slapd, audit: MemorySink
) -> None:
    enroll(engine, clock.now)
    phone = engine.add_passcode("alice", "Thunderbird").passcode
    engine.revoke_passcode("alice", "Thunderbird")
    guesses = [phone[:-1] + c for c in "ABCDEFGH" if not phone.endswith(c)]
    for guess in [*guesses, "hunter2", USERS["bob"]]:
        assert mail_login(engine, "alice", guess, remote="198.51.100.9").outcome is Outcome.DENY
    assert _stale(engine) == []
    assert _recorded(audit) == []
    assert engine.status("alice").recent_failures >= 5
    # a guesser alternating the known revoked passcode with guesses gets them all counted
    before = engine.status("alice").recent_failures
    for guess in ["WRONG-ONE-AAAA-BBBB-CCCC-DDDD", "WRONG-TWO-AAAA-BBBB-CCCC-DDDD"]:
        mail_login(engine, "alice", phone, remote="203.0.113.5")
        mail_login(engine, "alice", guess, remote="203.0.113.5")
    assert engine.status("alice").recent_failures == before + 3


def test_the_password_from_before_a_change_is_recognised(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    # two-step off: the phone reads mail with the password, then the password changes
    assert mail_login(engine, "alice", USERS["alice"]).method is Method.PASSWORD
    clock.advance(86400)
    engine.change_password("alice", USERS["alice"], "A-new-passw0rd")
    for _ in range(3):
        assert mail_login(engine, "alice", USERS["alice"]).reason is Reason.WRONG_PASSWORD
    [client] = _stale(engine)
    assert client["credential"] == "old-password" and client["since"] == int(clock.now)
    day = time.strftime("%Y-%m-%d", time.gmtime(clock.now))
    assert f"still uses the password from before {day}" in describe(client)
    assert engine.status("alice").recent_failures == 1
    assert b"A-new-passw0rd" not in _stored_text(slapd)
    assert USERS["alice"].encode() not in _stored_text(slapd)
    # the new password works, and a plain wrong one is no stale client
    assert mail_login(engine, "alice", "A-new-passw0rd").method is Method.PASSWORD
    mail_login(engine, "alice", "not-a-password-ever-used")
    assert len(_stale(engine)) == 1


def test_a_password_changed_elsewhere_is_recognised_after_one_login(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    assert mail_login(engine, "alice", USERS["alice"]).method is Method.PASSWORD
    slapd.set_attributes(user_dn("alice"), userPassword=[ssha("changed-by-ldappasswd")])
    clock.advance(3600)
    assert mail_login(engine, "alice", "changed-by-ldappasswd").method is Method.PASSWORD
    mail_login(engine, "alice", USERS["alice"], remote="192.0.2.77")
    [client] = _stale(engine)
    assert client["credential"] == "old-password" and client["since"] == int(clock.now)


def test_the_password_sent_to_mail_after_two_step_is_on(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    assert mail_login(engine, "alice", USERS["alice"]).method is Method.PASSWORD
    enroll(engine, clock.now)
    clock.advance(60)
    assert mail_login(engine, "alice", USERS["alice"]).reason is Reason.WRONG_PASSCODE
    [client] = _stale(engine)
    assert client["credential"] == "password"
    assert "Mail no longer accepts it" in describe(client)


def test_dismissed_stays_recognised_and_reset_forgets(
    engine: Engine, clock: Clock, slapd: Slapd, audit: MemorySink
) -> None:
    enroll(engine, clock.now)
    phone = engine.add_passcode("alice", "Phone").passcode
    engine.revoke_all_passcodes("alice")
    mail_login(engine, "alice", phone)
    [client] = _stale(engine)
    engine.stale_clients.dismiss("alice", str(client["id"]), actor="alice")
    assert _stale(engine) == []
    clock.advance(2 * 3600)
    mail_login(engine, "alice", phone)
    assert _stale(engine) == [] and engine.status("alice").recent_failures == 0
    assert _recorded(audit) == ["passcode"]
    with pytest.raises(NotFound):
        engine.stale_clients.dismiss("alice", "nosuchid", actor="alice")
    assert [e.outcome for e in audit.events if e.action == "stale-client-dismiss"] == [
        "ok",
        "refused",
    ]
    engine.reset("alice")
    entry = slapd.entry(user_dn("alice"))
    assert "twostepretired" not in entry and "twostepstaleclient" not in entry


def test_a_disabled_account_knows_its_passcodes(engine: Engine, clock: Clock) -> None:
    enroll(engine, clock.now)
    phone = engine.add_passcode("alice", "Phone").passcode
    engine.disable("alice", admin=True)
    assert mail_login(engine, "alice", phone).reason is Reason.WRONG_PASSWORD
    assert [c["credential"] for c in _stale(engine)] == ["passcode"]


def test_expired_and_password_killed_passcodes_are_remembered_when_swept(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    enroll(engine, clock.now)
    short = engine.add_passcode("alice", "Short", lifetime=3600).passcode
    keep = engine.add_passcode("alice", "Keep").passcode
    clock.advance(7200)
    assert mail_login(engine, "alice", keep).method is Method.PASSCODE  # sweeps "Short"
    entry = slapd.entry(user_dn("alice"))
    assert len(entry["twostepretired"]) == 1 and len(entry["twosteppasscode"]) == 1
    assert mail_login(engine, "alice", short).reason is Reason.WRONG_PASSCODE
    assert [c["label"] for c in _stale(engine)] == ["Short"]


def _hook(tmp_path: Path) -> Path:
    script = tmp_path / "notify-hook"
    script.write_text(
        "#!/bin/sh\n"
        f"out={tmp_path}/told.$$\n"
        'cat > "$out.eml"\n'
        'printf "%s|%s|%s|%s|%s\\n" "$TWOSTEP_USER" "$TWOSTEP_ADDRESS" "$TWOSTEP_SERVICE" '
        '"$TWOSTEP_CREDENTIAL" "$TWOSTEP_LABEL" > "$out.env"\n'
    )
    script.chmod(stat.S_IRWXU)
    return script


def _told(tmp_path: Path, count: int) -> list[Path]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = sorted(tmp_path.glob("told.*.env"))
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return sorted(tmp_path.glob("told.*.env"))


@pytest.fixture
def told_engine(
    config: Config, clock: Clock, audit: MemorySink, tmp_path: Path
) -> Iterator[Engine]:
    settings = StaleNoticeConfig(command=(str(_hook(tmp_path)),), to="{user}@example.org")
    notices = StaleNotices(settings, audit, clock)
    with engine_for(config, clock, audit, notices=notices) as engine:
        yield engine
    notices.close()


def test_the_owner_is_told_once_per_stale_client_and_at_most_three_a_day(
    told_engine: Engine, clock: Clock, audit: MemorySink, tmp_path: Path
) -> None:
    engine = told_engine
    enroll(engine, clock.now)
    phone = engine.add_passcode("alice", "Thunder\u00e9bird").passcode
    engine.revoke_passcode("alice", "Thunder\u00e9bird")
    for _ in range(4):
        mail_login(engine, "alice", phone)
        clock.advance(2 * STALE_INTERVAL)
    [env] = _told(tmp_path, 1)
    assert env.read_text() == "alice|192.0.2.10|imap|passcode|Thunder\u00e9bird\n"
    message = env.with_suffix(".eml").read_text()
    assert "To: alice@example.org" in message and "Auto-Submitted: auto-generated" in message
    assert phone not in message and phone.replace("-", "") not in message
    for last in range(20, 24):  # four more stale clients the same day: two more are told
        mail_login(engine, "alice", phone, remote=f"192.0.2.{last}")
    assert len(_told(tmp_path, 3)) == 3
    clock.advance(86400)  # a day later, the next one is told again
    mail_login(engine, "alice", phone, remote="192.0.2.30")
    assert len(_told(tmp_path, 4)) == 4
    time.sleep(0.5)
    assert len(_told(tmp_path, 5)) == 4
    assert [e.outcome for e in audit.events if e.action == "stale-client-notice"] == ["ok"] * 4
    assert len(_stale(engine)) == 6


def test_a_failing_hook_is_audited_and_the_login_unaffected(
    config: Config, clock: Clock, audit: MemorySink, tmp_path: Path
) -> None:
    script = tmp_path / "fails"
    script.write_text("#!/bin/sh\necho 'secret-ish output' >&2\nexit 3\n")
    script.chmod(stat.S_IRWXU)
    notices = StaleNotices(StaleNoticeConfig(command=(str(script),)), audit, clock)
    with engine_for(config, clock, audit, notices=notices) as engine:
        enroll(engine, clock.now)
        phone = engine.add_passcode("alice", "Phone").passcode
        engine.revoke_passcode("alice", "Phone")
        assert mail_login(engine, "alice", phone).reason is Reason.WRONG_PASSCODE
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not [
            e for e in audit.events if e.action == "stale-client-notice"
        ]:
            time.sleep(0.05)
    notices.close()
    [event] = [e for e in audit.events if e.action == "stale-client-notice"]
    assert (event.outcome, event.reason) == ("error", "exit-3")
    assert os.environ.get("TWOSTEP_USER") is None


def test_interactive_logins_record_the_verifier_once(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    assert interactive_login(engine, "alice").outcome is Outcome.ACCEPT
    first = slapd.entry(user_dn("alice"))["twostepretired"]
    clock.advance(600)
    assert interactive_login(engine, "alice").outcome is Outcome.ACCEPT
    assert slapd.entry(user_dn("alice"))["twostepretired"] == first
    assert USERS["alice"].encode() not in b"".join(first)


def test_a_directory_whose_acl_predates_them_records_nothing_and_stops_asking(
    engine: Engine, clock: Clock, slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    """A site that upgraded twostep and the schema but not the ACL: logins, revocations
    and refusals are as before; the refused records are tried once, then left alone."""
    shipped = (SCHEMA_DIR / "acl.ldif").read_text()
    older = shipped.replace("twostepRetired,\n twostepStaleClient,", "")
    assert older != shipped
    path = slapd.directory / "acl-older.ldif"
    path.write_text(older)
    slapd.ldapmodify(path)
    try:
        enroll(engine, clock.now)
        phone = engine.add_passcode("alice", "Phone").passcode
        engine.revoke_passcode("alice", "Phone")  # its digest is not kept: no match below
        assert mail_login(engine, "alice", phone).reason is Reason.WRONG_PASSCODE
        # a passcode killed by a password changed elsewhere stays on the entry until a
        # sweep: it is recognised, and its record refused
        tablet = engine.add_passcode("alice", "Tablet").passcode
        slapd.set_attributes(user_dn("alice"), userPassword=[ssha("changed elsewhere")])
        with caplog.at_level("WARNING", logger="pam_twostep.engine.staleclients"):
            for n in range(3):
                decision = mail_login(engine, "alice", tablet, remote=f"192.0.2.{n + 1}")
                assert decision.reason is Reason.WRONG_PASSCODE
        assert "twostepretired" not in slapd.entry(user_dn("alice"))
        assert _stale(engine) == []
        warnings = [r for r in caplog.records if "not written" in r.getMessage()]
        assert len(warnings) == 1 and "ACL" in warnings[0].getMessage()
        assert phone not in caplog.text and tablet not in caplog.text
    finally:
        path.write_text(shipped)
        slapd.ldapmodify(path)
