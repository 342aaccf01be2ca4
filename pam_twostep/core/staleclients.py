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
credential, network and service (``StaleClient``: which credential, never what was
sent). A revoked passcode's failure counts the first time, as any failure, and after
that not at all, whatever the window; a password's counts as any repeated secret does
(once per window), so that what a login writes never tells a password from a guess.
The record's "last tried" is refreshed at most every ``STALE_INTERVAL``, so a client
retrying every minute writes nothing most of the time. A different wrong secret
matches nothing and is an ordinary failure: an attacker guessing is never shown as a
stale client. Records go ``STALE_KEEP`` after the last try; at most ``MAX_STALE`` are
kept and as many recorded anew in a day, the oldest tried dropped first.

``observe`` runs with the login; ``remember`` and ``recorded`` compute the writes from
the entry read again when they are made (in twostepd, in the background).
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
from .lockout import network_of
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
    "recorded",
    "remember",
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


_Retired = RetiredPasscode | PasswordVerifier


@dataclass(frozen=True)
class Observed:
    """A login's decision, and what to remember of it. The writes are computed later
    (``remember``, ``recorded``) from the entry as it is then: made in the background,
    off the login's turn, they must not act on what other logins have since changed."""

    decision: Decision
    match: Match | None = None
    """The retired credential the denied secret was, if any."""
    remembered: tuple[_Retired, ...] = ()
    """To keep: the current password's verifier, the passcodes the login swept."""


def _verifier_message(state: AccountState, stamp: str, password: str) -> bytes:
    head = f"twostep-password-verifier\0{state.uuid}\0{stamp}\0".encode()
    return head + password.encode("utf-8", "surrogatepass")


def _verifier_mac(
    keys: Keyring, state: AccountState, stamp: str, password: str, key_id: str | None = None
) -> tuple[str, str] | None:
    made = keys.mac(_verifier_message(state, stamp, password), key_id)
    return None if made is None else (made[0], made[1][:8].hex())


def _aged(record: _Retired, now: int) -> bool:
    if isinstance(record, RetiredPasscode):
        return record.retired <= now - RETIRED_KEEP
    return bool(record.until) and record.until <= now - RETIRED_KEEP


def _verifiers(records: Sequence[_Retired]) -> list[PasswordVerifier]:
    return [r for r in records if isinstance(r, PasswordVerifier)]


def _retired_passcodes(records: Sequence[_Retired]) -> list[RetiredPasscode]:
    return [r for r in records if isinstance(r, RetiredPasscode)]


def _bounded(records: Sequence[_Retired], now: int) -> list[_Retired]:
    """Without the aged, and the newest ``MAX_RETIRED`` passcodes and verifiers."""
    fresh = [r for r in records if not _aged(r, now)]
    passcodes = sorted(_retired_passcodes(fresh), key=lambda r: r.retired)
    # the one still current (never marked replaced) is kept first of all
    verifiers = sorted(_verifiers(fresh), key=lambda v: (not v.until, v.seen))
    return [*passcodes[-MAX_RETIRED:], *verifiers[-_MAX_VERIFIERS:]]


def _rewrite(state: AccountState, records: Sequence[_Retired]) -> Modify:
    """The one modify from what the entry holds to ``records``: each value deleted at
    most once, so two steps of one change can never refuse each other."""
    old = [r.dump() for r in state.retired]
    new = [r.dump() for r in records]
    drop = [v for v in old if v not in new] + list(state.unreadable.get(Attr.RETIRED, ()))
    add = list(dict.fromkeys(v for v in new if v not in old))
    changes = []
    if drop:
        changes.append(Change.delete(Attr.RETIRED, *drop))
    if add:
        changes.append(Change.add(Attr.RETIRED, *add))
    return Modify(tuple(changes))


def _retirements(
    records: Sequence[_Retired], passcodes: Sequence[Passcode], now: int, why: str
) -> list[RetiredPasscode]:
    """What recognises ``passcodes``, for those ``records`` do not know yet."""
    known = {r.id for r in _retired_passcodes(records)}
    return [
        RetiredPasscode(p.id, p.label, p.digest, now, why) for p in passcodes if p.id not in known
    ]


def _plus_passcodes(
    records: Sequence[_Retired], passcodes: Sequence[Passcode], now: int, why: str
) -> list[_Retired]:
    return [*records, *_retirements(records, passcodes, now, why)]


def _verifier(
    state: AccountState, stamp: str, password: str, keys: Keyring, now: int
) -> PasswordVerifier | None:
    """``password``'s verifier under ``stamp`` and the current key."""
    made = _verifier_mac(keys, state, stamp, password)
    return None if made is None else PasswordVerifier(stamp, made[0], made[1], now, 0)


def _with_verifier(
    records: Sequence[_Retired], verifier: PasswordVerifier, now: int
) -> list[_Retired]:
    """``verifier`` in place of any other for its stamp (keeping when that was first
    seen); the others not yet marked replaced are marked as of now."""
    mine = [v for v in _verifiers(records) if v.stamp == verifier.stamp]
    seen = min((v.seen for v in mine), default=verifier.seen)
    kept: list[_Retired] = [
        replace(r, until=now) if isinstance(r, PasswordVerifier) and not r.until else r
        for r in records
        if not (isinstance(r, PasswordVerifier) and r.stamp == verifier.stamp)
    ]
    return [*kept, replace(verifier, seen=seen)]


def retire_passcodes(
    state: AccountState, passcodes: Sequence[Passcode], now: int, why: str
) -> Modify:
    """Keep what recognises ``passcodes`` (being deleted) once they are gone."""
    records = _plus_passcodes(state.retired, passcodes, now, why)
    return _rewrite(state, _bounded(records, now))


def password_replaced(
    state: AccountState,
    old: str,
    new_stamp: str,
    new: str,
    keys: Keyring,
    now: int,
    passcodes: Sequence[Passcode] = (),
) -> Modify:
    """A change made through twostep, which saw both passwords: the old one's verifier
    retired now, the new one's written (neither waits for a login), and ``passcodes``
    (killed by the change) retired, in one modify."""
    records = _plus_passcodes(state.retired, passcodes, now, "password")
    before = _verifier(state, state.stamp, old, keys, now)
    after = _verifier(state, new_stamp, new, keys, now)
    if before is None or after is None:
        return Modify(())
    if not any(v.stamp == state.stamp for v in _verifiers(records)):
        records = _with_verifier(records, before, now)
    records = _with_verifier(records, after, now)
    return _rewrite(state, _bounded(records, now))


def _needs_verifier(state: AccountState, keys: Keyring) -> bool:
    """No verifier of the current password under the current key (a key retired by
    rotation may be removed: the next login writes one anew)."""
    return not any(
        v.stamp == state.stamp and v.key_id == keys.current for v in _verifiers(state.retired)
    )


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
        for r in _retired_passcodes(state.retired):
            if not _aged(r, now) and digest_matches(r.digest, digest):
                return Match(StaleKind.PASSCODE, r.id, r.label, r.retired)
    for v in _verifiers(state.retired):
        current = v.stamp == state.stamp
        if (current and not password_refused) or _aged(v, now):
            continue
        made = _verifier_mac(keys, state, v.stamp, secret, v.key_id)
        if made is not None and hmac.compare_digest(made[1], v.mac):
            if current:
                return Match(StaleKind.PASSWORD, v.stamp, "", 0)
            return Match(StaleKind.OLD_PASSWORD, v.stamp, "", v.until)
    return None


def _live_records(state: AccountState, now: int) -> list[StaleClient]:
    return [c for c in state.stale_clients if c.last > now - STALE_KEEP]


def _key(kind: str, ref: str, address: str, service: str) -> tuple[str, str, str, str]:
    """What makes one stale client: the credential, the network (an IPv6 /64: privacy
    addresses rotate), the service."""
    return kind, ref, network_of(address), service


def _key_of(client: StaleClient) -> tuple[str, str, str, str]:
    return _key(client.kind, client.ref, client.address, client.service)


def _same(state: AccountState, match: Match, ctx: Context) -> list[StaleClient]:
    key = _key(match.kind.value, match.ref, ctx.remote, ctx.service)
    return [c for c in state.stale_clients if _key_of(c) == key]


def recorded(
    state: AccountState, match: Match, ctx: Context, random: Random, notify_per_day: int = 0
) -> tuple[Modify, StaleClient | None]:
    """The write that records a stale client (and the record, when it is new), from
    ``state`` as it is when written: its "last tried" refreshed at most every
    ``STALE_INTERVAL``; a new one only while fewer than ``MAX_STALE`` were first seen
    in the last day (more is someone hopping addresses: ordinary failures)."""
    same = _same(state, match, ctx)
    if same:
        record = max(same, key=lambda c: c.last)
        if ctx.now - record.last < STALE_INTERVAL:
            return Modify(()), None
        refresh = Modify(
            (
                Change.delete(Attr.STALE_CLIENT, record.dump()),
                Change.add(Attr.STALE_CLIENT, replace(record, last=ctx.now).dump()),
            )
        )
        return refresh, None
    live = sorted(_live_records(state, ctx.now), key=lambda c: c.last)
    today = [c for c in live if c.first > ctx.now - _DAY]
    if len(today) >= MAX_STALE:
        return Modify(()), None
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
        told=sum(1 for c in today if c.told) < notify_per_day,
        dismissed=False,
    )
    drop = [c for c in state.stale_clients if c not in live]
    drop += [c for c in live if c not in today][: max(0, len(live) + 1 - MAX_STALE)]
    dropped = [*(c.dump() for c in drop), *state.unreadable.get(Attr.STALE_CLIENT, ())]
    changes = [Change.add(Attr.STALE_CLIENT, record.dump())]
    if dropped:
        changes.insert(0, Change.delete(Attr.STALE_CLIENT, *dropped))
    return Modify(tuple(changes)), record


def remember(state: AccountState, remembered: Sequence[_Retired], now: int) -> Modify:
    """The write that keeps ``remembered`` (``Observed``), from ``state`` as it is when
    written: a verifier of a password changed since is dropped, not added."""
    records: list[_Retired] = list(state.retired)
    for item in remembered:
        if isinstance(item, PasswordVerifier):
            if item.stamp == state.stamp:
                records = _with_verifier(records, item, now)
        elif item.id not in {r.id for r in _retired_passcodes(records)}:
            records.append(item)
    if records == list(state.retired) and not state.unreadable.get(Attr.RETIRED):
        return Modify(())
    return _rewrite(state, _bounded(records, now))


def _swept(state: AccountState, now: int) -> list[tuple[str, list[Passcode]]]:
    """The passcodes an accepted login's sweep deletes (``decision._dead_records``)."""
    return [
        ("password", [p for p in state.passcodes if p.stamp != state.stamp]),
        (
            "expired",
            [
                p
                for p in state.passcodes
                if p.stamp == state.stamp and p.expires and p.expires <= now
            ],
        ),
    ]


def observe(
    decision: Decision,
    state: AccountState,
    attempt: Attempt,
    ctx: Context,
    *,
    password: PasswordCheck,
    bound: bool,
    keys: Keyring,
) -> Observed:
    """What stale-client bookkeeping goes with ``decision``: its commit dropped for a
    stale client already counted, and the writes of ``Observed``, which the caller makes
    apart from the login's (their success or failure must not show in its timing).

    ``bound``: ``password`` comes from a bind with ``attempt.secret`` (not from a
    continuation)."""
    remembered: list[_Retired] = []
    seen = password is PasswordCheck.RIGHT and bound and bool(attempt.secret)
    if seen and _needs_verifier(state, keys):
        made = _verifier(state, state.stamp, attempt.secret, keys, ctx.now)
        remembered += [made] if made is not None else []
    if decision.outcome is Outcome.ACCEPT:
        for why, dead in _swept(state, ctx.now):
            remembered += _retirements(state.retired, dead, ctx.now, why)
    observed = Observed(decision, remembered=tuple(remembered))
    if (
        decision.outcome is not Outcome.DENY
        or decision.reason not in _STALE_REASONS
        or not attempt.secret
        or password is PasswordCheck.RIGHT
    ):
        return observed
    refused_unchecked = password is PasswordCheck.NOT_CHECKED
    match = _recognise(state, attempt.secret, keys, ctx.now, refused_unchecked)
    if match is None:
        return observed
    if match.kind is StaleKind.PASSCODE and _same(state, match, ctx):
        # counted when first seen; never again, however long it retries. Passcodes only:
        # a password's failure is written as any other's (once per window, by its
        # fingerprint), or whether it was right would show in what a login writes
        decision = replace(decision, commit=Modify(()), locks=False, counted=False)
    return replace(observed, decision=decision, match=match)


def shown(state: AccountState, now: int) -> tuple[StaleClient, ...]:
    """What the owner sees: not dismissed, tried within ``STALE_KEEP``, newest first,
    one per stale client (two processes seeing it first at once may each add one)."""
    newest: dict[tuple[str, str, str, str], StaleClient] = {}
    for client in _live_records(state, now):
        key = _key_of(client)
        if key not in newest or client.last > newest[key].last:
            newest[key] = client
    hidden = {_key_of(c) for c in state.stale_clients if c.dismissed}
    live = [c for key, c in newest.items() if key not in hidden]
    return tuple(sorted(live, key=lambda c: c.last, reverse=True))


def dismiss(state: AccountState, stale_id: str) -> Modify:
    """The owner has seen it: hidden, still recognised (so still counted once only)."""
    record = next((c for c in state.stale_clients if c.id == stale_id), None)
    if record is None:
        raise NotFound(RefusalReason.NO_SUCH_STALE_CLIENT, f"no stale client {stale_id[:16]!r}")
    same = [c for c in state.stale_clients if _key_of(c) == _key_of(record) and not c.dismissed]
    if not same:
        return Modify(())
    return Modify(
        (
            Change.delete(Attr.STALE_CLIENT, *(c.dump() for c in same)),
            Change.add(Attr.STALE_CLIENT, *(replace(c, dismissed=True).dump() for c in same)),
        )
    )
