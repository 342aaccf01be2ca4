"""The key files behind the keyring: reading them at start-up, writing a new one.

Key files are ``<key id>.key`` in the key directory, each holding 32 random bytes in
base64 on one line, readable by their owner only. This is the keyring's only file I/O,
kept out of ``core/keyring.py`` so the core stays pure.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from .core.errors import ConfigError
from .core.keyring import KEY_BYTES, Keyring
from .secretfile import read_secret_file

__all__ = ["load_keyring", "write_key_file"]


def load_keyring(directory: Path, current: str) -> Keyring:
    """Every ``*.key`` file in ``directory``; unsafe or malformed files are refused."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(f"keys.directory {directory}: {exc.strerror}") from None
    keys: dict[str, bytes] = {}
    for name in names:
        if not name.endswith(".key"):
            continue
        path = directory / name
        text = read_secret_file(path, "keys.directory: key file")
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ConfigError(f"key file {path}: not base64") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(f"key file {path}: must hold {KEY_BYTES} bytes, has {len(key)}")
        keys[name[: -len(".key")]] = key
    if not keys:
        raise ConfigError(f"keys.directory {directory}: no *.key files")
    return Keyring(keys, current)


def write_key_file(path: Path, key: bytes) -> None:
    """Create a new key file, readable by its owner only; never overwrite one."""
    if len(key) != KEY_BYTES:
        raise ValueError("key must be 32 bytes")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode("ascii") + "\n")
