"""How handlers are put together (pam_twostep/handlers/_ops.py, sessions.py): each
operation reaches only its part of the engine, and fails closed.

A stand-in engine records which of its parts (``logins``, ``accounts``...) a handler
asked for and makes every engine call fail as told, so every operation is checked, admin
and self-service form, without a directory: an unexpected exception or a temporary
failure is ``tempfail`` and never ``ok`` or ``accept``; a refusal is ``refused`` where
the operation manages, and still only ``tempfail`` for a login.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from pam_twostep.access import Peer, Right
from pam_twostep.continuation import Continuations
from pam_twostep.core.errors import DirectoryRefused, RefusalReason, Refused, TemporaryFailure
from pam_twostep.handlers import OPS, SCHEMAS, SELF_SERVICE, handle, sessions
from pam_twostep.handlers._schema import Request, schema_of
from pam_twostep.handlers.sessions import SESSIONS

PEER = Peer(pid=1, uid=4242, gid=4242, user="portal", groups=frozenset())
ALL = frozenset(Right)


def _part(name: str) -> property:
    def get(self: Engine) -> Engine:
        self.parts.add(name)
        return self

    return property(get)


class Engine:
    """Every part is this object; which were asked for is recorded; every call but the
    session generation raises ``failure``."""

    def __init__(self, failure: Callable[[], Exception]) -> None:
        self.failure, self.parts, self.called = failure, set[str](), list[str]()

    logins, accounts, policies, keys, imports, config, webmail, stale_clients, readiness = (
        _part("logins"),
        _part("accounts"),
        _part("policies"),
        _part("keys"),
        _part("imports"),
        _part("config"),
        _part("webmail"),
        _part("stale_clients"),
        _part("readiness"),
    )
    mail_services = frozenset({"imap"})

    def session_generation(self, username: str) -> str:
        return "generation"

    def stats(self) -> dict[str, object]:
        self.parts.add("stats")
        raise self.failure()

    def __getattr__(self, name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            self.called.append(name)
            raise self.failure()

        return call


def _request(op: str, kind: type[Request]) -> dict[str, object]:
    values = {str: "alice", int: 3, bool: True, dict: {}}
    request: dict[str, object] = {"op": op}
    request.update((n, values[f.kind]) for n, f in schema_of(kind).items() if f.required)
    if "secret" in request:
        request["secret"] = "JBSWY3DPEHPK3PXP"  # base32, so the import reaches the engine
    return request


def _signed(op: str) -> dict[str, object]:
    request = _request(op, SELF_SERVICE[op].request)
    generations = SimpleNamespace(session_generation=lambda user: "generation")
    request["session"] = SESSIONS.issue(generations, "alice", PEER.uid)
    return request


PARTS = {
    "ping": set(),
    "auth": {"config", "logins", "accounts", "webmail"},
    "lookup": {"logins"},
    "stats": {"stats"},
    "import-account": {"imports"},
    "keys-status": {"keys"},
    "keys-reseal": {"keys"},
    **{op: {"policies"} for op in OPS if op.startswith("policy-")},
    **{op: {"webmail"} for op in OPS if op.startswith("webmail-")},
    "stale-client-dismiss": {"stale_clients"},
    "readiness": {"readiness"},
}


def _failures() -> list[Callable[[], Exception]]:
    return [
        lambda: RuntimeError("boom"),
        lambda: TemporaryFailure("down"),
        lambda: KeyError("x"),
    ]


@pytest.mark.parametrize("op", sorted(set(OPS) - set(sessions.OPS)))
@pytest.mark.parametrize("failure", _failures(), ids=["unexpected", "temporary", "keyerror"])
def test_a_failing_engine_is_a_temporary_failure_for_every_admin_form(
    op: str, failure: Callable[[], Exception]
) -> None:
    engine = Engine(failure)
    reply = handle(engine, _request(op, SCHEMAS[op]), PEER, ALL, Continuations())  # type: ignore[arg-type]
    if op == "ping":
        assert reply == {"result": "ok"}
        return
    assert reply == {"result": "tempfail"}, (op, reply)
    assert engine.parts == PARTS.get(op, {"accounts"}), op


@pytest.mark.parametrize("op", sorted(SELF_SERVICE))
def test_a_failing_engine_is_a_temporary_failure_for_every_self_service_form(op: str) -> None:
    engine = Engine(lambda: RuntimeError("boom"))
    rights = frozenset({Right.VERIFY, Right.SELF_SERVICE})
    reply = handle(engine, _signed(op), PEER, rights, Continuations())  # type: ignore[arg-type]
    assert reply == {"result": "tempfail"}, (op, reply)
    assert engine.parts == PARTS.get(op, set()) | {"accounts"}, op  # accounts: the proof


@pytest.mark.parametrize("op", sorted(OPS))
def test_a_refusal_is_refused_where_it_manages_and_never_an_accept(op: str) -> None:
    engine = Engine(lambda: Refused(RefusalReason.WRONG_PASSWORD, "the password is not right"))
    request = _signed(op) if op == "session-end" else _request(op, SCHEMAS[op])
    reply = handle(engine, request, PEER, ALL, Continuations())  # type: ignore[arg-type]
    if op == "ping":
        assert reply == {"result": "ok"}
    elif OPS[op][0] is Right.VERIFY or op == "stats":
        assert reply == {"result": "tempfail"}, (op, reply)
    else:
        assert reply == {
            "result": "refused",
            "reason": "wrong-password",
            "message": "the password is not right",
        }, op


@pytest.mark.parametrize("op", sorted(OPS))
def test_a_change_the_directory_refuses_is_a_refusal_and_a_login_a_temporary_failure(
    op: str,
) -> None:
    """A schema or ACL that does not allow a change (a site that upgraded twostep, not
    its schema) is said as such to whoever asked for the change, never as a temporary
    failure to retry for ever, and never with the directory's text; a login stays a
    temporary failure (it fails closed)."""
    engine = Engine(lambda: DirectoryRefused("undefined attribute type twostepX"))
    request = _signed(op) if op == "session-end" else _request(op, SCHEMAS[op])
    reply = handle(engine, request, PEER, ALL, Continuations())  # type: ignore[arg-type]
    if op == "ping":
        assert reply == {"result": "ok"}
    elif OPS[op][0] is not Right.MANAGE or op == "stats":
        assert reply == {"result": "tempfail"}, (op, reply)
    else:
        assert reply["result"] == "refused" and reply["reason"] == "directory-refused", op
        assert "twostepX" not in reply["message"]


@pytest.mark.parametrize("op", sorted(set(SELF_SERVICE) - {"session-end"}))
def test_a_self_service_change_the_directory_refuses_is_a_refusal(op: str) -> None:
    engine = Engine(lambda: DirectoryRefused("undefined attribute type twostepX"))
    rights = frozenset({Right.VERIFY, Right.SELF_SERVICE})
    reply = handle(engine, _signed(op), PEER, rights, Continuations())  # type: ignore[arg-type]
    assert reply["result"] == "refused" and reply["reason"] == "directory-refused", op


def test_a_self_service_form_without_a_live_proof_reaches_no_part() -> None:
    engine = Engine(lambda: RuntimeError("boom"))
    rights = frozenset({Right.VERIFY, Right.SELF_SERVICE})
    for op in SELF_SERVICE:
        request = _signed(op)
        request["session"] = "1.2.3"
        reply = handle(engine, request, PEER, rights, Continuations())  # type: ignore[arg-type]
        assert reply == {"result": "error", "error": "session-ended"}, op
    assert engine.called == []
