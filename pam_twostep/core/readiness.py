"""Readiness: who would be cut off, or whose mail clients would break, if two-step were
required now, read from the accounts and from the audit events twostepd already writes.

Logging in leaves no mark in the directory when the plain password is accepted (a note
per login would be a write per login), so which services and addresses still use the
password comes from the audit log: a ``login`` event with outcome ``accept`` and method
``password``. This module is the pure part of ``twostep report readiness``:

- (what a line of an audit file or of syslog says is ``core.auditlines``)
- ``UsageFold``: the events folded into per-user usage as they are read, so a log of
  several GB is never held: per user a count, a last time, and at most ``MAX_SERVICES``
  services and ``MAX_ADDRESSES`` addresses, and only for the accounts asked about. An
  event names the user as typed at the login, which may be any value of the entry's
  user-name attribute (``uid: alice`` and ``uid: alice.smith``), so every name an
  account has (``Account.names``) counts for it.
- ``account_from_reply``: a row of twostepd's ``readiness`` reply, checked, as an
  ``Account``.
- ``build_report``: accounts and usage combined into rows and totals per policy, and the
  plain dicts (``row_dict``, ``totals_dict``) and CSV cells (``csv_row``) printed.
- ``utc_text``: a time as text that never raises, however far from now it lies (a time
  from the directory or a log may be anything).

``now`` is always passed in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .auditlines import LoggedEvent

__all__ = [
    "CSV_HEADER",
    "MAX_ADDRESSES",
    "MAX_NAMES",
    "MAX_SERVICES",
    "Account",
    "PasscodeUse",
    "PasswordUse",
    "PolicyTotals",
    "ReadinessPage",
    "Report",
    "ReportRow",
    "UsageFold",
    "account_dict",
    "account_from_reply",
    "build_report",
    "csv_row",
    "row_dict",
    "totals_dict",
    "utc_text",
]

MAX_SERVICES = 32
"""Distinct services kept per user; more are counted, not named."""
MAX_ADDRESSES = 50
"""Distinct client addresses kept per user; more are counted, not named."""


# -- folding events ----------------------------------------------------------------------


@dataclass
class PasswordUse:
    """Logins one user made with the plain password in the period."""

    logins: int = 0
    first: int = 0
    last: int = 0
    services: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)
    services_left_out: int = 0
    """Logins at services beyond the first ``MAX_SERVICES`` (not named)."""
    addresses_left_out: int = 0
    """Logins from addresses beyond the first ``MAX_ADDRESSES`` (not named)."""

    def add(self, event: LoggedEvent) -> None:
        self.logins += 1
        self.first = event.time if not self.first else min(self.first, event.time)
        self.last = max(self.last, event.time)
        self.services_left_out += _count(self.services, event.service, MAX_SERVICES)
        self.addresses_left_out += _count(self.addresses, event.remote, MAX_ADDRESSES)


def _count(counts: dict[str, int], key: str, limit: int) -> int:
    """Count ``key`` in ``counts`` if it is there or there is room: 0, else 1 (left out)."""
    if key in counts:
        counts[key] += 1
    elif len(counts) < limit:
        counts[key] = 1
    else:
        return 1
    return 0


_ENROLLED = frozenset({("enroll-confirm", "ok"), ("import", "ok")})
"""The events after which an account has two-step on: the time of the last is when it
was enrolled (the directory keeps no such date)."""


class UsageFold:
    """Events folded per account as they are read, keyed by ``Account.user``: only the
    ``accounts`` given, each under every one of its names (matched case-insensitively,
    as LDAP matches user names), so a log full of invented names cannot grow it; None
    folds every user under the name the event gives (tests, a report with no directory).

    A name two accounts share is counted for the one whose first name it is, else for
    the first in user-name order: an event cannot say which entry it was, and counting
    it twice would report two users for one login."""

    def __init__(self, since: int, accounts: Iterable[Account] | None = None) -> None:
        self.since = since
        self.events = 0
        self.password: dict[str, PasswordUse] = {}
        self.enrolled: dict[str, int] = {}
        self._known: dict[str, str] | None = None
        if accounts is not None:
            ordered = sorted(accounts, key=lambda a: (a.user.casefold(), a.user))
            self._known = {}
            for account in ordered:
                self._known.setdefault(account.user.casefold(), account.user)
            for account in ordered:
                for name in account.names:
                    self._known.setdefault(name.casefold(), account.user)

    def _user(self, name: str) -> str | None:
        if self._known is None:
            return name
        return self._known.get(name.casefold())

    def add(self, event: LoggedEvent) -> None:
        self.events += 1
        if event.action == "login":
            if event.outcome != "accept" or event.method != "password":
                return
            if event.time < self.since:
                return
            user = self._user(event.user)
            if user is not None:
                self.password.setdefault(user, PasswordUse()).add(event)
        elif (event.action, event.outcome) in _ENROLLED:
            user = self._user(event.user)
            if user is not None:
                self.enrolled[user] = max(self.enrolled.get(user, 0), event.time)

    def add_all(self, events: Iterable[LoggedEvent]) -> None:
        for event in events:
            self.add(event)


# -- accounts, as twostepd lists them ----------------------------------------------------


@dataclass(frozen=True)
class PasscodeUse:
    label: str
    created: int
    last_used: int | None
    last_address: str | None


@dataclass(frozen=True)
class Account:
    """One row of twostepd's ``readiness`` reply."""

    user: str
    policy: str | None
    """The class of service the account names; None: the configured default."""
    names: tuple[str, ...] = ()
    """Every value of the entry's user-name attribute, ``user`` first: a login may name
    any of them. Empty is ``user`` alone (a reply from a twostepd that sent none)."""
    unreadable: bool = False
    why: str = ""
    enabled: bool = False
    enrolled: int | None = None
    passcodes: tuple[PasscodeUse, ...] = ()
    required: bool = False
    mail_password: bool = True
    required_from: int = 0
    mail_password_until: int = 0


@dataclass(frozen=True)
class ReadinessPage:
    """One page of twostepd's listing: accounts in user-name order, and the name the
    next page starts after (None: this was the last)."""

    accounts: tuple[Account, ...]
    next: str | None


def account_dict(account: Account) -> dict[str, object]:
    """An account as the ``readiness`` reply carries it (``account_from_reply`` reads it)."""
    names = list(account.names) or [account.user]
    if account.unreadable:
        return {
            "user": account.user,
            "names": names,
            "policy": account.policy,
            "unreadable": True,
            "why": account.why,
        }
    return {
        "user": account.user,
        "names": names,
        "policy": account.policy,
        "enabled": account.enabled,
        "enrolled": account.enrolled,
        "passcodes": [
            {
                "label": p.label,
                "created": p.created,
                "last_used": p.last_used,
                "last_address": p.last_address,
            }
            for p in account.passcodes
        ],
        "required": account.required,
        "mail_password": account.mail_password,
        "required_from": account.required_from,
        "mail_password_until": account.mail_password_until,
    }


def _int(row: Mapping[str, object], name: str) -> int:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: not a whole number")
    return value


def _optional_int(row: Mapping[str, object], name: str) -> int | None:
    return None if row.get(name) is None else _int(row, name)


def _str(row: Mapping[str, object], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name}: not a string")
    return value


def _optional_str(row: Mapping[str, object], name: str) -> str | None:
    return None if row.get(name) is None else _str(row, name)


def _bool(row: Mapping[str, object], name: str) -> bool:
    value = row.get(name)
    if not isinstance(value, bool):
        raise ValueError(f"{name}: not true or false")
    return value


MAX_NAMES = 64
"""Names one account may have in a reply (twostepd sends at most these); more is
nonsense, not an alias list."""


def _names(row: Mapping[str, object], user: str) -> tuple[str, ...]:
    """The ``names`` of a row, ``user`` first; absent (an older twostepd): ``user``."""
    names = row.get("names")
    if names is None:
        return (user,)
    if (
        not isinstance(names, list)
        or not 0 < len(names) <= MAX_NAMES
        or not all(isinstance(n, str) for n in names)
        or names[0] != user
    ):
        raise ValueError("names: not a list of names starting with the user")
    return tuple(names)


def account_from_reply(row: object) -> Account:
    """A row of the reply, checked; ``ValueError`` names what does not fit."""
    if not isinstance(row, dict):
        raise ValueError("an account is not an object")
    user = _str(row, "user")
    names = _names(row, user)
    policy = _optional_str(row, "policy")
    if row.get("unreadable") is True:
        why = row.get("why")
        return Account(
            user, policy, names, unreadable=True, why=why if isinstance(why, str) else ""
        )
    passcodes = row.get("passcodes")
    if not isinstance(passcodes, list):
        raise ValueError("passcodes: not a list")
    uses = []
    for item in passcodes:
        if not isinstance(item, dict):
            raise ValueError("a passcode is not an object")
        uses.append(
            PasscodeUse(
                _str(item, "label"),
                _int(item, "created"),
                _optional_int(item, "last_used"),
                _optional_str(item, "last_address"),
            )
        )
    return Account(
        user,
        policy,
        names,
        enabled=_bool(row, "enabled"),
        enrolled=_optional_int(row, "enrolled"),
        passcodes=tuple(uses),
        required=_bool(row, "required"),
        mail_password=_bool(row, "mail_password"),
        required_from=_int(row, "required_from"),
        mail_password_until=_int(row, "mail_password_until"),
    )


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    account: Account
    enrolled: int | None
    """The directory's date if it has one, else the last enrollment the log shows."""
    password: PasswordUse | None
    mail_password_use: bool
    """The plain password was accepted at a mail service in the period."""
    interactive_password_use: bool
    """... at any other service (sshd, login, the portal, webmail sign-in)."""

    @property
    def cut_off(self) -> bool:
        """Two-step off: with ``required`` set now, its interactive logins are refused."""
        return not self.account.unreadable and not self.account.enabled

    @property
    def mail_breaks(self) -> bool:
        """Two-step off, and mail clients that send the password: they stop working when
        the user enrolls (at once, or when ``mail_password_until`` passes)."""
        return self.cut_off and self.mail_password_use

    @property
    def mail_breaks_at_grace_end(self) -> bool:
        """Two-step on, and the plain password still accepted at mail services (mail
        clients not moved to passcodes yet): they break when ``mail_password_until``
        passes."""
        return not self.account.unreadable and self.account.enabled and self.mail_password_use


@dataclass
class PolicyTotals:
    policy: str | None
    accounts: int = 0
    on: int = 0
    off: int = 0
    cut_off: int = 0
    """Accounts whose interactive logins would be refused if ``required`` were set now."""
    cut_off_active: int = 0
    """... of them, those that logged in interactively with the password in the period."""
    mail_breaks: int = 0
    """Two-step off and the plain password used at mail services: their mail clients
    break the moment they enroll."""
    mail_breaks_at_grace_end: int = 0
    """Two-step on and the plain password used at mail services: their mail clients
    break when ``mail_password_until`` passes."""
    unreadable: int = 0
    required: int = 0
    """Accounts under which ``required`` is already set."""

    def add(self, row: ReportRow) -> None:
        self.accounts += 1
        if row.account.unreadable:
            self.unreadable += 1
            return
        self.on += row.account.enabled
        self.off += not row.account.enabled
        self.cut_off += row.cut_off
        self.cut_off_active += row.cut_off and row.interactive_password_use
        self.mail_breaks += row.mail_breaks
        self.mail_breaks_at_grace_end += row.mail_breaks_at_grace_end
        self.required += row.account.required


@dataclass(frozen=True)
class Report:
    now: int
    since: int
    rows: tuple[ReportRow, ...]
    totals: tuple[PolicyTotals, ...]
    """One per policy, in name order with the default (None) first, then all of them."""
    overall: PolicyTotals


def build_report(
    accounts: Iterable[Account],
    usage: UsageFold,
    mail_services: Collection[str],
    *,
    now: int,
) -> Report:
    """Rows in user-name order and totals per policy."""
    rows = []
    per_policy: dict[str | None, PolicyTotals] = {}
    overall = PolicyTotals(None)
    for account in sorted(accounts, key=lambda a: (a.user.casefold(), a.user)):
        use = usage.password.get(account.user)
        services = set(use.services) if use is not None else set()
        mail = bool(services & set(mail_services))
        # services left out of the count are of unknown kind: count them as both
        left_out = use is not None and use.services_left_out > 0
        row = ReportRow(
            account,
            account.enrolled if account.enrolled else _enrolled(account, usage),
            use,
            mail or left_out,
            bool(services - set(mail_services)) or left_out,
        )
        rows.append(row)
        per_policy.setdefault(account.policy, PolicyTotals(account.policy)).add(row)
        overall.add(row)
    ordered = sorted(per_policy.values(), key=lambda t: (t.policy is not None, t.policy or ""))
    return Report(now, usage.since, tuple(rows), tuple(ordered), overall)


def _enrolled(account: Account, usage: UsageFold) -> int | None:
    if not account.enabled:
        return None
    return usage.enrolled.get(account.user)


def _last_passcode_use(account: Account) -> int | None:
    used = [p.last_used for p in account.passcodes if p.last_used]
    return max(used) if used else None


def row_dict(row: ReportRow) -> dict[str, object]:
    """A row as ``--json`` prints it."""
    account = row.account
    if account.unreadable:
        return account_dict(account)  # the why names the attribute, never its value
    use = row.password
    return {
        "user": account.user,
        "names": list(account.names) or [account.user],
        "policy": account.policy,
        "unreadable": False,
        "enabled": account.enabled,
        "enrolled": row.enrolled,
        "passcodes": account_dict(account)["passcodes"],
        "password": None
        if use is None
        else {
            "logins": use.logins,
            "first": use.first,
            "last": use.last,
            "services": dict(sorted(use.services.items())),
            "addresses": dict(sorted(use.addresses.items())),
            "services_left_out": use.services_left_out,
            "addresses_left_out": use.addresses_left_out,
        },
        "mail_password_use": row.mail_password_use,
        "interactive_password_use": row.interactive_password_use,
        "cut_off_if_required": row.cut_off,
        "mail_breaks_on_enroll": row.mail_breaks,
        "mail_breaks_at_grace_end": row.mail_breaks_at_grace_end,
        "policy_values": {
            "required": account.required,
            "mail_password": account.mail_password,
            "required_from": account.required_from,
            "mail_password_until": account.mail_password_until,
        },
    }


def totals_dict(totals: PolicyTotals) -> dict[str, object]:
    return {
        "policy": totals.policy,
        "accounts": totals.accounts,
        "on": totals.on,
        "off": totals.off,
        "cut_off_if_required": totals.cut_off,
        "cut_off_active": totals.cut_off_active,
        "mail_breaks_on_enroll": totals.mail_breaks,
        "mail_breaks_at_grace_end": totals.mail_breaks_at_grace_end,
        "already_required": totals.required,
        "unreadable": totals.unreadable,
    }


CSV_HEADER: tuple[str, ...] = (
    "user",
    "policy",
    "unreadable",
    "enabled",
    "enrolled",
    "passcodes",
    "passcode_last_used",
    "password_logins",
    "password_last",
    "password_services",
    "password_addresses",
    "mail_password_use",
    "cut_off_if_required",
    "mail_breaks_on_enroll",
    "mail_breaks_at_grace_end",
    "required",
    "mail_password",
    "required_from",
    "mail_password_until",
)


def utc_text(epoch: int, pattern: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    """``epoch`` in UTC as ``pattern`` formats it; a time no date can hold (before year
    1 or past 9999: the directory's or a forged log's) as ``(epoch <seconds>)``, never
    an exception that would end the report."""
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime(pattern)
    except (OverflowError, ValueError, OSError):
        return f"(epoch {epoch})"


def _iso(epoch: int | None) -> str:
    return utc_text(epoch) if epoch else ""


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _neutral(text: str) -> str:
    """Text a spreadsheet shows as text: a user name or address from a log someone
    else wrote could start with ``=`` and be run as a formula (CWE-1236)."""
    return "'" + text if text.startswith(_FORMULA) else text


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _neutral("" if value is None else str(value))


def _element(name: str) -> str:
    """One service or address of a list cell: its own spaces, ``;`` and controls made
    ``?`` (a space is what separates them, ``;`` what some locales split on), then
    neutralised on its own, since a tool that splits the cell sees each as a cell."""
    if not name:
        return "(none)"  # an event that named no service or address
    return _neutral("".join("?" if _splits(c) else c for c in name))


def _splits(char: str) -> bool:
    return char.isspace() or char == ";" or not char.isprintable()


def _joined(names: Sequence[str], left_out: int) -> str:
    """A list in one cell, joined with spaces: never ``;`` or ``,``, on which a
    spreadsheet in some locales splits a CSV line, so that an element would be a cell."""
    return " ".join([*(_element(n) for n in names), *([f"({left_out} more)"] if left_out else [])])


def csv_row(row: ReportRow) -> list[str]:
    """A row's cells, in ``CSV_HEADER``'s order; times in ISO 8601 UTC."""
    account = row.account
    if account.unreadable:
        cells: list[object] = [account.user, account.policy or "", True]
        return [_cell(c) for c in cells] + [""] * (len(CSV_HEADER) - 3)
    use = row.password
    cells = [
        account.user,
        account.policy or "",
        False,
        account.enabled,
        _iso(row.enrolled),
        len(account.passcodes),
        _iso(_last_passcode_use(account)),
        use.logins if use else 0,
        _iso(use.last if use else None),
        _joined(sorted(use.services), use.services_left_out) if use else "",
        _joined(sorted(use.addresses), use.addresses_left_out) if use else "",
        row.mail_password_use,
        row.cut_off,
        row.mail_breaks,
        row.mail_breaks_at_grace_end,
        account.required,
        account.mail_password,
        _iso(account.required_from),
        _iso(account.mail_password_until),
    ]
    return [_cell(c) for c in cells]
