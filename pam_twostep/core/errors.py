"""The exceptions twostep raises, shaped by what the caller does next.

A login that is simply wrong is not an exception: it is a ``Decision`` whose outcome is
``DENY``. Exceptions are for the cases where the caller must do something else::

    TwostepError
    ├── ConfigError            bad configuration: refuse to start, name the key and file
    ├── TemporaryFailure       try again later (checkpassword 111, PAM_AUTHINFO_UNAVAIL)
    │   ├── DirectoryUnavailable   LDAP down, slow, or answering nonsense
    │   │   ├── DirectoryIncomplete    an answer cut short (size or time limit, referral)
    │   │   └── DirectoryRefused       a write its schema or ACL does not allow
    │   ├── CorruptEntry           a stored two-step value of this user cannot be read
    │   └── KeyUnavailable         a value is sealed with a key we do not hold
    ├── Refused                a management request that state or policy refuses
    │   └── NotFound               no such user, label or device
    └── Conflict               a guarded write lost a race (the engine turns it into a deny)

Authentication fails closed: anything not listed here that escapes a decision is
treated by every adapter as a temporary failure, never as an accept.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "ConfigError",
    "Conflict",
    "CorruptEntry",
    "DirectoryIncomplete",
    "DirectoryRefused",
    "DirectoryUnavailable",
    "KeyUnavailable",
    "NotFound",
    "RefusalReason",
    "Refused",
    "TemporaryFailure",
    "TwostepError",
]


class TwostepError(Exception):
    """Root of everything twostep raises on purpose."""


class ConfigError(TwostepError):
    """The configuration or a file it names cannot be used as it is."""


class TemporaryFailure(TwostepError):
    """The answer is unknown right now; the caller should say 'try later', not 'no'."""


class DirectoryUnavailable(TemporaryFailure):
    """The directory could not be reached or did not answer in time."""


class DirectoryRefused(DirectoryUnavailable):
    """The directory refused a write for what it is, not for how it went: an attribute
    its schema does not define, an object class violation, an ACL that does not allow it.
    Retrying at once will not help; the site's directory needs a change."""


class DirectoryIncomplete(DirectoryUnavailable):
    """The directory answered, but not completely: a size or time limit, a referral.

    Never used as if it were whole (a listing of accounts, a user "not found"); the
    administrator is told, since the fix is usually the service identity's limits.
    """


class CorruptEntry(TemporaryFailure):
    """A stored two-step value cannot be parsed; only this user is affected.

    The message names the attribute, never the value: values hold hashes and secrets.
    """

    def __init__(self, attribute: str, problem: str) -> None:
        super().__init__(f"{attribute}: {problem}")
        self.attribute = attribute
        self.problem = problem


class KeyUnavailable(TemporaryFailure):
    """A value names an encryption key that is not loaded (rotated away too early?)."""


class RefusalReason(Enum):
    """Why a management request was refused; adapters map these to exit codes and text."""

    UNKNOWN_USER = "unknown-user"
    NOT_AVAILABLE = "not-available"
    NOT_ENABLED = "not-enabled"
    ALREADY_ENABLED = "already-enabled"
    REQUIRED_BY_POLICY = "required-by-policy"
    WRONG_PASSWORD = "wrong-password"
    WRONG_CODE = "wrong-code"
    NO_PENDING_ENROLLMENT = "no-pending-enrollment"
    PENDING_EXPIRED = "pending-expired"
    LOCKED = "locked"
    THROTTLED = "throttled"
    LABEL_TAKEN = "label-taken"
    LIMIT_REACHED = "limit-reached"
    PASSCODES_DISABLED = "passcodes-disabled"
    DEVICES_DISABLED = "devices-disabled"
    NO_SUCH_PASSCODE = "no-such-passcode"
    NO_SUCH_DEVICE = "no-such-device"
    NO_SUCH_SESSION = "no-such-session"
    NO_SUCH_STALE_CLIENT = "no-such-stale-client"
    NO_SUCH_POLICY = "no-such-policy"
    NO_MAIL_PASSWORD = "no-mail-password"
    """Mail services already refuse this account's password (``core.rollout``)."""
    DIRECTORY_REFUSED = "directory-refused"
    """The directory's schema or ACL does not allow the change (``DirectoryRefused``):
    a configuration to fix, not a moment to wait out."""
    INVALID_INPUT = "invalid-input"
    CONFLICT = "conflict"


class Refused(TwostepError):
    """A management request refused for a reason the user can act on."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(Refused):
    """The user, passcode, device or policy named does not exist."""


class Conflict(TwostepError):
    """A modify that deletes a value it read found the value gone: someone else was first."""
