"""``keys-status`` and ``keys-reseal``: which sealing keys the directory's values need,
and re-sealing them under the current key so an old key file may go.

Counts and account names only: no key material is ever in a reply.
"""

from __future__ import annotations

from ..access import Right
from ._ops import Op, keys_of, manage
from ._parts import Keys
from ._replies import Reply
from ._schema import KeysReseal, NoFields

__all__ = ["OPS"]


def _keys_status(keys: Keys, v: NoFields, actor: str) -> Reply:
    usage = keys.key_usage()
    return {
        "current": usage.current,
        "loaded": list(usage.loaded),
        "values": dict(usage.values),
        "unreadable": list(usage.unreadable),
    }


def _keys_reseal(keys: Keys, v: KeysReseal, actor: str) -> Reply:
    report = keys.reseal_keys(actor=actor, after=v.after, limit=v.limit)
    return {
        "resealed": report.resealed,
        "already_current": report.already_current,
        "failed": [{"account": account, "why": why} for account, why in report.failed],
        "accounts": report.accounts,
        "done": report.done,
        "next": report.next,
        "current": report.current,
    }


OPS: dict[str, Op] = {
    "keys-status": (Right.MANAGE, manage(NoFields, keys_of, _keys_status)),
    "keys-reseal": (Right.MANAGE, manage(KeysReseal, keys_of, _keys_reseal)),
}
