"""Fuzz target: the daemon's protocol, one message in, one reply out.

Each input is what a client sends on the socket: decoded as twostepd decodes it, then
handled by the same code against a real engine and slapd (run.py starts one), with
every right, so every operation is reachable. A reply must be one of the documented
results, encode within the message limit, and carry no traceback; the code under test
must not log anything as unexpected.
"""

from __future__ import annotations

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
    from pam_twostep.handlers import handle

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
}
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


def test_one_input(data: bytes) -> None:
    if len(data) > wire.MAX_MESSAGE:
        return  # the daemon answers too-large before decoding
    try:
        request = wire.decode(data)
    except wire.ProtocolError:
        return
    reply = handle(ENGINE, request, PEER, RIGHTS, CONTINUATIONS)
    assert isinstance(reply, dict) and reply.get("result") in RESULTS, reply
    encoded = wire.encode(reply)
    assert len(encoded) <= wire.MAX_MESSAGE * 4, len(encoded)
    assert b"Traceback" not in encoded
    ALARM.check()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
