"""What the directory's answers mean: result codes, errors and entries, in our terms.

ldap3 runs with exceptions on, but not every code raises (sizeLimitExceeded, referral,
...): ``require_success`` makes any final code but success an error. Which errors are a
lost compare-and-swap (``CONFLICTS``) and which make a server unusable for now
(``UNREACHABLE``) is decided here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress

from ldap3 import Connection
from ldap3.core import exceptions as ldap_errors

from ..core.account import RawEntry
from ..core.errors import DirectoryUnavailable

__all__ = [
    "CONFLICTS",
    "REFUSALS",
    "SIZE_LIMIT_EXCEEDED",
    "BROKEN",
    "UNREACHABLE",
    "NoSuchObject",
    "NotSuccess",
    "describe",
    "quietly_close",
    "raw_entry",
    "require_success",
    "result_code",
]

# A modify that deletes a value someone else already deleted, or adds a single value that
# someone else already added, lost a race: these are the compare-and-swap failures.
REFUSALS = (
    ldap_errors.LDAPUndefinedAttributeTypeResult,
    ldap_errors.LDAPObjectClassViolationResult,
    ldap_errors.LDAPInsufficientAccessRightsResult,
)
"""A write the directory's schema or ACL does not allow (``DirectoryRefused``)."""

CONFLICTS = (
    ldap_errors.LDAPNoSuchAttributeResult,
    ldap_errors.LDAPAttributeOrValueExistsResult,
    ldap_errors.LDAPConstraintViolationResult,
    ldap_errors.LDAPEntryAlreadyExistsResult,
)

# What makes a server unusable for now (try the next), as opposed to an answer.
UNREACHABLE = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPStartTLSError,
    ldap_errors.LDAPBusyResult,
    ldap_errors.LDAPUnavailableResult,
    ldap_errors.LDAPUnwillingToPerformResult,
    OSError,
)
# What says the connection itself is gone (a server restarted, a link cut), as opposed to
# an answer on it: a read is retried on a fresh connection, and the idle ones to the same
# server, most likely gone the same way, are dropped.
BROKEN = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPSessionTerminatedByServerError,
    ldap_errors.LDAPResponseTimeoutError,
    ldap_errors.LDAPSocketReceiveError,
    ldap_errors.LDAPSocketSendError,
    OSError,
)
_MAX_ENTRY_VALUES = 4000


class NoSuchObject(Exception):
    pass


class NotSuccess(ldap_errors.LDAPException):  # type: ignore[misc]
    """An operation whose final result code is not success (0).

    ldap3 raises for most codes, but not for sizeLimitExceeded, timeLimitExceeded,
    referral, compareFalse/True or saslBindInProgress: a search so answered would be taken
    as complete (a truncated listing, a user "not found"), and a bind so answered as
    accepted. Whatever the code, the caller sees a temporary failure.
    """


SIZE_LIMIT_EXCEEDED = 4


def result_code(conn: Connection) -> object:
    result = conn.result if isinstance(conn.result, Mapping) else {}
    return result.get("result")


def require_success(conn: Connection, done: object = True) -> None:
    result = conn.result if isinstance(conn.result, Mapping) else {}
    code = result.get("result")
    if done is not True or code != 0:
        name = result.get("description") or "nothing"
        raise NotSuccess(
            f"the directory answered {name} (code {code}) instead of success: "
            "an incomplete answer is never used"
        )


def raw_entry(item: dict[str, object]) -> RawEntry:
    raw = item.get("raw_attributes")
    if not isinstance(raw, Mapping):
        raise DirectoryUnavailable("a search result without attributes")
    attributes: dict[str, tuple[bytes, ...]] = {}
    total = 0
    for name, listed in raw.items():
        values = tuple(v for v in (listed or ()) if isinstance(v, bytes))  # None: no values
        total += len(values)
        attributes[str(name).lower()] = values
    if total > _MAX_ENTRY_VALUES:
        raise DirectoryUnavailable("an entry with implausibly many values")
    return RawEntry(dn=str(item.get("dn", "")), attributes=attributes)


def describe(exc: Exception) -> str:
    if isinstance(exc, NotSuccess):
        return str(exc)
    description = getattr(exc, "description", None)
    return f"{type(exc).__name__}" + (f" ({description})" if description else "")


def quietly_close(conn: Connection) -> None:
    # Closing a broken connection may fail in any way; there is nothing left to do about it.
    with suppress(Exception):
        conn.unbind()
