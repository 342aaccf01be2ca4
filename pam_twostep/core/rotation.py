"""Key rotation: TOTP secrets re-sealed under the current key, while logins go on.

Rotating is: add a key file, make it ``keys.current``, reload every twostepd (new
secrets are sealed with it from then on, old ones still open with theirs), then
``twostep keys reseal``, which rewrites each value sealed with another key, and at last
remove the old key file once ``twostep keys status`` counts no value under it.

A large directory is re-sealed in batches (``batch``), so the command can show how far
it has got: each batch names the last account it covered, in an order that does not
depend on the directory's, and the next batch starts after that name. One removed
meanwhile only shortens the list. One added or renamed behind the cursor, or a value
sealed meanwhile by a host still on the old key, is caught by the count the command
takes at the end (``keys status``), which fails the run if any value needs another key.

Each re-seal is one compare-and-swap modify (delete the exact value read, add the new
one): a login reading the entry meanwhile sees either value, and both open, so none
fails; an enrollment or reset that changed the value meanwhile wins, and the re-seal
reads again.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .account import AccountState, Attr
from .changes import Change, Modify
from .codes import Random
from .errors import CorruptEntry
from .keyring import NONCE_BYTES, Keyring

__all__ = ["KeyUsage", "ResealReport", "batch", "order_key", "reseal", "sealed_with"]


@dataclass(frozen=True)
class KeyUsage:
    """Which keys the directory's sealed values need: an old key file may go once no
    value names it."""

    current: str
    loaded: tuple[str, ...]
    values: Mapping[str, int]
    """Sealed values (secrets and pending enrollments) per key id."""
    unreadable: tuple[str, ...] = ()
    """Accounts whose values could not be read (corrupt): they need a reset."""


@dataclass(frozen=True)
class ResealReport:
    resealed: int = 0
    already_current: int = 0
    failed: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(account, why) for each account left as it was."""
    accounts: int = 0
    """Accounts holding two-step state when the run (or this batch) listed them."""
    done: int = 0
    """Of those, how many come before the end of this batch, in ``batch``'s order."""
    next: str | None = None
    """Where the next batch starts (the last account of this one), or None: all done."""
    current: str = ""
    """The key this batch re-sealed under."""


def order_key(dn: str) -> tuple[str, str]:
    """Case-insensitive first, then exact: two DNs that fold alike (``straße`` and
    ``strasse``) are still two places in the order, so a batch ending on one does not
    skip the other."""
    return dn.casefold(), dn


def batch(
    dns: Sequence[str], after: str | None, limit: int | None
) -> tuple[list[str], int, str | None]:
    """The accounts of one batch: at most ``limit`` of ``dns`` after ``after`` in
    ``order_key``'s order; how many come up to its end; and the cursor for the next
    batch (None when this one reaches the end).

    A DN spelled differently between two listings (another provider after a fail-over)
    can still fall on the wrong side of the cursor: the command checks, once the last
    batch is done, that no value is left under another key (``cli.keys``)."""
    ordered = sorted(dns, key=order_key)
    keys = [order_key(d) for d in ordered]
    start = 0 if after is None else bisect.bisect_right(keys, order_key(after))
    end = len(ordered) if limit is None else min(len(ordered), start + limit)
    chosen = ordered[start:end]
    return chosen, end, (chosen[-1] if chosen and end < len(ordered) else None)


def _sealed_values(state: AccountState) -> list[tuple[str, str]]:
    values = []
    if state.secret is not None:
        values.append((Attr.SECRET, state.secret))
    if state.pending is not None:
        values.append((Attr.PENDING, state.pending.sealed))
    return values


def _key_id(keys: Keyring, attribute: str, sealed: str) -> str:
    try:
        return keys.key_of(sealed)
    except ValueError:
        raise CorruptEntry(attribute, "not a sealed value") from None


def sealed_with(state: AccountState, keys: Keyring) -> Counter[str]:
    """How many of the account's sealed values name each key id."""
    return Counter(_key_id(keys, attribute, sealed) for attribute, sealed in _sealed_values(state))


def _reseal_one(keys: Keyring, attribute: str, sealed: str, context: bytes, random: Random) -> str:
    try:
        plaintext = keys.open(sealed, context=context)
    except ValueError as exc:
        raise CorruptEntry(attribute, str(exc)) from None
    return keys.seal(plaintext, context=context, nonce=random(NONCE_BYTES))


def reseal(state: AccountState, keys: Keyring, random: Random) -> Modify:
    """The compare-and-swap that re-seals the account's values under the current key;
    empty when all are current. ``KeyUnavailable`` if a value's key is not loaded."""
    context = state.uuid.encode()
    changes: list[Change] = []
    if state.secret is not None and _key_id(keys, Attr.SECRET, state.secret) != keys.current:
        fresh = _reseal_one(keys, Attr.SECRET, state.secret, context, random)
        changes += [Change.delete(Attr.SECRET, state.secret), Change.add(Attr.SECRET, fresh)]
    pending = state.pending
    if pending is not None and _key_id(keys, Attr.PENDING, pending.sealed) != keys.current:
        fresh = _reseal_one(keys, Attr.PENDING, pending.sealed, context, random)
        changes += [
            Change.delete(Attr.PENDING, pending.dump()),
            Change.add(Attr.PENDING, replace(pending, sealed=fresh).dump()),
        ]
    return Modify(tuple(changes), guarded=True)
