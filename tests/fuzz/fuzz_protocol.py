"""Fuzz target: the daemon's protocol, one message in, one reply out.

Each input is what a client sends on the socket, decoded as twostepd decodes it, then
handled by the same code against a real engine and slapd (run.py starts one), with
every right, so every operation is reachable. Half the inputs are raw bytes; the other
half are built from the fuzzer's bytes as JSON objects with real operation and field
names and values of every JSON type, so that most of them get past the parser. A reply
must be one of the documented results, encode within the reply limit, and carry no
traceback; the code under test must not log anything as unexpected.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pam_twostep"]):
    from pam_twostep import wire
    from pam_twostep.access import Peer, Right
    from pam_twostep.audit import Sinks
    from pam_twostep.config import load_config, load_secrets
    from pam_twostep.continuation import Continuations
    from pam_twostep.directory import Directory
    from pam_twostep.engine import Engine
    from pam_twostep.handlers import OPS, handle

from _harness import install_alarm

RESULTS = {
    "ok",
    "accept",
    "deny",
    "challenge",
    "tempfail",
    "found",
    "unknown",
    "refused",
    "error",
    "ended",
}
_AUTH = (
    "user",
    "password",
    "service",
    "remote",
    "local",
    "secured",
    "flow",
    "code",
    "device_token",
    "trust_device",
    "device_label",
    "continuation",
    "mail_session",
    "mail_bind",
    "mail_idle",
)
_CONTEXT = ("service", "remote")
SCHEMAS: dict[str, tuple[str, ...]] = {
    "ping": (),
    "stats": (),
    "auth": _AUTH,
    "lookup": ("user",),
    "status": ("user",),
    "enroll-begin": ("user", "password", "code", *_CONTEXT),
    "enroll-confirm": ("user", "code", *_CONTEXT),
    "disable": ("user", "password", "code", *_CONTEXT),
    "reset": ("user",),
    "codes": ("user",),
    "codes-regenerate": ("user",),
    "passcode-add": ("user", "label", "services", "lifetime"),
    "passcode-revoke": ("user", "label"),
    "passcode-revoke-all": ("user",),
    "device-revoke": ("user", "device"),
    "device-revoke-others": ("user", "device"),
    "device-revoke-all": ("user",),
    "webmail-check": ("user", "credential", "remote"),
    "webmail-end": ("user", "credential", "remote"),
    "webmail-session-revoke": ("user", "session_id"),
    "stale-client-dismiss": ("user", "stale_id"),
    "unlock": ("user",),
    "mail-password-end": ("user",),
    "session-end": ("user", "session"),
    "password-change": ("user", "old", "new", "keep_device", *_CONTEXT),
    "import-account": (
        "match_attribute",
        "match_value",
        "secret",
        "algorithm",
        "digits",
        "period",
        "last_step",
        "window",
        "backup_codes",
        "policy",
        "source",
        "apply",
        "replace",
    ),
    "keys-status": (),
    "keys-reseal": (),
    "readiness": ("after", "limit"),
    "policy-list": (),
    "policy-show": ("name",),
    "policy-create": ("name", "settings"),
    "policy-set": ("name", "settings"),
    "policy-assign": ("user", "name"),
}
FIELDS = sorted({"id", "settings", *(f for fields in SCHEMAS.values() for f in fields)})
WORDS = [
    "alice",
    "bob",
    "carol",
    "ALICE",
    " bob",
    "nobody",
    "*",
    "imap",
    "sshd",
    "smtp",
    "mail",
    "interactive",
    "alice-fuzz-pw",
    "bob-fuzz-pw",
    "123456",
    "ABCDE-FGHJK",
    "Phone",
    "imap,smtp",
    "required",
    "backup_codes",
    "passcode_limit",
    "lockout_window",
    "default",
    "staff",
    "192.0.2.1",
    "::1",
    "1800000000.abc",
    "webmail",
    "127.0.0.1,::1",
    "ws-abcdefgh." + "A" * 43,
    "",
]
OP_NAMES = [*sorted(OPS), "", "Auth", "bogus"]
assert set(SCHEMAS) == set(OPS), "the fuzz target's table of operations is out of date"
PEER = Peer(pid=1, uid=0, gid=0, user="root", groups=frozenset())
RIGHTS = frozenset(Right)


def _engine() -> Engine:
    config = load_config(Path(os.environ["TWOSTEP_FUZZ_CONFIG"]))
    secrets = load_secrets(config)
    directory = Directory(config.ldap, config.users, secrets.bind_password)
    return Engine(config, directory, secrets.keyring, Sinks([]))


ENGINE = _engine()
CONTINUATIONS = Continuations()
ALARM = install_alarm()


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 2 else 6)
    if kind == 0:
        return WORDS[fdp.ConsumeIntInRange(0, len(WORDS) - 1)]
    if kind == 1:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return None
    if kind == 5:
        return fdp.ConsumeRegularFloat()
    if kind == 6:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 20))
    if kind == 7:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {
        WORDS[fdp.ConsumeIntInRange(0, len(WORDS) - 1)]: _value(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    }


def _typed(fdp: atheris.FuzzedDataProvider, name: str) -> object:
    """A value of the type the field takes: the parser lets it through to the handler."""
    if name in ("secured", "trust_device", "apply", "replace"):
        return fdp.ConsumeBool()
    if name in ("lifetime", "digits", "period", "last_step", "window", "limit"):
        return fdp.ConsumeIntInRange(-10, 10**9)
    if name == "settings":
        keys = ["required", "backup_codes", "passcode_limit", "lockout_window", "x", ""]
        return {
            keys[fdp.ConsumeIntInRange(0, len(keys) - 1)]: _value(fdp, 2)
            for _ in range(fdp.ConsumeIntInRange(0, 3))
        }
    if fdp.ConsumeBool():
        return WORDS[fdp.ConsumeIntInRange(0, len(WORDS) - 1)]
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))


def _structured(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    op = OP_NAMES[fdp.ConsumeIntInRange(0, len(OP_NAMES) - 1)]
    request: dict[str, object] = {"op": op}
    own = SCHEMAS.get(op, ())
    for name in own:  # mostly the operation's own fields, each there or not
        if fdp.ConsumeIntInRange(0, 3):
            request[name] = _typed(fdp, name) if fdp.ConsumeIntInRange(0, 7) else _value(fdp)
    for _ in range(fdp.ConsumeIntInRange(0, 3) // 3):  # now and then another one
        request[FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)]] = _value(fdp)
    try:
        text = json.dumps(request, ensure_ascii=fdp.ConsumeBool(), allow_nan=True)
    except (ValueError, TypeError):
        return b""
    return text.encode("utf-8", "surrogatepass") + b"\n"


def test_one_input(data: bytes) -> None:
    _one_message(data if data[:1] == b"{" or not data else _structured(data[1:]))


def _one_message(data: bytes) -> None:
    if len(data) > wire.MAX_MESSAGE:
        return  # the daemon answers too-large before decoding
    try:
        request = wire.decode(data)
    except wire.ProtocolError:
        return
    reply = handle(ENGINE, request, PEER, RIGHTS, CONTINUATIONS)
    assert isinstance(reply, dict) and reply.get("result") in RESULTS, reply
    encoded = wire.encode(reply, wire.MAX_REPLY)
    assert b"Traceback" not in encoded
    ALARM.check()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
