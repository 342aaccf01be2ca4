"""The mail path end to end: IMAP, POP3 and SMTP AUTH through real Dovecot and Postfix,
decided by twostepd, once with the checkpassword program and once with the Lua passdb."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.engines import engine_for
from support.flows import enroll
from support.slapd import USERS, Slapd, user_dn
from support.stack import PASSDBS, MailStack, running_stack, source

from pam_twostep.config import parse_config
from pam_twostep.engine import Engine


@pytest.fixture(scope="module", params=PASSDBS)
def stack(
    request: pytest.FixtureRequest, slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MailStack]:
    secrets = make_secrets_dir(tmp_path_factory.mktemp("mail") / "etc")
    yield from running_stack(config_data(slapd_server, secrets), request.param)


@pytest.fixture
def clock() -> Clock:
    """Real time: the daemon's clock is the real one, and both must agree here."""
    return Clock(time.time())


@pytest.fixture
def mail(stack: MailStack, slapd: Slapd) -> MailStack:
    """The running stack, with the directory reset for this test."""
    return stack


@pytest.fixture
def admin(mail: MailStack, slapd: Slapd, clock: Clock) -> Iterator[Engine]:
    """An engine sharing the daemon's keys, to set users up as an administrator would."""
    with engine_for(parse_config(mail.daemon.config), clock) as engine:
        yield engine


def imap(stack: MailStack, user: str, secret: str) -> str:
    status, text = stack.dovecot.imap_login(user, secret, source())
    return status if status == "OK" else text


def pop3(stack: MailStack, user: str, secret: str) -> str:
    status, text = stack.dovecot.pop3_login(user, secret, source())
    return status if status == "OK" else text


def smtp(stack: MailStack, user: str, secret: str, mechanism: str = "PLAIN") -> int:
    return stack.postfix.send(user, secret, source(), mechanism)[0]


def refused_everywhere(stack: MailStack, user: str, secret: str) -> None:
    assert "[AUTHENTICATIONFAILED]" in imap(stack, user, secret)
    assert "[AUTH]" in pop3(stack, user, secret)
    assert smtp(stack, user, secret) == 535


# -- two-step off ----------------------------------------------------------------------


def test_password_works_while_two_step_is_off(mail: MailStack) -> None:
    assert imap(mail, "bob", USERS["bob"]) == "OK"
    assert pop3(mail, "bob", USERS["bob"]) == "OK"
    assert smtp(mail, "bob", USERS["bob"]) == 235
    assert smtp(mail, "bob", USERS["bob"], "LOGIN") == 235
    refused_everywhere(mail, "bob", "wrong password")
    refused_everywhere(mail, "nobody", "whatever")


def test_policy_may_forbid_the_password(mail: MailStack, slapd: Slapd) -> None:
    slapd.set_attributes(
        user_dn("bob"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepMailPassword=["FALSE"],
    )
    refused_everywhere(mail, "bob", USERS["bob"])


# -- two-step on: application passcodes only --------------------------------------------


def test_passcodes_only_once_two_step_is_on(mail: MailStack, admin: Engine, clock: Clock) -> None:
    key, _ = enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Thunderbird").passcode
    assert imap(mail, "alice", passcode) == "OK"
    assert imap(mail, "ALICE", passcode.replace("-", "").lower()) == "OK"
    assert pop3(mail, "alice", passcode) == "OK"
    assert smtp(mail, "alice", passcode) == 235
    assert smtp(mail, "alice", passcode, "LOGIN") == 235
    refused_everywhere(mail, "alice", USERS["alice"])
    from pam_twostep.core.totp import totp

    # password+code glued together is not accepted either (README, "Security model")
    refused_everywhere(mail, "alice", USERS["alice"] + totp(key, clock.now + 30))


@pytest.mark.parametrize("days", [1, 0, -1], ids=["day-before", "day-of", "day-after"])
def test_mail_password_until_a_date(
    mail: MailStack, admin: Engine, slapd: Slapd, clock: Clock, days: int
) -> None:
    """Issue 18: an account that turned two-step on keeps its password at IMAP, POP3 and
    SMTP until ``mail_password_until`` (its passcodes work all along); from the date on,
    passcodes only."""
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Phone").passcode
    until = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(clock.now + days * 86400))
    slapd.set_attributes(user_dn("alice"), twostepMailPasswordUntil=[until])
    if days > 0:
        assert imap(mail, "alice", USERS["alice"]) == "OK"
        assert pop3(mail, "alice", USERS["alice"]) == "OK"
        assert smtp(mail, "alice", USERS["alice"]) == 235
        refused_everywhere(mail, "alice", "wrong password")
    else:
        refused_everywhere(mail, "alice", USERS["alice"])
    assert imap(mail, "alice", passcode) == "OK"
    if days > 0:  # the user ends the grace for their own account: passcodes only at once
        admin.end_mail_password("alice")
        refused_everywhere(mail, "alice", USERS["alice"])
        assert imap(mail, "alice", passcode) == "OK"


def test_scope_revocation_and_expiry(mail: MailStack, admin: Engine, clock: Clock) -> None:
    enroll(admin, clock.now)
    reader = admin.add_passcode("alice", "Reader", services=["imap"]).passcode
    assert imap(mail, "alice", reader) == "OK"
    assert "[AUTH]" in pop3(mail, "alice", reader)
    assert smtp(mail, "alice", reader) == 535
    phone = admin.add_passcode("alice", "Phone").passcode
    assert imap(mail, "alice", phone) == "OK"
    admin.revoke_passcode("alice", "Phone")
    refused_everywhere(mail, "alice", phone)
    short = admin.add_passcode("alice", "Short", lifetime=60).passcode
    assert imap(mail, "alice", short) == "OK"  # the daemon keeps real time: not expired yet


def test_the_client_address_and_service_reach_the_decision(
    mail: MailStack, admin: Engine, clock: Clock
) -> None:
    """The passcode's "last used" shows where the mail client connected from (what the
    portal and `twostep status` show), so the address must arrive through each passdb;
    the service must too, or a scoped passcode could not be told apart."""
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Thunderbird", services=["pop3"]).passcode
    address = source()
    assert mail.dovecot.pop3_login("alice", passcode, address)[0] == "OK"
    (info,) = admin.status("alice").passcodes
    assert info.last_address == address
    assert info.last_used is not None


def test_ldappasswd_kills_every_passcode(
    mail: MailStack, admin: Engine, clock: Clock, slapd: Slapd
) -> None:
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Thunderbird").passcode
    assert imap(mail, "alice", passcode) == "OK"
    slapd.user_changes_password("alice", "a-new-password-5")
    refused_everywhere(mail, "alice", passcode)


def test_lock_out_counts_mail_failures_and_holds(
    mail: MailStack, admin: Engine, clock: Clock, slapd: Slapd
) -> None:
    slapd.set_attributes(
        user_dn("alice"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepLockoutMaxFailures=["3"],
    )
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Phone").passcode
    for guess in range(3):
        assert "[AUTHENTICATIONFAILED]" in imap(mail, "alice", f"guess number {guess}")
    assert admin.status("alice").locked
    refused_everywhere(mail, "alice", passcode)
    admin.unlock("alice")
    assert imap(mail, "alice", passcode) == "OK"


# -- faults ----------------------------------------------------------------------------


def test_daemon_down_is_a_temporary_failure(mail: MailStack, admin: Engine) -> None:
    mail.daemon.stop()
    try:
        assert "[UNAVAILABLE]" in imap(mail, "bob", USERS["bob"])
        assert "[SYS/TEMP]" in pop3(mail, "bob", USERS["bob"])
        assert smtp(mail, "bob", USERS["bob"]) in (454, 535)
        assert "[UNAVAILABLE]" in imap(mail, "bob", "wrong password")
    finally:
        mail.daemon.start()
    assert admin.status("bob").recent_failures == 0  # nothing was counted
    assert imap(mail, "bob", USERS["bob"]) == "OK"  # recovered without restarting Dovecot


def test_directory_down_is_a_temporary_failure(
    mail: MailStack, admin: Engine, slapd: Slapd
) -> None:
    assert imap(mail, "bob", USERS["bob"]) == "OK"
    slapd.stop()
    try:
        assert "[UNAVAILABLE]" in imap(mail, "bob", USERS["bob"])
        assert "[SYS/TEMP]" in pop3(mail, "bob", "wrong password")
        assert smtp(mail, "bob", USERS["bob"]) in (454, 535)
    finally:
        slapd.start()
    assert admin.status("bob").recent_failures == 0
    assert imap(mail, "bob", USERS["bob"]) == "OK"


def test_hostile_credentials_write_nothing(mail: MailStack, slapd: Slapd) -> None:
    before = slapd.snapshot()
    for user in ("*", "bob*", "*)(uid=*", "bob\\", "bob,ou=people", "x" * 300):
        assert imap(mail, user, USERS["bob"]) != "OK"
    assert slapd.snapshot() == before
