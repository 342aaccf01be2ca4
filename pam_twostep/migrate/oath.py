"""pam_oath's users file (liboath's ``usersfile`` format, e.g. /etc/users.oath).

One token per line, fields separated by white space:

    TYPE  USER  PASSWORD  SECRET-HEX  [MOVING-FACTOR  [LAST-OTP  [TIME]]]

TYPE is ``HOTP``, ``HOTP/E[/6|7|8]`` (counter-based) or ``HOTP/T30[/6|7|8]``,
``HOTP/T60[/6|7|8]`` (time-based, 30 or 60 s steps). PASSWORD is ``-`` (none), ``+``
(checked elsewhere) or a static PIN. TIME is when the last code was accepted, local
time as ``%Y-%m-%dT%H:%M:%SL``, which pam_oath writes after each login.

Carried: time-based secrets with their step and digits, and the step of the last
accepted code (from TIME), so that code and older ones stay spent. Refused for that
user: counter-based tokens. A static PIN is not carried (the directory password takes
its place), and said. A user with several time-based lines: the first is imported, the
others reported.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Iterator

from ..core.candidate import Candidate, Problem
from ..core.totp import TotpParams, time_step

__all__ = ["MAX_FILE", "parse"]

MAX_FILE = 16 << 20
_TYPES = {
    f"HOTP/T{period}{suffix}": (period, digits)
    for period in (30, 60)
    for suffix, digits in (("", 6), ("/6", 6), ("/7", 7), ("/8", 8))
}
_COUNTER_TYPES = {"HOTP", "HOTP/E", "HOTP/E/6", "HOTP/E/7", "HOTP/E/8"}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SL"


def _line(fields: list[str], source: str) -> Candidate:
    kind, user = fields[0], fields[1]
    if kind in _COUNTER_TYPES:
        raise ValueError("counter-based (HOTP) token: twostep is time-based only")
    if kind not in _TYPES:
        raise ValueError(f"unknown token type {kind[:20]!r}")
    if len(fields) < 4:
        raise ValueError("no secret")
    if len(fields) > 7:
        raise ValueError("more fields than the format has")
    period, digits = _TYPES[kind]
    try:
        secret = binascii.unhexlify(fields[3])
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not hexadecimal") from None
    notes = []
    if fields[2] not in ("-", "+"):
        notes.append("its static PIN is not carried: the directory password takes its place")
    last_step = None
    if len(fields) > 4 and not fields[4].isdigit():
        raise ValueError("the moving factor is not a number")
    if len(fields) == 7:
        try:
            when = time.mktime(time.strptime(fields[6], _TIME_FORMAT))
        except (ValueError, OverflowError):
            raise ValueError(f"the time {fields[6][:30]!r} is not {_TIME_FORMAT}") from None
        last_step = time_step(when, period)
    return Candidate(
        source=source,
        match=user,
        secret=secret,
        params=TotpParams(digits=digits, period=period),
        last_step=last_step,
        notes=tuple(notes),
    )


def parse(data: bytes, name: str) -> Iterator[Candidate | Problem]:
    """Every user of a users file, each a candidate or a problem; the first time-based
    line of a user wins, later ones are reported."""
    if len(data) > MAX_FILE:
        yield Problem(name, "*", f"larger than {MAX_FILE >> 20} MiB: not a users file")
        return
    seen: dict[str, str] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        source = f"{name}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield Problem(source, "?", "not UTF-8 text")
            continue
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            yield Problem(source, "?", "a line with a type and no user")
            continue
        user = fields[1]
        if user in seen:
            yield Problem(source, user, f"{user} has a token already, on line {seen[user]}")
            continue
        try:
            candidate = _line(fields, source)
        except ValueError as exc:
            yield Problem(source, user, str(exc))
            continue
        seen[user] = str(number)
        yield candidate
