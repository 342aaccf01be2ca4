"""core.readiness: audit events folded per user, and combined with twostepd's accounts
into the readiness report's rows and totals (issue 18): every name of an account counts
for it, the CSV never starts a formula even split, and no time ends the report."""

from __future__ import annotations

import json

import pytest

from pam_twostep.core.auditlines import LoggedEvent
from pam_twostep.core.readiness import (
    CSV_HEADER,
    MAX_ADDRESSES,
    MAX_NAMES,
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
    utc_text,
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
    fold = UsageFold(0, [Account("Bob", None), Account("carol", None)])
    fold.add_all(
        [login("bob", NOW), login("BOB", NOW), login("mallory", NOW), login("x" * 500, NOW)]
    )
    assert set(fold.password) == {"Bob"}
    assert fold.password["Bob"].logins == 2


ALIASED = [
    Account("alice", None, ("alice", "alice.smith", "asmith")),
    Account("bob", None, ("bob", "Robert")),
    Account("carol", None, ("carol", "shared")),
    Account("dave", None, ("dave", "shared", "carol")),  # "carol" is carol's own name
    Account("erin", None),  # from a twostepd that sends no names
]


@pytest.mark.parametrize(
    ("typed", "counted_for"),
    [
        ("alice", "alice"),
        ("alice.smith", "alice"),
        ("ALICE.SMITH", "alice"),
        ("asmith", "alice"),
        ("robert", "bob"),
        ("Robert", "bob"),
        ("carol", "carol"),  # a name that is one account's and another's alias: its own
        ("shared", "carol"),  # an alias of two: the first in name order, not both
        ("dave", "dave"),
        ("erin", "erin"),
        ("alice.smith ", None),
        ("alice smith", None),
        ("alice.smit", None),
        ("mallory", None),
        ("", None),
    ],
)
def test_a_login_under_any_name_of_an_account_counts_for_it(
    typed: str, counted_for: str | None
) -> None:
    fold = UsageFold(0, ALIASED)
    fold.add(login(typed, NOW))
    fold.add(LoggedEvent(NOW - DAY, "enroll-confirm", typed, "ok"))
    assert list(fold.password) == ([counted_for] if counted_for else [])
    assert list(fold.enrolled) == ([counted_for] if counted_for else [])


def test_logins_under_aliases_add_up_in_the_report() -> None:
    fold = UsageFold(NOW - 30 * DAY, ALIASED)
    fold.add_all([login("alice", NOW - DAY), login("Alice.Smith", NOW - DAY, "sshd")])
    report = build_report(ALIASED, fold, MAIL, now=NOW)
    alice = row_dict(report.rows[0])
    assert alice["names"] == ["alice", "alice.smith", "asmith"]
    assert alice["password"]["logins"] == 2  # type: ignore[index]
    assert alice["mail_password_use"] and alice["interactive_password_use"]


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
BOB = Account(
    "bob",
    "staff",
    ("bob",),
    required=True,
    required_from=NOW + 9 * DAY,
    mail_password_until=7,
)
CAROL = Account("carol", "staff", ("carol", "Carol.King"))
DAVE = Account("dave", None, ("dave",), unreadable=True, why="twostepPasscode: not JSON")


@pytest.mark.parametrize("account", [BOB, CAROL, DAVE], ids=lambda a: a.user)
def test_an_account_crosses_the_wire_unchanged(account: Account) -> None:
    assert account_from_reply(json.loads(json.dumps(account_dict(account)))) == account


def test_an_account_without_names_crosses_as_its_user_alone() -> None:
    """A reply from a twostepd before ``names``, or an Account made without them."""
    assert account_dict(ALICE)["names"] == ["alice"]
    row = account_dict(ALICE)
    del row["names"]
    assert account_from_reply(row).names == ("alice",)


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
        {"names": "alice"},
        {"names": []},
        {"names": [1]},
        {"names": ["alice", None]},
        {"names": ["mallory", "alice"]},  # the user first, always
        {"names": ["alice"] * (MAX_NAMES + 1)},
        {"names": {"alice": 1}},
    ],
    ids=str,
)
def test_a_reply_that_does_not_fit_is_a_value_error(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        account_from_reply({**account_dict(ALICE), **change})
    with pytest.raises(ValueError):
        account_from_reply([account_dict(ALICE)])


# -- the report -------------------------------------------------------------------------


def _report(*accounts: Account, events: list[LoggedEvent]):  # type: ignore[no-untyped-def]
    fold = UsageFold(NOW - 30 * DAY, accounts)
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
    assert rows["alice"].mail_breaks_at_grace_end  # on, and mail still on the password
    assert not rows["bob"].mail_breaks_at_grace_end and not rows["dave"].mail_breaks_at_grace_end
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
            "mail_breaks_at_grace_end": 1,
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
            "mail_breaks_at_grace_end": 0,
            "already_required": 1,
            "unreadable": 0,
        },
    ]
    overall = totals_dict(report.overall)
    assert (overall["accounts"], overall["cut_off_if_required"], overall["on"]) == (5, 3, 1)
    assert overall["mail_breaks_at_grace_end"] == 1
    assert row_dict(rows["alice"])["mail_breaks_at_grace_end"] is True
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
        "names": ["dave"],
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
    assert rows["alice"]["mail_breaks_at_grace_end"] == "false"  # no event of hers here


@pytest.mark.parametrize(
    ("services", "cell"),
    [
        (["imap", "pop3"], "imap pop3"),
        (["=1+1", "imap"], "'=1+1 imap"),
        (["imap", "=1+1"], "'=1+1 imap"),
        (["a", "+b", "-c", "@d"], "'+b '-c '@d a"),
        (["\tx", "\rx", "x\r=1"], "?x ?x x?=1"),
        (["x;=cmd|' /C calc'!A0"], "x?=cmd|'?/C?calc'!A0"),  # a ";" locale splits no more
        (["a =b"], "a?=b"),  # nor does splitting on the space
        (["\x1b[31m"], "?[31m"),
        ([""], "(none)"),
    ],
    ids=repr,
)
def test_each_element_of_a_list_cell_is_neutral_on_its_own(services: list[str], cell: str) -> None:
    fold = UsageFold(0)
    for service in services:
        fold.add(login("bob", NOW, service))
    row = build_report([Account("bob", None)], fold, MAIL, now=NOW).rows[0]
    cells = dict(zip(CSV_HEADER, csv_row(row), strict=True))
    assert cells["password_services"] == cell
    for element in cells["password_services"].replace(";", " ").split():
        assert not element.startswith(("=", "+", "-", "@", "\t", "\r")), element


def test_services_beyond_the_cap_are_counted_in_words() -> None:
    fold = UsageFold(0)
    for n in range(MAX_SERVICES + 3):
        fold.add(login("bob", NOW, f"s{n:02d}"))
    row = build_report([Account("bob", None)], fold, MAIL, now=NOW).rows[0]
    cell = dict(zip(CSV_HEADER, csv_row(row), strict=True))["password_services"]
    assert cell.endswith(" (3 more)") and len(cell.split()) == MAX_SERVICES + 2


# -- times no date can hold ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (1, "1970-01-01T00:00:01Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
        (253402300800, "(epoch 253402300800)"),
        (1 << 40, f"(epoch {1 << 40})"),
        (-(1 << 40), f"(epoch {-(1 << 40)})"),
        (1 << 63, f"(epoch {1 << 63})"),
        (10**30, f"(epoch {10**30})"),
        (-(10**30), f"(epoch {-(10**30)})"),
    ],
    ids=str,
)
def test_any_time_formats_and_none_raises(epoch: int, text: str) -> None:
    assert utc_text(epoch) == text


def test_a_hostile_time_from_the_directory_does_not_end_the_report() -> None:
    far = 10**20
    account = Account(
        "bob",
        None,
        enabled=True,
        enrolled=far,
        passcodes=(PasscodeUse("x", -far, far, "192.0.2.1"),),
        required_from=1 << 62,
        mail_password_until=-(1 << 62),
    )
    fold = UsageFold(0)
    fold.add(login("bob", far))  # the reader skips it; a fold given it directly prints it
    row = build_report([account], fold, MAIL, now=NOW).rows[0]
    cells = dict(zip(CSV_HEADER, csv_row(row), strict=True))
    assert cells["enrolled"] == f"(epoch {far})"
    assert cells["password_last"] == f"(epoch {far})"
    assert cells["passcode_last_used"] == f"(epoch {far})"
    assert cells["required_from"] == f"(epoch {1 << 62})"
    assert cells["mail_password_until"] == f"(epoch {-(1 << 62)})"
    json.dumps(row_dict(row))
