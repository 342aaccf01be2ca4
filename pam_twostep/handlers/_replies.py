"""Replies out: the engine's results as the JSON objects clients read.

Their keys are stable (``twostep status --json``, the portal and the PAM and Dovecot
clients read them), and nothing here ever carries an exception's text but a
``Refused``'s sentence, which is written for the user.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.decision import Decision, Outcome
from ..core.errors import RefusalReason, Refused
from ..core.management import AccountStatus
from ..core.policy import Policy
from ..core.revocation import Ended
from ..staletext import fields_of
from ._parts import PolicyRecord

__all__ = [
    "Reply",
    "decision_reply",
    "ended_reply",
    "error",
    "policy_entry_reply",
    "policy_reply",
    "refused",
    "status_reply",
]

Reply = dict[str, Any]


def error(code: str) -> Reply:
    return {"result": "error", "error": code}


def refused(exc: Refused) -> Reply:
    """What a management request answers when the state or the policy says no."""
    return {"result": "refused", "reason": exc.reason.value, "message": str(exc)}


def refused_by_directory() -> Reply:
    """A change the directory's schema or ACL does not allow (``DirectoryRefused``): for
    a change asked for, a refusal to act on (say, a schema older than the attribute),
    never the temporary failure a client would retry for ever. Logins stay temporary
    failures: they are not changes anyone can fix by asking again."""
    return refused(
        Refused(
            RefusalReason.DIRECTORY_REFUSED,
            "the directory refused the change: its schema or ACL does not allow it "
            "(twostep check says what is missing)",
        )
    )


def decision_reply(decision: Decision) -> Reply:
    reply: Reply = {"result": decision.outcome.value}
    if decision.outcome is Outcome.ACCEPT:
        reply["user"] = decision.username
        reply["method"] = decision.method.value if decision.method else None
        if decision.fields:
            reply["fields"] = dict(decision.fields)
        if decision.device:
            reply["device"] = decision.device
        if decision.device_token:
            reply["device_token"] = decision.device_token
        if decision.required_from is not None:
            reply["required_from"] = decision.required_from
    elif decision.reason is not None:
        reply["reason"] = decision.reason.value
    return reply


def ended_reply(ended: Ended) -> Reply:
    """Open mail sessions a change ended (``sessions``, present when any server was
    asked): how many, and each server that could not be reached."""
    if not ended.attempted:
        return {}
    return {"sessions": {"ended": ended.ended, "failed": list(ended.failures)}}


def status_reply(status: AccountStatus) -> dict[str, object]:
    """The account as ``twostep status --json`` and the portal see it (stable keys)."""
    return {
        "user": status.username,
        "enabled": status.enabled,
        "policy": policy_reply(status.policy),
        "policy_dn": status.policy_dn,
        "backup_codes": status.backup_codes,
        "passcodes": [
            {
                "id": p.id,
                "label": p.label,
                "services": list(p.services),
                "created": p.created,
                "expires": p.expires or None,
                "last_used": p.last_used,
                "last_address": p.last_address,
            }
            for p in status.passcodes
        ],
        "devices": [
            {
                "id": d.id,
                "label": d.label,
                "created": d.created,
                "expires": d.expires,
                "last_seen": d.last_seen,
                "last_address": d.last_address,
            }
            for d in status.devices
        ],
        "webmail_sessions": [
            {
                "id": w.id,
                "browser": w.browser,
                "started": w.created,
                "last_used": w.last_used,
                "last_address": w.last_address,
            }
            for w in status.web_sessions
        ],
        "stale_clients": [fields_of(c) for c in status.stale_clients],
        "locked": status.locked,
        "locked_until": status.locked_until,
        "recent_failures": status.recent_failures,
        "pending_enrollment_expires": status.pending_expires,
        "required_from": status.required_from,
        "mail_password_until": status.mail_password_until,
    }


def policy_reply(policy: Policy) -> dict[str, object]:
    return dict(dataclasses.asdict(policy))


def policy_entry_reply(entry: PolicyRecord) -> dict[str, object]:
    return {
        "name": entry.name,
        "dn": entry.dn,
        "default": entry.default,
        "settings": dict(entry.settings),
        "effective": policy_reply(entry.effective),
    }
