"""The policy operations: list, show, create, set, and assign one to an account.

A policy change's ``settings`` (setting -> value, null removing it) are checked here
against the core's own parser, so an unknown setting or a value out of range is a
``refused`` with the parser's sentence, and the engine only ever writes checked values.
"""

from __future__ import annotations

from ..access import Right
from ..core.errors import RefusalReason, Refused
from ..core.policy import Policy, overrides_from_mapping
from ._ops import Op, manage, policies_of
from ._parts import Policies
from ._replies import Reply, policy_entry_reply, policy_reply
from ._schema import Malformed, NoFields, PolicyAssign, PolicyChange, PolicyName

__all__ = ["OPS"]


def _settings(request: PolicyChange) -> dict[str, bool | int | None]:
    raw = request.settings if request.settings is not None else {}
    if not isinstance(raw, dict) or not all(
        isinstance(v, str | bool | int) or v is None for v in raw.values()
    ):
        raise Malformed("settings: an object of setting -> value (null removes)")
    removed = {k: None for k, v in raw.items() if v is None}
    try:
        checked: dict[str, bool | int | None] = dict(
            overrides_from_mapping({k: v for k, v in raw.items() if v is not None})
        )
    except ValueError as exc:
        raise Refused(RefusalReason.INVALID_INPUT, str(exc)) from None
    checked.update(removed)
    unknown = [k for k in removed if k not in policy_reply(Policy())]
    if unknown:
        raise Refused(RefusalReason.INVALID_INPUT, f"{unknown[0]}: unknown policy setting")
    return checked


def _policy_list(policies: Policies, v: NoFields, actor: str) -> Reply:
    return {"policies": [policy_entry_reply(p) for p in policies.list_policies()]}


def _policy_show(policies: Policies, v: PolicyName, actor: str) -> Reply:
    return {"policy": policy_entry_reply(policies.show_policy(v.name))}


def _policy_create(policies: Policies, v: PolicyChange, actor: str) -> Reply:
    entry = policies.create_policy(v.name, _settings(v), actor=actor)
    return {"policy": policy_entry_reply(entry)}


def _policy_set(policies: Policies, v: PolicyChange, actor: str) -> Reply:
    entry = policies.set_policy(v.name, _settings(v), actor=actor)
    return {"policy": policy_entry_reply(entry)}


def _policy_assign(policies: Policies, v: PolicyAssign, actor: str) -> Reply:
    policies.assign_policy(v.user, v.name, actor=actor)
    return {}


OPS: dict[str, Op] = {
    "policy-list": (Right.MANAGE, manage(NoFields, policies_of, _policy_list)),
    "policy-show": (Right.MANAGE, manage(PolicyName, policies_of, _policy_show)),
    "policy-create": (Right.MANAGE, manage(PolicyChange, policies_of, _policy_create)),
    "policy-set": (Right.MANAGE, manage(PolicyChange, policies_of, _policy_set)),
    "policy-assign": (Right.MANAGE, manage(PolicyAssign, policies_of, _policy_assign)),
}
