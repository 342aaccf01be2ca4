"""What the portal tells a user about the mail programs a change signed out.

A revoked passcode or a new password also ends the mail sessions already open with the
old one (``mailsessions``); when a mail server could not be asked, the user is told
that programs already connected stay connected until they disconnect, so they know
the change is not yet complete everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ended_note"]


def ended_note(reply: Mapping[str, object]) -> str:
    """A sentence to add to the change's message; empty when there is nothing to say."""
    sessions = reply.get("sessions")
    if not isinstance(sessions, dict):
        return ""
    if sessions.get("failed"):
        return (
            " Mail programs that are connected right now could not all be signed out: they"
            " stay connected until they disconnect. Your administrator has been told."
        )
    ended = sessions.get("ended")
    if isinstance(ended, int) and ended:
        return " Mail programs that were using it have been signed out."
    return ""
