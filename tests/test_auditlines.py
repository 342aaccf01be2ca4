"""core.auditlines: lines of the audit file and of syslog read back as events, and every
other line left out with its reason, never an exception (issue 18); a syslog line only
where syslog puts twostep's tag, and a time only within 1970 to a day after now."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.audit import AuditEvent
from pam_twostep.core.auditlines import (
    FUTURE_SLACK,
    MAX_LINE,
    LoggedEvent,
    SkipReason,
    parse_line,
)

NOW = 1_800_000_000

GOOD = b'{"action":"login","method":"password","outcome":"accept","remote":"192.0.2.7",'
GOOD += b'"service":"imap","time":1799990000,"user":"bob"}'
EVENT = LoggedEvent(1799990000, "login", "bob", "accept", "imap", "192.0.2.7", "password")
SYSLOG = dataclasses.replace(EVENT, from_syslog=True)


# -- lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (GOOD, EVENT),
        (GOOD + b"\n", EVENT),
        (GOOD + b"\r\n", EVENT),
        (b"Dec  2 03:00:00 mx1 twostep[812]: twostep: " + GOOD, SYSLOG),
        (b"Dec  2 03:00:00 mx1 twostep[812]: " + GOOD, SYSLOG),
        (b"2026-12-02T03:00:00.123+00:00 mx1 twostep: twostep: " + GOOD, SYSLOG),
        (
            b'{"action":"reset","outcome":"ok","time":5,"user":"a"}',
            LoggedEvent(5, "reset", "a", "ok"),
        ),
        (
            b'{"action":"x","outcome":"ok","time":5,"user":"a","service":null}',
            LoggedEvent(5, "x", "a", "ok"),
        ),
        (b"Dec  2 03:00:00 mx1 sshd[1]: Accepted password for bob", SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 nottwostep[1]: {}", SkipReason.NOT_TWOSTEP),
        (b"", SkipReason.NOT_TWOSTEP),
        (b"   \n", SkipReason.NOT_TWOSTEP),
        (b"{not json", SkipReason.NOT_JSON),
        (b"Dec  2 03:00:00 mx1 twostep[1]: twostep: {truncated", SkipReason.NOT_JSON),
        (b'{"user":"\xff","action":"login","outcome":"accept","time":1}', SkipReason.NOT_JSON),
        (b"{" * 20000, SkipReason.NOT_JSON),
        (b'{"a":' + b"[" * 60000, SkipReason.NOT_JSON),
        (b'{"time":1' + b"0" * 5000 + b"}", SkipReason.NOT_JSON),
        (b"[1,2]", SkipReason.NOT_TWOSTEP),
        (b"x twostep: [1]", SkipReason.NOT_TWOSTEP),
        (b'{"time":"1","action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":true,"action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":1.5,"action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":-1,"action":"login","user":"a","outcome":"accept"}', SkipReason.BAD_TIME),
        (b'{"time":1,"action":"login","user":7,"outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":1,"action":"x","user":"","outcome":"ok"}', LoggedEvent(1, "x", "", "ok")),
        (
            b'{"time":1,"action":"policy-set","outcome":"ok"}',
            LoggedEvent(1, "policy-set", "", "ok"),
        ),
        (b'{"time":1,"user":"a","outcome":"ok"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":1,"action":"login","user":"a"}', SkipReason.NOT_AN_EVENT),
        (
            b'{"time":1,"action":"login","user":"a","outcome":"accept","remote":["x"]}',
            SkipReason.NOT_AN_EVENT,
        ),
        (
            b'{"time":1,"action":"login","user":"' + b"a" * 600 + b'","outcome":"ok"}',
            SkipReason.NOT_AN_EVENT,
        ),
        (b'{"a":"' + b"x" * MAX_LINE + b'"}', SkipReason.TOO_LONG),
    ],
    ids=lambda v: v[:40].decode("ascii", "replace") if isinstance(v, bytes) else str(v)[:30],
)
def test_lines(line: bytes, expected: LoggedEvent | SkipReason) -> None:
    assert parse_line(line, NOW) == expected


# -- syslog: only where the tag sits, and the tag exactly twostep ------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"Dec  2 03:00:00 mx1 twostep[812]: " + GOOD, SYSLOG),
        (b"Dec 12 03:00:00 mx1.example.org twostep: " + GOOD, SYSLOG),
        (b"<38>Dec  2 03:00:00 mx1 twostep[1]: twostep: " + GOOD, SYSLOG),
        (b"2026-12-02T03:00:00+01:00 mx1 twostep[5]: " + GOOD, SYSLOG),
        (b"2026-12-02T03:00:00.123456Z mx1 twostep: twostep: " + GOOD, SYSLOG),
        # another program's line that merely contains the tag, as a user name can
        (
            b"Dec  2 03:00:00 mx1 sshd[1]: pam_unix(sshd:auth): authentication failure; "
            b"logname= uid=0 rhost=203.0.113.9 user=twostep: " + GOOD,
            SkipReason.NOT_TWOSTEP,
        ),
        (b"Dec  2 03:00:00 mx1 sshd[1]: twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 sshd[1]: twostep[2]: twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (
            b"Dec  2 03:00:00 mx1 sshd[1]: Dec  2 03:00:00 mx1 twostep: " + GOOD,
            SkipReason.NOT_TWOSTEP,
        ),
        (b"Dec  2 03:00:00 mx1 nottwostep[1]: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 x-twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 twostepd[1]: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 twostepx: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 TWOSTEP: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 mx1 twostep[1]:  " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 03:00:00 twostep: " + GOOD, SkipReason.NOT_TWOSTEP),  # no host
        (b"mx1 twostep: " + GOOD, SkipReason.NOT_TWOSTEP),  # no date
        (b"twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"x twostep[1]: twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"2026-12-02 03:00:00 mx1 twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"Dec  2 3:00:00 mx1 twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
        (b"user=alice twostep: " + GOOD, SkipReason.NOT_TWOSTEP),
    ],
    ids=lambda v: v[:60].decode("ascii", "replace") if isinstance(v, bytes) else str(v)[:30],
)
def test_a_syslog_line_is_twostep_s_only_by_its_tag(
    line: bytes, expected: LoggedEvent | SkipReason
) -> None:
    assert parse_line(line, NOW) == expected


def test_only_a_syslog_line_is_marked_as_from_syslog() -> None:
    """The audit file is the trustworthy input: anyone may ``logger -t twostep``."""
    assert parse_line(GOOD, NOW) == EVENT and not EVENT.from_syslog
    parsed = parse_line(b"Dec  2 03:00:00 mx1 twostep: " + GOOD, NOW)
    assert isinstance(parsed, LoggedEvent) and parsed.from_syslog


# -- times: from 1970 to a day after now -------------------------------------------------


def _at(when: object) -> bytes:
    return json.dumps({"time": when, "action": "login", "user": "a", "outcome": "accept"}).encode()


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (0, 0),
        (NOW, NOW),
        (NOW + FUTURE_SLACK, NOW + FUTURE_SLACK),
        (NOW + FUTURE_SLACK + 1, SkipReason.BAD_TIME),
        (-1, SkipReason.BAD_TIME),
        (-(1 << 62), SkipReason.BAD_TIME),
        (253402300800, SkipReason.BAD_TIME),  # year 10000: no date can print it
        (1 << 40, SkipReason.BAD_TIME),
        (1 << 63, SkipReason.BAD_TIME),
        (10**300, SkipReason.BAD_TIME),
        (1.0, SkipReason.NOT_AN_EVENT),
        (True, SkipReason.NOT_AN_EVENT),
    ],
    ids=str,
)
def test_a_time_outside_1970_to_a_day_after_now_is_skipped(
    when: object, expected: int | SkipReason
) -> None:
    parsed = parse_line(_at(when), NOW)
    assert (parsed.time if isinstance(parsed, LoggedEvent) else parsed) == expected


@given(st.integers(), st.integers(0, 1 << 34))
def test_every_event_read_has_a_time_within_bounds(when: int, now: int) -> None:
    parsed = parse_line(_at(when), now)
    if isinstance(parsed, LoggedEvent):
        assert 0 <= parsed.time <= now + FUTURE_SLACK
    else:
        assert parsed is SkipReason.BAD_TIME


@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_a_reason_never_an_exception(line: bytes) -> None:
    assert isinstance(parse_line(line, NOW), LoggedEvent | SkipReason)


@given(
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.integers(),
            st.none(),
            st.booleans(),
            st.floats(allow_nan=False),
        ),
        max_size=8,
    ),
    st.sampled_from(["time", "action", "user", "outcome", "service", "remote", "method", "x"]),
)
def test_any_object_gives_an_event_or_a_reason(values: list[object], key: str) -> None:
    data = {"time": 1, "action": "login", "user": "u", "outcome": "accept"}
    data[key] = values[0] if values else values
    assert isinstance(parse_line(json.dumps(data).encode(), NOW), LoggedEvent | SkipReason)


_names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=64)


@given(
    st.integers(0, NOW + FUTURE_SLACK),
    _names,
    _names,
    _names,
    st.text(max_size=40),
    st.text(max_size=40),
    st.one_of(st.none(), st.sampled_from(["password", "passcode", "totp"])),
    st.sampled_from(
        [
            b"",
            b"Dec  2 03:00:00 mx1 twostep[1]: twostep: ",
            b"2026-12-02T03:00:00.123+00:00 mx1 twostep: ",
        ]
    ),
)
def test_what_the_audit_sinks_write_reads_back(
    when: int,
    action: str,
    user: str,
    outcome: str,
    service: str,
    remote: str,
    method: str | None,
    prefix: bytes,
) -> None:
    """Every event the audit file or syslog holds is read back as it was written."""
    event = AuditEvent(when, action, user, outcome, service, remote, method, reason="r")
    line = prefix + event.to_json().encode() + b"\n"
    assert parse_line(line, NOW) == LoggedEvent(
        when, action, user, outcome, service, remote, method or "", bool(prefix)
    )
