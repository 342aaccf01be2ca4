"""Reading a file that holds a secret (the service password, an encryption key).

A secret file that others can read is a secret no more, so it is refused outright
rather than warned about; the message names the file and says how to fix it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .core.errors import ConfigError

__all__ = ["read_secret_file"]

_MAX_BYTES = 4096


def read_secret_file(path: Path, what: str) -> str:
    """The file's text without surrounding whitespace; ``ConfigError`` if it is unsafe."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} {path}: not a regular file")
        if info.st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH):
            raise ConfigError(
                f"{what} {path}: readable or writable by everyone (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run chmod 0600 {path}"
            )
        if info.st_mode & stat.S_IWGRP:
            raise ConfigError(
                f"{what} {path}: writable by its group (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run chmod 0640 {path}"
            )
        data = os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        raise ConfigError(f"{what} {path}: larger than {_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path}: not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{what} {path}: empty")
    return text
