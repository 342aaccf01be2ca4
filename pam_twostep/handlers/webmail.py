"""A webmail's operations (issue 16): the mail credential of a sign-in, the check of
each page it serves, sign-out; and ending a session from Account Security.

A credential is handed out only in the reply to an interactive ``auth`` that accepted
(the password and a code, a backup code or a trusted browser), never on a request of
its own: a verify peer cannot mint one for a user it did not just sign in. A failure
to write it makes the whole reply a temporary failure, so a webmail never mistakes
"no credential" for "the password may go on to mail".
"""

from __future__ import annotations

from ..access import Right
from ..core.decision import Decision, Flow, Method, Outcome
from ..core.records import MAX_BIND, normalize_address
from ..core.websessions import MAX_IDLE, MIN_IDLE
from ._ops import Handler, Op, manage, plain
from ._parts import Caller, Parts, Webmail
from ._replies import Reply
from ._schema import Auth, ForSession, Malformed, WebmailSession
from .sessions import self_service

__all__ = ["OPS", "SELF_SERVICE", "mail_bind", "with_mail_credential"]


def mail_bind(values: Auth) -> tuple[str, ...]:
    """The addresses an ``auth`` asking for a mail credential binds it to, checked
    before anything is decided; () when it asks for none."""
    if not values.mail_session:
        return ()
    if not MIN_IDLE <= values.mail_idle <= MAX_IDLE:
        raise Malformed(f"mail_idle: {MIN_IDLE} to {MAX_IDLE} seconds")
    addresses = tuple(a.strip() for a in values.mail_bind.split(",") if a.strip())
    if not 1 <= len(addresses) <= MAX_BIND or any(normalize_address(a) is None for a in addresses):
        raise Malformed(f"mail_bind: 1 to {MAX_BIND} IP addresses, comma-separated")
    return addresses


def with_mail_credential(
    webmail: Webmail,
    values: Auth,
    flow: Flow,
    decision: Decision,
    bind: tuple[str, ...],
    reply: Reply,
) -> Reply:
    """``reply`` with ``mail_credential`` when the sign-in asked for one and needs one."""
    if (
        not bind
        or flow is not Flow.INTERACTIVE
        or decision.outcome is not Outcome.ACCEPT
        or decision.method is Method.PASSCODE
    ):
        return reply
    token = webmail.start(
        decision.username, bind=bind, idle=values.mail_idle, browser=values.remote
    )
    if token is not None:
        reply["mail_credential"] = token
    return reply


def _webmail_of(engine: Parts) -> Webmail:
    return engine.webmail


def _check(webmail: Webmail, values: WebmailSession, caller: Caller) -> Reply:
    if webmail.check(values.user, values.credential, values.remote):
        return {"result": "ok"}
    return {"result": "ended"}


def _end(webmail: Webmail, values: WebmailSession, caller: Caller) -> Reply:
    webmail.end(values.user, values.credential, browser=values.remote)
    return {"result": "ok"}


def _revoke(webmail: Webmail, values: ForSession, actor: str) -> Reply:
    webmail.revoke(values.user, values.session_id, actor=actor)
    return {}


_REVOKE: Handler = manage(ForSession, _webmail_of, _revoke)
OPS: dict[str, Op] = {
    "webmail-check": (Right.VERIFY, plain(WebmailSession, _webmail_of, _check)),
    "webmail-end": (Right.VERIFY, plain(WebmailSession, _webmail_of, _end)),
    "webmail-session-revoke": (Right.MANAGE, _REVOKE),
}
SELF_SERVICE: dict[str, Handler] = {
    "webmail-session-revoke": self_service(ForSession, _webmail_of, _revoke),
}
