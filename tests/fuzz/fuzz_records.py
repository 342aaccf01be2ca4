"""Fuzz target: stored attribute values, as a hostile or broken directory could hold them.

An input is the entry, one ``attribute:value`` per line, and what a client presents,
in ``@key:value`` lines (flow, secret, code, device, trust, password right or wrong,
now). The entry is parsed, its policy resolved, its status shown and a login decided,
as the engine does. Allowed outcomes: a result, or CorruptEntry / KeyUnavailable (a
temporary failure for this user). Whatever a decision writes stays within the two-step
attributes.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["pam_twostep"]):
    from pam_twostep.core import management
    from pam_twostep.core.account import Attr, RawEntry, parse_account
    from pam_twostep.core.changes import Modify
    from pam_twostep.core.decision import (
        Attempt,
        Context,
        Decision,
        Flow,
        PasswordCheck,
        decide,
        wants_password,
    )
    from pam_twostep.core.errors import CorruptEntry, KeyUnavailable
    from pam_twostep.core.keyring import Keyring
    from pam_twostep.core.policy import resolve_policy

FUZZ_KEY = bytes(range(32))
"""The key the seeds' secrets are sealed with (tests/fuzz/make_seeds.py)."""
KEYS = Keyring({"k1": FUZZ_KEY}, "k1")
DN = "uid=alice,ou=people,dc=example,dc=org"
WRITABLE = {name.lower() for name in (*Attr.STATE, Attr.OBJECT_CLASS)}


def _parse(data: bytes) -> tuple[RawEntry, dict[str, str]]:
    attributes: dict[str, list[bytes]] = {}
    presented: dict[str, str] = {}
    for line in data.split(b"\n"):
        name, _, value = line.partition(b":")
        if name.startswith(b"@"):
            presented[name[1:].decode("latin-1")] = value.decode("utf-8", "replace")
        elif name:
            attributes.setdefault(name.decode("latin-1").lower(), []).append(value)
    raw = RawEntry(DN, {k: tuple(v) for k, v in attributes.items()})
    return raw, presented


def _writes_only_two_step_attributes(decision: Decision) -> None:
    modifies: list[Modify] = [decision.commit] if decision.commit else []
    modifies += list(decision.followups)
    for modify in modifies:
        for change in modify.changes:
            assert change.attribute.lower() in WRITABLE, change.attribute
            assert all(isinstance(v, str) for v in change.values)


def test_one_input(data: bytes) -> None:
    raw, presented = _parse(data)
    try:
        now = int(presented.get("now", "1800000000"))
    except ValueError:
        now = 1_800_000_000
    now = max(0, min(now, 2**40))
    flow = Flow.MAIL if presented.get("flow") == "mail" else Flow.INTERACTIVE
    attempt = Attempt(
        flow,
        presented.get("secret", ""),
        code=presented.get("code"),
        device_token=presented.get("device"),
        trust_device="trust" in presented,
        device_label=presented.get("trust", ""),
    )
    try:
        state = parse_account(raw, "alice", "uid")
        policy = resolve_policy({}, {}, state.overrides)
        management.status(state, policy, None, now)
        # as the engine does: the password is checked when the decision needs it
        check = PasswordCheck.NOT_CHECKED
        if wants_password(state, policy, attempt, now, "192.0.2.1"):  # the Context's address
            right = presented.get("password") == "right"
            check = PasswordCheck.RIGHT if right else PasswordCheck.WRONG
        decision = decide(
            state,
            policy,
            attempt,
            Context("imap" if flow is Flow.MAIL else "sshd", "192.0.2.1", now),
            password=check,
            keys=KEYS,
            random=lambda n: b"\x07" * n,
        )
    except (CorruptEntry, KeyUnavailable):
        return
    _writes_only_two_step_attributes(decision)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
