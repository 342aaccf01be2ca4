"""pam_oath users files: time-based lines carried, the rest refused line by line."""

from __future__ import annotations

import time

import pytest

from pam_twostep.core.candidate import Candidate, Problem
from pam_twostep.core.totp import time_step
from pam_twostep.migrate.oath import parse

HEX = "3132333435363738393031323334353637383930"


def lines(text: str) -> list[Candidate | Problem]:
    return list(parse(text.encode(), "users.oath"))


def test_time_based_lines() -> None:
    when = "2026-11-27T10:00:00L"
    alice, bob, carol = lines(
        f"# comment\nHOTP/T30\talice\t-\t{HEX}\n"
        f"HOTP/T60/8 bob - {HEX} 57 123456 {when}\n"
        f"HOTP/T30/7 carol 1234 {HEX}\n"
    )
    assert isinstance(alice, Candidate) and alice.params.period == 30 and alice.last_step is None
    assert alice.secret == bytes.fromhex(HEX)
    assert isinstance(bob, Candidate) and bob.params.digits == 8 and bob.params.period == 60
    local = time.mktime(time.strptime(when, "%Y-%m-%dT%H:%M:%SL"))
    assert bob.last_step == time_step(local, 60)
    assert isinstance(carol, Candidate) and carol.params.digits == 7
    assert any("static PIN is not carried" in n for n in carol.notes)
    assert alice.source == "users.oath:2"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"HOTP alice - {HEX}", "counter-based"),
        (f"HOTP/E/8 alice - {HEX} 3", "counter-based"),
        (f"HOTP/T90 alice - {HEX}", "unknown token type"),
        ("HOTP/T30 alice -", "no secret"),
        ("HOTP/T30 alice - zz", "not hexadecimal"),
        ("HOTP/T30 alice - 3132", "bits"),
        (f"HOTP/T30 alice - {HEX} x", "moving factor"),
        (f"HOTP/T30 alice - {HEX} 1 123456 yesterday", "the time"),
        (f"HOTP/T30 alice - {HEX} 1 2 3 4", "more fields"),
        ("HOTP/T30", "type and no user"),
    ],
)
def test_refused_lines(line: str, why: str) -> None:
    (problem,) = lines(line + "\n")
    assert isinstance(problem, Problem) and why in problem.why


def test_a_second_token_of_a_user_is_reported() -> None:
    first, second = lines(f"HOTP/T30 alice - {HEX}\nHOTP/T30 alice - {HEX}\n")
    assert isinstance(first, Candidate)
    assert isinstance(second, Problem) and "on line 1" in second.why


def test_garbage() -> None:
    items = list(parse(b"\xff\xfe\x00garbage\nHOTP/T30 a - " + HEX.encode() + b"\n", "f"))
    assert isinstance(items[0], Problem) and "UTF-8" in items[0].why
    assert isinstance(items[1], Candidate)
