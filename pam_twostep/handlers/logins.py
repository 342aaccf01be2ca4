"""The verify right's operations (``auth``, ``lookup``, ``ping``) and ``stats``.

``auth`` is the one request every login makes: it is handed ``Logins`` to decide with,
and the account part only to bind a portal session proof to (``SessionGenerations``),
never anything that changes an account. A decision's reply says accept, deny,
challenge or tempfail, and why, never more: the engine already failed closed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..access import Right
from ..continuation import Continuations
from ..core.decision import Attempt, Flow, Outcome
from ._ops import Op, logins_of, plain
from ._parts import Caller, Logins, LoginSettings, Parts, SessionGenerations, Webmail
from ._replies import Reply, decision_reply
from ._schema import Auth, ForUser, Malformed, NoFields
from .sessions import SESSIONS, password_proven
from .webmail import mail_bind, with_mail_credential

__all__ = ["OPS"]


class _Continuation:
    """The engine's PasswordProof, made of the continuation a client presented (if any)
    and the one to hand out when the password was checked and a code is wanted next."""

    def __init__(self, continuations: Continuations, token: object, user: str, uid: int):
        self._continuations, self._token, self._user, self._uid = continuations, token, user, uid
        self.issued: str | None = None

    def proven(self, stamp: str) -> bool:
        return self._continuations.valid(self._token, self._user, self._uid, stamp, time.time())

    def checked(self, stamp: str) -> None:
        self.issued = self._continuations.issue(self._user, self._uid, stamp, time.time())


@dataclass(frozen=True)
class _LoginParts:
    """What ``auth`` is given: the configuration it reads, the login to decide, and
    the session generations a portal proof is bound to."""

    settings: LoginSettings
    logins: Logins
    generations: SessionGenerations
    webmail: Webmail


def _login_parts(engine: Parts) -> _LoginParts:
    return _LoginParts(engine.config, engine.logins, engine.accounts, engine.webmail)


def _auth(parts: _LoginParts, values: Auth, caller: Caller) -> Reply:
    flow_name = values.flow
    if flow_name is None:
        service = values.service.lower()
        flow = Flow.MAIL if service in parts.settings.mail_services else Flow.INTERACTIVE
    elif flow_name in ("mail", "interactive"):
        flow = Flow(flow_name)
    else:
        raise Malformed("flow: mail or interactive")
    bind = mail_bind(values)
    attempt = Attempt(
        flow=flow,
        secret=values.password,
        code=values.code,
        device_token=values.device_token,
        trust_device=values.trust_device,
        device_label=values.device_label,
    )
    proof = _Continuation(caller.continuations, values.continuation, values.user, caller.peer.uid)
    decision = parts.logins.authenticate(
        values.user,
        attempt,
        service=values.service,
        remote=values.remote,
        proof=proof,
    )
    reply = with_mail_credential(
        parts.webmail, values, flow, decision, bind, decision_reply(decision)
    )
    if decision.outcome is Outcome.CHALLENGE and proof.issued is not None:
        reply["continuation"] = proof.issued
    if Right.SELF_SERVICE in caller.rights and password_proven(decision, flow):
        token = SESSIONS.issue(parts.generations, decision.username, caller.peer.uid)
        if token is not None:
            reply["session"] = token
            reply["user"] = decision.username  # the entry's own name, for every reply
    return reply


def _lookup(logins: Logins, values: ForUser, caller: Caller) -> Reply:
    found = logins.lookup(values.user)
    if found is None:
        return {"result": "unknown"}
    name, fields = found
    reply: Reply = {"result": "found", "user": name}
    if fields:
        reply["fields"] = dict(fields)
    return reply


def _nothing(engine: Parts) -> None:
    """``ping``'s part: none, so a ping answers without touching the engine."""
    return None


def _ping(_: None, values: NoFields, caller: Caller) -> Reply:
    return {"result": "ok"}


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _stats_of(engine: Parts) -> Callable[[], Mapping[str, object]]:
    """``stats``'s part: the engine's counters, not its directory."""
    return engine.stats


def _stats(stats: Callable[[], Mapping[str, object]], values: NoFields, caller: Caller) -> Reply:
    """Counters for monitoring and the benchmarks: directory operations, memory."""
    counters = stats()
    return {
        "result": "ok",
        "directory": counters["directory"],
        "ldap_server": counters["ldap_server"],
        "ldap_write_server": counters["ldap_write_server"],
        "rss_kb": _rss_kb(),
        "logins": counters["logins"],
        "pid": os.getpid(),
    }


OPS: dict[str, Op] = {
    "ping": (Right.VERIFY, plain(NoFields, _nothing, _ping)),
    "auth": (Right.VERIFY, plain(Auth, _login_parts, _auth)),
    "lookup": (Right.VERIFY, plain(ForUser, logins_of, _lookup)),
    "stats": (Right.MANAGE, plain(NoFields, _stats_of, _stats)),
}
