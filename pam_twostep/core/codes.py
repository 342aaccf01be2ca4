"""The secrets twostep hands to people: backup codes, application passcodes, device tokens.

They share one alphabet of 32 symbols without 0/O and 1/I, so a code read off paper or
a screen survives being typed, and each symbol carries exactly 5 bits (a random byte
masked to 5 bits is unbiased). Input is compared after ``normalize``: case, spaces and
dashes do not matter. Lengths are chosen so that the kind of a code follows from its
length alone (TOTP codes are 6 to 8 digits).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from enum import Enum

__all__ = [
    "ALPHABET",
    "BACKUP_CODE_LENGTH",
    "PASSCODE_LENGTH",
    "CodeKind",
    "Random",
    "classify",
    "group",
    "is_id",
    "new_backup_code",
    "new_device_token",
    "new_id",
    "new_passcode",
    "normalize",
    "split_device_token",
]

Random = Callable[[int], bytes]
"""Where randomness comes from: ``secrets.token_bytes`` in production, a seeded stub in tests."""

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
BACKUP_CODE_LENGTH = 10
"""50 bits: single use, rate limited, stored with a salted slow hash (NIST: 20+ bits)."""
PASSCODE_LENGTH = 24
"""120 bits (Zimbra's 16 letters give 75): above NIST's 112, so a fast hash is enough."""
_ID_LENGTH = 8
_TOKEN_BYTES = 32
_ALLOWED = frozenset(ALPHABET)
_SEPARATORS = re.compile(r"[\s\-]+")
_ID_PATTERN = re.compile(r"[2-9a-hj-np-z]{8}")
_TOKEN_PATTERN = re.compile(r"([2-9a-hj-np-z]{8})\.([A-Za-z0-9_-]{43})")


def _draw(random: Random, length: int) -> str:
    return "".join(ALPHABET[byte & 31] for byte in random(length))


def new_backup_code(random: Random) -> str:
    return _draw(random, BACKUP_CODE_LENGTH)


def new_passcode(random: Random) -> str:
    return _draw(random, PASSCODE_LENGTH)


def new_id(random: Random) -> str:
    """A short public identifier for a passcode or device (not a secret)."""
    return _draw(random, _ID_LENGTH).lower()


def new_device_token(random: Random, device_id: str) -> str:
    """``<id>.<256 random bits>``: the id finds the record, the rest proves possession."""
    secret = base64.urlsafe_b64encode(random(_TOKEN_BYTES)).decode("ascii").rstrip("=")
    return f"{device_id}.{secret}"


def split_device_token(token: str) -> tuple[str, str] | None:
    """The (id, token) pair of a well-formed device token, else None."""
    match = _TOKEN_PATTERN.fullmatch(token)
    return (match.group(1), token) if match else None


def is_id(text: str) -> bool:
    return _ID_PATTERN.fullmatch(text) is not None


def normalize(text: str) -> str:
    """What a person typed, reduced to what is compared: upper case, no spaces or dashes.

    Only ASCII is case-folded: Unicode case mapping can change a string's length
    (``ß`` -> ``SS``), and a code never contains anything but ASCII anyway.
    """
    compact = _SEPARATORS.sub("", text)
    return compact.upper() if compact.isascii() else compact


def group(code: str, size: int, separator: str = "-") -> str:
    """``ABCDEFGH`` -> ``ABCD-EFGH``: easier to read aloud and to type."""
    return separator.join(code[i : i + size] for i in range(0, len(code), size))


class CodeKind(Enum):
    TOTP = "totp"
    BACKUP_CODE = "backup-code"
    PASSCODE = "passcode"
    OTHER = "other"


def classify(normalized: str, digits: int) -> CodeKind:
    """Tell the kind of a normalized code from its shape alone."""
    if len(normalized) == digits and normalized.isascii() and normalized.isdigit():
        return CodeKind.TOTP
    if _ALLOWED.issuperset(normalized) and len(normalized) == PASSCODE_LENGTH:
        return CodeKind.PASSCODE
    if 6 <= len(normalized) <= 16 and normalized.isascii() and normalized.isalnum():
        # ours are 10 symbols; imported ones keep their shape (google-authenticator's
        # eight digits, Zimbra's eight base32 letters)
        return CodeKind.BACKUP_CODE
    return CodeKind.OTHER
