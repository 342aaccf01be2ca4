"""Directory changes as plain data: what the pure core asks the directory layer to do.

A ``Modify`` is one LDAP modify request, applied atomically by the server (RFC 4511).
Deleting a specific value fails when the value is gone, so a modify that deletes the
value it read and adds the new one is a compare-and-swap. A *guarded* modify carries the
outcome of a decision (a consumed backup code, an advanced TOTP watermark): if it
conflicts, somebody else got there first and the decision does not stand. Unguarded
modifies are bookkeeping (usage notes, pruning) and may be lost without harm.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Change", "Modify", "Op"]


class Op(Enum):
    ADD = "add"
    DELETE = "delete"
    REPLACE = "replace"


@dataclass(frozen=True)
class Change:
    op: Op
    attribute: str
    values: tuple[str, ...] = ()

    @classmethod
    def add(cls, attribute: str, *values: str) -> Change:
        return cls(Op.ADD, attribute, values)

    @classmethod
    def delete(cls, attribute: str, *values: str) -> Change:
        """Delete exactly these values; fails (a conflict) if any is absent."""
        return cls(Op.DELETE, attribute, values)

    @classmethod
    def replace(cls, attribute: str, *values: str) -> Change:
        """Set the attribute to these values; no values removes it; never conflicts."""
        return cls(Op.REPLACE, attribute, values)


@dataclass(frozen=True)
class Modify:
    changes: tuple[Change, ...]
    guarded: bool = False

    def __bool__(self) -> bool:
        return bool(self.changes)

    def then(self, *changes: Change) -> Modify:
        return Modify(self.changes + changes, self.guarded)
