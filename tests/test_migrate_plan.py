"""What an import writes, decided without a directory: idempotent, explicit, one modify."""

from __future__ import annotations

import secrets

from support.states import KEYS, SECRET, enabled_state, plain_state

from pam_twostep.core.account import Attr
from pam_twostep.core.candidate import Candidate
from pam_twostep.core.changes import Op
from pam_twostep.core.hashing import verify_backup_codes
from pam_twostep.core.import_plan import Outcome, plan_import
from pam_twostep.core.policy import Policy
from pam_twostep.core.totp import TotpParams

CANDIDATE = Candidate(
    "f", "alice", SECRET, TotpParams(period=60), last_step=99, window=2, backup_codes=("12345678",)
)


def plan(state: object, candidate: Candidate = CANDIDATE, **kw: object) -> tuple:  # type: ignore[type-arg]
    return plan_import(
        state,  # type: ignore[arg-type]
        kw.pop("policy", Policy()),  # type: ignore[arg-type]
        candidate,
        keys=KEYS,
        random=secrets.token_bytes,
        replace=bool(kw.pop("replace", False)),
        policy_dn=kw.pop("policy_dn", None),  # type: ignore[arg-type]
    )


def test_a_fresh_account_gets_everything_in_one_modify() -> None:
    outcome, modify, why = plan(plain_state(), policy_dn="cn=staff,ou=policies")
    assert outcome is Outcome.IMPORTED and why == ""
    values = {c.attribute: c.values for c in modify.changes}
    # the secret is added, not replaced: an owner who turned two-step on since the read
    # makes the (guarded) modify conflict instead of losing the key
    assert modify.guarded
    assert [c.op for c in modify.changes if c.attribute == Attr.SECRET] == [Op.ADD]
    assert all(c.op is Op.REPLACE for c in modify.changes if c.attribute != Attr.SECRET)
    assert values[Attr.ENABLED] == ("TRUE",) and values[Attr.PERIOD] == ("60",)
    assert values[Attr.LAST_STEP] == ("99",) and values["twostepTOTPWindow"] == ("2",)
    assert values[Attr.POLICY] == ("cn=staff,ou=policies",) and values[Attr.PENDING] == ()
    sealed = values[Attr.SECRET][0]
    assert KEYS.open(sealed, context=plain_state().uuid.encode()) == SECRET
    assert verify_backup_codes(values[Attr.BACKUP_CODE], "12345678") == 0


def test_the_same_key_again_changes_nothing() -> None:
    state = enabled_state()  # holds support.states.SECRET with default parameters
    same = Candidate("f", "alice", SECRET)
    outcome, modify, _ = plan(state, same)
    assert outcome is Outcome.UNCHANGED and not modify


def test_another_key_needs_replace() -> None:
    outcome, modify, why = plan(enabled_state())
    assert outcome is Outcome.SKIPPED and not modify and "--replace" in why
    state = enabled_state()
    outcome, modify, _ = plan(state, replace=True)
    assert outcome is Outcome.IMPORTED and modify and modify.guarded
    swap = [(c.op, c.values) for c in modify.changes if c.attribute == Attr.SECRET]
    assert swap[0] == (Op.DELETE, (state.secret,)) and swap[1][0] is Op.ADD


def test_not_where_policy_does_not_offer_two_step() -> None:
    outcome, modify, why = plan(plain_state(), policy=Policy(available=False))
    assert outcome is Outcome.SKIPPED and not modify and "not available" in why


def test_no_last_step_clears_the_watermark() -> None:
    candidate = Candidate("f", "alice", SECRET)
    _, modify, _ = plan(plain_state(), candidate)
    values = {c.attribute: c.values for c in modify.changes}
    assert values[Attr.LAST_STEP] == () and "twostepTOTPWindow" not in values
