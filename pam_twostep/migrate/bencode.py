"""Decoding bencoding, the encoding Zimbra stores application passcode records in.

``i<n>e`` integers, ``<length>:<bytes>`` strings, ``l...e`` lists, ``d...e``
dictionaries with string keys. Strict and bounded: nesting, lengths and the input are
checked, so a hostile value costs nothing and raises ``ValueError``.
"""

from __future__ import annotations

__all__ = ["decode"]

_MAX_DEPTH = 8
_MAX_INPUT = 64 * 1024

Value = int | str | list["Value"] | dict[str, "Value"]


def decode(text: str) -> Value:
    data = text.encode("utf-8")
    if len(data) > _MAX_INPUT:
        raise ValueError("too long")
    value, end = _value(data, 0, 0)
    if end != len(data):
        raise ValueError("trailing data")
    return value


def _value(data: bytes, at: int, depth: int) -> tuple[Value, int]:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if at >= len(data):
        raise ValueError("truncated")
    head = data[at : at + 1]
    if head == b"i":
        end = data.find(b"e", at)
        digits = data[at + 1 : end] if end > 0 else b""
        if not digits or not digits.lstrip(b"-").isdigit() or len(digits) > 20:
            raise ValueError("not an integer")
        return int(digits), end + 1
    if head == b"l":
        items: list[Value] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _value(data, at, depth + 1)
            items.append(item)
        return items, at + 1
    if head == b"d":
        mapping: dict[str, Value] = {}
        at += 1
        while data[at : at + 1] != b"e":
            key, at = _value(data, at, depth + 1)
            if not isinstance(key, str):
                raise ValueError("a dictionary key that is not a string")
            mapping[key], at = _value(data, at, depth + 1)
        return mapping, at + 1
    if head.isdigit():
        colon = data.find(b":", at)
        length = data[at:colon] if colon > 0 else b""
        if not length.isdigit() or len(length) > 6:
            raise ValueError("not a string length")
        start = colon + 1
        end = start + int(length)
        if end > len(data):
            raise ValueError("truncated string")
        try:
            return data[start:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise ValueError("a string that is not UTF-8") from None
    raise ValueError("not bencoding")
