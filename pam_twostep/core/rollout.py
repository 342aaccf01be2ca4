"""A rollout's grace periods: when ``required`` bites, and how long mail keeps the password.

Two policy dates (``core.dates``) soften the two cliffs of turning two-step on for a
class of service:

- ``required_from``: before it, an account without two-step still signs in
  interactively, and the sign-in carries a reminder of the date (PAM, the portal and the
  webmail show it); from it on, ``required`` refuses such sign-ins. It only dates
  ``required``: an account whose own override says ``required: false`` stays exempt.
- ``mail_password_until``: before it, mail services still accept the account password
  of an account that has two-step on (as they did before it was on, where
  ``mail_password`` allows), so the user's mail clients keep working while the user
  creates passcodes; from it on, passcodes only. It applies to every account of the
  policy with two-step on: set it on the class being rolled out, not on one whose users
  already rely on passcodes (the readiness report shows who they are). A user, or an
  admin, ends it for one account at once (``end_mail_password``: the account's own
  override, dated now), say after a password leaked.

  In the grace a secret that is, or once was, one of the account's passcodes is decided
  as a passcode, never tried as the password (``ever_a_passcode``): no bind, so a phone
  still sending a revoked passcode costs the directory's password policy nothing, and
  nothing counts twice. A password accepted at mail clears that address's password
  failures only: the password alone must not wipe out the count of codes guessed with it.

Every date compares with ``now`` as ``now < date``: on the date itself the grace is over.
Pure; the callers are ``core.decision`` (logins), ``core.revocation`` (what a change
takes away) and the status shown to users and admins.
"""

from __future__ import annotations

from .account import AccountState
from .changes import Change, Modify
from .codes import CodeKind, classify
from .dates import to_generalized_time
from .errors import RefusalReason, Refused
from .hashing import digest_matches, fast_digest
from .policy import Policy, attribute_of
from .stale_records import RetiredPasscode

__all__ = [
    "end_mail_password",
    "ever_a_passcode",
    "mail_password_accepted",
    "reminder",
    "required_now",
]


def required_now(policy: Policy, now: int) -> bool:
    """Whether an account without two-step is refused interactive sign-ins now."""
    return policy.required and now >= policy.required_from


def reminder(state: AccountState, policy: Policy, now: int) -> int | None:
    """The date two-step becomes required for this account, while that is still ahead
    and the account has not turned it on; else None."""
    if state.enabled or not policy.required or now >= policy.required_from:
        return None
    return policy.required_from


def mail_password_accepted(state: AccountState, policy: Policy, now: int) -> bool:
    """Whether mail services accept this account's password now (never without
    ``mail_password``: the grace reopens nothing a site has closed)."""
    if not policy.mail_password:
        return False
    return not state.enabled or now < policy.mail_password_until


def ever_a_passcode(state: AccountState, presented: str) -> bool:
    """Whether ``presented`` (normalized) is a passcode of the account's, live, expired,
    made under an old password or retired. Every record is compared, no early exit."""
    if classify(presented, 0) is not CodeKind.PASSCODE:
        return False
    digest = fast_digest("passcode", presented)
    digests = [p.digest for p in state.passcodes]
    digests += [r.digest for r in state.retired if isinstance(r, RetiredPasscode)]
    found = False
    for known in digests:
        found = digest_matches(known, digest) or found
    return found


def end_mail_password(state: AccountState, policy: Policy, now: int) -> Modify:
    """The account's own ``mail_password_until``, dated now: mail takes passcodes only
    from this moment, whatever the policy's date (a later, longer one included).

    Raises ``Refused`` when mail refuses the password already."""
    if not state.enabled or not mail_password_accepted(state, policy, now):
        raise Refused(
            RefusalReason.NO_MAIL_PASSWORD, "mail services already refuse this account's password"
        )
    if not policy.passcodes:  # it would leave this account's mail nothing to sign in with
        raise Refused(
            RefusalReason.PASSCODES_DISABLED,
            "application passcodes are not allowed for this account: mail programs would "
            "have nothing to sign in with",
        )
    return Modify((Change.replace(attribute_of("mail_password_until"), to_generalized_time(now)),))
