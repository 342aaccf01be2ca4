"""Requests to twostepd, mapped onto the engine: validation in, replies out.

No sockets here: the daemon hands over a decoded request and the peer that sent it, and
sends back whatever dict comes out. Every request is checked against a small schema
(known fields only, right types, bounded sizes) before anything else happens, and no
reply ever carries an exception's text: a client learns ``tempfail``, the log learns why.

Management requests (the ``manage`` right) answer ``{"result": "ok", ...}``, or
``{"result": "refused", "reason": <RefusalReason>, "message": <a sentence>}`` when the
state or the policy says no, or ``{"result": "tempfail"}``.

Errors, all as ``{"result": "error", "error": <code>}``:
``malformed`` (not a valid request), ``unknown-op``, ``forbidden`` (peer not allowed),
``too-large``, ``timeout`` (request not complete in time), ``busy`` (too many at once),
``session-ended`` (a self-service request whose sign-in proof is not, or no longer, good:
the portal signs the browser out).

Self-service (the ``self-service`` right, the portal; issue 14 M5): an ``auth`` that
proves a user's password (accept, or the enrollment a policy requires) answers, to such a
peer only, a ``session`` proof too: an HMAC, under a key in twostepd's memory, over the
user, the peer's uid, the time and the account's session generation
(``session_generation``: password stamp, two-step on or off, the sealed key). The
account operations a user may make on themselves (``SELF_SERVICE``) then take that proof
in ``session`` and act only for the user it names; admin operations (reset, unlock,
policy, import, keys, stats, a disable without the password) are not among them. The
proof dies with a password change however made, a disable, a reset, a new authenticator,
the sign-out of any of the account's portal sessions (``session-end``; issue 14 M4), after
``SESSION_LIFETIME``, and when twostepd restarts.

The package follows the engine's groups: ``logins`` (auth, lookup, ping, stats),
``sessions`` (the portal's session proofs, ``session-end``), ``accounts``, ``policies``,
``keys``, ``imports``, ``webmail``, ``staleclients`` and ``readiness``, each with its slice of
``OPS``; requests are validated into one frozen dataclass per kind (``_schema``),
replies built in ``_replies``, and each handler is given only the part of the engine
its operation needs (``_parts``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..access import Peer, Right
from ..continuation import Continuations
from ..core.errors import DirectoryIncomplete, TemporaryFailure
from . import (
    accounts,
    imports,
    keys,
    logins,
    policies,
    readiness,
    sessions,
    staleclients,
    webmail,
)
from ._ops import Handler, Op
from ._parts import Caller, Parts
from ._replies import Reply, error, policy_reply, status_reply
from ._schema import Malformed, Request
from .sessions import SESSION_LIFETIME, PortalSessions, SessionEnded

__all__ = [
    "OPS",
    "SCHEMAS",
    "SELF_SERVICE",
    "SESSION_LIFETIME",
    "Caller",
    "Handler",
    "Malformed",
    "PortalSessions",
    "Reply",
    "error",
    "handle",
    "policy_reply",
    "status_reply",
]

log = logging.getLogger(__name__)

OPS: dict[str, Op] = {
    **logins.OPS,
    **sessions.OPS,
    **accounts.OPS,
    **imports.OPS,
    **keys.OPS,
    **policies.OPS,
    **webmail.OPS,
    **staleclients.OPS,
    **readiness.OPS,
}
"""Every operation: the right it takes, and its handler (the admin form where there are
two)."""

SELF_SERVICE: dict[str, Handler] = {
    **sessions.SELF_SERVICE,
    **accounts.SELF_SERVICE,
    **webmail.SELF_SERVICE,
    **staleclients.SELF_SERVICE,
}
"""What the ``self-service`` right reaches: each a user's change to their own account,
with the proof of their sign-in. Nothing here is an admin operation; ``disable`` checks
the password. A peer with ``manage`` as well gets these when it sends ``session``."""

SCHEMAS: dict[str, type[Request]] = {op: handler.request for op, (_, handler) in OPS.items()}
"""The dataclass each operation's request is validated into (its self-service form, in
``SELF_SERVICE``, adds ``session``)."""


def _handler_for(
    op: str, request: Mapping[str, object], rights: frozenset[Right]
) -> Handler | None:
    """The handler this peer's rights give it for ``op``, or None (forbidden). A
    self-service peer gets the self-service form; ``manage`` the admin one unless the
    request carries a session proof, which asks for the self-service form."""
    entry = OPS[op]
    self_form = SELF_SERVICE.get(op) if Right.SELF_SERVICE in rights else None
    if self_form is not None and ("session" in request or entry[0] not in rights):
        return self_form
    if entry[0] in rights:
        return entry[1]
    return None


_SHARED_CONTINUATIONS = Continuations()


def handle(
    engine: Parts,
    request: Mapping[str, object],
    peer: Peer,
    rights: frozenset[Right],
    continuations: Continuations = _SHARED_CONTINUATIONS,
) -> Reply:
    """The reply to one request. Never raises: failures become error or tempfail replies."""
    op = request.get("op")
    handler = _handler_for(op, request, rights) if isinstance(op, str) and op in OPS else None
    if not isinstance(op, str) or op not in OPS:
        reply = error("unknown-op")
    elif handler is None:
        log.warning("refused %s from %s: not allowed", op, peer)
        reply = error("forbidden")
    else:
        try:
            reply = handler(engine, request, Caller(peer, continuations, rights))
        except SessionEnded as exc:
            log.warning("refused %s from %s: %s", op, peer, exc)
            reply = error("session-ended")
        except Malformed as exc:
            log.info("malformed %s request from %s: %s", op, peer, exc)
            reply = error("malformed")
        except TemporaryFailure as exc:
            log.warning("%s for %s: temporary failure: %s", op, peer, exc)
            reply = {"result": "tempfail"}
            if isinstance(exc, DirectoryIncomplete):
                reply["reason"] = "incomplete"  # says what, never the text of why
        except Exception:  # fail closed, never a traceback to a client
            log.exception("%s for %s failed unexpectedly", op, peer)
            reply = {"result": "tempfail"}
    if (
        "id" in request
        and isinstance(request["id"], str | int)
        and not isinstance(request["id"], bool)
    ):
        reply["id"] = request["id"]
    return reply
