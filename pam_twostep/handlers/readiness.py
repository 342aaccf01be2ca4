"""``readiness``: every account, enrolled or not, a page at a time, for ``twostep report
readiness`` (issue 18), which adds what the audit log says and prints the report.

Per account: whether two-step is on, its live passcodes with their last use, and the
policy values a rollout turns on (``required``, ``mail_password``, ``required_from``,
``mail_password_until``). Names, labels, times and addresses only: no hash, secret or key.
"""

from __future__ import annotations

from ..access import Right
from ..core.readiness import account_dict
from ._ops import Op, manage
from ._parts import Parts, Readiness
from ._replies import Reply
from ._schema import AccountPage

__all__ = ["OPS"]


def _readiness_of(engine: Parts) -> Readiness:
    return engine.readiness


def _readiness(readiness: Readiness, v: AccountPage, actor: str) -> Reply:
    page = readiness.page(after=v.after, limit=v.limit)
    return {"accounts": [account_dict(a) for a in page.accounts], "next": page.next}


OPS: dict[str, Op] = {
    "readiness": (Right.MANAGE, manage(AccountPage, _readiness_of, _readiness)),
}
