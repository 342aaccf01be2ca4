"""The structured values stored in multi-valued two-step attributes, and their strict parsers.

Each passcode, trusted device, webmail session, usage note, failure and pending enrollment is one
attribute value: compact JSON with sorted keys and ASCII only, so the value read back is
byte-for-byte the value written. That matters: consuming or replacing a value is an LDAP
modify that deletes *exactly* that value, which is how concurrent writers are told apart.

Parsers accept only what the writers produce (known keys, right types, bounded sizes)
and raise ``ValueError`` otherwise; the account layer turns that into ``CorruptEntry``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from .totp import Algorithm, TotpParams

__all__ = [
    "MAX_BIND",
    "MAX_LABEL_LENGTH",
    "MAX_VALUE_LENGTH",
    "Device",
    "Failure",
    "Passcode",
    "Pending",
    "Usage",
    "WebSession",
    "check_label",
    "check_service_name",
    "normalize_address",
]

from ._stored import (
    _ADDRESS,
    _DIGEST,
    _ID,
    _NONCE,
    _SERVICE,
    _STAMP,
    MAX_LABEL_LENGTH,
    MAX_VALUE_LENGTH,
    _dump,
    _label,
    _load,
    _text,
    _time,
    check_label,
    check_service_name,
)

MAX_BIND = 4
"""Addresses one webmail session credential may be used from."""
_MAX_SERVICES = 16


@dataclass(frozen=True)
class Passcode:
    """An application passcode; ``stamp`` ties it to the password it was created under."""

    id: str
    label: str
    digest: str
    created: int
    expires: int
    """0 = never."""
    services: tuple[str, ...]
    """Empty = every mail service."""
    stamp: str

    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"id", "label", "h", "created", "expires", "services", "pw"}
    )

    def dump(self) -> str:
        return _dump(
            {
                "id": self.id,
                "label": self.label,
                "h": self.digest,
                "created": self.created,
                "expires": self.expires,
                "services": list(self.services),
                "pw": self.stamp,
            }
        )

    @classmethod
    def load(cls, value: str) -> Passcode:
        data = _load(value, cls._KEYS)
        services = data["services"]
        if not isinstance(services, list) or len(services) > _MAX_SERVICES:
            raise ValueError("services: malformed")
        for name in services:
            if not isinstance(name, str):
                raise ValueError("services: malformed")
            check_service_name(name)
        return cls(
            id=_text(data, "id", _ID),
            label=_label(data),
            digest=_text(data, "h", _DIGEST),
            created=_time(data, "created"),
            expires=_time(data, "expires"),
            services=tuple(services),
            stamp=_text(data, "pw", _STAMP),
        )

    def allows(self, service: str) -> bool:
        return not self.services or service in self.services


@dataclass(frozen=True)
class Device:
    """A trusted device (browser, workstation) that may skip the code until ``expires``."""

    id: str
    label: str
    digest: str
    created: int
    expires: int
    stamp: str

    _KEYS: ClassVar[frozenset[str]] = frozenset({"id", "label", "h", "created", "expires", "pw"})

    def dump(self) -> str:
        return _dump(
            {
                "id": self.id,
                "label": self.label,
                "h": self.digest,
                "created": self.created,
                "expires": self.expires,
                "pw": self.stamp,
            }
        )

    @classmethod
    def load(cls, value: str) -> Device:
        data = _load(value, cls._KEYS)
        return cls(
            id=_text(data, "id", _ID),
            label=_label(data),
            digest=_text(data, "h", _DIGEST),
            created=_time(data, "created"),
            expires=_time(data, "expires"),
            stamp=_text(data, "pw", _STAMP),
        )


@dataclass(frozen=True)
class Usage:
    """When and from where a passcode or device was last used (written at most every few
    minutes, not on every login)."""

    id: str
    time: int
    address: str

    _KEYS: ClassVar[frozenset[str]] = frozenset({"id", "t", "addr"})

    def dump(self) -> str:
        return _dump({"id": self.id, "t": self.time, "addr": self.address})

    @classmethod
    def load(cls, value: str) -> Usage:
        data = _load(value, cls._KEYS)
        return cls(
            id=_text(data, "id", _ID), time=_time(data, "t"), address=_text(data, "addr", _ADDRESS)
        )


@dataclass(frozen=True)
class Failure:
    """One failed attempt. ``nonce`` starts with a fingerprint of what was presented (to
    count a repeated wrong secret once) and keeps two failures in one second distinct."""

    time: int
    nonce: str
    kind: str
    service: str
    address: str

    _KEYS: ClassVar[frozenset[str]] = frozenset({"t", "n", "kind", "svc", "addr"})

    def dump(self) -> str:
        return _dump(
            {
                "t": self.time,
                "n": self.nonce,
                "kind": self.kind,
                "svc": self.service,
                "addr": self.address,
            }
        )

    @classmethod
    def load(cls, value: str) -> Failure:
        data = _load(value, cls._KEYS)
        return cls(
            time=_time(data, "t"),
            nonce=_text(data, "n", _NONCE),
            kind=_text(data, "kind", _SERVICE),
            service=_text(data, "svc", _SERVICE),
            address=_text(data, "addr", _ADDRESS),
        )


@dataclass(frozen=True)
class Pending:
    """An enrollment begun but not confirmed: its own secret, never the active one."""

    sealed: str
    params: TotpParams
    created: int
    expires: int
    replaces: bool = False
    """Begun with the account's second factor while two-step was on: only such a pending
    secret may replace an active one. One begun while two-step was off must not, even
    if the owner turned it on meanwhile (a begin that read no pending value has nothing
    to compare-and-swap against, so its write lands after the owner's confirmation)."""

    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"secret", "alg", "digits", "period", "created", "expires"}
    )
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"replaces"})

    def dump(self) -> str:
        data: dict[str, object] = {
            "secret": self.sealed,
            "alg": self.params.algorithm.value,
            "digits": self.params.digits,
            "period": self.params.period,
            "created": self.created,
            "expires": self.expires,
        }
        if self.replaces:
            data["replaces"] = True
        return _dump(data)

    @classmethod
    def load(cls, value: str) -> Pending:
        data = _load(value, cls._KEYS, cls._OPTIONAL)
        replaces = data.get("replaces", False)
        if not isinstance(replaces, bool):
            raise ValueError("replaces: malformed")
        sealed = data["secret"]
        if not isinstance(sealed, str) or len(sealed) > 1024:
            raise ValueError("secret: malformed")
        digits, period = data["digits"], data["period"]
        if not isinstance(digits, int) or not isinstance(period, int):
            raise ValueError("digits/period: malformed")
        try:
            params = TotpParams(Algorithm(data["alg"]), digits, period)
        except (ValueError, TypeError):
            raise ValueError("alg/digits/period: malformed") from None
        return cls(
            sealed=sealed,
            params=params,
            created=_time(data, "created"),
            expires=_time(data, "expires"),
            replaces=replaces,
        )


def normalize_address(text: str) -> str | None:
    """An IP address as stored and compared (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True)
class WebSession:
    """One open webmail session's credential (``core.websessions`` says what it is for)."""

    id: str
    digest: str
    created: int
    expires: int
    """The latest it may live, however much it is used."""
    idle: int
    """Seconds without use after which it is dead."""
    bind: tuple[str, ...]
    """The addresses the mail servers see the webmail connect from."""
    browser: str
    """The browser's address at sign-in (shown in Account Security)."""
    stamp: str

    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"id", "h", "created", "expires", "idle", "bind", "from", "pw"}
    )

    def dump(self) -> str:
        return _dump(
            {
                "id": self.id,
                "h": self.digest,
                "created": self.created,
                "expires": self.expires,
                "idle": self.idle,
                "bind": list(self.bind),
                "from": self.browser,
                "pw": self.stamp,
            }
        )

    @classmethod
    def load(cls, value: str) -> WebSession:
        data = _load(value, cls._KEYS)
        bind = data["bind"]
        if (
            not isinstance(bind, list)
            or not 1 <= len(bind) <= MAX_BIND
            or not all(isinstance(a, str) and normalize_address(a) == a for a in bind)
        ):
            raise ValueError("bind: malformed")
        browser = data["from"]
        if not isinstance(browser, str) or (browser and normalize_address(browser) != browser):
            raise ValueError("from: malformed")
        return cls(
            id=_text(data, "id", _ID),
            digest=_text(data, "h", _DIGEST),
            created=_time(data, "created"),
            expires=_time(data, "expires"),
            idle=_time(data, "idle"),
            bind=tuple(bind),
            browser=browser,
            stamp=_text(data, "pw", _STAMP),
        )
