"""What each request may hold, checked before anything else happens.

A request is a JSON object from a peer we trust only as far as its rights go, so every
field is checked (known names only, the right type, a bounded size) before a handler
sees it, and what comes out is a frozen dataclass per kind of request: ``mypy --strict``
then checks each handler's use of its fields, where a ``dict[str, Any]`` let any typo or
wrong type through to the engine.

A dataclass field's wire check sits in its metadata (``_text``, ``_number``...); a field
without a default is required. The schema of a request is its fields in declaration
order, which is the order a missing-fields message names them in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast

__all__ = [
    "SESSION",
    "AccountPage",
    "Auth",
    "Disable",
    "EnrollBegin",
    "EnrollConfirm",
    "ForDevice",
    "ForPasscode",
    "ForSession",
    "ForStaleClient",
    "ForUser",
    "ImportAccount",
    "KeysReseal",
    "Malformed",
    "NoFields",
    "PasscodeAdd",
    "PasswordChange",
    "PolicyAssign",
    "PolicyChange",
    "PolicyName",
    "Request",
    "SelfDisable",
    "UserRequest",
    "WebmailSession",
    "parse",
    "parse_signed",
    "schema_of",
]

_MAX_TEXT = 1024
_LARGEST = (1 << 40) - 1
"""The largest whole number a field takes unless it says otherwise."""
_WIRE = "twostep.wire"
"""The metadata key holding a dataclass field's ``_Field``."""


class Malformed(Exception):
    """The request does not fit its operation's schema."""


@dataclass(frozen=True)
class _Field:
    kind: type
    required: bool = False
    max_length: int = _MAX_TEXT
    minimum: int = 1
    """The smallest int taken."""
    maximum: int = _LARGEST
    """The largest int taken."""


SESSION = _Field(str, True, 128)
"""The ``session`` a self-service request carries (a ``PortalSessions`` proof)."""


def _validate(request: Mapping[str, object], schema: Mapping[str, _Field]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, value in request.items():
        if name in ("op", "id"):
            continue
        spec = schema.get(name)
        if spec is None:
            raise Malformed(f"unknown field {name[:32]!r}")
        if spec.kind is bool:
            if not isinstance(value, bool):
                raise Malformed(f"{name}: not true or false")
        elif spec.kind is int:
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not spec.minimum <= value <= spec.maximum
            ):
                most = f" to {spec.maximum}" if spec.maximum != _LARGEST else ""
                raise Malformed(f"{name}: not a whole number from {spec.minimum}{most}")
        elif spec.kind is dict:
            if not isinstance(value, dict) or len(value) > 64:
                raise Malformed(f"{name}: not an object")
        elif spec.kind is str:
            if not isinstance(value, str) or len(value) > spec.max_length:
                raise Malformed(f"{name}: not a string of at most {spec.max_length} characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Malformed(f"{name}: not valid Unicode") from None
        values[name] = value
    missing = [name for name, spec in schema.items() if spec.required and name not in values]
    if missing:
        raise Malformed(f"missing {', '.join(missing)}")
    return values


def _text(max_length: int = _MAX_TEXT) -> dict[str, object]:
    return {_WIRE: _Field(str, max_length=max_length)}


def _number(minimum: int = 1, maximum: int = _LARGEST) -> dict[str, object]:
    return {_WIRE: _Field(int, minimum=minimum, maximum=maximum)}


def _flag() -> dict[str, object]:
    return {_WIRE: _Field(bool)}


def _object() -> dict[str, object]:
    return {_WIRE: _Field(dict)}


@dataclass(frozen=True, kw_only=True)
class Request:
    """A validated request: the base of every operation's own."""


R = TypeVar("R", bound=Request)


_SCHEMAS: dict[type[Request], Mapping[str, _Field]] = {}


def schema_of(kind: type[Request]) -> Mapping[str, _Field]:
    """The wire schema of ``kind``: its fields in order, required where no default."""
    known = _SCHEMAS.get(kind)
    if known is not None:
        return known
    schema: dict[str, _Field] = {}
    for each in dataclasses.fields(kind):
        spec: _Field = each.metadata[_WIRE]
        required = each.default is dataclasses.MISSING
        required = required and each.default_factory is dataclasses.MISSING
        schema[each.name] = dataclasses.replace(spec, required=required)
    _SCHEMAS[kind] = schema  # the same value whichever thread stores it
    return schema


def _build(kind: type[R], values: Mapping[str, object]) -> R:
    make: Callable[..., R] = kind  # the values were checked against kind's own schema
    return make(**values)


def parse(kind: type[R], request: Mapping[str, object]) -> R:
    """``request`` as a ``kind``, or Malformed."""
    return _build(kind, _validate(request, schema_of(kind)))


def parse_signed(kind: type[R], request: Mapping[str, object]) -> tuple[R, str]:
    """``request`` as a ``kind`` and the ``session`` proof it must carry, or Malformed:
    one pass over both, so the checks and their order are the plain form's plus one."""
    values = _validate(request, {**schema_of(kind), "session": SESSION})
    session = cast(str, values.pop("session"))  # checked as SESSION
    return _build(kind, values), session


# -- the requests ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NoFields(Request):
    """``ping``, ``stats``, ``keys-status``, ``policy-list``."""


@dataclass(frozen=True, kw_only=True)
class KeysReseal(Request):
    """The whole run, or one batch of it: ``limit`` accounts after the one named ``after``."""

    after: str | None = field(default=None, metadata=_text(4096))
    limit: int | None = field(default=None, metadata=_number())


@dataclass(frozen=True, kw_only=True)
class AccountPage(Request):
    """One page of every account: ``limit`` of them after the one named ``after``."""

    after: str | None = field(default=None, metadata=_text(4096))
    limit: int = field(default=200, metadata=_number(1, 500))


@dataclass(frozen=True, kw_only=True)
class UserRequest(Request):
    """A request about one account, named first."""

    user: str = field(metadata=_text(512))


@dataclass(frozen=True, kw_only=True)
class ForUser(UserRequest):
    """``lookup`` and the account operations that need nothing but the account."""


@dataclass(frozen=True, kw_only=True)
class Auth(UserRequest):
    password: str = field(repr=False, metadata=_text())
    service: str = field(metadata=_text(64))
    remote: str = field(default="", metadata=_text(64))
    local: str | None = field(default=None, metadata=_text(64))
    secured: bool | None = field(default=None, metadata=_flag())
    flow: str | None = field(default=None, metadata=_text(16))
    code: str | None = field(repr=False, default=None, metadata=_text(128))
    device_token: str | None = field(repr=False, default=None, metadata=_text(128))
    trust_device: bool = field(default=False, metadata=_flag())
    device_label: str = field(default="", metadata=_text(128))
    continuation: str | None = field(repr=False, default=None, metadata=_text(64))
    mail_session: bool = field(default=False, metadata=_flag())
    """A webmail asks for a mail credential for this sign-in (``engine.webmail``)."""
    mail_bind: str = field(default="", metadata=_text(200))
    """The addresses, comma-separated, the mail servers see the webmail connect from."""
    mail_idle: int = field(default=1800, metadata=_number())
    """The webmail's session lifetime in seconds: the credential's idle limit."""


@dataclass(frozen=True, kw_only=True)
class WebmailSession(UserRequest):
    """A webmail's own session: its credential, and the browser's address now."""

    credential: str = field(repr=False, metadata=_text(128))
    remote: str = field(default="", metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class ForSession(UserRequest):
    session_id: str = field(metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class ForStaleClient(UserRequest):
    stale_id: str = field(metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class EnrollBegin(UserRequest):
    password: str = field(repr=False, metadata=_text())
    code: str | None = field(repr=False, default=None, metadata=_text(64))
    service: str = field(default="twostep", metadata=_text(64))
    remote: str = field(default="", metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class EnrollConfirm(UserRequest):
    code: str = field(repr=False, metadata=_text(64))
    service: str = field(default="twostep", metadata=_text(64))
    remote: str = field(default="", metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class Disable(UserRequest):
    """Without ``password`` an admin's disable; with it the user's own."""

    password: str | None = field(repr=False, default=None, metadata=_text())
    code: str | None = field(repr=False, default=None, metadata=_text(64))
    service: str = field(default="twostep", metadata=_text(64))
    remote: str = field(default="", metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class SelfDisable(Disable):
    """The self-service form: the password is required, so it is never an admin's."""

    password: str = field(repr=False, metadata=_text())


@dataclass(frozen=True, kw_only=True)
class PasscodeAdd(UserRequest):
    label: str = field(metadata=_text(256))
    services: str = field(default="", metadata=_text(512))
    lifetime: int | None = field(default=None, metadata=_number())


@dataclass(frozen=True, kw_only=True)
class ForPasscode(UserRequest):
    label: str = field(metadata=_text(256))


@dataclass(frozen=True, kw_only=True)
class ForDevice(UserRequest):
    device: str = field(metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class PasswordChange(UserRequest):
    old: str = field(repr=False, metadata=_text())
    new: str = field(repr=False, metadata=_text())
    keep_device: str | None = field(default=None, metadata=_text(64))
    service: str = field(default="twostep", metadata=_text(64))
    remote: str = field(default="", metadata=_text(64))


@dataclass(frozen=True, kw_only=True)
class ImportAccount(Request):
    match_attribute: str = field(metadata=_text(64))
    match_value: str = field(metadata=_text(512))
    secret: str = field(repr=False, metadata=_text(128))
    algorithm: str = field(default="SHA1", metadata=_text(8))
    digits: int = field(default=6, metadata=_number())
    period: int = field(default=30, metadata=_number())
    last_step: int | None = field(default=None, metadata=_number(0))
    window: int | None = field(default=None, metadata=_number(0))
    backup_codes: str = field(repr=False, default="", metadata=_text(2048))
    policy: str | None = field(default=None, metadata=_text(128))
    source: str = field(default="", metadata=_text(512))
    apply: bool = field(default=False, metadata=_flag())
    replace: bool = field(default=False, metadata=_flag())


@dataclass(frozen=True, kw_only=True)
class PolicyName(Request):
    name: str = field(metadata=_text(128))


@dataclass(frozen=True, kw_only=True)
class PolicyChange(PolicyName):
    settings: dict[str, object] | None = field(default=None, metadata=_object())
    """Setting -> value, null removing it; checked by the policy handlers."""


@dataclass(frozen=True, kw_only=True)
class PolicyAssign(UserRequest):
    name: str | None = field(default=None, metadata=_text(128))
    """None: back to the configured default."""
