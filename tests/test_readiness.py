"""core.readiness: audit events folded per user, and combined with twostepd's accounts
into the readiness report's rows and totals (issue 18)."""

from __future__ import annotations

import json

import pytest

from pam_twostep.core.auditlines import LoggedEvent
from pam_twostep.core.readiness import (
    CSV_HEADER,
    MAX_ADDRESSES,
    MAX_SERVICES,
    Account,
    PasscodeUse,
    UsageFold,
    account_dict,
    account_from_reply,
    build_report,
    csv_row,
    row_dict,
    totals_dict,
)

NOW = 1_800_000_000
DAY = 86400
MAIL = frozenset({"imap", "pop3", "smtp"})
GOOD = b'{"action":"login","method":"password","outcome":"accept","remote":"192.0.2.7",'
GOOD += b'"service":"imap","time":1799990000,"user":"bob"}'
EVENT = LoggedEvent(1799990000, "login", "bob", "accept", "imap", "192.0.2.7", "password")


# -- folding ----------------------------------------------------------------------------


def login(
    user: str, when: int, service: str = "imap", remote: str = "192.0.2.7", **kw: str
) -> LoggedEvent:
    return LoggedEvent(
        when,
        "login",
        user,
        kw.get("outcome", "accept"),
        service,
        remote,
        kw.get("method", "password"),
    )


def test_only_logins_accepted_by_password_in_the_period_count() -> None:
    fold = UsageFold(NOW - 30 * DAY)
    fold.add_all(
        [
            login("bob", NOW - DAY),
            login("bob", NOW - 2 * DAY, "sshd", "198.51.100.1"),
            login("bob", NOW - 40 * DAY),  # before the period
            login("bob", NOW - DAY, method="passcode"),
            login("bob", NOW - DAY, outcome="deny"),
            login("carol", NOW - DAY, method="totp"),
            LoggedEvent(NOW - DAY, "enroll-confirm", "dave", "ok"),
            LoggedEvent(NOW - 50 * DAY, "enroll-confirm", "erin", "ok"),
            LoggedEvent(NOW - 5 * DAY, "enroll-confirm", "erin", "ok"),
            LoggedEvent(NOW - DAY, "enroll-confirm", "frank", "refused"),
        ]
    )
    assert fold.events == 10
    assert set(fold.password) == {"bob"}
    use = fold.password["bob"]
    assert (use.logins, use.first, use.last) == (2, NOW - 2 * DAY, NOW - DAY)
    assert use.services == {"imap": 1, "sshd": 1}
    assert use.addresses == {"192.0.2.7": 1, "198.51.100.1": 1}
    assert fold.enrolled == {"dave": NOW - DAY, "erin": NOW - 5 * DAY}


def test_a_user_never_holds_more_than_the_caps() -> None:
    fold = UsageFold(0)
    for n in range(MAX_ADDRESSES + 30):
        fold.add(login("bob", NOW, f"svc{n % (MAX_SERVICES + 5)}", f"10.0.{n // 256}.{n % 256}"))
    use = fold.password["bob"]
    assert len(use.addresses) == MAX_ADDRESSES
    assert use.addresses_left_out == 30
    assert len(use.services) == MAX_SERVICES
    assert use.services_left_out > 0
    assert use.logins == MAX_ADDRESSES + 30


def test_only_the_accounts_asked_about_are_kept_matched_as_ldap_matches_names() -> None:
    fold = UsageFold(0, {"Bob", "carol"})
    fold.add_all(
        [login("bob", NOW), login("BOB", NOW), login("mallory", NOW), login("x" * 500, NOW)]
    )
    assert set(fold.password) == {"Bob"}
    assert fold.password["Bob"].logins == 2


# -- accounts on the wire ---------------------------------------------------------------

ALICE = Account(
    "alice",
    None,
    enabled=True,
    passcodes=(
        PasscodeUse("Thunderbird", NOW - 9 * DAY, NOW - DAY, "192.0.2.9"),
        PasscodeUse("Phone", NOW - 8 * DAY, None, None),
    ),
)
BOB = Account("bob", "staff", required=True, required_from=NOW + 9 * DAY, mail_password_until=7)
CAROL = Account("carol", "staff")
DAVE = Account("dave", None, unreadable=True, why="twostepPasscode: not JSON")


@pytest.mark.parametrize("account", [ALICE, BOB, CAROL, DAVE], ids=lambda a: a.user)
def test_an_account_crosses_the_wire_unchanged(account: Account) -> None:
    assert account_from_reply(json.loads(json.dumps(account_dict(account)))) == account


@pytest.mark.parametrize(
    "change",
    [
        {"user": 3},
        {"enabled": "yes"},
        {"passcodes": None},
        {"passcodes": ["x"]},
        {"passcodes": [{"label": "a", "created": "1", "last_used": None, "last_address": None}]},
        {"required_from": True},
        {"policy": 5},
    ],
)
def test_a_reply_that_does_not_fit_is_a_value_error(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        account_from_reply({**account_dict(ALICE), **change})
    with pytest.raises(ValueError):
        account_from_reply([account_dict(ALICE)])


# -- the report -------------------------------------------------------------------------


def _report(*accounts: Account, events: list[LoggedEvent]):  # type: ignore[no-untyped-def]
    fold = UsageFold(NOW - 30 * DAY, {a.user for a in accounts})
    fold.add_all(events)
    return build_report(accounts, fold, MAIL, now=NOW)


def test_rows_and_totals_per_policy() -> None:
    erin = Account("erin", None)
    report = _report(
        CAROL,
        BOB,
        ALICE,
        DAVE,
        erin,
        events=[
            login("bob", NOW - DAY, "imap"),
            login("bob", NOW - DAY, "smtp", "192.0.2.8"),
            login("carol", NOW - DAY, "sshd"),
            login("alice", NOW - DAY, "imap"),  # two-step on: the mail grace period
            LoggedEvent(NOW - 3 * DAY, "enroll-confirm", "alice", "ok"),
        ],
    )
    assert [r.account.user for r in report.rows] == ["alice", "bob", "carol", "dave", "erin"]
    rows = {r.account.user: r for r in report.rows}
    assert rows["alice"].enrolled == NOW - 3 * DAY
    assert not rows["alice"].cut_off and not rows["alice"].mail_breaks
    assert rows["bob"].cut_off and rows["bob"].mail_breaks
    assert not rows["bob"].interactive_password_use
    assert rows["carol"].cut_off and not rows["carol"].mail_breaks
    assert rows["carol"].interactive_password_use
    assert not rows["dave"].cut_off
    assert rows["erin"].cut_off and rows["erin"].password is None
    assert [totals_dict(t) for t in report.totals] == [
        {
            "policy": None,
            "accounts": 3,
            "on": 1,
            "off": 1,
            "cut_off_if_required": 1,
            "cut_off_active": 0,
            "mail_breaks_on_enroll": 0,
            "already_required": 0,
            "unreadable": 1,
        },
        {
            "policy": "staff",
            "accounts": 2,
            "on": 0,
            "off": 2,
            "cut_off_if_required": 2,
            "cut_off_active": 1,
            "mail_breaks_on_enroll": 1,
            "already_required": 1,
            "unreadable": 0,
        },
    ]
    overall = totals_dict(report.overall)
    assert (overall["accounts"], overall["cut_off_if_required"], overall["on"]) == (5, 3, 1)
    bob = row_dict(rows["bob"])
    assert bob["password"] == {
        "logins": 2,
        "first": NOW - DAY,
        "last": NOW - DAY,
        "services": {"imap": 1, "smtp": 1},
        "addresses": {"192.0.2.7": 1, "192.0.2.8": 1},
        "services_left_out": 0,
        "addresses_left_out": 0,
    }
    assert bob["policy_values"] == {
        "required": True,
        "mail_password": True,
        "required_from": NOW + 9 * DAY,
        "mail_password_until": 7,
    }
    assert row_dict(rows["dave"]) == {
        "user": "dave",
        "policy": None,
        "unreadable": True,
        "why": "twostepPasscode: not JSON",
    }


def test_an_enrollment_before_a_reset_is_not_a_date() -> None:
    report = _report(
        Account("frank", None), events=[LoggedEvent(NOW - DAY, "enroll-confirm", "frank", "ok")]
    )
    assert report.rows[0].enrolled is None


def test_csv_rows_fit_the_header_and_never_start_a_formula() -> None:
    hostile = Account("=HYPERLINK(1)", "staff", passcodes=(PasscodeUse("@x", NOW, NOW, "+1"),))
    report = _report(
        hostile, ALICE, DAVE, events=[login("=HYPERLINK(1)", NOW - DAY, "-cmd", "@evil")]
    )
    for row in report.rows:
        cells = csv_row(row)
        assert len(cells) == len(CSV_HEADER)
        assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells
    rows = {r.account.user: dict(zip(CSV_HEADER, csv_row(r), strict=True)) for r in report.rows}
    assert rows["alice"]["enabled"] == "true"
    assert rows["alice"]["passcodes"] == "2"
    assert rows["alice"]["passcode_last_used"] == "2027-01-14T08:00:00Z"
    assert rows["dave"]["unreadable"] == "true"
    assert rows["=HYPERLINK(1)"]["user"] == "'=HYPERLINK(1)"
    assert rows["=HYPERLINK(1)"]["password_services"] == "'-cmd"
    assert rows["=HYPERLINK(1)"]["password_addresses"] == "'@evil"
