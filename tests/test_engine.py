"""Every behaviour of the core, end to end against the real slapd: read, decide, write."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Clock, config_data
from support.concurrency import at_once
from support.engines import engine_for
from support.flows import enroll, interactive_login, mail_login
from support.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    POLICIES,
    USERS,
    Slapd,
    ssha,
    user_dn,
)

from pam_twostep.audit import MemorySink
from pam_twostep.config import parse_config
from pam_twostep.core import hashing
from pam_twostep.core.account import Attr
from pam_twostep.core.decision import Method, Outcome, Reason
from pam_twostep.core.errors import NotFound, RefusalReason, Refused
from pam_twostep.core.totp import totp
from pam_twostep.engine import Engine

# -- application passcodes -------------------------------------------------------------


def test_passcode_life_cycle(engine: Engine, clock: Clock, audit: MemorySink) -> None:
    enroll(engine, clock.now)
    new = engine.add_passcode("alice", "Thunderbird")
    groups = new.passcode.split("-")
    assert [len(g) for g in groups] == [4] * 6 and new.passcode == new.passcode.upper()
    assert mail_login(engine, "alice", new.passcode.replace("-", "").lower()).method is (
        Method.PASSCODE
    )
    assert mail_login(engine, "alice", USERS["alice"]).reason is Reason.WRONG_PASSCODE
    engine.revoke_passcode("alice", "thunderbird")  # labels match without regard to case
    assert mail_login(engine, "alice", new.passcode).reason is Reason.WRONG_PASSCODE
    assert new.passcode not in repr(new)
    assert [e.label for e in audit.events if e.action.startswith("passcode")] == [
        "Thunderbird",
        "thunderbird",
    ]


def test_passcode_refusals(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    with pytest.raises(Refused) as caught:
        engine.add_passcode("alice", "Phone")
    assert caught.value.reason is RefusalReason.NOT_ENABLED
    enroll(engine, clock.now)
    engine.add_passcode("alice", "Phone")
    slapd.set_attributes(user_dn("alice"), twostepPasscodeLimit=["2"])  # a per-account override
    engine.forget_policies()
    cases: list[tuple[dict[str, Any], RefusalReason]] = [
        ({"label": "PHONE"}, RefusalReason.LABEL_TAKEN),
        ({"label": ""}, RefusalReason.INVALID_INPUT),
        ({"label": "x" * 65}, RefusalReason.INVALID_INPUT),
        ({"label": "tab\there"}, RefusalReason.INVALID_INPUT),
        ({"label": "Mail", "services": ["sshd"]}, RefusalReason.INVALID_INPUT),
        ({"label": "Mail", "services": ["IMAP;drop"]}, RefusalReason.INVALID_INPUT),
        ({"label": "Mail", "lifetime": -5}, RefusalReason.INVALID_INPUT),
    ]
    for arguments, reason in cases:
        with pytest.raises(Refused) as caught:
            engine.add_passcode("alice", **arguments)
        assert caught.value.reason is reason, arguments
    engine.add_passcode("alice", "Tablet")
    with pytest.raises(Refused) as caught:
        engine.add_passcode("alice", "Laptop")
    assert caught.value.reason is RefusalReason.LIMIT_REACHED
    with pytest.raises(NotFound):
        engine.revoke_passcode("alice", "nothing")
    with pytest.raises(NotFound):
        engine.add_passcode("nobody", "x")


def test_passcode_scope_and_expiry(engine: Engine, clock: Clock) -> None:
    enroll(engine, clock.now)
    imap_only = engine.add_passcode("alice", "Reader", services=["imap"])
    assert mail_login(engine, "alice", imap_only.passcode, "imap").outcome is Outcome.ACCEPT
    assert mail_login(engine, "alice", imap_only.passcode, "smtp").reason is Reason.PASSCODE_SCOPE
    short = engine.add_passcode("alice", "Short", lifetime=3600)
    assert engine.status("alice").passcodes[-1].expires == int(clock.now) + 3600
    clock.advance(3600)
    assert mail_login(engine, "alice", short.passcode).reason is Reason.PASSCODE_EXPIRED
    assert [p.label for p in engine.status("alice").passcodes] == ["Reader"]


def test_policy_caps_passcode_lifetime(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepPasscodeLifetime=["86400"])
    enroll(engine, clock.now)
    engine.add_passcode("alice", "Forever")
    engine.add_passcode("alice", "Long", lifetime=10 * 86400)
    engine.add_passcode("alice", "Short", lifetime=60)
    expiries = [p.expires - int(clock.now) for p in engine.status("alice").passcodes]
    assert expiries == [86400, 86400, 60]


def test_passcode_login_costs_no_slow_hash_however_many(
    engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    enroll(engine, clock.now)
    passcodes = [engine.add_passcode("alice", f"Client {i}").passcode for i in range(25)]
    calls: list[int] = []
    real = hashing.low_level.verify_secret

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(hashing.low_level, "verify_secret", counting)
    assert mail_login(engine, "alice", passcodes[-1]).outcome is Outcome.ACCEPT
    assert mail_login(engine, "alice", "A" * 24).outcome is Outcome.DENY
    assert calls == []


def test_last_use_is_recorded_without_a_write_per_login(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    enroll(engine, clock.now)
    passcode = engine.add_passcode("alice", "Thunderbird").passcode
    assert engine.status("alice").passcodes[0].last_used is None
    mail_login(engine, "alice", passcode, remote="192.0.2.77")
    used = engine.status("alice").passcodes[0]
    assert (used.last_used, used.last_address) == (int(clock.now), "192.0.2.77")
    before = slapd.entry(user_dn("alice"))[Attr.USAGE.lower()]
    for _ in range(5):
        clock.advance(10)
        mail_login(engine, "alice", passcode, remote="192.0.2.77")
    assert slapd.entry(user_dn("alice"))[Attr.USAGE.lower()] == before
    clock.advance(300)
    mail_login(engine, "alice", passcode, remote="192.0.2.78")
    assert engine.status("alice").passcodes[0].last_address == "192.0.2.78"


# -- a password change kills every passcode, whichever way it happens ------------------


def change_with_ldappasswd(slapd: Slapd, engine: Engine, new: str) -> None:
    slapd.user_changes_password("alice", new)


def change_with_admin_ldapmodify(slapd: Slapd, engine: Engine, new: str) -> None:
    ldif = (
        f"dn: {user_dn('alice')}\nchangetype: modify\nreplace: userPassword\n"
        f"userPassword: {ssha(new)}\n"
    )
    subprocess.run(
        ["ldapmodify", "-x", "-H", slapd.uri, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
        input=ldif.encode(),
        check=True,
        capture_output=True,
    )


def change_with_our_tools(slapd: Slapd, engine: Engine, new: str) -> None:
    engine.change_password("alice", USERS["alice"], new)


@pytest.mark.parametrize(
    "change", [change_with_ldappasswd, change_with_admin_ldapmodify, change_with_our_tools]
)
def test_password_change_revokes_passcodes_and_devices(
    engine: Engine, clock: Clock, slapd: Slapd, change: Callable[[Slapd, Engine, str], None]
) -> None:
    key, _ = enroll(engine, clock.now)
    passcode = engine.add_passcode("alice", "Thunderbird").passcode
    clock.advance(30)
    trusted = interactive_login(engine, "alice", totp(key, clock.now), trust=True)
    assert trusted.device_token
    change(slapd, engine, "brand-new-password-1")
    assert mail_login(engine, "alice", passcode).reason is Reason.WRONG_PASSCODE
    device_login = interactive_login(
        engine, "alice", password="brand-new-password-1", device_token=trusted.device_token
    )
    assert device_login.outcome is Outcome.CHALLENGE
    status = engine.status("alice")
    assert status.passcodes == () and status.devices == ()
    assert status.enabled  # the authenticator itself survives a password change


def test_our_password_change_can_keep_the_current_device(engine: Engine, clock: Clock) -> None:
    key, _ = enroll(engine, clock.now)
    clock.advance(30)
    here = interactive_login(engine, "alice", totp(key, clock.now), trust=True)
    clock.advance(30)
    there = interactive_login(engine, "alice", totp(key, clock.now), trust=True)
    assert here.device and here.device_token and there.device_token
    engine.change_password("alice", USERS["alice"], "another-pw-77", keep_device=here.device)
    assert (
        interactive_login(
            engine, "alice", password="another-pw-77", device_token=here.device_token
        ).method
        is Method.TRUSTED_DEVICE
    )
    assert (
        interactive_login(
            engine, "alice", password="another-pw-77", device_token=there.device_token
        ).outcome
        is Outcome.CHALLENGE
    )
    with pytest.raises(Refused) as caught:
        engine.change_password("alice", "not-it", "x-new-pw")
    assert caught.value.reason is RefusalReason.WRONG_PASSWORD
    with pytest.raises(Refused) as caught:
        engine.change_password("alice", "another-pw-77", "")
    assert caught.value.reason is RefusalReason.INVALID_INPUT


# -- trusted devices -------------------------------------------------------------------


def test_trusted_devices(engine: Engine, clock: Clock) -> None:
    key, _ = enroll(engine, clock.now)
    tokens = []
    for _ in range(3):
        clock.advance(30)
        decision = interactive_login(
            engine, "alice", totp(key, clock.now), trust=True, service="portal"
        )
        tokens.append((decision.device, decision.device_token))
    devices = engine.status("alice").devices
    assert [d.id for d in devices] == [t[0] for t in tokens]
    assert all(d.label == "Laptop" and d.expires == d.created + 30 * 86400 for d in devices)
    first, second, third = tokens
    assert interactive_login(engine, "alice", device_token=first[1]).method is (
        Method.TRUSTED_DEVICE
    )
    engine.revoke_device("alice", str(first[0]))
    assert interactive_login(engine, "alice", device_token=first[1]).outcome is Outcome.CHALLENGE
    engine.revoke_other_devices("alice", str(third[0]))
    assert interactive_login(engine, "alice", device_token=second[1]).outcome is (Outcome.CHALLENGE)
    assert interactive_login(engine, "alice", device_token=third[1]).outcome is Outcome.ACCEPT
    engine.revoke_all_devices("alice")
    assert engine.status("alice").devices == ()
    with pytest.raises(NotFound):
        engine.revoke_device("alice", "nosuchid")


def test_trusted_device_expires(engine: Engine, clock: Clock) -> None:
    key, _ = enroll(engine, clock.now)
    clock.advance(30)
    token = interactive_login(engine, "alice", totp(key, clock.now), trust=True).device_token
    clock.advance(30 * 86400 - 1)
    assert interactive_login(engine, "alice", device_token=token).outcome is Outcome.ACCEPT
    clock.advance(1)
    assert interactive_login(engine, "alice", device_token=token).outcome is Outcome.CHALLENGE


# -- backup codes ----------------------------------------------------------------------


def test_backup_codes_work_once_and_regenerate(engine: Engine, clock: Clock) -> None:
    _, codes = enroll(engine, clock.now)
    assert interactive_login(engine, "alice", codes[0].lower().replace("-", " ")).method is (
        Method.BACKUP_CODE
    )
    assert interactive_login(engine, "alice", codes[0]).reason is Reason.WRONG_CODE
    assert engine.status("alice").backup_codes == 9
    fresh = engine.regenerate_backup_codes("alice")
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    assert interactive_login(engine, "alice", codes[1]).reason is Reason.WRONG_CODE
    assert interactive_login(engine, "alice", fresh[1]).outcome is Outcome.ACCEPT


# -- lock-out --------------------------------------------------------------------------


def test_failures_of_every_kind_lock_and_nothing_gets_around_it(
    engine: Engine, clock: Clock, slapd: Slapd
) -> None:
    # ten addresses, so that the lock (not the per-address throttle) is what stops them
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["10"])
    key, codes = enroll(engine, clock.now)
    passcode = engine.add_passcode("alice", "Phone").passcode
    attempts: list[Callable[[int], object]] = [
        lambda i: mail_login(engine, "alice", f"wrong passcode {i}", remote=f"203.0.113.{i}"),
        lambda i: interactive_login(
            engine, "alice", password=f"wrong password {i}", remote=f"203.0.113.{i}"
        ),
        lambda i: interactive_login(engine, "alice", f"{i:06d}", remote=f"203.0.113.{i}"),
        lambda i: interactive_login(
            engine, "alice", f"2345678{i:03d}"[:10], remote=f"203.0.113.{i}"
        ),
    ]
    for i in range(10):
        attempts[i % 4](i)
    status = engine.status("alice")
    assert status.locked and status.locked_until == int(clock.now) + 3600
    clock.advance(30)
    assert mail_login(engine, "alice", passcode).reason is Reason.LOCKED
    assert interactive_login(engine, "alice", totp(key, clock.now)).reason is Reason.LOCKED
    assert interactive_login(engine, "alice", codes[0]).reason is Reason.LOCKED
    engine.unlock("alice")
    assert mail_login(engine, "alice", passcode).outcome is Outcome.ACCEPT
    assert engine.status("alice").recent_failures == 0


def test_lock_ends_after_its_duration(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["10"])
    for i in range(10):
        mail_login(engine, "bob", f"guess {i}", remote=f"203.0.113.{i}")
    assert mail_login(engine, "bob", USERS["bob"]).reason is Reason.LOCKED
    clock.advance(3600)
    assert mail_login(engine, "bob", USERS["bob"]).outcome is Outcome.ACCEPT


def test_lock_until_admin_unlocks(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    slapd.set_attributes(
        f"cn=default,{POLICIES}", twostepLockoutDuration=["0"], twostepLockoutMaxFailures=["3"]
    )
    for i in range(3):
        mail_login(engine, "bob", f"guess {i}")
    clock.advance(365 * 86400)
    assert mail_login(engine, "bob", USERS["bob"]).reason is Reason.LOCKED
    engine.unlock("bob")
    assert mail_login(engine, "bob", USERS["bob"]).outcome is Outcome.ACCEPT


def test_a_success_clears_failures_from_its_address_only(engine: Engine) -> None:
    mail_login(engine, "bob", "guess 1", remote="192.0.2.1")
    mail_login(engine, "bob", "guess 2", remote="198.51.100.2")
    mail_login(engine, "bob", USERS["bob"], remote="192.0.2.1")
    assert engine.status("bob").recent_failures == 1


# -- concurrency -----------------------------------------------------------------------


@pytest.fixture
def twin(config: Any, clock: Clock, audit: MemorySink) -> Iterator[Engine]:
    """A second engine on the same directory: another serving process, or another host."""
    with engine_for(config, clock, audit) as engine:
        yield engine


_WAITED = (Reason.DIRECTORY_UNAVAILABLE,)
"""What a login that waited longer than ``ldap.timeout`` for its account's turn gets:
a temporary failure (it never accepts). Sixteen logins of one account queue one at a
time, so on a loaded machine the last ones can time out; what is tested is that exactly
one passes, not how fast the others are turned away."""


def test_one_backup_code_presented_in_parallel_passes_once(
    engine: Engine, twin: Engine, clock: Clock, slapd: Slapd
) -> None:
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["100"])
    _, codes = enroll(engine, clock.now)
    engines = (engine, twin)
    for code in codes[:3]:
        results = at_once(16, lambda i, code=code: interactive_login(engines[i % 2], "alice", code))
        assert sum(r.outcome is Outcome.ACCEPT for r in results) == 1
        assert all(
            r.reason in (None, Reason.REPLAYED, Reason.WRONG_CODE, *_WAITED) for r in results
        )
        engine.unlock("alice")
    assert engine.status("alice").backup_codes == 7


def test_one_totp_code_presented_in_parallel_passes_once(
    engine: Engine, twin: Engine, clock: Clock, slapd: Slapd
) -> None:
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["100"])
    key, _ = enroll(engine, clock.now)
    engines = (engine, twin)
    for _ in range(3):
        clock.advance(30)
        code = totp(key, clock.now)
        results = at_once(16, lambda i, code=code: interactive_login(engines[i % 2], "alice", code))
        assert sum(r.outcome is Outcome.ACCEPT for r in results) == 1
        assert {r.reason for r in results} <= {None, Reason.REPLAYED, *_WAITED}
        engine.unlock("alice")


@pytest.mark.parametrize("processes", [1, 2])
def test_parallel_guesses_pass_the_limit_by_at_most_one_per_process(
    engine: Engine, twin: Engine, slapd: Slapd, processes: int
) -> None:
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["5"])
    engines = (engine, twin)[:processes]
    for round_ in range(5):
        results = at_once(
            32,
            lambda i, r=round_: mail_login(engines[i % processes], "bob", f"guess {r}.{i}"),
        )
        checked = sum(r.reason is Reason.WRONG_PASSWORD for r in results)
        assert 5 <= checked <= 5 + processes - 1
        assert {r.reason for r in results} == {Reason.WRONG_PASSWORD, Reason.LOCKED}
        assert mail_login(engine, "bob", USERS["bob"]).reason is Reason.LOCKED
        engine.unlock("bob")


# -- hostile input ---------------------------------------------------------------------

HOSTILE_NAMES = [
    "*",
    "alice*",
    "*)(uid=*",
    "alice)(|(uid=*",
    "\\2a",
    "alice\\",
    "a,lice",
    "uid=alice",
    "alice+cn=x",
    "<alice>",
    "#alice",
    "alice;bob",
    "(alice)",
    "alice\x00",
    "\x00",
    "",
    " alice",
    "alice ",
    "al\nice",
    "al\tice",
    "x" * 300,
    "ALICE\u0000bob",
    "\u202ealice",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_usernames_reach_nobody(
    engine: Engine, clock: Clock, slapd: Slapd, audit: MemorySink, name: str
) -> None:
    before = slapd.snapshot()
    for secret in (USERS["alice"], "*"):
        decision = mail_login(engine, name, secret)
        assert decision.outcome is Outcome.DENY
        assert decision.reason in (Reason.UNKNOWN_USER, Reason.MALFORMED)
    assert slapd.snapshot() == before
    assert all(len(e.user) <= 64 for e in audit.events)


def test_oversized_secrets_are_denied_not_crashed(engine: Engine, clock: Clock) -> None:
    enroll(engine, clock.now, "bob")
    for secret in ("x" * 100_000, "\x00" * 10, "é" * 5000):
        assert mail_login(engine, "alice", secret).outcome is Outcome.DENY
        assert interactive_login(engine, "bob", "1" * 100_000).outcome is Outcome.DENY
        assert interactive_login(engine, "bob", password=secret).outcome is Outcome.DENY


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        (Attr.PASSCODE, "not json"),
        (Attr.SECRET, "aes256gcm:k1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA"),
        (Attr.SECRET, "aes256gcm:k9:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAA"),
        (Attr.LOCKED_AT, "2026010100Z"),
        (Attr.FAILURE, "{}"),
        (Attr.ALGORITHM, "MD5"),
        (Attr.BACKUP_CODE, "$argon2id$v=19$m=8198192,t=2,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43),
    ],
)
def test_corrupt_values_hurt_only_their_owner(
    engine: Engine, clock: Clock, slapd: Slapd, audit: MemorySink, attribute: str, value: str
) -> None:
    key, _ = enroll(engine, clock.now)
    enroll(engine, clock.now, "carol")
    passcode = engine.add_passcode("carol", "Phone").passcode
    slapd.set_attributes(user_dn("alice"), **{attribute: [value]})
    before = slapd.snapshot()
    clock.advance(30)
    decision = interactive_login(engine, "alice", totp(key, clock.now))
    assert decision.outcome is Outcome.TEMPFAIL
    assert decision.reason in (Reason.CORRUPT_ENTRY, Reason.KEY_UNAVAILABLE)
    assert slapd.snapshot() == before  # nothing written for a user we could not read
    assert audit.events[-1].outcome == "tempfail" and audit.events[-1].user == "alice"
    assert mail_login(engine, "carol", passcode).outcome is Outcome.ACCEPT
    assert mail_login(engine, "bob", USERS["bob"]).outcome is Outcome.ACCEPT


# -- policy ----------------------------------------------------------------------------


def test_policy_entries_and_overrides(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    staff = f"cn=staff,{POLICIES}"
    admin = slapd.admin()
    admin.add(
        staff,
        ["applicationProcess", "twostepPolicy"],
        {"cn": "staff", "twostepRequired": "TRUE", "twostepBackupCodeCount": "5"},
    )
    admin.unbind()
    engine.assign_policy("alice", "staff")
    status = engine.status("alice")
    assert status.policy.required and status.policy.backup_codes == 5
    assert status.policy_dn == staff
    assert interactive_login(engine, "alice").reason is Reason.ENROLLMENT_REQUIRED
    _, codes = enroll(engine, clock.now)
    assert len(codes) == 5
    slapd.set_attributes(user_dn("alice"), twostepBackupCodeCount=["7"])
    assert len(engine.regenerate_backup_codes("alice")) == 7
    with pytest.raises(Refused) as caught:
        engine.disable("alice", password=USERS["alice"], code=codes[0])
    assert caught.value.reason is RefusalReason.REQUIRED_BY_POLICY
    with pytest.raises(NotFound):
        engine.assign_policy("alice", "none")
    engine.assign_policy("alice", None)
    assert engine.status("alice").policy_dn.startswith("cn=default")  # type: ignore[union-attr]


def test_a_dangling_policy_is_a_temporary_failure(engine: Engine, slapd: Slapd) -> None:
    slapd.set_attributes(
        user_dn("bob"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepPolicyDN=[f"cn=gone,{POLICIES}"],
    )
    assert mail_login(engine, "bob", USERS["bob"]).outcome is Outcome.TEMPFAIL
    assert mail_login(engine, "carol", USERS["carol"]).outcome is Outcome.ACCEPT


# -- turning off and resetting ---------------------------------------------------------


def test_disable_needs_password_and_code_or_an_admin(engine: Engine, clock: Clock) -> None:
    _, codes = enroll(engine, clock.now)
    engine.add_passcode("alice", "Phone")
    with pytest.raises(Refused) as caught:
        engine.disable("alice", password=USERS["alice"], code="000000")
    assert caught.value.reason is RefusalReason.WRONG_CODE
    with pytest.raises(Refused) as caught:
        engine.disable("alice", password="nope", code=codes[0])
    assert caught.value.reason is RefusalReason.WRONG_PASSWORD
    engine.disable("alice", password=USERS["alice"], code=codes[0])
    status = engine.status("alice")
    assert not status.enabled and status.passcodes == () and status.backup_codes == 0
    assert mail_login(engine, "alice", USERS["alice"]).outcome is Outcome.ACCEPT
    enroll(engine, clock.now + 30)
    engine.disable("alice", admin=True, actor="root")
    with pytest.raises(Refused):
        engine.disable("alice", admin=True)


def test_reset_wipes_everything_but_the_policy(engine: Engine, clock: Clock, slapd: Slapd) -> None:
    enroll(engine, clock.now)
    engine.add_passcode("alice", "Phone")
    engine.assign_policy("alice", "default")
    for i in range(10):
        mail_login(engine, "alice", f"wrong {i}")
    engine.reset("alice", actor="root")
    entry = slapd.entry(user_dn("alice"))
    left = {name for name in entry if name.startswith("twostep")}
    assert left == {Attr.POLICY.lower()}
    assert mail_login(engine, "alice", USERS["alice"]).outcome is Outcome.ACCEPT


# -- audit -----------------------------------------------------------------------------


def test_audit_events_carry_who_what_how_and_never_a_secret(
    engine: Engine, clock: Clock, audit: MemorySink
) -> None:
    key, codes = enroll(engine, clock.now)
    passcode = engine.add_passcode("alice", "Thunderbird").passcode
    clock.advance(30)
    code = totp(key, clock.now)
    device = interactive_login(engine, "alice", code, trust=True, remote="203.0.113.5")
    mail_login(engine, "alice", passcode, remote="203.0.113.6")
    interactive_login(engine, "alice", codes[0], remote="203.0.113.7")
    mail_login(engine, "alice", "wrong", remote="203.0.113.8")
    logins = [e for e in audit.events if e.action == "login"]
    assert [(e.outcome, e.method, e.remote, e.service) for e in logins] == [
        ("accept", "totp", "203.0.113.5", "sshd"),
        ("accept", "passcode", "203.0.113.6", "imap"),
        ("accept", "backup-code", "203.0.113.7", "sshd"),
        ("deny", None, "203.0.113.8", "imap"),
    ]
    assert logins[0].device == device.device and logins[1].label == "Thunderbird"
    text = "\n".join(e.to_json() for e in audit.events)
    for secret in (
        USERS["alice"],
        passcode,
        passcode.replace("-", ""),
        code,
        *codes,
        str(device.device_token),
    ):
        assert secret not in text


# -- the directory's part --------------------------------------------------------------


def test_ambiguous_user_filter_is_a_temporary_failure(slapd: Slapd, secrets_dir: Any) -> None:
    config = parse_config(
        config_data(slapd, secrets_dir, users={"filter": "(|(uid={username})(sn=Bob))"})
    )
    with engine_for(config) as engine:
        result = mail_login(engine, "alice", USERS["alice"])
    assert result.reason is Reason.DIRECTORY_UNAVAILABLE


@pytest.mark.parametrize(
    ("remote", "recorded"),
    [
        ("client.example.org", "client.example.org"),  # sshd with UseDNS
        ("Client.Example.ORG", "client.example.org"),
        ("192.0.2.9", "192.0.2.9"),
        ("2001:db8::9", "2001:db8::9"),
        ("bad host name", ""),
        ("x\nforged", ""),
        ("-dash", ""),
    ],
)
def test_a_host_name_as_the_remote_is_its_own_client(
    engine: Engine, audit: Any, slapd: Slapd, remote: str, recorded: str
) -> None:
    """Host names (PAM_RHOST under UseDNS) are kept, lower-cased: clients known only by
    name no longer share one address "" for lock-out and the audit."""
    from pam_twostep.core.records import Failure

    interactive_login(engine, "bob", password="wrong", remote=remote)
    assert audit.events[-1].remote == recorded
    failures = [Failure.load(v.decode()) for v in slapd.entry(user_dn("bob"))["twostepfailure"]]
    assert [f.address for f in failures] == [recorded]


@pytest.mark.parametrize("look_alike", ["\uff41\uff4c\uff49\uff43\uff45", "ALICE", "Alice"])
def test_the_entrys_own_name_is_answered_never_a_look_alike(
    engine: Engine, audit: Any, look_alike: str
) -> None:
    """slapd matches fullwidth letters and other case forms to the stored uid; replies,
    userdb and audit carry the entry's name."""
    decision = interactive_login(engine, look_alike, password=USERS["alice"])
    if decision.outcome is Outcome.DENY:  # a directory that does not match it: fine too
        return
    assert decision.outcome is Outcome.ACCEPT and decision.username == "alice"
    assert audit.events[-1].user == "alice"


# -- throttles before the lock (M6) ------------------------------------------------------


def test_a_thousand_guesses_from_one_address_never_lock_the_owner_out(
    engine: Engine, clock: Clock, audit: MemorySink
) -> None:
    """1,000 wrong passcodes over IMAP from one address, a second apart, while the owner's
    passcode is used from another address every tenth second: the owner gets in every
    time, the guesser is checked only as often as the doubling wait lets him, and the
    audit says which throttle refused him."""
    enroll(engine, clock.now)
    passcode = engine.add_passcode("alice", "Phone").passcode
    guesser, owner = "192.0.2.66", "198.51.100.7"
    binds = 0
    check_password = engine.directory.check_password

    def counted_bind(dn: str, password: str) -> bool:
        nonlocal binds
        binds += 1
        return check_password(dn, password)

    engine.directory.check_password = counted_bind  # type: ignore[method-assign]
    start = len(audit.events)
    owner_accepted = 0
    for i in range(1000):
        assert mail_login(engine, "alice", f"{i:024d}", remote=guesser).outcome is Outcome.DENY
        if i % 10 == 9:
            owner_accepted += mail_login(engine, "alice", passcode, remote=owner).outcome is (
                Outcome.ACCEPT
            )
        clock.advance(1)
    guesses = [e for e in audit.events[start:] if e.remote == guesser]
    checked = [e for e in guesses if e.reason == Reason.WRONG_PASSCODE.value]
    refused = [e for e in guesses if e.reason == Reason.THROTTLED.value]
    assert owner_accepted == 100
    assert len(checked) + len(refused) == 1000
    # 5 free, then after waits of 30 s, 1, 2, 4 and 8 min: 10 checked in 1,000 s
    assert len(checked) == 10 and len(refused) == 990
    assert all(e.retry_at is not None and e.retry_at > e.time for e in refused)
    assert binds == 0  # mail with two-step on binds for nobody
    status = engine.status("alice")
    assert not status.locked and status.recent_failures == len(checked)
    assert not any(e.reason == Reason.LOCKED.value for e in audit.events)


def test_a_throttled_password_guess_makes_no_bind(engine: Engine, clock: Clock) -> None:
    binds = 0
    check_password = engine.directory.check_password

    def counted_bind(dn: str, password: str) -> bool:
        nonlocal binds
        binds += 1
        return check_password(dn, password)

    engine.directory.check_password = counted_bind  # type: ignore[method-assign]
    for i in range(200):
        mail_login(engine, "bob", f"guess {i}", remote="192.0.2.66")
        interactive_login(engine, "bob", password=f"other {i}", remote="192.0.2.66")
    assert binds == 5
    refused = mail_login(engine, "bob", USERS["bob"], remote="192.0.2.66")
    assert (refused.reason, refused.retry_at) == (Reason.THROTTLED, int(clock.now) + 30)
    assert binds == 5  # not even the right password is tried
    assert mail_login(engine, "bob", USERS["bob"], remote="198.51.100.7").outcome is (
        Outcome.ACCEPT
    )
    clock.advance(30)
    assert mail_login(engine, "bob", USERS["bob"], remote="192.0.2.66").outcome is (Outcome.ACCEPT)


def test_one_address_spraying_many_accounts_is_refused_for_all(
    slapd: Slapd, secrets_dir: Any, clock: Clock, audit: MemorySink
) -> None:
    config = parse_config(
        config_data(slapd, secrets_dir, policy={"defaults": {"throttle_source_failures": 6}})
    )
    with engine_for(config, clock, audit) as engine:
        for round_ in range(2):
            for user in ("alice", "bob", "carol"):
                decision = mail_login(engine, user, f"spray {round_}", remote="192.0.2.66")
                assert decision.reason is Reason.WRONG_PASSWORD
        refused = mail_login(engine, "dave", USERS["dave"], remote="192.0.2.66")
        assert (refused.reason, refused.retry_at) == (
            Reason.SOURCE_THROTTLED,
            int(clock.now) + 3600,
        )
        assert audit.events[-1].reason == "source-throttled"
        assert engine.status("dave").recent_failures == 0  # refused unchecked, not counted
        assert mail_login(engine, "dave", USERS["dave"], remote="198.51.100.7").outcome is (
            Outcome.ACCEPT
        )


def test_management_password_checks_are_throttled_like_sign_ins(
    engine: Engine, slapd: Slapd
) -> None:
    """enroll-begin checks a password too: the per-address throttle holds there, or the
    account-wide lock (100) would be the only limit on guessing through it."""
    from pam_twostep.core.errors import RefusalReason, Refused

    for n in range(5):
        interactive_login(engine, "bob", password=f"wrong {n}", remote="192.0.2.99")
    binds = engine.directory.counts().get("user-bind", 0)
    with pytest.raises(Refused) as refused:
        engine.enroll_begin("bob", USERS["bob"], remote="192.0.2.99")
    assert refused.value.reason is RefusalReason.THROTTLED
    assert engine.directory.counts().get("user-bind", 0) == binds  # nothing checked
    assert engine.enroll_begin("bob", USERS["bob"], remote="198.51.100.5").secret


@pytest.mark.parametrize(
    ("remote", "source_failures"),
    [("127.0.0.1", 6), ("::1", 6), ("192.0.2.67", 0)],
    ids=["loopback", "loopback-v6", "turned-off"],
)
def test_the_source_throttle_spares_loopback_and_can_be_turned_off(
    slapd: Slapd,
    secrets_dir: Any,
    clock: Clock,
    audit: MemorySink,
    remote: str,
    source_failures: int,
) -> None:
    """A webmail on this host (every user at 127.0.0.1) or a site behind one NAT address
    (throttle_source_failures: 0) must not have one user's mistakes refuse everyone."""
    config = parse_config(
        config_data(
            slapd, secrets_dir, policy={"defaults": {"throttle_source_failures": source_failures}}
        )
    )
    with engine_for(config, clock, audit) as engine:
        for round_ in range(2):
            for user in ("alice", "bob", "carol"):
                mail_login(engine, user, f"mistake {round_}", remote=remote)
        assert mail_login(engine, "dave", USERS["dave"], remote=remote).outcome is Outcome.ACCEPT


@pytest.mark.parametrize(
    "password",
    [
        "\b\n\r\x7fINCORRECT",  # what sshd sends for every user it does not know
        "tab\tinside",
        "bell\x07",
        "line\u2028separator",
        "\u200b",  # mapped to nothing by SASLprep: empty, which is no password
    ],
)
def test_a_password_ldap3_cannot_send_is_a_wrong_password(
    engine: Engine, audit: MemorySink, password: str
) -> None:
    """SASLprep (which ldap3 applies to a simple bind) refuses control characters before
    anything is sent: a wrong password, counted, never a directory outage."""
    decision = mail_login(engine, "carol", password, remote="192.0.2.81")
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.WRONG_PASSWORD)
    assert decision.counted
    assert audit.events[-1].reason == "wrong-password"
    assert mail_login(engine, "carol", USERS["carol"], remote="192.0.2.81").outcome is (
        Outcome.ACCEPT
    )
