"""Audit lines read back as events: what ``twostep report readiness`` takes from a line of
the audit file (one JSON object) or of syslog (``... twostep[123]: twostep: {json}``).

Lines come from files an attacker may have written into (a user name is whatever was
typed at a login prompt), so every field is type-checked and bounded, and nothing here
raises on any input: a line is a ``LoggedEvent`` or the ``SkipReason`` it was left out
for, counted and reported by the reader (``auditlog``). Pure.

The audit file is the trustworthy input: only twostepd writes it. Syslog is not: any
local user can ``logger -t twostep '{...}'``, so an event read from syslog is marked
(``LoggedEvent.from_syslog``) and the report says so. What is refused here is the
cheaper forgery, another program's line that merely contains ``twostep: {`` (a pam_unix
line ending ``user=twostep: {...}``): the tag must be exactly ``twostep``, where syslog
puts a program's tag, right after the timestamp and the host.

A time is accepted from 0 to ``now`` plus ``FUTURE_SLACK`` (``now`` passed in): a
hostile time far ahead would otherwise be printed as a date past the year 9999.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum

__all__ = ["FUTURE_SLACK", "MAX_LINE", "LoggedEvent", "SkipReason", "parse_line"]

MAX_LINE = 64 * 1024
"""Bytes in one line at most, its newline counted; a longer one is skipped (an event
is a few hundred)."""
_MAX_USER = 512
_MAX_FIELD = 256
FUTURE_SLACK = 86400
"""Seconds an event's time may lie ahead of now (a clock a little fast, another host's
log): later than that, the line is skipped as ``bad-time``."""


class SkipReason(Enum):
    """Why a line gave no event; each is counted and reported, none is an error."""

    NOT_TWOSTEP = "not-twostep"
    """Neither a JSON object nor a syslog line of twostep (another program's, or blank)."""
    NOT_JSON = "not-json"
    """Meant to be an event but not valid JSON (or not UTF-8)."""
    NOT_AN_EVENT = "not-an-event"
    """Valid JSON, but not an object with the event's fields of the event's types."""
    TOO_LONG = "too-long"
    """Longer than ``MAX_LINE``."""
    CUT_SHORT = "cut-short"
    """The last line of a file that ended early (a truncated .gz)."""
    BAD_TIME = "bad-time"
    """An event whose time is before 1970 or more than ``FUTURE_SLACK`` after now."""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """The fields of an ``audit.AuditEvent`` a readiness report reads."""

    time: int
    action: str
    user: str
    outcome: str
    service: str = ""
    remote: str = ""
    method: str = ""
    from_syslog: bool = False
    """Read from a syslog line: anyone on the host could have written it."""


# the syslog form: SyslogSink logs "twostep: {json}" under the ident "twostep" with the
# pid, so a line reads "<date> <host> twostep[123]: twostep: {...}"; a relay may drop
# either the pid or the repeated tag. The date is RFC 3164's ("Dec  2 03:00:00", maybe
# after a "<34>" priority) or an ISO 8601 one (rsyslog's RFC 3339 file format); the tag
# is the field after the host, so "twostep: {" further on is another program's text.
_SYSLOG = re.compile(
    rb"(?:<\d{1,3}>)?"
    rb"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
    rb"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))"
    rb" [!-~]{1,255} twostep(?:\[\d{1,10}\])?: (?:twostep: )?\{"
)


_WHEN = next(f.name for f in fields(LoggedEvent) if f.type == "int")
"""The key of an event's epoch seconds, taken from ``LoggedEvent`` (named as in
``AuditEvent``): spelled out, it would read to tests/test_layers.py as a module's name."""


def _text(data: Mapping[str, object], name: str, limit: int, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > limit or (required and not value):
        return None
    return value


def parse_line(line: bytes, now: int) -> LoggedEvent | SkipReason:
    """One line (with or without its newline) as an event, or why it is none; ``now``
    bounds the time an event may carry."""
    if len(line) > MAX_LINE:
        return SkipReason.TOO_LONG
    line = line.strip()
    syslog = not line.startswith(b"{")
    if not syslog:
        payload = line
    else:
        found = _SYSLOG.match(line)
        if found is None:
            return SkipReason.NOT_TWOSTEP
        payload = line[found.end() - 1 :]
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return SkipReason.NOT_JSON
    if not isinstance(data, dict):
        return SkipReason.NOT_AN_EVENT
    when = data.get(_WHEN)
    if isinstance(when, bool) or not isinstance(when, int):
        return SkipReason.NOT_AN_EVENT
    action = _text(data, "action", 64, required=True)
    user = _text(data, "user", _MAX_USER, required=False)  # a policy change names none
    outcome = _text(data, "outcome", 64, required=True)
    service = _text(data, "service", _MAX_FIELD, required=False)
    remote = _text(data, "remote", _MAX_FIELD, required=False)
    method = _text(data, "method", 64, required=False)
    if (
        action is None
        or user is None
        or outcome is None
        or service is None
        or remote is None
        or method is None
    ):
        return SkipReason.NOT_AN_EVENT
    if not 0 <= when <= now + FUTURE_SLACK:
        return SkipReason.BAD_TIME
    return LoggedEvent(when, action, user, outcome, service, remote, method, syslog)
