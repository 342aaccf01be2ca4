"""Pure management changes: what they show, what they write, what they refuse."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from support.states import NOW, STAMP, enabled_state, plain_state, with_passcode

from pam_twostep.core.account import Attr
from pam_twostep.core.changes import Change, Op
from pam_twostep.core.errors import NotFound, RefusalReason, Refused
from pam_twostep.core.management import (
    add_passcode,
    disable_modify,
    renewed_device,
    reset_modify,
    revoke_all_passcodes,
    revoke_passcode,
    status,
)
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Device, Usage

MAIL = {"imap", "pop3", "smtp"}


def add(state=None, policy=Policy(), **kwargs):  # type: ignore[no-untyped-def]
    arguments = {"label": "Phone", "services": (), "lifetime": None}
    arguments.update(kwargs)
    return add_passcode(
        state or enabled_state(),
        policy,
        mail_services=MAIL,
        now=NOW,
        random=secrets.token_bytes,
        **arguments,
    )


def test_add_passcode() -> None:
    new, modify = add(services=["smtp", "imap", "imap"], lifetime=60)
    assert new.record.services == ("imap", "smtp")
    assert new.record.expires == NOW + 60
    assert new.record.stamp == STAMP
    assert [(c.op, c.attribute) for c in modify.changes] == [(Op.ADD, Attr.PASSCODE)]
    assert new.record.digest not in new.passcode


@pytest.mark.parametrize(
    ("state", "policy", "kwargs", "reason"),
    [
        (plain_state(), Policy(), {}, RefusalReason.NOT_ENABLED),
        (None, Policy(passcodes=False), {}, RefusalReason.PASSCODES_DISABLED),
        (None, Policy(passcode_limit=0), {}, RefusalReason.LIMIT_REACHED),
        (None, Policy(), {"services": ["ssh"]}, RefusalReason.INVALID_INPUT),
        (None, Policy(), {"label": "\x00"}, RefusalReason.INVALID_INPUT),
        (None, Policy(), {"lifetime": 0}, RefusalReason.INVALID_INPUT),
    ],
)
def test_add_passcode_refusals(state, policy, kwargs, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Refused) as caught:
        add(state, policy, **kwargs)
    assert caught.value.reason is reason


def test_dead_passcodes_free_their_label_and_slot() -> None:
    state, _ = with_passcode(enabled_state(), "Phone", stamp="f" * 32)
    add(state, Policy(passcode_limit=1), label="phone")


def test_revoke() -> None:
    state, _ = with_passcode(enabled_state(), "Phone")
    state = replace(state, usage=(Usage(state.passcodes[0].id, NOW, "192.0.2.1"),))
    modify, cleanup = revoke_passcode(state, "PHONE", NOW)
    assert modify.changes[0].values == (state.passcodes[0].dump(),)
    assert cleanup[0].changes[0].attribute == Attr.USAGE
    assert cleanup[1].changes[0].attribute == Attr.RETIRED
    with pytest.raises(NotFound):
        revoke_passcode(state, "Tablet", NOW)
    assert revoke_all_passcodes(state, NOW)[0].changes[0].op is Op.REPLACE


def test_restamp_keeps_one_device() -> None:
    device = Device(
        id="abcdefgh", label="x", digest="A" * 43, created=1, expires=NOW + 9, stamp=STAMP
    )
    renewed = renewed_device(enabled_state(devices=(device,)), "abcdefgh", "e" * 32)
    assert renewed is not None and renewed.id == device.id and renewed.digest == device.digest
    assert '"pw":"' + "e" * 32 in renewed.dump()
    assert renewed_device(enabled_state(), "abcdefgh", "e" * 32) is None


def test_disable_keeps_lock_and_policy_reset_does_not() -> None:
    disabled = {c.attribute for c in disable_modify(enabled_state()).changes}
    assert Attr.FAILURE not in disabled and Attr.POLICY not in disabled
    reset = {c.attribute for c in reset_modify(enabled_state()).changes}
    assert {Attr.FAILURE, Attr.LOCKED_AT, Attr.SECRET, Attr.DEVICE} <= reset
    assert Attr.POLICY not in reset


def test_status_hides_dead_records() -> None:
    state, _ = with_passcode(enabled_state(), "Old", stamp="f" * 32)
    state, _ = with_passcode(state, "New")
    shown = status(state, Policy(), None, NOW)
    assert [p.label for p in shown.passcodes] == ["New"]
    assert shown.backup_codes == 0 and not shown.locked


def test_reset_forgets_stale_client_records_even_unreadable_ones() -> None:
    junk = {Attr.RETIRED: ('{"junk":1}',), Attr.STALE_CLIENT: ()}
    changes = reset_modify(replace(enabled_state(), unreadable=junk)).changes
    assert Change.replace(Attr.RETIRED) in changes
    assert Change.replace(Attr.STALE_CLIENT) not in changes  # the schema may lack it
