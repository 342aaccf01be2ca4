"""How a stale client is put to its owner, the same in ``twostep status``, Account
Security and the message that tells them (``core.staleclients``).

Takes the plain fields a reply carries, so the thin clients need nothing else.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from .core.stale_records import StaleClient

__all__ = ["describe", "fields_of", "stale_fields"]


def _day(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d")


def _moment(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def stale_fields(
    *,
    kind: str,
    label: str,
    address: str,
    service: str,
    since: int,
    first: int,
    last: int,
    stale_id: str,
) -> dict[str, object]:
    """The reply form of a stale client."""
    return {
        "id": stale_id,
        "credential": kind,
        "label": label,
        "address": address,
        "service": service,
        "since": since or None,
        "first": first,
        "last": last,
    }


def fields_of(client: StaleClient) -> dict[str, object]:
    """The reply form of a stored record."""
    return stale_fields(
        kind=client.kind,
        label=client.label,
        address=client.address,
        service=client.service,
        since=client.since,
        first=client.first,
        last=client.last,
        stale_id=client.id,
    )


def describe(client: Mapping[str, object]) -> str:
    """One sentence: who, what it still sends, when it last tried. Never the secret."""
    address = str(client.get("address") or "an unknown address")
    service = str(client.get("service") or "?")
    last = client.get("last")
    kind = client.get("credential")
    since = client.get("since")
    label = str(client.get("label") or "")
    extra = ""
    if kind == "passcode":
        what = f"the revoked passcode '{label}'"
    elif kind == "old-password":
        what = (
            f"the password from before {_day(since)}"
            if isinstance(since, int) and since > 0
            else "a password that has since been changed"
        )
        extra = " If that program is not yours, someone has that password: use it nowhere."
    else:
        what = "your account password"
        extra = (
            " Mail no longer accepts it: give that program an application passcode."
            " If it is not yours, change your password."
        )
    tried = f", last tried {_moment(last)}" if isinstance(last, int) else ""
    return f"A mail program at {address} ({service}) still uses {what}{tried}.{extra}"
