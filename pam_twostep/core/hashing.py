"""How the secrets we hand out are stored: hashed, never reversibly.

Two schemes, chosen by the entropy of what is hashed (NIST SP 800-63B 5.1.2.2):

* backup codes carry 50 bits, so they get a salted slow hash (argon2id, small work
  factor: they are single use and every attempt counts towards lock-out);
* passcodes (120 bits) and device tokens (256 bits) are beyond guessing, so an approved
  one-way function suffices: domain-separated SHA-256. A login therefore costs one fast
  hash however many passcodes the user holds, and a wrong passcode costs the same as a
  right one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence

from argon2 import low_level
from argon2.exceptions import VerificationError

__all__ = [
    "digest_matches",
    "fast_digest",
    "hash_backup_code",
    "plausible_backup_hash",
    "verify_backup_codes",
]

_ARGON2_TIME = 2
_ARGON2_MEMORY_KIB = 8192
_ARGON2_PARALLELISM = 1
_ARGON2_HASH_LEN = 32
SALT_BYTES = 16
_PHC = re.compile(
    r"\$argon2id\$v=19\$m=(\d{1,6}),t=(\d{1,2}),p=(\d{1,2})\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{22,86}"
)
# What a stored hash may ask of a verifier: verifying costs what the hash says, so a
# value written by someone else must not name gigabytes or minutes.
_MAX_MEMORY_KIB = 65536
_MAX_TIME = 10
_MAX_PARALLELISM = 4


def hash_backup_code(normalized: str, salt: bytes) -> str:
    """argon2id PHC string; the salt comes from the caller's random source."""
    if len(salt) != SALT_BYTES:
        raise ValueError("salt must be 16 bytes")
    encoded: bytes = low_level.hash_secret(
        normalized.encode("ascii"),
        salt,
        time_cost=_ARGON2_TIME,
        memory_cost=_ARGON2_MEMORY_KIB,
        parallelism=_ARGON2_PARALLELISM,
        hash_len=_ARGON2_HASH_LEN,
        type=low_level.Type.ID,
    )
    return encoded.decode("ascii")


def plausible_backup_hash(encoded: str) -> bool:
    """Whether ``encoded`` is an argon2id PHC string with a cost we are willing to pay."""
    match = _PHC.fullmatch(encoded)
    if match is None:
        return False
    memory, time_cost, parallelism = (int(g) for g in match.groups())
    return (
        8 * parallelism <= memory <= _MAX_MEMORY_KIB
        and 1 <= time_cost <= _MAX_TIME
        and 1 <= parallelism <= _MAX_PARALLELISM
    )


def verify_backup_codes(hashes: Sequence[str], normalized: str) -> int | None:
    """Index of the stored hash that ``normalized`` matches, or None.

    Every hash is tried, with no early exit, so a right code and a wrong one cost the
    same. A hash that is not plausible never matches and is never computed; the caller
    has already refused entries holding one.
    """
    found: int | None = None
    secret = normalized.encode("ascii", "replace")
    for index, encoded in enumerate(hashes):
        if not plausible_backup_hash(encoded):
            continue
        try:
            if low_level.verify_secret(encoded.encode("ascii"), secret, low_level.Type.ID):
                found = index if found is None else found
        except (VerificationError, ValueError):
            continue
    return found


def fast_digest(purpose: str, secret: str) -> str:
    """SHA-256 over a purpose label and the secret, base64url without padding."""
    raw = hashlib.sha256(f"twostep:{purpose}\0{secret}".encode()).digest()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def digest_matches(stored: str, presented: str) -> bool:
    """Constant-time equality of two digests."""
    return hmac.compare_digest(stored.encode("ascii", "replace"), presented.encode("ascii"))
