"""Account Security's stale clients (issue 17): mail programs still using a revoked
passcode or an old password are listed (from the account's status, in the same words
as ``twostep status``) and can be dismissed here.

Registered on the portal's app by ``create_app``, as ``portal.webmail`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, flash, redirect, request, url_for

from ..staletext import describe
from .twostepd import Refusal

__all__ = ["register"]

_STALE_ID = 64


def register(
    app: Flask,
    for_user: Callable[..., dict[str, Any]],
    signed_in: Callable[[Callable[[], Any]], Callable[[], Any]],
) -> None:
    app.add_template_filter(describe, "stale_client")

    def stale_dismiss() -> Any:
        stale_id = request.form.get("stale", "")[:_STALE_ID]
        try:
            for_user("stale-client-dismiss", stale_id=stale_id)
            flash("Dismissed. Its attempts are still refused, and you will not be told again.")
        except Refusal as refusal:
            flash(refusal.message)
        return redirect(url_for("account"))

    app.add_url_rule(
        "/stale-clients/dismiss", "stale_dismiss", signed_in(stale_dismiss), methods=["POST"]
    )
