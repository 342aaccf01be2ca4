"""What an import carries for one user, whatever system it came from.

A ``Candidate`` is complete and checked before anything is sent: a source whose record
for a user is malformed yields a ``Problem`` for that user instead, so nothing is ever
half written. ``notes`` say what the old system had that twostep does not carry (HOTP
counters, rate limits, trusted devices, passcodes to re-issue); the report shows them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .codes import normalize
from .totp import TotpParams

__all__ = ["Candidate", "LegacyPasscode", "Problem", "check_backup_code"]

MIN_SECRET_BYTES = 10
"""80 bits: below that an imported key is refused (RFC 4226 asks 128, recommends 160)."""
MAX_SECRET_BYTES = 64


@dataclass(frozen=True)
class LegacyPasscode:
    """An application passcode the old system held as a hash twostep cannot verify."""

    label: str
    created: int | None = None


@dataclass(frozen=True)
class Candidate:
    source: str
    """Where the record came from (a file, a file and line, an LDIF entry)."""
    match: str
    """The value looked up in the directory under the match attribute."""
    secret: bytes
    params: TotpParams = TotpParams()
    last_step: int | None = None
    """The last time step the old system accepted: codes up to it are spent."""
    window: int | None = None
    """Steps accepted either side of now, when the old system asked for other than 1."""
    backup_codes: tuple[str, ...] = ()
    policy: str | None = None
    """A policy (class of service) to assign, by name."""
    legacy_passcodes: tuple[LegacyPasscode, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not MIN_SECRET_BYTES <= len(self.secret) <= MAX_SECRET_BYTES:
            raise ValueError(
                f"the key has {len(self.secret) * 8} bits; twostep takes "
                f"{MIN_SECRET_BYTES * 8} to {MAX_SECRET_BYTES * 8}"
            )
        for code in self.backup_codes:
            check_backup_code(code)

    def __repr__(self) -> str:  # never the key or the codes
        return f"Candidate(source={self.source!r}, match={self.match!r})"

    @property
    def secret_base32(self) -> str:
        return base64.b32encode(self.secret).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Problem:
    """A user (or a part of the input) that cannot be imported, and why."""

    source: str
    match: str
    why: str


def check_backup_code(code: str) -> str:
    """An imported one-time code as twostep will compare it: 6 to 16 letters and digits."""
    normalized = normalize(code)
    if not (6 <= len(normalized) <= 16 and normalized.isascii() and normalized.isalnum()):
        raise ValueError("a backup code has 6 to 16 letters and digits")
    return normalized
