"""The JSON form every stored two-step record shares, and the checks of its fields.

Compact, sorted keys, ASCII only: the value read back is byte-for-byte the value
written, which a delete of exactly that value relies on (``records``).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_LABEL_LENGTH", "MAX_VALUE_LENGTH", "check_label", "check_service_name"]

MAX_VALUE_LENGTH = 2048
MAX_LABEL_LENGTH = 64
_MAX_TIME = 1 << 40
_SERVICE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
"""As ``engine._inputs`` lets a service name through: a failure recorded under
"dovecot.imap" must not make the entry unreadable."""
_ID = re.compile(r"[2-9a-hj-np-z]{8}")
_DIGEST = re.compile(r"[A-Za-z0-9_-]{43}")
_STAMP = re.compile(r"[0-9a-f]{32}")
_NONCE = re.compile(r"[0-9a-f]{8,32}")
_ADDRESS = re.compile(r"[0-9A-Fa-f.:%a-zA-Z_-]{0,64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def check_label(label: str) -> str:
    """A label people chose: 1-64 printable characters, no leading or trailing space."""
    if not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise ValueError(f"a label has 1 to {MAX_LABEL_LENGTH} characters")
    if label != label.strip() or not label.isprintable():
        raise ValueError("a label has printable characters and no surrounding spaces")
    return label


def check_service_name(name: str) -> str:
    if not _SERVICE.fullmatch(name):
        raise ValueError(f"{name[:40]!r} is not a service name (like imap, pop3, smtp)")
    return name


def _dump(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def _load(
    value: str, keys: frozenset[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError("value too long")
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    present = frozenset(data)
    if not keys <= present or not present <= keys | optional:
        raise ValueError("unexpected or missing keys")
    return data


def _time(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_TIME:
        raise ValueError(f"{key}: not a time")
    return value


def _text(data: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = data[key]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{key}: malformed")
    return value


def _label(data: dict[str, Any]) -> str:
    value = data["label"]
    if not isinstance(value, str):
        raise ValueError("label: malformed")
    return check_label(value)


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key}: malformed")
    return value
