"""The portal's sessions (the ``self-service`` right; issue 14 M4, M5): the proofs
twostepd issues at a portal sign-in, and the account operations a user makes on
themselves with one.

An ``auth`` that proves a user's password answers the portal a ``session`` proof: an
HMAC, under a key in twostepd's memory, over the user, the peer's uid, the time and the
account's session generation (``session_generation``: password stamp, two-step on or
off, the sealed key). A self-service operation then acts only for the user its proof
names; admin operations are never among them. The proof dies with a password change
however made, a disable, a reset, a new authenticator, the sign-out of any of the
account's portal sessions (``session-end``), after ``SESSION_LIFETIME``, and when
twostepd restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import mmap
import secrets
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..access import Right
from ..core.decision import Decision, Flow, Method, Outcome, Reason
from ..core.errors import DirectoryRefused, Refused
from ._ops import Handler, Op
from ._parts import Accounts, Caller, Parts, SessionGenerations
from ._replies import Reply, refused, refused_by_directory
from ._schema import ForUser, UserRequest, parse_signed

__all__ = [
    "OPS",
    "SELF_SERVICE",
    "SESSIONS",
    "SESSION_LIFETIME",
    "PortalSessions",
    "SelfService",
    "SessionEnded",
    "password_proven",
    "self_service",
]

log = logging.getLogger(__name__)

P = TypeVar("P")
U = TypeVar("U", bound=UserRequest)


SESSION_LIFETIME = 7 * 86400
"""The longest a portal session proof lives: the portal's own ``session_lifetime`` at its
most. The portal ends its sessions sooner; this is the daemon's bound."""
_SIGN_OUT_SLOTS = 1 << 16


class PortalSessions:
    """The portal's sessions as twostepd sees them: proofs it issued at sign-in, and which
    of them signed out.

    Sign-outs live in memory shared by every serving process (an anonymous mapping made
    before they are forked), one slot per hash of the proof holding the latest sign-out
    time in milliseconds: a proof issued before its slot's time is dead. So signing out
    ends that browser's session only (a password change, a disable, a reset or a new key
    ends all of them, through the session generation). Two proofs sharing a slot means
    one's sign-out may end the other (fail closed, never the other way); no slot is ever
    freed or overwritten with an older time, so there is nothing to fill up. The key and
    the slots are lost together when twostepd restarts, which ends every portal session:
    nothing about them is written to the directory."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)
        self._slots = mmap.mmap(-1, 8 * _SIGN_OUT_SLOTS)
        # Within a process only: a multiprocessing lock is a POSIX semaphore made at import,
        # which fails where /dev/shm is not writable (a chroot, a hardened unit) and would
        # stop twostepd from starting. Across processes two sign-outs of one slot in the
        # same instant may keep the earlier time, which ends only proofs issued before it.
        self._lock = threading.Lock()

    def _slot(self, token: str) -> int:
        digest = hmac.new(self._key, b"slot\0" + token.encode("ascii", "replace"), "sha256")
        return 8 * (int.from_bytes(digest.digest()[:4], "big") % _SIGN_OUT_SLOTS)

    def _mac(self, user: str, uid: int, generation: str, issued: int, nonce: str) -> str:
        message = f"portal-session\0{user}\0{uid}\0{generation}\0{issued}\0{nonce}"
        digest = hmac.new(self._key, message.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:24]).decode("ascii")

    @staticmethod
    def _now_ms() -> int:
        return time.time_ns() // 1_000_000

    def issue(self, generations: SessionGenerations, user: str, uid: int) -> str | None:
        """A proof for ``user`` signing in through peer ``uid`` now; None if the account
        cannot be read (then there is no session, fail closed)."""
        generation = generations.session_generation(user)
        if generation is None:
            return None
        issued, nonce = self._now_ms(), secrets.token_urlsafe(9)  # one per browser
        return f"{issued}.{nonce}.{self._mac(user, uid, generation, issued, nonce)}"

    def valid(self, generations: SessionGenerations, token: object, user: str, uid: int) -> bool:
        """Whether ``token`` is a live proof for ``user`` through peer ``uid``: the
        cheap checks first, the account (one read) last."""
        if not isinstance(token, str) or len(token) > 128:
            return False
        issued_text, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not issued_text.isascii() or not issued_text.isdigit() or len(issued_text) > 15:
            return False
        issued, now = int(issued_text), self._now_ms()
        if issued > now + 1000 or now - issued >= SESSION_LIFETIME * 1000:
            return False
        (signed_out,) = struct.unpack_from("<q", self._slots, self._slot(token))
        if issued <= signed_out:
            return False
        generation = generations.session_generation(user)
        if generation is None:
            return False
        expected = self._mac(user, uid, generation, issued, nonce)
        return hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii"))

    def end(self, token: str) -> None:
        """This proof (one browser's session) stops working, in every process."""
        offset, now = self._slot(token), self._now_ms()
        with self._lock:
            (before,) = struct.unpack_from("<q", self._slots, offset)
            struct.pack_into("<q", self._slots, offset, max(before, now))


SESSIONS = PortalSessions()
"""Made at import, before twostepd forks its serving processes: one key and one set of
sign-outs for all of them, as a browser's requests may reach any."""


def password_proven(decision: Decision, flow: Flow) -> bool:
    """A sign-in the portal may open a session for: an interactive one (a mail login
    with a passcode scoped to IMAP proves too little for Account Security), accepted,
    or the password right and the policy asking for enrollment (the only page such a
    session reaches is setup)."""
    if flow is not Flow.INTERACTIVE:
        return False
    if decision.outcome is Outcome.ACCEPT:
        return decision.method is not Method.PASSCODE
    return decision.reason is Reason.ENROLLMENT_REQUIRED


class SessionEnded(Exception):
    """A self-service request without a live sign-in proof for the user it names."""


def _signed_in(
    kind: type[U], engine: Parts, request: Mapping[str, object], caller: Caller
) -> tuple[U, str]:
    """The request and its proof, if the proof is live for the user it names through
    this peer; otherwise SessionEnded (or Malformed), and nothing is done."""
    if "session" not in request:
        raise SessionEnded("no session proof")
    values, session = parse_signed(kind, request)
    if not SESSIONS.valid(engine.accounts, session, values.user, caller.peer.uid):
        raise SessionEnded("the session proof is not good")
    return values, session


@dataclass(frozen=True)
class SelfService(Generic[P, U]):
    """An account operation for the user who signed in, with the same function as its
    admin form (``Managed``) but only behind a live proof (``_signed_in``). With
    ``renews`` the change moves the session generation (a new password, key or
    two-step state), so the reply carries a fresh proof for the session that made it;
    every other session of the account has ended."""

    request: type[U]
    part: Callable[[Parts], P]
    call: Callable[[P, U, str], Reply]
    renews: bool = False

    def __call__(self, engine: Parts, request: Mapping[str, object], caller: Caller) -> Reply:
        values, _ = _signed_in(self.request, engine, request, caller)
        try:
            reply: Reply = {
                "result": "ok",
                **self.call(self.part(engine), values, caller.peer.user),
            }
        except Refused as exc:
            return refused(exc)
        except DirectoryRefused as exc:
            log.warning("%s from %s: %s", self.request.__name__, caller.peer, exc)
            return refused_by_directory()
        if self.renews:
            token = SESSIONS.issue(engine.accounts, values.user, caller.peer.uid)
            if token is not None:
                reply["session"] = token
        return reply


def self_service(
    request: type[U],
    part: Callable[[Parts], P],
    call: Callable[[P, U, str], Reply],
    *,
    renews: bool = False,
) -> Handler:
    """A ``SelfService`` handler (a function, so ``U`` is read off the arguments)."""
    return SelfService(request, part, call, renews)


@dataclass(frozen=True)
class _SessionEnd:
    """``session-end``: this browser's proof stops working, and the sign-out is audited."""

    request: type[ForUser] = ForUser

    def __call__(self, engine: Parts, request: Mapping[str, object], caller: Caller) -> Reply:
        values, session = _signed_in(self.request, engine, request, caller)
        accounts: Accounts = engine.accounts
        try:
            SESSIONS.end(session)
            accounts.record_sign_out(values.user, actor=caller.peer.user)
        except Refused as exc:
            return refused(exc)
        return {"result": "ok"}


_SESSION_END: Handler = _SessionEnd()
OPS: dict[str, Op] = {"session-end": (Right.SELF_SERVICE, _SESSION_END)}
SELF_SERVICE: dict[str, Handler] = {"session-end": _SESSION_END}
