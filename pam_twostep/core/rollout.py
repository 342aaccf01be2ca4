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
  already rely on passcodes (the readiness report shows who they are).

Every date compares with ``now`` as ``now < date``: on the date itself the grace is over.
Pure; the callers are ``core.decision`` (logins), ``core.revocation`` (what a change
takes away) and the status shown to users and admins.
"""

from __future__ import annotations

from .account import AccountState
from .policy import Policy

__all__ = ["mail_password_accepted", "reminder", "required_now"]


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
