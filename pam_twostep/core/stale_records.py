"""What lets a stale client be told from a guesser: credentials that once worked
(``twostepRetired``) and the clients seen still presenting one (``twostepStaleClient``).

Stored like every record (``records``); ``core.staleclients`` says what they are for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ._stored import (
    _ADDRESS,
    _DIGEST,
    _ID,
    _KEY_ID,
    _SERVICE,
    _STAMP,
    _dump,
    _flag,
    _label,
    _load,
    _text,
    _time,
    check_label,
)

__all__ = ["PasswordVerifier", "RetiredPasscode", "StaleClient", "load_retired"]

_VERIFIER = re.compile(r"[0-9a-f]{16}")
_WHY = frozenset({"revoked", "expired", "password", "disabled"})
_STALE_KINDS = frozenset({"passcode", "old-password", "password"})


@dataclass(frozen=True)
class RetiredPasscode:
    """A passcode that worked once and was revoked, expired or died with the password:
    kept (digest and label only) so a client still sending it is recognised."""

    id: str
    label: str
    digest: str
    retired: int
    why: str
    """revoked, expired, password (changed), disabled (two-step turned off)."""

    _KEYS: ClassVar[frozenset[str]] = frozenset({"kind", "id", "label", "h", "t", "why"})

    def dump(self) -> str:
        return _dump(
            {
                "kind": "passcode",
                "id": self.id,
                "label": self.label,
                "h": self.digest,
                "t": self.retired,
                "why": self.why,
            }
        )

    @classmethod
    def load(cls, value: str) -> RetiredPasscode:
        data = _load(value, cls._KEYS)
        why = data["why"]
        if data["kind"] != "passcode" or why not in _WHY:
            raise ValueError("kind/why: malformed")
        return cls(
            id=_text(data, "id", _ID),
            label=_label(data),
            digest=_text(data, "h", _DIGEST),
            retired=_time(data, "t"),
            why=why,
        )


@dataclass(frozen=True)
class PasswordVerifier:
    """64 bits of an HMAC of a password under a sealing key (``core.staleclients``),
    written at the first login under that password. While ``stamp`` is the entry's it
    tells a password sent where mail no longer takes it; after a change, the old one."""

    stamp: str
    key_id: str
    mac: str
    seen: int
    until: int
    """When it was seen replaced (0: not yet)."""

    _KEYS: ClassVar[frozenset[str]] = frozenset({"kind", "pw", "k", "h", "t", "until"})

    def dump(self) -> str:
        return _dump(
            {
                "kind": "password",
                "pw": self.stamp,
                "k": self.key_id,
                "h": self.mac,
                "t": self.seen,
                "until": self.until,
            }
        )

    @classmethod
    def load(cls, value: str) -> PasswordVerifier:
        data = _load(value, cls._KEYS)
        if data["kind"] != "password":
            raise ValueError("kind: malformed")
        return cls(
            stamp=_text(data, "pw", _STAMP),
            key_id=_text(data, "k", _KEY_ID),
            mac=_text(data, "h", _VERIFIER),
            seen=_time(data, "t"),
            until=_time(data, "until"),
        )


def load_retired(value: str) -> RetiredPasscode | PasswordVerifier:
    """A ``twostepRetired`` value, whichever of the two kinds it is."""
    if '"kind":"password"' in value:  # each parser refuses the other's values anyway
        return PasswordVerifier.load(value)
    return RetiredPasscode.load(value)


@dataclass(frozen=True)
class StaleClient:
    """A client still presenting a retired credential from one address to one service.

    Says which credential (kind, label), never what was sent."""

    id: str
    kind: str
    """passcode (revoked or expired), old-password, password (where mail refuses it)."""
    ref: str
    """The passcode's id, or the stamp of the password."""
    label: str
    since: int
    """When the credential stopped working (0: not known)."""
    address: str
    service: str
    first: int
    last: int
    told: bool
    dismissed: bool

    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"id", "cred", "ref", "label", "since", "addr", "svc", "first", "last", "told", "gone"}
    )

    def dump(self) -> str:
        return _dump(
            {
                "id": self.id,
                "cred": self.kind,
                "ref": self.ref,
                "label": self.label,
                "since": self.since,
                "addr": self.address,
                "svc": self.service,
                "first": self.first,
                "last": self.last,
                "told": self.told,
                "gone": self.dismissed,
            }
        )

    @classmethod
    def load(cls, value: str) -> StaleClient:
        data = _load(value, cls._KEYS)
        kind = data["cred"]
        if kind not in _STALE_KINDS:
            raise ValueError("cred: malformed")
        ref = data["ref"]
        if not isinstance(ref, str) or not (_ID.fullmatch(ref) or _STAMP.fullmatch(ref)):
            raise ValueError("ref: malformed")
        label = data["label"]
        if not isinstance(label, str) or (label and check_label(label) != label):
            raise ValueError("label: malformed")
        return cls(
            id=_text(data, "id", _ID),
            kind=kind,
            ref=ref,
            label=label,
            since=_time(data, "since"),
            address=_text(data, "addr", _ADDRESS),
            service=_text(data, "svc", _SERVICE),
            first=_time(data, "first"),
            last=_time(data, "last"),
            told=_flag(data, "told"),
            dismissed=_flag(data, "gone"),
        )
