"""Dismissing a stale client (``core.staleclients``): by the owner in Account Security,
or by an admin. What there is to dismiss comes with ``status``."""

from __future__ import annotations

from ..access import Right
from ._ops import Op, manage
from ._parts import Parts, StaleClients
from ._replies import Reply
from ._schema import ForStaleClient
from .sessions import self_service

__all__ = ["OPS", "SELF_SERVICE"]


def _stale_of(engine: Parts) -> StaleClients:
    return engine.stale_clients


def _dismiss(stale: StaleClients, values: ForStaleClient, actor: str) -> Reply:
    stale.dismiss(values.user, values.stale_id, actor=actor)
    return {}


OPS: dict[str, Op] = {
    "stale-client-dismiss": (Right.MANAGE, manage(ForStaleClient, _stale_of, _dismiss)),
}
SELF_SERVICE = {
    "stale-client-dismiss": self_service(ForStaleClient, _stale_of, _dismiss),
}
