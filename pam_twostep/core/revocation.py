"""Which mail credentials a change took away, and which open mail sessions must end.

A revoked passcode is refused at the next login, but an IMAP client that is already in
(IDLE holds a session for hours) and Dovecot's auth cache both outlive the directory
change. So after every change twostepd compares the account's live mail credentials
before and after (``revocation``) and asks the mail servers to end what used the ones
that went (``kick_plan``).

What a mail server knows of a local session is its user and its client's address (the
passdb's ``user_*`` fields are tracked for proxied sessions only, on 2.3 and 2.4 alike),
so the sessions of one credential cannot be singled out. By default every session of
the user ends (each other client logs straight back in with its own, still valid,
passcode). A site may choose ``by_address``: only the sessions from the addresses a
revoked credential was last seen at end, and the user's other clients stay connected;
where every credential went, or an address is unknown, every session ends anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .account import AccountState
from .lockout import lock_state
from .policy import Policy
from .records import normalize_address
from .rollout import mail_password_accepted
from .websessions import live_sessions

__all__ = [
    "NOTHING_ENDED",
    "Credential",
    "Ended",
    "Kick",
    "Revocation",
    "RevocationCause",
    "kick_plan",
    "live_credentials",
    "password_changed",
    "revocation",
]


class RevocationCause(Enum):
    CHANGE = "change"
    """A change made through twostep (revoke, disable, reset, password change, ...)."""
    LOCKED = "locked"
    PASSWORD_CHANGED = "password-changed"
    """Noticed on the entry: its password changed by some other route."""


@dataclass(frozen=True)
class Credential:
    """One secret a mail client may hold: ``tag`` names it uniquely on the account."""

    tag: str
    label: str
    addresses: tuple[str, ...]
    """Where it was last seen used (empty: not known)."""


@dataclass(frozen=True)
class Revocation:
    user: str
    revoked: tuple[Credential, ...]
    everything: bool
    """No mail credential the account had before is still good."""
    cause: RevocationCause = RevocationCause.CHANGE

    def __bool__(self) -> bool:
        return bool(self.revoked) or self.everything


@dataclass(frozen=True)
class Kick:
    """End ``user``'s mail sessions: from ``addresses`` only, or (None) from everywhere;
    and drop the user from the mail servers' auth caches."""

    user: str
    addresses: tuple[str, ...] | None


@dataclass(frozen=True)
class Ended:
    """What asking the mail servers came to: sessions ended, and each host that could
    not be asked (its name and why, never a secret)."""

    attempted: bool
    ended: int = 0
    failures: tuple[str, ...] = ()


NOTHING_ENDED = Ended(False)
"""Nothing was asked: nothing went, or no mail server is configured."""


def live_credentials(
    state: AccountState, policy: Policy, now: int, *, locked_counts: bool = True
) -> dict[str, Credential]:
    """The mail credentials that would be accepted now, by tag: none while locked, unless
    ``locked_counts`` is False (what a change takes away from a locked account still
    goes: its sessions may have outlived the lock-out's own end)."""
    if locked_counts and lock_state(state, policy, now).locked:
        return {}
    found: list[Credential] = []
    if state.enabled and policy.passcodes:
        for passcode in state.live_passcodes(now):
            note = state.usage_of(passcode.id)
            found.append(
                Credential(
                    f"passcode:{passcode.id}",
                    passcode.label,
                    (note.address,) if note is not None and note.address else (),
                )
            )
    if mail_password_accepted(state, policy, now):
        found.append(Credential(f"password:{state.stamp}", "the password", ()))
    for session in live_sessions(state, now):
        found.append(Credential(f"webmail:{session.id}", "a webmail session", session.bind))
    return {c.tag: c for c in found}


def revocation(
    before: AccountState,
    before_policy: Policy,
    after: AccountState,
    after_policy: Policy,
    now: int,
    cause: RevocationCause = RevocationCause.CHANGE,
) -> Revocation:
    """What went between two readings of one account (empty when nothing did)."""
    old = live_credentials(before, before_policy, now, locked_counts=False)
    new = live_credentials(after, after_policy, now)
    gone = tuple(c for tag, c in sorted(old.items()) if tag not in new)
    return Revocation(
        after.username, gone, everything=bool(old) and not (old.keys() & new.keys()), cause=cause
    )


def password_changed(state: AccountState) -> Revocation | None:
    """Records made under another password still on the entry: the password changed
    by a route other than twostep's, and everything made under the old one is dead."""
    stale = [p for p in state.passcodes if p.stamp != state.stamp] + [
        s for s in state.web_sessions if s.stamp != state.stamp
    ]
    if not stale:
        return None
    return Revocation(state.username, (), everything=True, cause=RevocationCause.PASSWORD_CHANGED)


def kick_plan(change: Revocation, *, by_address: bool = False) -> Kick | None:
    """The sessions to end for ``change``; None when nothing went.

    Every session of the user by default. ``by_address`` (a site's choice) ends only
    those from where the revoked credentials were last seen: the user's other clients
    stay connected, but a copy of the credential used from elsewhere before its last
    use (a stolen passcode idling at another address) is missed."""
    if not change:
        return None
    addresses = sorted({a for c in change.revoked for a in c.addresses})
    if (
        not by_address
        or change.everything
        or any(not c.addresses for c in change.revoked)
        or any(normalize_address(a) != a for a in addresses)
    ):
        return Kick(change.user, None)
    return Kick(change.user, tuple(addresses))
