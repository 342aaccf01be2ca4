"""The keys that seal TOTP secrets at rest, and the sealing itself (AES-256-GCM).

A TOTP secret must be recoverable (the verifier computes codes from it), so it cannot be
hashed; it is encrypted with a key that lives in a file outside the directory. Each
sealed value names its key, so a new key can become current while values sealed with
older keys stay readable until they are re-sealed. The entry's ``entryUUID`` is bound in
as associated data: a value copied onto another entry does not open.

The key files themselves are read and written by ``keyfiles.py``, at the edge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, KeyUnavailable

__all__ = ["KEY_BYTES", "NONCE_BYTES", "Keyring"]

KEY_BYTES = 32
NONCE_BYTES = 12
_SCHEME = "aes256gcm"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_MAX_SEALED = 1024


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Keyring:
    """Keys by id, and which one seals new values."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise ConfigError(f"key id {key_id!r}: use letters, digits, - and _ only")
            if len(key) != KEY_BYTES:
                raise ConfigError(f"key {key_id}: must be {KEY_BYTES} bytes")
        if current not in keys:
            raise ConfigError(f"keys.current: no key file for key id {current!r}")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        # a MAC key of its own per sealing key, so no key serves two algorithms
        self._mac = {
            key_id: hmac.new(key, b"twostep-mac-key", hashlib.sha256).digest()
            for key_id, key in keys.items()
        }
        self.current = current

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._aead)

    def seal(self, plaintext: bytes, *, context: bytes, nonce: bytes) -> str:
        """``aes256gcm:<key id>:<nonce>:<ciphertext+tag>`` under the current key."""
        if len(nonce) != NONCE_BYTES:
            raise ValueError("nonce must be 12 bytes")
        sealed = self._aead[self.current].encrypt(nonce, plaintext, context)
        return f"{_SCHEME}:{self.current}:{_b64encode(nonce)}:{_b64encode(sealed)}"

    def mac(self, message: bytes, key_id: str | None = None) -> tuple[str, bytes] | None:
        """HMAC-SHA256 of ``message`` under the MAC key of ``key_id`` (the current one by
        default), with that id; None when that key is not loaded."""
        key_id = self.current if key_id is None else key_id
        key = self._mac.get(key_id)
        if key is None:
            return None
        return key_id, hmac.new(key, message, hashlib.sha256).digest()

    def key_of(self, sealed: str) -> str:
        """The key id a sealed value names (for re-sealing after rotation)."""
        return self._parse(sealed)[0]

    def open(self, sealed: str, *, context: bytes) -> bytes:
        """The plaintext; ``ValueError`` if the value is malformed or does not authenticate,
        ``KeyUnavailable`` if it names a key we do not hold."""
        key_id, nonce, ciphertext = self._parse(sealed)
        aead = self._aead.get(key_id)
        if aead is None:
            raise KeyUnavailable(f"value sealed with key {key_id!r}, which is not loaded")
        try:
            return aead.decrypt(nonce, ciphertext, context)
        except InvalidTag:
            raise ValueError("does not decrypt with its key (altered or moved?)") from None

    @staticmethod
    def _parse(sealed: str) -> tuple[str, bytes, bytes]:
        if len(sealed) > _MAX_SEALED:
            raise ValueError("sealed value too long")
        parts = sealed.split(":")
        if len(parts) != 4 or parts[0] != _SCHEME or not _KEY_ID.fullmatch(parts[1]):
            raise ValueError("not a sealed value")
        nonce = _b64decode(parts[2])
        ciphertext = _b64decode(parts[3])
        if len(nonce) != NONCE_BYTES or len(ciphertext) < 16:
            raise ValueError("not a sealed value")
        return parts[1], nonce, ciphertext
