"""Calendar dates in policy settings (``required_from``, ``mail_password_until``).

A rollout is planned in days, so a setting is written as a date, ``2027-01-15``, which
means 00:00 UTC that day; a site that needs another hour writes a full ISO 8601 time with
its offset (``2027-01-15T00:00:00+01:00``). Inside, a date is an int of epoch seconds,
0 for "not set", like every other policy value; in the directory it is an LDAP
GeneralizedTime in UTC (``20270115000000Z``, RFC 4517 3.3.13), so ``ldapsearch`` shows it
readably and slapd can order and compare it.
"""

from __future__ import annotations

import datetime as _dt
import re

__all__ = ["format_date", "from_generalized_time", "parse_date", "to_generalized_time"]

_UTC = _dt.UTC
_EARLIEST = 946684800  # 2000-01-01: anything before is a typo, not a plan
_LATEST = 253402300799  # 9999-12-31T23:59:59Z, the last GeneralizedTime with 4 digits
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})")
_GENERALIZED = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,]\d{1,9})?(Z|[+-]\d{2}(?:\d{2})?)"
)


def _checked(epoch: int) -> int:
    if not _EARLIEST <= epoch <= _LATEST:
        raise ValueError("must be a date between 2000-01-01 and 9999-12-31")
    return epoch


def _epoch(moment: _dt.datetime) -> int:
    return _checked(int(moment.timestamp()))


def parse_date(value: object) -> int:
    """Epoch seconds of a date as a site writes one (YAML, the command line). YAML gives
    ``datetime.date`` for a bare date, so that is taken too. "Not set" is the setting left
    out (or removed), never a value.

    Epoch seconds themselves are taken as well: that is how a checked value travels
    from the command line to twostepd.

    Raises ``ValueError`` with a sentence for a person."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _checked(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("a time needs its UTC offset (2027-01-15T09:00:00+01:00)")
        return _epoch(value)
    if isinstance(value, _dt.date):
        return _epoch(_dt.datetime(value.year, value.month, value.day, tzinfo=_UTC))
    if not isinstance(value, str) or not value.isascii():
        raise ValueError("must be a date (2027-01-15)")
    text = value.strip()
    if not (_ISO_DATE.fullmatch(text) or _ISO_TIME.fullmatch(text)):
        raise ValueError("must be a date (2027-01-15) or a time with its offset")
    try:
        if len(text) == 10:
            day = _dt.date.fromisoformat(text)
            moment = _dt.datetime(day.year, day.month, day.day, tzinfo=_UTC)
        else:
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date on the calendar") from None
    return _epoch(moment)


def from_generalized_time(text: str) -> int:
    """Epoch seconds of a stored GeneralizedTime, in any form slapd's syntax check lets
    in (RFC 4517 3.3.13: minutes and seconds optional, a fraction, ``Z`` or an offset):
    an admin's ``ldapmodify`` with ``+0100`` must not make a whole class of service
    unreadable. A fraction is dropped. Raises ``ValueError``."""
    match = _GENERALIZED.fullmatch(text)
    if match is None:
        raise ValueError("not a GeneralizedTime")
    *parts, zone = match.groups()
    year, month, day, hour, minute, second = (int(g or 0) for g in parts)
    second = min(second, 59)  # a leap second, which the syntax allows and datetime does not
    offset = 0
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5] or 0) * 60)
    try:
        moment = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_UTC)
    except ValueError:
        raise ValueError("not a time on the calendar") from None
    return _checked(int(moment.timestamp()) - offset)


def to_generalized_time(epoch: int) -> str:
    return _dt.datetime.fromtimestamp(_checked(epoch), _UTC).strftime("%Y%m%d%H%M%SZ")


def format_date(epoch: int) -> str:
    """``2027-01-15`` for midnight UTC, else the ISO time in UTC; "" when not set."""
    if not epoch:
        return ""
    moment = _dt.datetime.fromtimestamp(epoch, _UTC)
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
