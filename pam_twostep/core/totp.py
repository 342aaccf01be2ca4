"""RFC 4226 HOTP and RFC 6238 TOTP, with the replay watermark made explicit.

HOTP is a dozen lines of ``hmac``; writing it here keeps every step of the check in one
place where the tests can hold it against the RFC tables (and against pyotp). A code is
matched to the *time step* it belongs to, because the caller must store that step as
the new watermark: a step at or below the watermark has been used and never passes again.
"""

from __future__ import annotations

import base64
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

from pyotp.utils import build_uri

__all__ = [
    "SECRET_BYTES",
    "Algorithm",
    "StepMatch",
    "TotpParams",
    "decode_secret",
    "encode_secret",
    "hotp",
    "match_step",
    "provisioning_uri",
    "time_step",
    "totp",
]

SECRET_BYTES = 20
"""160 bits, as RFC 4226 recommends (NIST asks for at least 112)."""


class Algorithm(Enum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"

    @property
    def digestmod(self) -> str:
        return self.value.lower()


@dataclass(frozen=True)
class TotpParams:
    """How an authenticator computes codes; stored beside each secret."""

    algorithm: Algorithm = Algorithm.SHA1
    digits: int = 6
    period: int = 30

    def __post_init__(self) -> None:
        if self.digits not in (6, 7, 8):
            raise ValueError("digits must be 6, 7 or 8")
        if not 15 <= self.period <= 300:
            raise ValueError("period must be between 15 and 300 seconds")


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: Algorithm = Algorithm.SHA1) -> str:
    """RFC 4226 section 5.3, with the digest RFC 6238 allows."""
    mac = hmac.new(key, struct.pack(">Q", counter), algorithm.digestmod).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(now: float, period: int) -> int:
    return int(now // period)


def totp(key: bytes, now: float, params: TotpParams = TotpParams()) -> str:
    return hotp(key, time_step(now, params.period), params.digits, params.algorithm)


class StepMatch(Enum):
    MATCH = "match"
    REPLAYED = "replayed"
    NO_MATCH = "no-match"


def match_step(
    key: bytes,
    code: str,
    *,
    now: float,
    params: TotpParams,
    window: int,
    watermark: int | None,
) -> tuple[StepMatch, int | None]:
    """Find the step within ``window`` of now whose code equals ``code``.

    Every candidate is computed and compared in constant time, so the answer's timing
    says nothing about which step matched. Returns the latest unused matching step; a
    code that matches only used steps is ``REPLAYED``.
    """
    if len(code) != params.digits or not code.isascii() or not code.isdigit():
        return StepMatch.NO_MATCH, None
    current = time_step(now, params.period)
    fresh: int | None = None
    replayed = False
    for step in range(current - window, current + window + 1):
        candidate = hotp(key, step, params.digits, params.algorithm)
        if hmac.compare_digest(candidate.encode(), code.encode()):
            if watermark is not None and step <= watermark:
                replayed = True
            else:
                fresh = step
    if fresh is not None:
        return StepMatch.MATCH, fresh
    return (StepMatch.REPLAYED if replayed else StepMatch.NO_MATCH), None


def encode_secret(secret: bytes) -> str:
    """Base32 without padding, the form authenticator apps expect."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def decode_secret(text: str) -> bytes:
    """Inverse of ``encode_secret``; tolerant of case, spaces and missing padding."""
    compact = "".join(text.split()).upper()
    return base64.b32decode(compact + "=" * (-len(compact) % 8))


def provisioning_uri(secret: bytes, *, account: str, issuer: str, params: TotpParams) -> str:
    """The otpauth:// URI a QR code carries (Google's Key Uri Format)."""
    return build_uri(
        encode_secret(secret),
        account,
        issuer=issuer or None,
        algorithm=params.algorithm.value.lower(),
        digits=params.digits,
        period=params.period,
    )
