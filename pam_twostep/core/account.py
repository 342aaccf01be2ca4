"""An account's two-step state, read strictly from its directory entry.

This module spells every LDAP attribute name the code uses (``Attr``), and turns the raw
values of one entry into an ``AccountState``. Anything that does not parse raises
``CorruptEntry`` naming the attribute: that user gets a temporary failure, everybody
else is unaffected, and no value is ever guessed at.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from .errors import CorruptEntry
from .hashing import plausible_backup_hash
from .policy import overrides_from_ldap
from .records import Device, Failure, Passcode, Pending, Usage, WebSession
from .stale_records import PasswordVerifier, RetiredPasscode, StaleClient, load_retired
from .totp import Algorithm, TotpParams

__all__ = [
    "ACCOUNT_CLASS",
    "POLICY_CLASS",
    "AccountState",
    "Attr",
    "RawEntry",
    "format_time",
    "parse_account",
    "password_stamp",
]

ACCOUNT_CLASS = "twostepAccount"
POLICY_CLASS = "twostepPolicy"


class Attr:
    """LDAP attribute names, spelled once."""

    ENABLED = "twostepEnabled"
    SECRET = "twostepSecret"
    ALGORITHM = "twostepTOTPAlgorithm"
    DIGITS = "twostepTOTPDigits"
    PERIOD = "twostepTOTPPeriod"
    LAST_STEP = "twostepTOTPLastStep"
    PENDING = "twostepPending"
    BACKUP_CODE = "twostepBackupCode"
    PASSCODE = "twostepPasscode"
    DEVICE = "twostepDevice"
    WEB_SESSION = "twostepWebSession"
    USAGE = "twostepUsage"
    RETIRED = "twostepRetired"
    STALE_CLIENT = "twostepStaleClient"
    FAILURE = "twostepFailure"
    LOCKED_AT = "twostepLockedAt"
    POLICY = "twostepPolicyDN"
    OBJECT_CLASS = "objectClass"
    UUID = "entryUUID"
    PASSWORD = "userPassword"

    STATE: tuple[str, ...] = (
        ENABLED,
        SECRET,
        ALGORITHM,
        DIGITS,
        PERIOD,
        LAST_STEP,
        PENDING,
        BACKUP_CODE,
        PASSCODE,
        DEVICE,
        WEB_SESSION,
        USAGE,
        RETIRED,
        STALE_CLIENT,
        FAILURE,
        LOCKED_AT,
        POLICY,
    )
    """Every attribute of ``twostepAccount`` except the policy overrides."""


@dataclass(frozen=True)
class RawEntry:
    """One directory entry as the directory layer hands it over: names lower-cased."""

    dn: str
    attributes: Mapping[str, tuple[bytes, ...]]

    def get(self, name: str) -> tuple[bytes, ...]:
        return self.attributes.get(name.lower(), ())


# Bounds on what one entry may hold; far above what policy allows, so only damage hits them.
_MAX_VALUES = {
    Attr.BACKUP_CODE: 100,
    Attr.PASSCODE: 200,
    Attr.DEVICE: 200,
    Attr.WEB_SESSION: 100,
    Attr.USAGE: 500,
    Attr.FAILURE: 1000,
}
_TIME_FORMAT = "%Y%m%d%H%M%SZ"


@dataclass(frozen=True)
class AccountState:
    """Everything a decision needs to know about one account, and nothing it must fetch."""

    dn: str
    username: str
    uuid: str
    stamp: str
    """Fingerprint of the current userPassword values: passcodes and devices made under
    another stamp died when the password changed."""
    has_class: bool = False
    enabled: bool = False
    secret: str | None = None
    params: TotpParams | None = None
    last_step: int | None = None
    pending: Pending | None = None
    backup_codes: tuple[str, ...] = ()
    passcodes: tuple[Passcode, ...] = ()
    devices: tuple[Device, ...] = ()
    web_sessions: tuple[WebSession, ...] = ()
    usage: tuple[Usage, ...] = ()
    failures: tuple[Failure, ...] = ()
    retired: tuple[RetiredPasscode | PasswordVerifier, ...] = ()
    """Credentials that once worked (``core.staleclients``)."""
    stale_clients: tuple[StaleClient, ...] = ()
    unreadable: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Values of the leniently read attributes left out, for their writers to delete."""
    locked_at: int | None = None
    policy_dn: str | None = None
    overrides: Mapping[str, bool | int] = field(default_factory=dict)

    def usage_of(self, record_id: str) -> Usage | None:
        """The newest note of a record (two first uses at once may each have added one)."""
        notes = [u for u in self.usage if u.id == record_id]
        return max(notes, key=lambda u: u.time) if notes else None

    def passcode_is_live(self, passcode: Passcode, now: int) -> bool:
        """Made under the current password, and not expired."""
        return passcode.stamp == self.stamp and not (passcode.expires and passcode.expires <= now)

    def device_is_live(self, device: Device, now: int) -> bool:
        return device.stamp == self.stamp and device.expires > now

    def live_passcodes(self, now: int) -> tuple[Passcode, ...]:
        return tuple(p for p in self.passcodes if self.passcode_is_live(p, now))

    def live_devices(self, now: int) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if self.device_is_live(d, now))


def password_stamp(uuid: str, passwords: Sequence[bytes]) -> str:
    """128-bit fingerprint of the stored password hash(es), salted by the entry's UUID.

    It changes whenever userPassword changes by any route (ldappasswd, an admin's
    ldapmodify, our tools), which is what revokes passcodes and trusted devices.
    """
    digest = hashlib.sha256(b"twostep-password-stamp\0" + uuid.encode() + b"\0")
    for value in sorted(passwords):
        digest.update(len(value).to_bytes(4, "big") + value)
    return digest.hexdigest()[:32]


def format_time(epoch: int) -> str:
    """LDAP GeneralizedTime for an epoch second."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> int:
    moment = datetime.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


_T = TypeVar("_T")


def _text(entry: RawEntry, name: str) -> list[str]:
    values = entry.get(name)
    limit = _MAX_VALUES.get(name, 1)
    if len(values) > limit:
        raise CorruptEntry(name, f"more than {limit} value(s)")
    try:
        return [value.decode("ascii") for value in values]
    except UnicodeDecodeError:
        raise CorruptEntry(name, "not ASCII") from None


def _single(entry: RawEntry, name: str) -> str | None:
    values = _text(entry, name)
    return values[0] if values else None


def _int(entry: RawEntry, name: str, low: int, high: int) -> int | None:
    text = _single(entry, name)
    if text is None:
        return None
    if not text.lstrip("-").isdigit() or len(text) > 15 or not low <= int(text) <= high:
        raise CorruptEntry(name, "not an integer in range")
    return int(text)


# Parsed records by their stored text. Stored values never change in place (a change is
# a delete and an add), so a value parsed once is the same record every time: a login
# of a user with 25 passcodes then parses nothing. Bounded; cleared when full: at
# 50,000 records it held about 35 MiB per serving process on a large directory.
_PARSED: dict[tuple[str, str], object] = {}
_PARSED_MAX = 10_000


def _records(
    entry: RawEntry, name: str, load: Callable[[str], _T], dump: Callable[[_T], str]
) -> tuple[_T, ...]:
    result: list[_T] = []
    for text in _text(entry, name):
        cached = _PARSED.get((name, text))
        if cached is not None:
            result.append(cast(_T, cached))
            continue
        try:
            record = load(text)
        except ValueError as exc:
            raise CorruptEntry(name, str(exc)) from None
        # Only the canonical form is accepted: deletes must name the exact stored value.
        if dump(record) != text:
            raise CorruptEntry(name, "not in canonical form")
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[(name, text)] = record
        result.append(record)
    return tuple(result)


_MAX_LENIENT = 100


def _lenient(
    entry: RawEntry, name: str, load: Callable[[str], _T], dump: Callable[[_T], str]
) -> tuple[tuple[_T, ...], tuple[str, ...]]:
    """Records that never decide an outcome (stale clients and what recognises them),
    read leniently: (the records, the values to drop). A value that does not parse, or
    a record beyond the first ``_MAX_LENIENT``, is left out rather than making the whole
    entry unreadable, and handed to the writers to delete, so damage does not grow."""
    result: list[_T] = []
    drop: list[str] = []
    for value in entry.get(name):
        text = value.decode("utf-8", "replace")
        try:
            record = load(value.decode("ascii"))
        except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
            record = None
        if record is None or dump(record) != text or len(result) >= _MAX_LENIENT:
            if "\ufffd" not in text:  # one we could not name exactly cannot be deleted
                drop.append(text)
            continue
        result.append(record)
    return tuple(result), tuple(drop)


def _dump_retired(record: RetiredPasscode | PasswordVerifier) -> str:
    return record.dump()


def _params(entry: RawEntry) -> TotpParams | None:
    algorithm = _single(entry, Attr.ALGORITHM)
    digits = _int(entry, Attr.DIGITS, 6, 8)
    period = _int(entry, Attr.PERIOD, 15, 300)
    if algorithm is None and digits is None and period is None:
        return None
    try:
        return TotpParams(Algorithm(algorithm or "SHA1"), digits or 6, period or 30)
    except ValueError:
        raise CorruptEntry(Attr.ALGORITHM, "unknown algorithm") from None


def parse_account(entry: RawEntry, username: str, username_attribute: str) -> AccountState:
    """Read the two-step state of ``entry``; ``username`` is what the client asked for."""
    uuid = _single(entry, Attr.UUID)
    if not uuid:
        raise CorruptEntry(Attr.UUID, "missing (is this an OpenLDAP entry?)")
    try:
        names = [v.decode("utf-8") for v in entry.get(username_attribute)]
    except UnicodeDecodeError:
        raise CorruptEntry(username_attribute, "not UTF-8") from None
    # The entry's own name, never the one asked for: the directory also matches look-alikes
    # (fullwidth letters, dotted capitals) that must not reach replies, userdb or audit.
    canonical = next((n for n in names if n.casefold() == username.casefold()), None)
    if canonical is None:
        if not names:
            raise CorruptEntry(username_attribute, "missing on the entry the user filter found")
        canonical = names[0]

    classes = {v.decode("utf-8", "replace").lower() for v in entry.get(Attr.OBJECT_CLASS)}
    enabled_text = _single(entry, Attr.ENABLED)
    if enabled_text not in (None, "TRUE", "FALSE"):
        raise CorruptEntry(Attr.ENABLED, "not an LDAP boolean")
    enabled = enabled_text == "TRUE"
    secret = _single(entry, Attr.SECRET)
    if enabled and secret is None:
        raise CorruptEntry(Attr.SECRET, "two-step is on but there is no secret")

    pending_text = _single(entry, Attr.PENDING)
    try:
        pending = Pending.load(pending_text) if pending_text is not None else None
    except ValueError as exc:
        raise CorruptEntry(Attr.PENDING, str(exc)) from None
    if pending is not None and pending.dump() != pending_text:
        raise CorruptEntry(Attr.PENDING, "not in canonical form")

    backup_codes = tuple(_text(entry, Attr.BACKUP_CODE))
    if not all(plausible_backup_hash(code) for code in backup_codes):
        raise CorruptEntry(Attr.BACKUP_CODE, "not an argon2id hash at a cost we accept")

    locked_text = _single(entry, Attr.LOCKED_AT)
    try:
        locked_at = _parse_time(locked_text) if locked_text is not None else None
    except ValueError:
        raise CorruptEntry(Attr.LOCKED_AT, "not a GeneralizedTime like 20260101120000Z") from None

    policy_dn_values = entry.get(Attr.POLICY)
    if len(policy_dn_values) > 1:
        raise CorruptEntry(Attr.POLICY, "more than one value")
    try:
        policy_dn = policy_dn_values[0].decode("utf-8") if policy_dn_values else None
    except UnicodeDecodeError:
        raise CorruptEntry(Attr.POLICY, "not UTF-8") from None

    retired, junk_retired = _lenient(entry, Attr.RETIRED, load_retired, _dump_retired)
    stale_clients, junk_stale = _lenient(
        entry, Attr.STALE_CLIENT, StaleClient.load, StaleClient.dump
    )
    return AccountState(
        dn=entry.dn,
        username=canonical,
        uuid=uuid,
        stamp=password_stamp(uuid, entry.get(Attr.PASSWORD)),
        has_class=ACCOUNT_CLASS.lower() in classes,
        enabled=enabled,
        secret=secret,
        params=(_params(entry) or TotpParams()) if secret is not None else None,
        last_step=_int(entry, Attr.LAST_STEP, 0, 1 << 40),
        pending=pending,
        backup_codes=backup_codes,
        passcodes=_records(entry, Attr.PASSCODE, Passcode.load, Passcode.dump),
        devices=_records(entry, Attr.DEVICE, Device.load, Device.dump),
        web_sessions=_records(entry, Attr.WEB_SESSION, WebSession.load, WebSession.dump),
        usage=_records(entry, Attr.USAGE, Usage.load, Usage.dump),
        failures=_records(entry, Attr.FAILURE, Failure.load, Failure.dump),
        retired=retired,
        stale_clients=stale_clients,
        unreadable={Attr.RETIRED: junk_retired, Attr.STALE_CLIENT: junk_stale},
        locked_at=locked_at,
        policy_dn=policy_dn,
        overrides=overrides_from_ldap(entry.attributes),
    )
