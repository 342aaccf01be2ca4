"""Account Security's side of a rollout (issue 18, ``core.rollout``): the user whose
mail programs may still use the password for a while ends that for their own account,
at once (say the password leaked, or every program has its passcode).

Registered on the portal's app by ``create_app``, as ``portal.stale_clients`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, flash, redirect, url_for

from .mail_sessions import ended_note
from .twostepd import Refusal

__all__ = ["register"]


def register(
    app: Flask,
    for_user: Callable[..., dict[str, Any]],
    signed_in: Callable[[Callable[[], Any]], Callable[[], Any]],
) -> None:
    def mail_password_end() -> Any:
        try:
            reply = for_user("mail-password-end")
            flash(
                "Your password no longer signs your mail programs in: each needs an "
                "application passcode now." + ended_note(reply)
            )
        except Refusal as refusal:
            flash(refusal.message)
        return redirect(url_for("account"))

    app.add_url_rule(
        "/mail-password/end", "mail_password_end", signed_in(mail_password_end), methods=["POST"]
    )
