"""Stale clients told apart from attackers: a phone still sending a revoked passcode or
the password from before the last change is recognised, recorded once, and shown to its
owner; a guesser never is.

Pure, like the decision it follows. Recognition needs a credential that once worked:

* a passcode that was revoked, expired, died with the password or with two-step, kept
  as its digest and label (``RetiredPasscode``): passcodes carry 120 bits, so keeping a
  revoked one's SHA-256 gives nothing away;
* a password, kept as 64 bits of an HMAC under a key derived from twostepd's sealing key
  (``PasswordVerifier``), written at the first login under that password. Without the
  key it tells nothing; with it, a guess costs one HMAC, as the userPassword hash beside
  it usually does. While its stamp is the entry's, it recognises the account's password
  sent to mail where mail refuses it (two-step on, or the policy's ``mail_password``
  off).

A denied login whose secret matches one of these is a stale client: recorded per
credential, address and service (``StaleClient``: which credential, never what was
sent), its failure counted once: the first time, as any failure; after that not at all,
whatever the window. The record's "last tried" is refreshed at most every
``STALE_INTERVAL``, so a client retrying every minute writes nothing most of the time.
A different wrong secret matches nothing and is an ordinary failure: an attacker
guessing is never shown as a stale client. Records go ``STALE_KEEP`` after the last
try; at most ``MAX_STALE`` are kept, the oldest tried dropped first.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from .account import AccountState, Attr
from .changes import Change, Modify
from .codes import CodeKind, Random, classify, new_id, normalize
from .decision import Attempt, Context, Decision, Outcome, PasswordCheck, Reason
from .errors import NotFound, RefusalReason
from .hashing import digest_matches, fast_digest
from .keyring import Keyring
from .records import Passcode
from .stale_records import PasswordVerifier, RetiredPasscode, StaleClient

__all__ = [
    "MAX_RETIRED",
    "MAX_STALE",
    "RETIRED_KEEP",
    "STALE_INTERVAL",
    "STALE_KEEP",
    "Match",
    "Observed",
    "StaleKind",
    "dismiss",
    "observe",
    "password_replaced",
    "retire_passcodes",
    "shown",
]

RETIRED_KEEP = 90 * 86400
"""How long a retired credential is remembered."""
MAX_RETIRED = 20
_MAX_VERIFIERS = 3
"""The current password's and two before it."""
STALE_KEEP = 30 * 86400
"""A stale client not seen for this long is forgotten."""
MAX_STALE = 10
STALE_INTERVAL = 3600
"""A record's "last tried" is refreshed at most this often."""
_DAY = 86400

_STALE_REASONS = frozenset(
    {
        Reason.WRONG_PASSCODE,
        Reason.PASSCODE_EXPIRED,
        Reason.PASSCODES_DISABLED,
        Reason.WRONG_PASSWORD,
        Reason.PASSWORD_NOT_ACCEPTED,
    }
)


class StaleKind(Enum):
    PASSCODE = "passcode"
    """A passcode revoked, expired, or dead with the password or with two-step."""
    OLD_PASSWORD = "old-password"
    PASSWORD = "password"
    """The account's password, sent where mail no longer takes it."""


@dataclass(frozen=True)
class Match:
    kind: StaleKind
    ref: str
    label: str
    since: int


@dataclass(frozen=True)
class Observed:
    decision: Decision
    new: StaleClient | None = None
    """A stale client seen for the first time (its owner may be told if ``told``)."""
    record: Modify = Modify(())
    """The write that records ``new``: apart from the decision's, so that the owner is
    told only of what landed (a directory whose schema lacks the attribute refuses it
    every time, and must not make every retry a new message)."""


def _verifier_message(state: AccountState, stamp: str, password: str) -> bytes:
    head = f"twostep-password-verifier\0{state.uuid}\0{stamp}\0".encode()
    return head + password.encode("utf-8", "surrogatepass")


def _verifier_mac(
    keys: Keyring, state: AccountState, stamp: str, password: str, key_id: str | None = None
) -> tuple[str, str] | None:
    made = keys.mac(_verifier_message(state, stamp, password), key_id)
    return None if made is None else (made[0], made[1][:8].hex())


def _verifiers(state: AccountState) -> list[PasswordVerifier]:
    return [r for r in state.retired if isinstance(r, PasswordVerifier)]


def _retired_passcodes(state: AccountState) -> list[RetiredPasscode]:
    return [r for r in state.retired if isinstance(r, RetiredPasscode)]


def _pruned(state: AccountState, now: int, adding: int) -> list[str]:
    """Values to drop so that ``adding`` more fit: the old, then the oldest."""
    passcodes = sorted(_retired_passcodes(state), key=lambda r: r.retired)
    drop: list[RetiredPasscode | PasswordVerifier] = [
        v for v in _verifiers(state) if v.until and v.until <= now - RETIRED_KEEP
    ]
    old = [r for r in passcodes if r.retired <= now - RETIRED_KEEP]
    left = [r for r in passcodes if r not in old]
    drop += old + left[: max(0, len(left) + adding - MAX_RETIRED)]
    return [r.dump() for r in drop]


def retire_passcodes(
    state: AccountState, passcodes: Sequence[Passcode], now: int, why: str
) -> Modify:
    """Keep what recognises ``passcodes`` (being deleted) once they are gone."""
    known = {r.id for r in _retired_passcodes(state)}
    new = [
        RetiredPasscode(p.id, p.label, p.digest, now, why).dump()
        for p in passcodes
        if p.id not in known
    ][-MAX_RETIRED:]
    if not new:
        return Modify(())
    drop = _pruned(state, now, len(new))
    changes = [Change.add(Attr.RETIRED, *new)]
    if drop:
        changes.insert(0, Change.delete(Attr.RETIRED, *drop))
    return Modify(tuple(changes))


def password_replaced(
    state: AccountState, old: str, new_stamp: str, new: str, keys: Keyring, now: int
) -> Modify:
    """A change made through twostep, which saw both passwords: the old one's verifier
    retired now, the new one's written, so neither waits for a login."""
    changes: list[Change] = []
    old_mac = _verifier_mac(keys, state, state.stamp, old)
    new_mac = _verifier_mac(keys, state, new_stamp, new)
    if old_mac is None or new_mac is None:
        return Modify(())
    mine = [v for v in _verifiers(state) if v.stamp in (state.stamp, new_stamp)]
    others = sorted((v for v in _verifiers(state) if v not in mine), key=lambda v: v.seen)
    drop = mine + others[: max(0, len(others) + 2 - _MAX_VERIFIERS)]
    if drop:
        changes.append(Change.delete(Attr.RETIRED, *(v.dump() for v in drop)))
    seen = min((v.seen for v in mine if v.stamp == state.stamp), default=now)
    changes.append(
        Change.add(
            Attr.RETIRED,
            PasswordVerifier(state.stamp, old_mac[0], old_mac[1], seen, now).dump(),
            PasswordVerifier(new_stamp, new_mac[0], new_mac[1], now, 0).dump(),
        )
    )
    return Modify(tuple(changes))


def _password_seen(state: AccountState, password: str, keys: Keyring, now: int) -> Modify:
    """The current password's verifier, when there is none yet. The others are marked
    replaced as of now (about when the change happened) and the oldest dropped."""
    verifiers = sorted(_verifiers(state), key=lambda v: v.seen)
    if not password or any(v.stamp == state.stamp for v in verifiers):
        return Modify(())
    made = _verifier_mac(keys, state, state.stamp, password)
    if made is None:
        return Modify(())
    kept = verifiers[len(verifiers) - (_MAX_VERIFIERS - 1) :] if _MAX_VERIFIERS > 1 else []
    delete = [v for v in verifiers if v not in kept or not v.until]
    add = [PasswordVerifier(state.stamp, made[0], made[1], now, 0)]
    add += [replace(v, until=now) for v in kept if not v.until]
    changes = [Change.add(Attr.RETIRED, *(v.dump() for v in add))]
    if delete:
        changes.insert(0, Change.delete(Attr.RETIRED, *(v.dump() for v in delete)))
    return Modify(tuple(changes))


def _recognise(
    state: AccountState, secret: str, keys: Keyring, now: int, password_refused: bool
) -> Match | None:
    """The retired credential ``secret`` is, or None. ``password_refused``: the login
    refused a password unchecked (mail where it is not taken), so the current password's
    verifier counts too."""
    presented = normalize(secret)
    if classify(presented, 0) is CodeKind.PASSCODE:
        digest = fast_digest("passcode", presented)
        for p in state.passcodes:
            if not state.passcode_is_live(p, now) and digest_matches(p.digest, digest):
                since = p.expires if p.stamp == state.stamp else 0
                return Match(StaleKind.PASSCODE, p.id, p.label, since)
        for r in _retired_passcodes(state):
            if digest_matches(r.digest, digest):
                return Match(StaleKind.PASSCODE, r.id, r.label, r.retired)
    for v in _verifiers(state):
        current = v.stamp == state.stamp
        if current and not password_refused:
            continue
        made = _verifier_mac(keys, state, v.stamp, secret, v.key_id)
        if made is not None and hmac.compare_digest(made[1], v.mac):
            if current:
                return Match(StaleKind.PASSWORD, v.stamp, "", 0)
            return Match(StaleKind.OLD_PASSWORD, v.stamp, "", v.until)
    return None


def _live_records(state: AccountState, now: int) -> list[StaleClient]:
    return [c for c in state.stale_clients if c.last > now - STALE_KEEP]


def _stale(
    state: AccountState,
    decision: Decision,
    match: Match,
    ctx: Context,
    random: Random,
    notify_per_day: int,
) -> Observed:
    same = [
        c
        for c in state.stale_clients
        if c.kind == match.kind.value
        and c.ref == match.ref
        and c.address == ctx.remote
        and c.service == ctx.service
    ]
    if same:
        # counted when first seen; never again, however long it retries
        record = max(same, key=lambda c: c.last)
        quiet = replace(decision, commit=Modify(()), locks=False, counted=False)
        if ctx.now - record.last < STALE_INTERVAL:
            return Observed(quiet)
        refresh = Modify(
            (
                Change.delete(Attr.STALE_CLIENT, record.dump()),
                Change.add(Attr.STALE_CLIENT, replace(record, last=ctx.now).dump()),
            )
        )
        return Observed(replace(quiet, followups=(*decision.followups, refresh)))
    live = sorted(_live_records(state, ctx.now), key=lambda c: c.last)
    told_today = sum(1 for c in live if c.told and c.first > ctx.now - _DAY)
    record = StaleClient(
        id=new_id(random),
        kind=match.kind.value,
        ref=match.ref,
        label=match.label,
        since=match.since,
        address=ctx.remote,
        service=ctx.service,
        first=ctx.now,
        last=ctx.now,
        told=told_today < notify_per_day,
        dismissed=False,
    )
    drop = [c for c in state.stale_clients if c not in live]
    drop += live[: max(0, len(live) + 1 - MAX_STALE)]
    changes = [Change.add(Attr.STALE_CLIENT, record.dump())]
    if drop:
        changes.insert(0, Change.delete(Attr.STALE_CLIENT, *(c.dump() for c in drop)))
    return Observed(decision, record, Modify(tuple(changes)))


def observe(
    decision: Decision,
    state: AccountState,
    attempt: Attempt,
    ctx: Context,
    *,
    password: PasswordCheck,
    bound: bool,
    keys: Keyring,
    random: Random,
    notify_per_day: int = 0,
) -> Observed:
    """``decision`` with what stale-client bookkeeping it needs.

    ``bound``: ``password`` comes from a bind with ``attempt.secret`` (not from a
    continuation). ``notify_per_day``: owners may be told of this many new stale clients
    a day (0: telling is off)."""
    followups: list[Modify] = []
    if password is PasswordCheck.RIGHT and bound:
        followups.append(_password_seen(state, attempt.secret, keys, ctx.now))
    if decision.outcome is Outcome.ACCEPT:
        for why, dead in (
            ("password", [p for p in state.passcodes if p.stamp != state.stamp]),
            (
                "expired",
                [
                    p
                    for p in state.passcodes
                    if p.stamp == state.stamp and p.expires and p.expires <= ctx.now
                ],
            ),
        ):
            followups.append(retire_passcodes(state, dead, ctx.now, why))
    kept = tuple(f for f in followups if f)
    if kept:
        decision = replace(decision, followups=(*decision.followups, *kept))
    if (
        decision.outcome is not Outcome.DENY
        or decision.reason not in _STALE_REASONS
        or not attempt.secret
        or password is PasswordCheck.RIGHT
    ):
        return Observed(decision)
    refused_unchecked = password is PasswordCheck.NOT_CHECKED
    match = _recognise(state, attempt.secret, keys, ctx.now, refused_unchecked)
    if match is None:
        return Observed(decision)
    return _stale(state, decision, match, ctx, random, notify_per_day)


def shown(state: AccountState, now: int) -> tuple[StaleClient, ...]:
    """What the owner sees: not dismissed, tried within ``STALE_KEEP``, newest first."""
    live = [c for c in _live_records(state, now) if not c.dismissed]
    return tuple(sorted(live, key=lambda c: c.last, reverse=True))


def dismiss(state: AccountState, stale_id: str) -> Modify:
    """The owner has seen it: hidden, still recognised (so still counted once only)."""
    record = next((c for c in state.stale_clients if c.id == stale_id), None)
    if record is None:
        raise NotFound(RefusalReason.NO_SUCH_STALE_CLIENT, f"no stale client {stale_id[:16]!r}")
    if record.dismissed:
        return Modify(())
    return Modify(
        (
            Change.delete(Attr.STALE_CLIENT, record.dump()),
            Change.add(Attr.STALE_CLIENT, replace(record, dismissed=True).dump()),
        )
    )
