"""The audited-change runner: exactly one event per change, whatever its outcome.

First the runner alone, then every kind of change the engine makes through it, against
slapd: each one succeeded, refused and failing, with the actor on each event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from conftest import Clock
from support.flows import enroll
from support.slapd import USERS, Slapd, user_dn

from pam_twostep.audit import AuditEvent, MemorySink
from pam_twostep.core.account import Attr
from pam_twostep.core.candidate import Candidate
from pam_twostep.core.errors import (
    Conflict,
    DirectoryUnavailable,
    NotFound,
    RefusalReason,
    Refused,
)
from pam_twostep.core.keyring import Keyring
from pam_twostep.engine import Engine
from pam_twostep.engine._audited import Auditor, Subject
from pam_twostep.engine._store import AccountStore

ACTOR = "root"
K1, K2 = bytes(range(32)), bytes(range(1, 33))


def auditor(sink: Any, clock: Callable[[], float] = lambda: 1_800_000_000.5) -> Auditor:
    # run() never touches the store; apply() does, and is exercised through the engine
    return Auditor(cast(AccountStore, None), sink, clock)


# -- the runner alone -----------------------------------------------------------------


def test_a_change_that_goes_through_records_one_ok_event_with_the_actor() -> None:
    sink = MemorySink()

    def change(subject: Subject) -> str:
        subject.user = "alice"  # the account's own name, once read
        return "done"

    result = auditor(sink).run(
        "passcode-add", "ALICE", ACTOR, change, service="imap", remote="192.0.2.1", label="Phone"
    )
    assert result == "done"
    assert sink.events == [
        AuditEvent(
            time=1_800_000_000,
            action="passcode-add",
            user="alice",
            outcome="ok",
            service="imap",
            remote="192.0.2.1",
            label="Phone",
            actor=ACTOR,
        )
    ]


def test_a_refused_change_records_one_refused_event_with_its_reason() -> None:
    sink = MemorySink()
    refusal = NotFound(RefusalReason.NO_SUCH_DEVICE, "no such device")

    def change(subject: Subject) -> None:
        raise refusal

    with pytest.raises(NotFound) as caught:
        auditor(sink).run("device-revoke", "alice", ACTOR, change, device="d1")
    assert caught.value is refusal
    (event,) = sink.events
    assert (event.action, event.user, event.outcome, event.reason, event.actor) == (
        "device-revoke",
        "alice",
        "refused",
        "no-such-device",
        ACTOR,
    )
    assert (event.device, event.service) == ("d1", "twostep")


@pytest.mark.parametrize(
    "failure",
    [DirectoryUnavailable("down"), Conflict("lost"), RuntimeError("a bug"), KeyboardInterrupt()],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_records_one_error_event_and_is_raised_unchanged(
    failure: BaseException,
) -> None:
    sink = MemorySink()

    def change(subject: Subject) -> None:
        raise failure

    with pytest.raises(type(failure)) as caught:
        auditor(sink).run("reset", "alice", ACTOR, change)
    assert caught.value is failure
    assert [(e.action, e.outcome, e.reason, e.actor) for e in sink.events] == [
        ("reset", "error", None, ACTOR)
    ]


def test_a_change_that_finds_nothing_to_do_may_record_nothing() -> None:
    sink = MemorySink()

    def change(subject: Subject) -> str:
        subject.changed = False
        return "current"

    assert auditor(sink).run("key-reseal", "alice", ACTOR, change) == "current"
    assert sink.events == []


def test_a_failing_sink_changes_no_outcome() -> None:
    class Broken:
        def emit(self, event: AuditEvent) -> None:
            raise OSError("disk full")

    def refuse(subject: Subject) -> None:
        raise Refused(RefusalReason.LOCKED, "locked")

    assert auditor(Broken()).run("unlock", "alice", ACTOR, lambda subject: 7) == 7
    with pytest.raises(Refused):
        auditor(Broken()).run("unlock", "alice", ACTOR, refuse)


# -- every kind of change, through the engine -----------------------------------------


def _candidate(match: str) -> Candidate:
    return Candidate(source="tests/import.txt", match=match, secret=b"k" * 20)


@dataclass(frozen=True)
class Case:
    action: str
    ok: Callable[[Engine], object]
    refused: Callable[[Engine], object]
    reason: str
    failing: str
    """The directory operation that fails in the error case."""
    enrolled: bool = False


CASES = [
    Case(
        "policy-create",
        lambda e: e.create_policy("staff", {"required": True}, actor=ACTOR),
        lambda e: e.create_policy("default", {}, actor=ACTOR),
        "conflict",
        "add_entry",
    ),
    Case(
        "policy-set",
        lambda e: e.set_policy("default", {"passcode_limit": 3}, actor=ACTOR),
        lambda e: e.set_policy("nope", {"passcode_limit": 3}, actor=ACTOR),
        "no-such-policy",
        "modify",
    ),
    Case(
        "policy-assign",
        lambda e: e.assign_policy("alice", "default", actor=ACTOR),
        lambda e: e.assign_policy("alice", "nope", actor=ACTOR),
        "no-such-policy",
        "modify",
    ),
    Case(
        "import",
        lambda e: e.import_account("uid", "alice", _candidate("alice"), **_APPLY),
        lambda e: e.import_account("uid", "nobody", _candidate("nobody"), **_APPLY),
        "unknown-user",
        "modify",
    ),
    Case(
        "reset",
        lambda e: e.reset("alice", actor=ACTOR),
        lambda e: e.reset("nobody", actor=ACTOR),
        "unknown-user",
        "modify",
    ),
    Case(
        "disable",
        lambda e: e.disable("alice", admin=True, actor=ACTOR),
        lambda e: e.disable("bob", admin=True, actor=ACTOR),
        "not-enabled",
        "modify",
        enrolled=True,
    ),
    Case(
        "password-change",
        lambda e: e.change_password("alice", USERS["alice"], "a-new-pw-8Jq", actor=ACTOR),
        lambda e: e.change_password("alice", "not it", "a-new-pw-8Jq", actor=ACTOR),
        "wrong-password",
        "change_password",
    ),
]
_APPLY: dict[str, Any] = {"apply": True, "replace": False, "actor": ACTOR}


def _new(audit: MemorySink, start: int) -> list[tuple[str, str, str, str | None, str | None]]:
    return [(e.action, e.user, e.outcome, e.reason, e.actor) for e in audit.events[start:]]


def _fail(*_: object, **__: object) -> None:
    raise DirectoryUnavailable("the directory is down")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.action)
def test_each_change_records_exactly_one_event_ok_refused_or_error(
    engine: Engine,
    clock: Clock,
    audit: MemorySink,
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
) -> None:
    user = "" if case.action.startswith(("policy-create", "policy-set")) else "alice"
    refused_user = "nobody" if case.reason == "unknown-user" else user
    if case.action == "disable":
        refused_user = "bob"
    if case.enrolled:
        enroll(engine, clock.now)

    start = len(audit.events)
    case.ok(engine)
    assert _new(audit, start) == [(case.action, user, "ok", None, ACTOR)]

    start = len(audit.events)
    if case.action == "import":  # an account left alone is reported, not raised
        assert cast(tuple[str, ...], case.refused(engine))[0] == "skipped"
    else:
        with pytest.raises(Refused):
            case.refused(engine)
    assert _new(audit, start) == [(case.action, refused_user, "refused", case.reason, ACTOR)]

    if case.enrolled:
        enroll(engine, clock.now + 30)
    start = len(audit.events)
    with monkeypatch.context() as patched:
        patched.setattr(engine.directory, case.failing, _fail)
        with pytest.raises(DirectoryUnavailable):
            if case.action == "policy-create":
                engine.create_policy("other", {}, actor=ACTOR)
            elif case.action == "password-change":
                engine.change_password("alice", "a-new-pw-8Jq", "another-pw-3Kd", actor=ACTOR)
            elif case.action == "import":
                engine.import_account("uid", "bob", _candidate("bob"), **_APPLY)
            else:
                case.ok(engine)
    error_user = "bob" if case.action == "import" else user
    assert _new(audit, start) == [(case.action, error_user, "error", None, ACTOR)]


def test_import_refusals_carry_the_reason_and_dry_runs_record_nothing(
    engine: Engine, clock: Clock, audit: MemorySink
) -> None:
    dry = engine.import_account("uid", "alice", _candidate("alice"), apply=False, replace=False)
    assert dry == ("would-import", "alice", "")
    assert audit.events == []
    engine.import_account("uid", "alice", _candidate("alice"), **_APPLY)
    again = engine.import_account("uid", "alice", _candidate("alice"), **_APPLY)
    assert again[0] == "unchanged"  # the very key already held: no change, no event
    other = Candidate(source="tests/import.txt", match="alice", secret=b"o" * 20)
    skipped = engine.import_account("uid", "alice", other, **_APPLY)
    assert skipped[0] == "skipped"
    with pytest.raises(Refused):
        engine.import_account("uid)(x=*", "alice", other, **_APPLY)
    assert [(e.action, e.user, e.outcome, e.reason, e.actor) for e in audit.events] == [
        ("import", "alice", "ok", None, ACTOR),
        ("import", "alice", "refused", "already-enabled", ACTOR),
        ("import", "alice", "refused", "invalid-input", ACTOR),
    ]


def test_each_account_resealed_records_one_event(
    engine: Engine, clock: Clock, audit: MemorySink, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = Engine(engine.config, engine.directory, Keyring({"k1": K1}, "k1"), audit, clock=clock)
    enroll(old, clock.now)
    enroll(old, clock.now, "bob")
    both = Keyring({"k1": K1, "k2": K2}, "k2")
    rotating = Engine(engine.config, engine.directory, both, audit, clock=clock)

    start = len(audit.events)

    def lost(*_: object, **__: object) -> None:
        raise Conflict("someone else was first")

    with monkeypatch.context() as patched:
        patched.setattr(engine.directory, "modify", lost)
        report = rotating.reseal_keys(actor=ACTOR)
    assert report.resealed == 0 and len(report.failed) == 2
    assert sorted(_new(audit, start)) == [
        ("key-reseal", name, "refused", "conflict", ACTOR) for name in ("alice", "bob")
    ]

    start = len(audit.events)
    with monkeypatch.context() as patched:
        patched.setattr(engine.directory, "modify", _fail)
        with pytest.raises(DirectoryUnavailable):
            rotating.reseal_keys(actor=ACTOR)
    assert [(action, outcome) for action, _, outcome, _, _ in _new(audit, start)] == [
        ("key-reseal", "error")
    ]

    start = len(audit.events)
    assert rotating.reseal_keys(actor=ACTOR).resealed == 2
    assert rotating.reseal_keys(actor=ACTOR).already_current == 2  # no event: no change
    assert sorted(_new(audit, start)) == [
        ("key-reseal", name, "ok", None, ACTOR) for name in ("alice", "bob")
    ]


def test_an_import_into_an_unreadable_account_is_skipped_and_recorded_as_an_error(
    engine: Engine, clock: Clock, audit: MemorySink, slapd: Slapd
) -> None:
    enroll(engine, clock.now)
    slapd.set_attributes(user_dn("alice"), **{Attr.PASSCODE: ["not json"]})
    start = len(audit.events)
    outcome, user, why = engine.import_account("uid", "alice", _candidate("alice"), **_APPLY)
    assert (outcome, user) == ("skipped", "alice") and "reset it first" in why
    assert _new(audit, start) == [("import", "alice", "error", None, ACTOR)]
