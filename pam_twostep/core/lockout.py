"""Lock-out: failures of every kind counted per account within a window.

Before the lock, the throttles (``throttle.py``): one address that fails more than
``throttle_failures`` times waits, longer with each failure (``address_wait``), so it
alone cannot bring the account to ``lockout_max_failures`` (100 by default, NIST SP
800-63B's most) and lock the owner out everywhere.

Each failure is its own attribute value, so concurrent failures never overwrite each
other (an add of a unique value cannot conflict). Past ``lockout_max_failures`` within
``lockout_window`` the account is locked for ``lockout_duration`` (0 = until an admin
unlocks), and while locked nothing is checked and nothing is written: no factor gets
around it. A success clears the failures counted from its own address.

Two refinements keep real users out of trouble without helping attackers:

* the same wrong secret repeated within the window counts once (a stale mail client
  polling with an old password would otherwise lock its owner out); each failure keeps a
  32-bit salted fingerprint of what was presented for this. A guesser gains nothing from
  repeating a guess. Except a verification code: the same code at another time step is
  checked against a code not tried before (a fixed 000000 comes right at some step), so
  it is fingerprinted with its step and counts once per step;
* failures from before a lock that has expired do not count again.

Under parallel guessing the limit holds within the number of guesses decided at once:
each reads the count before the others write. The engine lets one login per account be
decided at a time in each serving process, so the slack is one guess per process beyond
the first (docs/security.md).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from .account import AccountState, Attr, format_time
from .changes import Change, Modify
from .codes import Random
from .policy import Policy
from .records import Failure

__all__ = [
    "LockState",
    "network_of",
    "address_wait",
    "clear_changes",
    "fingerprint",
    "lock_state",
    "missing_lock",
    "record_failure",
    "unlock_modify",
]


def network_of(address: str) -> str:
    """The key an address is throttled by: its /64 for IPv6, itself otherwise."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


@dataclass(frozen=True)
class LockState:
    locked: bool
    until: int | None
    """When the lock ends; None while locked means until an administrator unlocks."""
    recent: int
    """Failures that count now."""


def _locked_at(state: AccountState, policy: Policy, now: int) -> int | None:
    """When the account locked: as written, or when its failures reached the limit.

    Failures decided at once can reach the limit without any of them writing the lock
    (each counted the others' failures as not yet there); the count still locks.
    """
    if state.locked_at is not None:
        return state.locked_at
    times = sorted(f.time for f in state.failures if f.time > now - policy.lockout_window)
    if len(times) >= policy.lockout_max_failures:
        return times[policy.lockout_max_failures - 1]
    return None


def _counting_since(state: AccountState, policy: Policy, now: int) -> int:
    since = now - policy.lockout_window
    locked_at = _locked_at(state, policy, now)
    if locked_at is not None:
        since = max(since, locked_at)
    return since


def lock_state(state: AccountState, policy: Policy, now: int) -> LockState:
    locked_at = _locked_at(state, policy, now)
    if locked_at is not None:
        if policy.lockout_duration == 0:
            return LockState(True, None, len(state.failures))
        until = locked_at + policy.lockout_duration
        if now < until:
            return LockState(True, until, len(state.failures))
    since = _counting_since(state, policy, now)
    return LockState(False, None, sum(1 for f in state.failures if f.time > since))


def address_wait(state: AccountState, policy: Policy, address: str, now: int) -> int | None:
    """Until when ``address`` is throttled on this account, or None if it may try now.

    Computed from the failures stored on the entry (each names its address), so every
    process and host sees the same throttle. Once the address's network has
    ``throttle_failures`` failures in the window, it waits ``throttle_delay`` from its
    last failure, doubled for each failure beyond that many, at most the window (with
    the defaults 30 s, 1 min, 2 min, ... 1 h: about a dozen guesses an hour). A wait is
    not a count: nothing is written while it lasts, and the failures age out of the
    window as for the lock.
    """
    key = network_of(address)
    since = _counting_since(state, policy, now)
    times = sorted(
        f.time for f in state.failures if f.time > since and network_of(f.address) == key
    )
    beyond = len(times) - policy.throttle_failures
    if beyond < 0:
        return None
    wait = policy.lockout_window
    if beyond < policy.lockout_window.bit_length():  # else the doubling is past the window
        wait = min(wait, policy.throttle_delay << beyond)
    until = times[-1] + wait
    return until if now < until else None


def missing_lock(state: AccountState, policy: Policy, now: int) -> Modify:
    """Writes a lock that the failures reached but nobody wrote, so it stays put."""
    locked_at = _locked_at(state, policy, now)
    if state.locked_at is None and locked_at is not None:
        lock = Change.replace(Attr.LOCKED_AT, format_time(locked_at))
        if state.web_sessions:
            return Modify((lock, Change.replace(Attr.WEB_SESSION)))
        return Modify((lock,))
    return Modify(())


def fingerprint(state: AccountState, kind: str, presented: str, step: int | None = None) -> str:
    """32 bits of a salted hash: enough to spot a repeat, too little to confirm a guess.

    ``step``: the TOTP time step a verification code was checked at, if it was one."""
    material = f"twostep-failure\0{state.uuid}\0{kind}\0{presented}"
    if step is not None:
        material += f"\0{step}"
    return hashlib.sha256(material.encode()).hexdigest()[:8]


def record_failure(
    state: AccountState,
    policy: Policy,
    *,
    now: int,
    kind: str,
    service: str,
    address: str,
    presented: str,
    random: Random,
    step: int | None = None,
) -> tuple[Modify, Modify, bool]:
    """(commit, pruning follow-up, whether this failure locks the account).

    A repeat of a failure already counted in the window returns an empty commit.
    ``step``: for a wrong verification code, the time step it was checked at (``now //
    period``): the same code at the next step is a new guess, and counts.
    """
    since = _counting_since(state, policy, now)
    recent = [f for f in state.failures if f.time > since]
    stale = [f for f in state.failures if f.time <= since]
    prune = Modify((Change.delete(Attr.FAILURE, *(f.dump() for f in stale)),) if stale else ())
    mark = fingerprint(state, kind, presented, step)
    if any(f.nonce.startswith(mark) for f in recent):
        return Modify(()), prune, False
    failure = Failure(
        time=now, nonce=mark + random(4).hex(), kind=kind, service=service, address=address
    )
    changes = [Change.add(Attr.FAILURE, failure.dump())]
    locks = len(recent) + 1 >= policy.lockout_max_failures
    if locks:
        changes.append(Change.replace(Attr.LOCKED_AT, format_time(now)))
        if state.web_sessions:  # a lock-out ends webmail sessions
            changes.append(Change.replace(Attr.WEB_SESSION))
    return Modify(tuple(changes)), prune, locks


def clear_changes(state: AccountState, address: str, kinds: frozenset[str] | None = None) -> Modify:
    """After a success: forget the failures from the same address, and an expired lock.

    Only that address's (NIST SP 800-63B 5.2.2): otherwise a mail client that logs in every
    minute with its passcode would wipe the count of someone guessing codes elsewhere.
    ``kinds``: only failures of these kinds (what the success proved), e.g. the password
    alone at mail in a grace period must not wipe out codes guessed with it.
    """
    changes = []
    mine = [
        f for f in state.failures if f.address == address and (kinds is None or f.kind in kinds)
    ]
    if mine and len(mine) == len(state.failures):
        changes.append(Change.replace(Attr.FAILURE))
    elif mine:
        changes.append(Change.delete(Attr.FAILURE, *(f.dump() for f in mine)))
    if state.locked_at is not None:
        changes.append(Change.replace(Attr.LOCKED_AT))
    return Modify(tuple(changes))


def unlock_modify() -> Modify:
    return Modify((Change.replace(Attr.FAILURE), Change.replace(Attr.LOCKED_AT)))
