"""Policy: what two-step means for one account, resolved from three layers.

Every default lives in the ``Policy`` class below and nowhere else. The layers, each
overriding the one before, are: the site's ``policy_defaults`` in the YAML configuration,
the class-of-service entry the account points at (or the configured default entry), and
the override attributes on the account entry itself. ``resolve_policy`` is the only
place that combines them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .dates import format_date, from_generalized_time, parse_date, to_generalized_time
from .duration import parse_duration
from .errors import CorruptEntry

__all__ = [
    "POLICY_ATTRIBUTES",
    "Policy",
    "attribute_of",
    "overrides_from_ldap",
    "overrides_from_mapping",
    "overrides_from_strings",
    "policy_to_ldap",
    "policy_to_text",
    "resolve_policy",
]

_HOUR = 3600
_DAY = 86400


@dataclass(frozen=True)
class Policy:
    """The settings in force for one account. The values here are the built-in defaults."""

    available: bool = True
    """Users may turn two-step on. An account that has it on keeps it regardless."""
    required: bool = False
    """Interactive logins are refused until the user has turned two-step on."""
    backup_codes: int = 10
    trusted_devices: bool = True
    device_lifetime: int = 30 * _DAY
    passcodes: bool = True
    passcode_limit: int = 25
    passcode_lifetime: int = 0
    """Upper bound on a new passcode's lifetime, in seconds; 0 = passcodes need not expire."""
    lockout_max_failures: int = 100
    """Failures within the window, from anywhere, that lock the account on every service.

    NIST SP 800-63B's most (100): the throttles below keep any one address far under it,
    so only guessing from many addresses at once can lock the owner out."""
    lockout_window: int = _HOUR
    lockout_duration: int = _HOUR
    """0 = locked until an administrator unlocks."""
    throttle_failures: int = 5
    """Failures from one address (an IPv6 /64) within the window that the account takes
    at full speed; past them that address waits before each further try, nobody else."""
    throttle_delay: int = 30
    """The first wait, in seconds; it doubles with each further failure, up to the window."""
    throttle_source_failures: int = 50
    """Failures from one address across all accounts within the window (as each twostepd
    remembers them) after which that address is refused for every account; 0 turns it off
    (users behind one NAT address). Loopback is never refused this way."""
    totp_window: int = 1
    """Time steps accepted either side of now."""
    mail_password: bool = True
    """While two-step is off, mail services accept the account password."""
    required_from: int = 0
    """When ``required`` takes effect (epoch seconds, ``core.dates``); before it, users
    without two-step still sign in and are reminded of the date. 0: at once. Without
    ``required`` it does nothing (an account exempted with ``required: false`` stays so)."""
    mail_password_until: int = 0
    """Until then mail services still accept the password of an account with two-step on,
    so a newly enrolled user has time to create passcodes; only where ``mail_password``
    is on. 0: passcodes only, from the moment two-step is on (``core.rollout``)."""


_Kind = Literal["bool", "int", "duration", "date"]


@dataclass(frozen=True)
class _Field:
    name: str
    attribute: str
    kind: _Kind
    low: int = 0
    high: int = 0


_FIELDS: tuple[_Field, ...] = (
    _Field("available", "twostepAvailable", "bool"),
    _Field("required", "twostepRequired", "bool"),
    _Field("backup_codes", "twostepBackupCodeCount", "int", 0, 50),
    _Field("trusted_devices", "twostepTrustedDevices", "bool"),
    _Field("device_lifetime", "twostepTrustedDeviceLifetime", "duration", 60, 400 * _DAY),
    _Field("passcodes", "twostepPasscodes", "bool"),
    _Field("passcode_limit", "twostepPasscodeLimit", "int", 0, 100),
    _Field("passcode_lifetime", "twostepPasscodeLifetime", "duration", 0, 10 * 366 * _DAY),
    # NIST SP 800-63B: no more than 100 consecutive failures; lock-out cannot be switched off.
    _Field("lockout_max_failures", "twostepLockoutMaxFailures", "int", 1, 100),
    _Field("lockout_window", "twostepLockoutWindow", "duration", 1, 30 * _DAY),
    _Field("lockout_duration", "twostepLockoutDuration", "duration", 0, 30 * _DAY),
    _Field("throttle_failures", "twostepThrottleFailures", "int", 1, 100),
    _Field("throttle_delay", "twostepThrottleDelay", "duration", 1, _DAY),
    _Field("throttle_source_failures", "twostepThrottleSourceFailures", "int", 0, 100),
    _Field("totp_window", "twostepTOTPWindow", "int", 0, 2),
    _Field("mail_password", "twostepMailPassword", "bool"),
    _Field("required_from", "twostepRequiredFrom", "date"),
    _Field("mail_password_until", "twostepMailPasswordUntil", "date"),
)

POLICY_ATTRIBUTES: tuple[str, ...] = tuple(f.attribute for f in _FIELDS)
"""LDAP attributes a policy entry or an account override may carry."""

_BY_NAME = {f.name: f for f in _FIELDS}
_BY_ATTRIBUTE = {f.attribute.lower(): f for f in _FIELDS}


def _check_range(field: _Field, value: int) -> int:
    if not field.low <= value <= field.high:
        raise ValueError(f"must be between {field.low} and {field.high}")
    return value


def _from_python(field: _Field, value: object) -> bool | int:
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if field.kind == "duration":
        return _check_range(field, parse_duration(value))
    if field.kind == "date":
        return parse_date(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return _check_range(field, value)


def overrides_from_mapping(values: Mapping[str, object]) -> dict[str, bool | int]:
    """Validate settings given by name (YAML ``policy_defaults``, CLI ``policy set``).

    Raises ``ValueError`` whose message starts with the offending key.
    """
    result: dict[str, bool | int] = {}
    for key, value in values.items():
        field = _BY_NAME.get(key)
        if field is None:
            known = ", ".join(sorted(_BY_NAME))
            raise ValueError(f"{key}: unknown policy setting (known: {known})")
        try:
            result[key] = _from_python(field, value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return result


def _from_ldap(field: _Field, raw: bytes) -> bool | int:
    text = raw.decode("ascii")
    if field.kind == "date":
        return from_generalized_time(text)
    if field.kind == "bool":
        if text not in ("TRUE", "FALSE"):
            raise ValueError("not an LDAP boolean")
        return text == "TRUE"
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise ValueError("not an LDAP integer")
    return _check_range(field, int(text))


def overrides_from_ldap(attributes: Mapping[str, Sequence[bytes]]) -> dict[str, bool | int]:
    """Policy settings present on an entry; other attributes are ignored.

    A value that is not valid makes the entry corrupt: better a clear temporary failure
    than a silently weaker policy.
    """
    result: dict[str, bool | int] = {}
    for name, values in attributes.items():
        field = _BY_ATTRIBUTE.get(name.lower())
        if field is None or not values:
            continue
        if len(values) != 1:
            raise CorruptEntry(field.attribute, "more than one value")
        try:
            result[field.name] = _from_ldap(field, values[0])
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptEntry(field.attribute, str(exc)) from None
    return result


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def overrides_from_strings(values: Mapping[str, str]) -> dict[str, bool | int | None]:
    """Settings typed on a command line (``required=true``, ``device_lifetime=7d``).

    An empty value means "remove this setting" and gives None. Raises ``ValueError``
    whose message starts with the offending key.
    """
    typed: dict[str, object] = {}
    removed: dict[str, bool | int | None] = {}
    for key, text in values.items():
        field = _BY_NAME.get(key)
        if field is None:
            known = ", ".join(sorted(_BY_NAME))
            raise ValueError(f"{key}: unknown policy setting (known: {known})")
        if text == "":
            removed[key] = None
        elif field.kind == "bool":
            lowered = text.lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(f"{key}: must be true or false")
            typed[key] = lowered in _TRUE
        elif field.kind == "int":
            if not text.isascii() or not text.lstrip("-").isdigit():
                raise ValueError(f"{key}: must be a whole number")
            typed[key] = int(text)
        else:  # durations and dates parse from text
            typed[key] = text
    result: dict[str, bool | int | None] = dict(overrides_from_mapping(typed))
    result.update(removed)
    return result


def attribute_of(name: str) -> str:
    """The LDAP attribute of a setting given by name."""
    return _BY_NAME[name].attribute


def policy_to_ldap(values: Mapping[str, bool | int]) -> dict[str, str]:
    """LDAP attribute values for settings given by name (already validated)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        field = _BY_NAME[key]
        if field.kind == "bool":
            out[field.attribute] = "TRUE" if value else "FALSE"
        elif field.kind == "date":
            out[field.attribute] = to_generalized_time(int(value))
        else:
            out[field.attribute] = str(int(value))
    return out


def policy_to_text(name: str, value: bool | int) -> str:
    """A setting's value as a person writes it back (``2027-01-15`` for a date)."""
    field = _BY_NAME[name]
    if field.kind == "date":
        return format_date(int(value)) or "not set"
    if field.kind == "bool":
        return "true" if value else "false"
    return str(int(value))


def resolve_policy(*layers: Mapping[str, bool | int]) -> Policy:
    """The policy in force: built-in defaults, then each layer in order, later wins.

    Callers pass (site defaults, class-of-service entry, account overrides).
    """
    merged: dict[str, bool | int] = {}
    for layer in layers:
        merged.update(layer)
    return Policy(**merged)  # type: ignore[arg-type]
