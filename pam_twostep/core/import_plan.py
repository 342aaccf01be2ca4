"""What importing a candidate does to one account: the outcome and the one modify.

Pure, like the decisions: the account's state, its policy and the candidate in; the
outcome and the directory change out. Importing is idempotent: an account that holds
the same key with the same parameters is left alone (its watermark, advanced by logins
since, is not moved back), so a second run changes nothing.
"""

from __future__ import annotations

from enum import Enum

from .account import AccountState, Attr
from .candidate import Candidate
from .changes import Change, Modify
from .codes import Random, normalize
from .errors import CorruptEntry
from .hashing import SALT_BYTES, hash_backup_code
from .keyring import NONCE_BYTES, Keyring
from .policy import Policy, attribute_of

__all__ = ["Outcome", "plan_import"]


class Outcome(Enum):
    IMPORTED = "imported"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


def _same_key(state: AccountState, candidate: Candidate, keys: Keyring) -> bool:
    if state.secret is None or state.params != candidate.params:
        return False
    try:
        return keys.open(state.secret, context=state.uuid.encode()) == candidate.secret
    except ValueError as exc:
        raise CorruptEntry(Attr.SECRET, str(exc)) from None


def plan_import(
    state: AccountState,
    policy: Policy,
    candidate: Candidate,
    *,
    keys: Keyring,
    random: Random,
    replace: bool,
    policy_dn: str | None = None,
) -> tuple[Outcome, Modify, str]:
    """(outcome, the modify to apply, why) for importing ``candidate`` into the account."""
    if not policy.available:
        return Outcome.SKIPPED, Modify(()), "two-step verification is not available by policy"
    if state.enabled:
        if _same_key(state, candidate, keys):
            return Outcome.UNCHANGED, Modify(()), "already holds this key"
        if not replace:
            return (
                Outcome.SKIPPED,
                Modify(()),
                "already has two-step verification on (--replace to overwrite it)",
            )
    params = candidate.params
    context = state.uuid.encode()
    hashes = tuple(
        hash_backup_code(normalize(code), random(SALT_BYTES)) for code in candidate.backup_codes
    )
    sealed = keys.seal(candidate.secret, context=context, nonce=random(NONCE_BYTES))
    # The secret by compare-and-swap over the value read (an add when there was none:
    # the attribute is single-valued), so an owner who turns two-step on between the
    # import's read and its write makes the import conflict instead of losing the key.
    swap = () if state.secret is None else (Change.delete(Attr.SECRET, state.secret),)
    changes = [
        *swap,
        Change.add(Attr.SECRET, sealed),
        Change.replace(Attr.ALGORITHM, params.algorithm.value),
        Change.replace(Attr.DIGITS, str(params.digits)),
        Change.replace(Attr.PERIOD, str(params.period)),
        Change.replace(
            Attr.LAST_STEP, *(() if candidate.last_step is None else (str(candidate.last_step),))
        ),
        Change.replace(Attr.PENDING),
        Change.replace(Attr.BACKUP_CODE, *hashes),
        Change.replace(Attr.ENABLED, "TRUE"),
    ]
    if candidate.window is not None:
        changes.append(Change.replace(attribute_of("totp_window"), str(candidate.window)))
    if policy_dn is not None:
        changes.append(Change.replace(Attr.POLICY, policy_dn))
    return Outcome.IMPORTED, Modify(tuple(changes), guarded=True), ""
