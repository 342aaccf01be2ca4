"""Webmail session credentials: what a webmail reads mail with after a two-step sign-in.

A webmail (Roundcube) signs its user in with the password and a code, then has to open
IMAP, SMTP and ManageSieve for them on every request. Handing those the password would
make the password alone open mail again, which two-step exists to stop; so twostepd
issues the webmail a credential of its own for that one browser session:

* 256 random bits (``ws-<id>.<secret>``), stored as a domain-separated SHA-256 digest
  like a passcode, shown once to the webmail and never logged;
* good for the mail services alone (``SERVICES``), and only from the addresses the
  webmail connects from as the mail servers see it (``bind``), so a copy read off the
  webmail's session store is no use from another host (from the webmail's own host it
  is: whoever can read Roundcube's des_key there can also use it; hence a PHP pool of
  Roundcube's own, README "Webmail: Roundcube");
* alive while it is used: a use refreshes its 'last used' note (at most every
  ``USAGE_INTERVAL``), and a session idle for longer than ``idle`` is dead, as is one
  older than ``MAX_LIFETIME`` however much it is used;
* dead with the password it was made under (the stamp), and removed by sign-out,
  disable, reset, a lock-out, "revoke all" and a new enrollment (two-step turned on,
  or a new authenticator);
* never a proof of where its user is: a login with it clears no failures.

A well-formed credential that matches nothing live is refused without counting as a
failure: 256 bits are not guessed, and a webmail still holding an ended session must
not lock its user out by retrying it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from .account import AccountState, Attr
from .changes import Change, Modify
from .codes import Random, new_id
from .hashing import digest_matches, fast_digest
from .records import MAX_BIND, WebSession, normalize_address
from .usage import USAGE_INTERVAL, usage_note

__all__ = [
    "MAX_IDLE",
    "MAX_LIFETIME",
    "MAX_SESSIONS",
    "MIN_IDLE",
    "SERVICES",
    "end_all",
    "end_session",
    "find_session",
    "is_session_token",
    "issue_session",
    "live_sessions",
    "session_is_live",
    "touch_session",
]

SERVICES = frozenset({"imap", "smtp", "submission", "sieve"})
"""What a webmail session credential opens: reading, sending and filtering mail."""
MIN_IDLE = 300
MAX_IDLE = 86400
"""The idle times a webmail may ask for: its own session lifetime, within these."""
MAX_LIFETIME = 7 * 86400
"""The longest a credential lives however busy its session (the portal's bound too)."""
MAX_SESSIONS = 20
"""Open webmail sessions kept per account; the oldest beyond this are ended."""
_PREFIX = "ws-"
_SECRET_BYTES = 32
_TOKEN = re.compile(r"ws-([2-9a-hj-np-z]{8})\.([A-Za-z0-9_-]{43})")


def is_session_token(secret: str) -> bool:
    """Whether a presented secret has the shape of a webmail session credential (no
    passcode, password-shaped or not, is checked as one then)."""
    return _TOKEN.fullmatch(secret) is not None


def session_is_live(state: AccountState, session: WebSession, now: int) -> bool:
    """Made under the current password, within its lifetime, and used recently enough."""
    if session.stamp != state.stamp or now >= session.expires:
        return False
    note = state.usage_of(session.id)
    last = max(session.created, note.time if note is not None else 0)
    return now < last + session.idle


def live_sessions(state: AccountState, now: int) -> tuple[WebSession, ...]:
    return tuple(s for s in state.web_sessions if session_is_live(state, s, now))


def find_session(state: AccountState, token: str, now: int) -> WebSession | None:
    """The live session ``token`` proves, if any; the digest is compared in constant
    time, and only after the id (which is not secret) found the record."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    digest = fast_digest("webmail-session", token)
    for session in live_sessions(state, now):
        if session.id == match.group(1) and digest_matches(session.digest, digest):
            return session
    return None


def issue_session(
    state: AccountState,
    *,
    now: int,
    idle: int,
    bind: Iterable[str],
    browser: str,
    random: Random,
) -> tuple[str, WebSession, Modify, Modify]:
    """A new credential: (the token to hand over once, its record, the write, and the
    bookkeeping after it: the 'last used' notes of the sessions it ended).

    ``idle`` is the webmail's own session lifetime; ``USAGE_INTERVAL`` is added, as
    a session in use has its note written only that often. ``bind`` must hold 1 to
    ``MAX_BIND`` IP addresses. The oldest sessions beyond ``MAX_SESSIONS`` and the
    dead ones go in the same write. Raises ``ValueError`` for a bad ``idle`` or ``bind``.
    """
    if not MIN_IDLE <= idle <= MAX_IDLE:
        raise ValueError(f"idle: {MIN_IDLE} to {MAX_IDLE} seconds")
    addresses: list[str] = []
    for text in bind:
        address = normalize_address(text)
        if address is None:
            raise ValueError("bind: not an IP address")
        if address not in addresses:
            addresses.append(address)
    if not 1 <= len(addresses) <= MAX_BIND:
        raise ValueError(f"bind: 1 to {MAX_BIND} addresses")
    session_id = new_id(random)
    secret = base64.urlsafe_b64encode(random(_SECRET_BYTES)).decode("ascii").rstrip("=")
    token = f"{_PREFIX}{session_id}.{secret}"
    record = WebSession(
        id=session_id,
        digest=fast_digest("webmail-session", token),
        created=now,
        expires=now + MAX_LIFETIME,
        idle=idle + USAGE_INTERVAL,
        bind=tuple(addresses),
        browser=normalize_address(browser) or "",
        stamp=state.stamp,
    )
    live = sorted(live_sessions(state, now), key=lambda s: s.created)
    dropped = [s for s in state.web_sessions if s not in live]
    dropped += live[: max(0, len(live) + 1 - MAX_SESSIONS)]
    changes = [Change.add(Attr.WEB_SESSION, record.dump())]
    if dropped:
        changes.insert(0, Change.delete(Attr.WEB_SESSION, *(s.dump() for s in dropped)))
    notes = [n.dump() for n in state.usage if n.id in {s.id for s in dropped}]
    cleanup = Modify((Change.delete(Attr.USAGE, *notes),) if notes else ())
    return token, record, Modify(tuple(changes)), cleanup


def end_session(state: AccountState, session: WebSession) -> Modify:
    """Signing out: the record and its note go."""
    changes = [Change.delete(Attr.WEB_SESSION, session.dump())]
    note = state.usage_of(session.id)
    if note is not None:
        changes.append(Change.delete(Attr.USAGE, note.dump()))
    return Modify(tuple(changes))


def end_all(state: AccountState) -> Modify:
    """Every webmail session of the account ends (nothing to do when there is none)."""
    if not state.web_sessions:
        return Modify(())
    return Modify((Change.replace(Attr.WEB_SESSION),))


def touch_session(state: AccountState, session: WebSession, now: int, address: str) -> Modify:
    """The webmail used its session (a page it served): the note that keeps it alive."""
    return usage_note(state, session.id, now, address)
