"""Account Security's webmail sessions (issue 16): each open webmail session is listed
(from the account's status) and can be ended here, which signs that browser out of the
webmail at its next page and stops its mail credential at once.

Registered on the portal's app by ``create_app`` with its own helpers, so the page's
routes stay in one place per concern rather than in one closure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, flash, redirect, request, url_for

from .twostepd import Refusal

__all__ = ["register"]

_SESSION_ID = 64


def register(
    app: Flask,
    for_user: Callable[..., dict[str, Any]],
    signed_in: Callable[[Callable[[], Any]], Callable[[], Any]],
) -> None:
    def webmail_end() -> Any:
        session_id = request.form.get("session", "")[:_SESSION_ID]
        try:
            for_user("webmail-session-revoke", session_id=session_id)
            flash("That webmail session is ended; its browser is signed out.")
        except Refusal as refusal:
            flash(refusal.message)
        return redirect(url_for("account"))

    app.add_url_rule("/webmail/end", "webmail_end", signed_in(webmail_end), methods=["POST"])
