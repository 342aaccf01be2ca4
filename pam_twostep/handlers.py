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
(``Engine.session_generation``: password stamp, two-step on or off, the sealed key). The
account operations a user may make on themselves (``SELF_SERVICE``) then take that proof
in ``session`` and act only for the user it names; admin operations (reset, unlock,
policy, import, keys, stats, a disable without the password) are not among them. The
proof dies with a password change however made, a disable, a reset, a new authenticator,
the sign-out of any of the account's portal sessions (``session-end``; issue 14 M4), after
``SESSION_LIFETIME``, and when twostepd restarts.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import mmap
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .access import Peer, Right
from .continuation import Continuations
from .core.candidate import Candidate
from .core.decision import Attempt, Decision, Flow, Method, Outcome, Reason
from .core.errors import DirectoryIncomplete, RefusalReason, Refused, TemporaryFailure
from .core.management import AccountStatus
from .core.policy import Policy, overrides_from_mapping
from .core.totp import Algorithm, TotpParams
from .engine import Engine, PolicyEntry

__all__ = ["OPS", "Malformed", "error", "handle", "policy_reply", "status_reply"]

log = logging.getLogger(__name__)

_MAX_TEXT = 1024
Reply = dict[str, Any]


class Malformed(Exception):
    """The request does not fit its operation's schema."""


class Caller(NamedTuple):
    peer: Peer
    continuations: Continuations
    rights: frozenset[Right] = frozenset()


def error(code: str) -> Reply:
    return {"result": "error", "error": code}


@dataclass(frozen=True)
class _Field:
    kind: type
    required: bool = False
    max_length: int = _MAX_TEXT
    minimum: int = 1
    """The smallest int taken."""


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
        elif spec.kind is int:
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not spec.minimum <= value < 1 << 40
            ):
                raise Malformed(f"{name}: not a whole number from {spec.minimum}")
        elif spec.kind is dict:
            if not isinstance(value, dict) or len(value) > 64:
                raise Malformed(f"{name}: not an object")
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
    "continuation": _Field(str, max_length=64),
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


def _auth(engine: Engine, request: Mapping[str, object], caller: Caller) -> Reply:
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
    proof = _Continuation(
        caller.continuations, values.get("continuation"), values["user"], caller.peer.uid
    )
    decision = engine.authenticate(
        values["user"],
        attempt,
        service=values["service"],
        remote=values.get("remote", ""),
        proof=proof,
    )
    reply = _decision_reply(decision)
    if decision.outcome is Outcome.CHALLENGE and proof.issued is not None:
        reply["continuation"] = proof.issued
    if Right.SELF_SERVICE in caller.rights and _password_proven(decision, flow):
        token = _SESSIONS.issue(engine, decision.username, caller.peer.uid)
        if token is not None:
            reply["session"] = token
            reply["user"] = decision.username  # the entry's own name, for every reply
    return reply


def _password_proven(decision: Decision, flow: Flow) -> bool:
    """A sign-in the portal may open a session for: an interactive one (a mail login
    with a passcode scoped to IMAP proves too little for Account Security), accepted,
    or the password right and the policy asking for enrollment (the only page such a
    session reaches is setup)."""
    if flow is not Flow.INTERACTIVE:
        return False
    if decision.outcome is Outcome.ACCEPT:
        return decision.method is not Method.PASSCODE
    return decision.reason is Reason.ENROLLMENT_REQUIRED


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

    def issue(self, engine: Engine, user: str, uid: int) -> str | None:
        """A proof for ``user`` signing in through peer ``uid`` now; None if the account
        cannot be read (then there is no session, fail closed)."""
        generation = engine.session_generation(user)
        if generation is None:
            return None
        issued, nonce = self._now_ms(), secrets.token_urlsafe(9)  # one per browser
        return f"{issued}.{nonce}.{self._mac(user, uid, generation, issued, nonce)}"

    def valid(self, engine: Engine, token: object, user: str, uid: int) -> bool:
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
        generation = engine.session_generation(user)
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


_SESSIONS = PortalSessions()
"""Made at import, before twostepd forks its serving processes: one key and one set of
sign-outs for all of them, as a browser's requests may reach any."""


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


def _lookup(engine: Engine, request: Mapping[str, object], caller: Caller) -> Reply:
    values = _validate(request, _LOOKUP)
    found = engine.lookup(values["user"])
    if found is None:
        return {"result": "unknown"}
    name, fields = found
    reply: Reply = {"result": "found", "user": name}
    if fields:
        reply["fields"] = dict(fields)
    return reply


def _ping(engine: Engine, request: Mapping[str, object], caller: Caller) -> Reply:
    _validate(request, _PING)
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


def _stats(engine: Engine, request: Mapping[str, object], caller: Caller) -> Reply:
    """Counters for monitoring and the benchmarks: directory operations, memory."""
    _validate(request, _PING)
    return {
        "result": "ok",
        "directory": engine.directory.counts(),
        "ldap_server": engine.directory.server_in_use,
        "rss_kb": _rss_kb(),
        "logins": engine.login_count,
        "pid": os.getpid(),
    }


# -- management ------------------------------------------------------------------------

_USER = {"user": _Field(str, True, 512)}


def status_reply(status: AccountStatus) -> dict[str, object]:
    """The account as ``twostep status --json`` and the portal see it (stable keys)."""
    return {
        "user": status.username,
        "enabled": status.enabled,
        "policy": policy_reply(status.policy),
        "policy_dn": status.policy_dn,
        "backup_codes": status.backup_codes,
        "passcodes": [
            {
                "id": p.id,
                "label": p.label,
                "services": list(p.services),
                "created": p.created,
                "expires": p.expires or None,
                "last_used": p.last_used,
                "last_address": p.last_address,
            }
            for p in status.passcodes
        ],
        "devices": [
            {
                "id": d.id,
                "label": d.label,
                "created": d.created,
                "expires": d.expires,
                "last_seen": d.last_seen,
                "last_address": d.last_address,
            }
            for d in status.devices
        ],
        "locked": status.locked,
        "locked_until": status.locked_until,
        "recent_failures": status.recent_failures,
        "pending_enrollment_expires": status.pending_expires,
    }


def policy_reply(policy: Policy) -> dict[str, object]:
    return dict(dataclasses.asdict(policy))


def _policy_entry_reply(entry: PolicyEntry) -> dict[str, object]:
    return {
        "name": entry.name,
        "dn": entry.dn,
        "default": entry.default,
        "settings": dict(entry.settings),
        "effective": policy_reply(entry.effective),
    }


def _settings(request: Mapping[str, object]) -> dict[str, bool | int | None]:
    raw = request.get("settings", {})
    if not isinstance(raw, dict) or not all(
        isinstance(v, str | bool | int) or v is None for v in raw.values()
    ):
        raise Malformed("settings: an object of setting -> value (null removes)")
    removed = {k: None for k, v in raw.items() if v is None}
    try:
        checked: dict[str, bool | int | None] = dict(
            overrides_from_mapping({k: v for k, v in raw.items() if v is not None})
        )
    except ValueError as exc:
        raise Refused(RefusalReason.INVALID_INPUT, str(exc)) from None
    checked.update(removed)
    unknown = [k for k in removed if k not in policy_reply(Policy())]
    if unknown:
        raise Refused(RefusalReason.INVALID_INPUT, f"{unknown[0]}: unknown policy setting")
    return checked


def _manage(
    schema: Mapping[str, _Field], call: Callable[[Engine, dict[str, Any], str], Reply]
) -> Handler:
    def handler(engine: Engine, request: Mapping[str, object], caller: Caller) -> Reply:
        values = _validate(request, schema)
        try:
            return {"result": "ok", **call(engine, values, caller.peer.user)}
        except Refused as exc:
            return {"result": "refused", "reason": exc.reason.value, "message": str(exc)}

    return handler


class _SessionEnded(Exception):
    """A self-service request without a live sign-in proof for the user it names."""


def _self_service(
    schema: Mapping[str, _Field],
    call: Callable[[Engine, dict[str, Any], str], Reply],
    *,
    renews: bool = False,
) -> Handler:
    """An account operation for the user who signed in: the request's ``session`` must be
    a live proof (``PortalSessions``) for its ``user`` through this peer, or nothing is
    done. With ``renews`` the change moves the session generation (a new password, key
    or two-step state), so the reply carries a fresh proof for the session that made it;
    every other session of the account has ended."""
    checked = {**schema, "session": _Field(str, True, 128)}

    def handler(engine: Engine, request: Mapping[str, object], caller: Caller) -> Reply:
        if "session" not in request:
            raise _SessionEnded("no session proof")
        values = _validate(request, checked)
        if not _SESSIONS.valid(engine, values["session"], values["user"], caller.peer.uid):
            raise _SessionEnded("the session proof is not good")
        try:
            reply: Reply = {"result": "ok", **call(engine, values, caller.peer.user)}
        except Refused as exc:
            return {"result": "refused", "reason": exc.reason.value, "message": str(exc)}
        if renews:
            token = _SESSIONS.issue(engine, values["user"], caller.peer.uid)
            if token is not None:
                reply["session"] = token
        return reply

    return handler


def _self_disable(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    """Never the admin's disable: the user's own password (and code) are checked."""
    engine.disable(
        v["user"],
        password=v["password"],
        code=v.get("code"),
        admin=False,
        actor=actor,
        service=v.get("service", "twostep"),
        remote=v.get("remote", ""),
    )
    return {}


def _session_end(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    _SESSIONS.end(v["session"])
    engine.record_sign_out(v["user"], actor=actor)
    return {}


def _status(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    return {"status": status_reply(engine.status(v["user"]))}


def _enroll_begin(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    """``code`` is the current second factor, wanted while two-step is on (never a
    trusted device or anything the caller vouches for: the engine checks it itself)."""
    start = engine.enroll_begin(
        v["user"],
        v["password"],
        code=v.get("code"),
        actor=actor,
        service=v.get("service", "twostep"),
        remote=v.get("remote", ""),
    )
    return {
        "user": v["user"],
        "secret": start.secret,
        "key": start.grouped,
        "uri": start.uri,
        "algorithm": start.params.algorithm.value,
        "digits": start.params.digits,
        "period": start.params.period,
        "expires": start.expires,
    }


def _enroll_confirm(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    codes = engine.enroll_confirm(
        v["user"],
        v["code"],
        actor=actor,
        service=v.get("service", "twostep"),
        remote=v.get("remote", ""),
    )
    return {"user": v["user"], "backup_codes": codes}


def _disable(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    admin = "password" not in v
    engine.disable(
        v["user"],
        password=v.get("password"),
        code=v.get("code"),
        admin=admin,
        actor=actor,
        service=v.get("service", "twostep"),
        remote=v.get("remote", ""),
    )
    return {}


def _reset(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.reset(v["user"], actor=actor)
    return {}


def _codes(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    return {"remaining": engine.status(v["user"]).backup_codes}


def _codes_regenerate(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    return {"backup_codes": engine.regenerate_backup_codes(v["user"], actor=actor)}


def _passcode_add(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    services = v.get("services", "")
    new = engine.add_passcode(
        v["user"],
        v["label"],
        services=[s for s in services.split(",") if s],
        lifetime=v.get("lifetime"),
        actor=actor,
    )
    record = new.record
    return {
        "passcode": new.passcode,
        "id": record.id,
        "label": record.label,
        "services": list(record.services),
        "created": record.created,
        "expires": record.expires or None,
    }


def _passcode_revoke(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.revoke_passcode(v["user"], v["label"], actor=actor)
    return {}


def _passcode_revoke_all(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.revoke_all_passcodes(v["user"], actor=actor)
    return {}


def _device_revoke(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.revoke_device(v["user"], v["device"], actor=actor)
    return {}


def _device_revoke_others(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.revoke_other_devices(v["user"], v["device"], actor=actor)
    return {}


def _device_revoke_all(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.revoke_all_devices(v["user"], actor=actor)
    return {}


def _unlock(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.unlock(v["user"], actor=actor)
    return {}


def _password_change(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.change_password(
        v["user"],
        v["old"],
        v["new"],
        keep_device=v.get("keep_device"),
        actor=actor,
        service=v.get("service", "twostep"),
        remote=v.get("remote", ""),
    )
    return {}


def _import_account(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    try:
        secret = base64.b32decode(v["secret"] + "=" * (-len(v["secret"]) % 8))
        candidate = Candidate(
            source=v.get("source", ""),
            match=v["match_value"],
            secret=secret,
            params=TotpParams(
                Algorithm(v.get("algorithm", "SHA1")), v.get("digits", 6), v.get("period", 30)
            ),
            last_step=v.get("last_step"),
            window=v.get("window"),
            backup_codes=tuple(c for c in v.get("backup_codes", "").split(",") if c),
            policy=v.get("policy"),
        )
    except (ValueError, binascii.Error) as exc:
        raise Refused(RefusalReason.INVALID_INPUT, f"not importable: {exc}") from None
    outcome, user, why = engine.import_account(
        v["match_attribute"],
        v["match_value"],
        candidate,
        apply=v.get("apply", False),
        replace=v.get("replace", False),
        actor=actor,
    )
    return {"outcome": outcome, "user": user, "why": why}


def _keys_status(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    usage = engine.key_usage()
    return {
        "current": usage.current,
        "loaded": list(usage.loaded),
        "values": dict(usage.values),
        "unreadable": list(usage.unreadable),
    }


def _keys_reseal(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    report = engine.reseal_keys(actor=actor)
    return {
        "resealed": report.resealed,
        "already_current": report.already_current,
        "failed": [{"account": account, "why": why} for account, why in report.failed],
    }


def _policy_list(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    return {"policies": [_policy_entry_reply(p) for p in engine.list_policies()]}


def _policy_show(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    return {"policy": _policy_entry_reply(engine.show_policy(v["name"]))}


def _policy_create(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    entry = engine.create_policy(v["name"], _settings(v), actor=actor)
    return {"policy": _policy_entry_reply(entry)}


def _policy_set(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    entry = engine.set_policy(v["name"], _settings(v), actor=actor)
    return {"policy": _policy_entry_reply(entry)}


def _policy_assign(engine: Engine, v: dict[str, Any], actor: str) -> Reply:
    engine.assign_policy(v["user"], v.get("name"), actor=actor)
    return {}


_CONTEXT = {"service": _Field(str, max_length=64), "remote": _Field(str, max_length=64)}
_SESSION_END = _self_service(_USER, _session_end)
_SETTINGS = {"settings": _Field(dict)}

Handler = Callable[[Engine, Mapping[str, object], "Caller"], Reply]
OPS: dict[str, tuple[Right, Handler]] = {
    "ping": (Right.VERIFY, _ping),
    "auth": (Right.VERIFY, _auth),
    "lookup": (Right.VERIFY, _lookup),
    "stats": (Right.MANAGE, _stats),
    "session-end": (Right.SELF_SERVICE, _SESSION_END),
    "status": (Right.MANAGE, _manage(_USER, _status)),
    "enroll-begin": (
        Right.MANAGE,
        _manage(
            {
                **_USER,
                "password": _Field(str, True),
                "code": _Field(str, max_length=64),
                **_CONTEXT,
            },
            _enroll_begin,
        ),
    ),
    "enroll-confirm": (
        Right.MANAGE,
        _manage({**_USER, "code": _Field(str, True, 64), **_CONTEXT}, _enroll_confirm),
    ),
    "disable": (
        Right.MANAGE,
        _manage(
            {**_USER, "password": _Field(str), "code": _Field(str, max_length=64), **_CONTEXT},
            _disable,
        ),
    ),
    "reset": (Right.MANAGE, _manage(_USER, _reset)),
    "codes": (Right.MANAGE, _manage(_USER, _codes)),
    "codes-regenerate": (Right.MANAGE, _manage(_USER, _codes_regenerate)),
    "passcode-add": (
        Right.MANAGE,
        _manage(
            {
                **_USER,
                "label": _Field(str, True, 256),
                "services": _Field(str, max_length=512),
                "lifetime": _Field(int),
            },
            _passcode_add,
        ),
    ),
    "passcode-revoke": (
        Right.MANAGE,
        _manage({**_USER, "label": _Field(str, True, 256)}, _passcode_revoke),
    ),
    "passcode-revoke-all": (Right.MANAGE, _manage(_USER, _passcode_revoke_all)),
    "device-revoke": (
        Right.MANAGE,
        _manage({**_USER, "device": _Field(str, True, 64)}, _device_revoke),
    ),
    "device-revoke-others": (
        Right.MANAGE,
        _manage({**_USER, "device": _Field(str, True, 64)}, _device_revoke_others),
    ),
    "device-revoke-all": (Right.MANAGE, _manage(_USER, _device_revoke_all)),
    "unlock": (Right.MANAGE, _manage(_USER, _unlock)),
    "password-change": (
        Right.MANAGE,
        _manage(
            {
                **_USER,
                "old": _Field(str, True),
                "new": _Field(str, True),
                "keep_device": _Field(str, max_length=64),
                **_CONTEXT,
            },
            _password_change,
        ),
    ),
    "import-account": (
        Right.MANAGE,
        _manage(
            {
                "match_attribute": _Field(str, True, 64),
                "match_value": _Field(str, True, 512),
                "secret": _Field(str, True, 128),
                "algorithm": _Field(str, max_length=8),
                "digits": _Field(int),
                "period": _Field(int),
                "last_step": _Field(int, minimum=0),
                "window": _Field(int, minimum=0),
                "backup_codes": _Field(str, max_length=2048),
                "policy": _Field(str, max_length=128),
                "source": _Field(str, max_length=512),
                "apply": _Field(bool),
                "replace": _Field(bool),
            },
            _import_account,
        ),
    ),
    "keys-status": (Right.MANAGE, _manage({}, _keys_status)),
    "keys-reseal": (Right.MANAGE, _manage({}, _keys_reseal)),
    "policy-list": (Right.MANAGE, _manage({}, _policy_list)),
    "policy-show": (Right.MANAGE, _manage({"name": _Field(str, True, 128)}, _policy_show)),
    "policy-create": (
        Right.MANAGE,
        _manage({"name": _Field(str, True, 128), **_SETTINGS}, _policy_create),
    ),
    "policy-set": (
        Right.MANAGE,
        _manage({"name": _Field(str, True, 128), **_SETTINGS}, _policy_set),
    ),
    "policy-assign": (
        Right.MANAGE,
        _manage({**_USER, "name": _Field(str, max_length=128)}, _policy_assign),
    ),
}


_PASSCODE_ADD = {
    **_USER,
    "label": _Field(str, True, 256),
    "services": _Field(str, max_length=512),
    "lifetime": _Field(int),
}
_LABEL = {**_USER, "label": _Field(str, True, 256)}
_DEVICE = {**_USER, "device": _Field(str, True, 64)}
_PASSWORD_CHANGE = {
    **_USER,
    "old": _Field(str, True),
    "new": _Field(str, True),
    "keep_device": _Field(str, max_length=64),
    **_CONTEXT,
}
SELF_SERVICE: dict[str, Handler] = {
    "session-end": _SESSION_END,
    "status": _self_service(_USER, _status),
    "enroll-begin": _self_service(
        {**_USER, "password": _Field(str, True), "code": _Field(str, max_length=64), **_CONTEXT},
        _enroll_begin,
    ),
    "enroll-confirm": _self_service(
        {**_USER, "code": _Field(str, True, 64), **_CONTEXT}, _enroll_confirm, renews=True
    ),
    "disable": _self_service(
        {**_USER, "password": _Field(str, True), "code": _Field(str, max_length=64), **_CONTEXT},
        _self_disable,
        renews=True,
    ),
    "codes": _self_service(_USER, _codes),
    "codes-regenerate": _self_service(_USER, _codes_regenerate),
    "passcode-add": _self_service(_PASSCODE_ADD, _passcode_add),
    "passcode-revoke": _self_service(_LABEL, _passcode_revoke),
    "passcode-revoke-all": _self_service(_USER, _passcode_revoke_all),
    "device-revoke": _self_service(_DEVICE, _device_revoke),
    "device-revoke-others": _self_service(_DEVICE, _device_revoke_others),
    "device-revoke-all": _self_service(_USER, _device_revoke_all),
    "password-change": _self_service(_PASSWORD_CHANGE, _password_change, renews=True),
}
"""What the ``self-service`` right reaches: each a user's change to their own account,
with the proof of their sign-in. Nothing here is an admin operation; ``disable`` checks
the password. A peer with ``manage`` as well gets these when it sends ``session``."""


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
    engine: Engine,
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
        except _SessionEnded as exc:
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
