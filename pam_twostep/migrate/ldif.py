"""Reading LDIF content records (RFC 2849), as ``slapcat`` and ``zmprov`` export them.

Only what an export holds: entries of ``attribute: value`` and ``attribute:: base64``
lines, folded lines (a leading space continues the previous one), comments and blank
lines between entries. Change records and ``attribute:< URL`` values are refused: an
import never fetches anything. Each entry comes with the line it started on, so a
report can point at it; a malformed entry is reported and the rest go on.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Entry", "LdifError", "entries"]

MAX_ENTRY = 1 << 20


class LdifError(ValueError):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line


@dataclass(frozen=True)
class Entry:
    dn: str
    line: int
    attributes: dict[str, list[str]]
    """Names lower-cased; values decoded as UTF-8."""

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name.lower())
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return self.attributes.get(name.lower(), [])


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if line.startswith(" ") and current:
            current.append(line[1:])
            continue
        if current:
            yield start, "".join(current)
        current, start = [line], number
    if current:
        yield start, "".join(current)


def _entry(block: list[tuple[int, str]]) -> Entry:
    start = block[0][0]
    attributes: dict[str, list[str]] = {}
    dn: str | None = None
    size = 0
    for number, line in block:
        size += len(line)
        if size > MAX_ENTRY:
            raise LdifError(start, "an entry larger than 1 MiB")
        name, colon, rest = line.partition(":")
        if not colon or not name or not name.replace("-", "").replace(";", "").isalnum():
            raise LdifError(number, "not 'attribute: value'")
        if rest.startswith(":"):
            try:
                value = base64.b64decode(rest[1:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise LdifError(number, f"{name}: not base64 of UTF-8 text") from None
        elif rest.startswith("<"):
            raise LdifError(number, f"{name}: values by URL are not read")
        else:
            value = rest.lstrip(" ")
        key = name.lower()
        if dn is None:
            if key != "dn":
                raise LdifError(number, "an entry must start with dn:")
            dn = value
            continue
        if key in ("changetype", "control"):
            raise LdifError(number, "change records are not an export")
        attributes.setdefault(key, []).append(value)
    if dn is None:  # pragma: no cover - a block always has a first line
        raise LdifError(start, "empty entry")
    return Entry(dn, start, attributes)


def entries(text: str) -> Iterator[Entry | LdifError]:
    """Every entry in order, or the error that stopped reading one."""
    block: list[tuple[int, str]] = []
    for number, line in _logical_lines(text):
        if line.startswith("#"):
            continue
        if line.strip() == "":
            if block:
                yield _safe(block)
                block = []
            continue
        if not block and line.lower().startswith("version:"):
            continue
        block.append((number, line))
    if block:
        yield _safe(block)


def _safe(block: list[tuple[int, str]]) -> Entry | LdifError:
    try:
        return _entry(block)
    except LdifError as exc:
        return exc
