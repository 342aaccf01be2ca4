"""core.auditlines: lines of the audit file and of syslog read back as events, and every
other line left out with its reason, never an exception (issue 18)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.audit import AuditEvent
from pam_twostep.core.auditlines import MAX_LINE, LoggedEvent, SkipReason, parse_line

GOOD = b'{"action":"login","method":"password","outcome":"accept","remote":"192.0.2.7",'
GOOD += b'"service":"imap","time":1799990000,"user":"bob"}'
EVENT = LoggedEvent(1799990000, "login", "bob", "accept", "imap", "192.0.2.7", "password")


# -- lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (GOOD, EVENT),
        (GOOD + b"\n", EVENT),
        (GOOD + b"\r\n", EVENT),
        (b"Dec  2 03:00:00 mx1 twostep[812]: twostep: " + GOOD, EVENT),
        (b"Dec  2 03:00:00 mx1 twostep[812]: " + GOOD, EVENT),
        (b"2026-12-02T03:00:00.123+00:00 mx1 twostep: twostep: " + GOOD, EVENT),
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
        (b"x twostep[1]: twostep: {truncated", SkipReason.NOT_JSON),
        (b'{"user":"\xff","action":"login","outcome":"accept","time":1}', SkipReason.NOT_JSON),
        (b"{" * 20000, SkipReason.NOT_JSON),
        (b'{"a":' + b"[" * 60000, SkipReason.NOT_JSON),
        (b'{"time":1' + b"0" * 5000 + b"}", SkipReason.NOT_JSON),
        (b"[1,2]", SkipReason.NOT_TWOSTEP),
        (b"x twostep: [1]", SkipReason.NOT_TWOSTEP),
        (b'{"time":"1","action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":true,"action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":1.5,"action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
        (b'{"time":-1,"action":"login","user":"a","outcome":"accept"}', SkipReason.NOT_AN_EVENT),
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
    assert parse_line(line) == expected


@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_a_reason_never_an_exception(line: bytes) -> None:
    assert isinstance(parse_line(line), LoggedEvent | SkipReason)


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
    assert isinstance(parse_line(json.dumps(data).encode()), LoggedEvent | SkipReason)


_names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=64)


@given(
    st.integers(0, 1 << 39),
    _names,
    _names,
    _names,
    st.text(max_size=40),
    st.text(max_size=40),
    st.one_of(st.none(), st.sampled_from(["password", "passcode", "totp"])),
    st.sampled_from([b"", b"Dec  2 03:00:00 mx1 twostep[1]: twostep: ", b"h twostep: "]),
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
    assert parse_line(line) == LoggedEvent(
        when, action, user, outcome, service, remote, method or ""
    )
