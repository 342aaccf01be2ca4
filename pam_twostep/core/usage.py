"""'Last used' notes: when and from where a passcode, device or webmail session was used.

A note is written at most every ``USAGE_INTERVAL`` (sooner only when the address
changed after a minute), not on every login: a mail client logging in every minute
would otherwise write its entry every minute. What the notes say is shown to people
(Account Security, ``twostep status``), and a webmail session's note is also what keeps
it alive (``core.websessions``).
"""

from __future__ import annotations

from .account import AccountState, Attr
from .changes import Change, Modify
from .records import Usage

__all__ = ["USAGE_INTERVAL", "usage_note"]

USAGE_INTERVAL = 300
"""Seconds between two writes of a record's 'last used' note."""


def usage_note(state: AccountState, record_id: str, now: int, address: str) -> Modify:
    """The write that brings ``record_id``'s note up to date; empty when it is recent."""
    old = state.usage_of(record_id)
    if (
        old is not None
        and now - old.time < USAGE_INTERVAL
        and (old.address == address or now - old.time < 60)
    ):
        return Modify(())
    new = Usage(record_id, now, address)
    changes = [Change.delete(Attr.USAGE, old.dump())] if old is not None else []
    changes.append(Change.add(Attr.USAGE, new.dump()))
    return Modify(tuple(changes))
