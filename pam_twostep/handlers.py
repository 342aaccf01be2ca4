"""Requests to twostepd, mapped onto the engine: validation in, replies out.

No sockets here: the daemon hands over a decoded request and the peer that sent it, and
sends back whatever dict comes out. Every request is checked against a small schema
(known fields only, right types, bounded sizes) before anything else happens, and no
reply ever carries an exception's text: a client learns ``tempfail``, the log learns why.

Errors, all as ``{"result": "error", "error": <code>}``:
``malformed`` (not a valid request), ``unknown-op``, ``forbidden`` (peer not allowed),
``too-large``, ``timeout`` (request not complete in time), ``busy`` (too many at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .access import Peer, Right
from .decision import Attempt, Decision, Flow, Outcome
from .engine import Engine
from .errors import TemporaryFailure

__all__ = ["OPS", "Malformed", "error", "handle"]

log = logging.getLogger(__name__)

_MAX_TEXT = 1024
Reply = dict[str, Any]


class Malformed(Exception):
    """The request does not fit its operation's schema."""


def error(code: str) -> Reply:
    return {"result": "error", "error": code}


@dataclass(frozen=True)
class _Field:
    kind: type
    required: bool = False
    max_length: int = _MAX_TEXT


def _validate(request: Mapping[str, object], schema: Mapping[str, _Field]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in request.items():
        if name in ("op", "id"):
            continue
        spec = schema.get(name)
        if spec is None:
            raise Malformed(f"unknown field {name[:32]!r}")
        if spec.kind is bool:
            if not isinstance(value, bool):
                raise Malformed(f"{name}: not true or false")
        elif spec.kind is str:
            if not isinstance(value, str) or len(value) > spec.max_length:
                raise Malformed(f"{name}: not a string of at most {spec.max_length} characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Malformed(f"{name}: not valid Unicode") from None
        values[name] = value
    missing = [name for name, spec in schema.items() if spec.required and name not in values]
    if missing:
        raise Malformed(f"missing {', '.join(missing)}")
    return values


_AUTH = {
    "user": _Field(str, True, 512),
    "password": _Field(str, True),
    "service": _Field(str, True, 64),
    "remote": _Field(str, max_length=64),
    "local": _Field(str, max_length=64),
    "secured": _Field(bool),
    "flow": _Field(str, max_length=16),
    "code": _Field(str, max_length=128),
    "device_token": _Field(str, max_length=128),
    "trust_device": _Field(bool),
    "device_label": _Field(str, max_length=128),
}
_LOOKUP = {"user": _Field(str, True, 512)}
_PING: dict[str, _Field] = {}


def _decision_reply(decision: Decision) -> Reply:
    reply: Reply = {"result": decision.outcome.value}
    if decision.outcome is Outcome.ACCEPT:
        reply["user"] = decision.username
        reply["method"] = decision.method.value if decision.method else None
        if decision.fields:
            reply["fields"] = dict(decision.fields)
        if decision.device:
            reply["device"] = decision.device
        if decision.device_token:
            reply["device_token"] = decision.device_token
    elif decision.reason is not None:
        reply["reason"] = decision.reason.value
    return reply


def _auth(engine: Engine, request: Mapping[str, object], peer: Peer) -> Reply:
    values = _validate(request, _AUTH)
    flow_name = values.get("flow")
    if flow_name is None:
        service = str(values["service"]).lower()
        flow = Flow.MAIL if service in engine.config.mail_services else Flow.INTERACTIVE
    elif flow_name in ("mail", "interactive"):
        flow = Flow(flow_name)
    else:
        raise Malformed("flow: mail or interactive")
    attempt = Attempt(
        flow=flow,
        secret=values["password"],
        code=values.get("code"),
        device_token=values.get("device_token"),
        trust_device=values.get("trust_device", False),
        device_label=values.get("device_label", ""),
    )
    decision = engine.authenticate(
        values["user"], attempt, service=values["service"], remote=values.get("remote", "")
    )
    return _decision_reply(decision)


def _lookup(engine: Engine, request: Mapping[str, object], peer: Peer) -> Reply:
    values = _validate(request, _LOOKUP)
    found = engine.lookup(values["user"])
    if found is None:
        return {"result": "unknown"}
    name, fields = found
    reply: Reply = {"result": "found", "user": name}
    if fields:
        reply["fields"] = dict(fields)
    return reply


def _ping(engine: Engine, request: Mapping[str, object], peer: Peer) -> Reply:
    _validate(request, _PING)
    return {"result": "ok"}


Handler = Callable[[Engine, Mapping[str, object], Peer], Reply]
OPS: dict[str, tuple[Right, Handler]] = {
    "ping": (Right.VERIFY, _ping),
    "auth": (Right.VERIFY, _auth),
    "lookup": (Right.VERIFY, _lookup),
}


def handle(
    engine: Engine, request: Mapping[str, object], peer: Peer, rights: frozenset[Right]
) -> Reply:
    """The reply to one request. Never raises: failures become error or tempfail replies."""
    op = request.get("op")
    entry = OPS.get(op) if isinstance(op, str) else None
    if entry is None:
        reply = error("unknown-op")
    elif entry[0] not in rights:
        log.warning("refused %s from %s: not allowed", op, peer)
        reply = error("forbidden")
    else:
        try:
            reply = entry[1](engine, request, peer)
        except Malformed as exc:
            log.info("malformed %s request from %s: %s", op, peer, exc)
            reply = error("malformed")
        except TemporaryFailure as exc:
            log.warning("%s for %s: temporary failure: %s", op, peer, exc)
            reply = {"result": "tempfail"}
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
