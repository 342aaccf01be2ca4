"""google-authenticator-libpam's ``~/.google_authenticator`` files.

The format (the project's FILEFORMAT): the base32 secret on the first line; option
lines starting with a double quote and a space (TOTP_AUTH, HOTP_COUNTER n, STEP_SIZE n,
WINDOW_SIZE n, DISALLOW_REUSE [steps...], RATE_LIMIT n m [...], OTP_DISABLED); then
eight-digit scratch codes, one per line.

Carried: the secret, the step size, the window (narrowed to twostep's at most two steps
either side, and said so), the last used step from DISALLOW_REUSE (so a code already
used cannot be used again), the scratch codes as backup codes. Not carried, and said:
RATE_LIMIT (twostep's lock-out applies). Refused for that user: HOTP counters (twostep
is time-based only), OTP_DISABLED, unknown options, anything that does not parse.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import pwd
import re
import stat
from pathlib import Path

from ..core.candidate import Candidate, Problem
from ..core.totp import TotpParams

__all__ = ["MAX_FILE", "parse", "read"]

MAX_FILE = 4096
"""The PAM module itself stops at 1 KiB; anything much larger is not such a file."""
_BASE32 = re.compile(r"[A-Z2-7]+=*")
_SCRATCH = re.compile(r"\d{8}")
_OPTION = re.compile(r'" ([A-Z]+_[A-Z_]*|[A-Z]+)((?: [^ ]+)*) *')


def _number(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} {text[:20]!r}: not a number from {low} to {high}")
    return int(text)


def parse(data: bytes, source: str, user: str) -> Candidate:
    """The candidate in one file's bytes; ``ValueError`` saying why there is none."""
    if len(data) > MAX_FILE:
        raise ValueError(f"larger than {MAX_FILE} bytes: not a google-authenticator file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII text: not a google-authenticator file") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not _BASE32.fullmatch(lines[0].strip().upper()):
        raise ValueError("the first line is not a base32 secret")
    encoded = lines[0].strip().upper().rstrip("=")
    try:
        secret = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except binascii.Error:
        raise ValueError("the first line is not a base32 secret") from None

    options: dict[str, list[str]] = {}
    scratch: list[str] = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        match = _OPTION.fullmatch(line)
        if match:
            name = match.group(1)
            if name in options:
                raise ValueError(f"line {number}: {name} given twice")
            options[name] = match.group(2).split()
        elif _SCRATCH.fullmatch(line):
            scratch.append(line)
        else:
            raise ValueError(f"line {number}: neither an option nor an eight-digit scratch code")

    known = {
        "TOTP_AUTH",
        "HOTP_COUNTER",
        "STEP_SIZE",
        "WINDOW_SIZE",
        "DISALLOW_REUSE",
        "RATE_LIMIT",
        "OTP_DISABLED",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]}: not importing what we do not understand")
    if "OTP_DISABLED" in options:
        raise ValueError("OTP_DISABLED: one-time passwords are off for this user")
    if "HOTP_COUNTER" in options:
        raise ValueError("counter-based (HOTP): twostep is time-based only; enroll this user anew")
    if "TOTP_AUTH" not in options:
        raise ValueError("no TOTP_AUTH: the secret is not for time-based codes")

    notes: list[str] = []
    period = 30
    if "STEP_SIZE" in options:
        period = _number("STEP_SIZE", " ".join(options["STEP_SIZE"]), 15, 300)
    window = None
    if "WINDOW_SIZE" in options:
        size = _number("WINDOW_SIZE", " ".join(options["WINDOW_SIZE"]), 1, 21)
        window = min((size - 1) // 2, 2)
        if (size - 1) // 2 > 2:
            notes.append(f"WINDOW_SIZE {size} (±{(size - 1) // 2} steps) narrowed to ±2 steps")
    last_step = None
    if "DISALLOW_REUSE" in options:
        steps = [_number("DISALLOW_REUSE", s, 0, 2**40) for s in options["DISALLOW_REUSE"]]
        last_step = max(steps) if steps else None
    else:
        notes.append("codes could be reused before; twostep accepts each code once")
    if "RATE_LIMIT" in options:
        limit = options["RATE_LIMIT"][:2]
        notes.append(f"RATE_LIMIT {' '.join(limit)} not carried: the lock-out policy applies")
    if len(set(scratch)) != len(scratch):
        raise ValueError("a scratch code is listed twice")
    return Candidate(
        source=source,
        match=user,
        secret=secret,
        params=TotpParams(period=period),
        last_step=last_step,
        window=window,
        backup_codes=tuple(scratch),
        notes=tuple(notes),
    )


def user_from_path(path: Path) -> str:
    """``/home/alice/.google_authenticator`` -> alice; ``/srv/ga/alice`` -> alice."""
    return path.parent.name if path.name == ".google_authenticator" else path.name


def read(path: Path, user: str | None = None) -> Candidate | Problem:
    """One file: the user named, or the one its path names (who must own it, or root)."""
    name = user or user_from_path(path)
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return Problem(source, name, f"cannot open ({exc.strerror})")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Problem(source, name, "not a regular file")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return Problem(source, name, "writable by others: its secret cannot be trusted")
        if user is None and info.st_uid != 0:
            try:
                owner = pwd.getpwuid(info.st_uid).pw_name
            except KeyError:
                owner = f"uid {info.st_uid}"
            if owner != name:
                return Problem(source, name, f"owned by {owner}, not by {name} or root")
        data = os.read(fd, MAX_FILE + 1)
    except OSError as exc:
        return Problem(source, name, f"cannot read ({exc.strerror})")
    finally:
        os.close(fd)
    try:
        candidate = parse(data, source, name)
    except ValueError as exc:
        return Problem(source, name, str(exc))
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        note = "the file was readable by others: consider enrolling anew"
        return dataclasses.replace(candidate, notes=(*candidate.notes, note))
    return candidate
