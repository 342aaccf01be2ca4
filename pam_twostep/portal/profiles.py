"""Downloading a new passcode as a mail set-up file, once (issue 18, "Add a device").

The page that shows a new application passcode (the answer to ``POST /passcodes``) also
offers it as an Apple configuration profile or a Thunderbird autoconfig file
(``mailprofiles``), filled from ``mail_settings``. The portal's rule for secrets holds:
the passcode goes into responses to POSTs only, never into a URL, the session cookie, a
file or the directory. So the page carries a random one-time *handle*, in two POST forms
with the CSRF token, and this process keeps the passcode for it in memory:

* bound to the session that made it (its user and its CSRF token, which a sign-in draws
  anew), so another browser of the same user, or anyone else, is refused;
* for at most ``LIFETIME`` seconds, and for one download of either format: taking it is
  one step under a lock, so two requests at once (waitress serves 8 threads) never both
  get it;
* ``_MAX_HELD`` handles in all (when full, a new passcode page offers no download,
  rather than pushing anyone's waiting download out) and ``_MAX_PER_USER`` per user
  (a user's oldest is dropped), so memory stays small.

Before a file is made, twostepd is asked for the account's status as this session: a
session ended elsewhere (signed out, password changed) gets nothing, nor does a passcode
revoked since. A refused handle is answered with a page saying the file can be had once
(410), never with the reason: that it exists elsewhere is nobody's business.

Several processes: ``twostep portal`` is one process (waitress, threads) and the shipped
unit runs one. Should a site run several behind one proxy, each handle lives in the
memory of the process that made it: a download that reaches another process finds
nothing and is refused (the user creates a new passcode), and none is ever honoured twice,
since no handle exists in two places. A restart forgets every handle, which is the same.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, abort, flash, render_template, request, session
from werkzeug.wrappers import Response

from .. import mailprofiles
from ..config import Config

__all__ = ["LIFETIME", "Handoffs", "register"]

log = logging.getLogger(__name__)

LIFETIME = 600
"""Seconds a handle stays good: time to pick up the device, not to come back later."""
_MAX_HELD = 256
_MAX_PER_USER = 4
_HANDLE_LENGTH = 43
"""``secrets.token_urlsafe(32)``: what a handle looks like; anything else is refused unread."""
_FORMATS: Mapping[str, Callable[..., mailprofiles.MailFile]] = {
    "apple": mailprofiles.apple_profile,
    "thunderbird": mailprofiles.thunderbird_config,
}
_NEEDED = frozenset({"imap", "smtp"})
"""What the files set up: a passcode scoped to less would fail in them, so none is offered."""


@dataclass(frozen=True)
class _Held:
    user: str
    binding: str = field(repr=False)
    passcode: str = field(repr=False)
    label: str
    passcode_id: str
    expires: float


class Handoffs:
    """Handles -> passcodes waiting for their one download, in this process only."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: OrderedDict[str, _Held] = OrderedDict()

    def offer(
        self, user: str, binding: str, passcode: str, label: str, passcode_id: str
    ) -> str | None:
        """A new handle for ``passcode``, good for this session (``binding``) alone; None
        when ``_MAX_HELD`` are waiting: the page then offers no download, and nobody
        else's waiting download is pushed out (a user's own oldest beyond
        ``_MAX_PER_USER`` is)."""
        handle = secrets.token_urlsafe(32)
        held = _Held(user, binding, passcode, label, passcode_id, self._clock() + LIFETIME)
        with self._lock:
            self._expire()
            mine = [h for h, item in self._held.items() if item.user == user]
            for old in mine[: max(0, len(mine) - _MAX_PER_USER + 1)]:
                del self._held[old]
            if len(self._held) >= _MAX_HELD:
                return None
            self._held[handle] = held
        return handle

    def take(self, handle: str, user: str, binding: str) -> _Held | None:
        """The passcode for ``handle``, removed, if this session made it and it is still
        good; else None. A handle shown by another session stays for its own (so guessing
        at handles cannot spoil a download), but one no session can use is simply gone."""
        with self._lock:
            self._expire()
            held = self._held.get(handle)
            if (
                held is None
                or held.user != user
                or not hmac.compare_digest(held.binding.encode(), binding.encode())
            ):
                return None
            del self._held[handle]
            return held

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._held)

    def _expire(self) -> None:
        now = self._clock()
        for handle in [h for h, item in self._held.items() if item.expires <= now]:
            del self._held[handle]


def register(
    app: Flask,
    config: Config,
    for_user: Callable[..., dict[str, Any]],
    signed_in: Callable[[Callable[[], Any]], Callable[[], Any]],
    clock: Callable[[], float],
) -> Callable[[Mapping[str, Any]], str | None]:
    """Add the download route; returns what the passcode page calls with twostepd's
    answer to ``passcode-add``: a handle for its forms, or None (no ``mail_settings``,
    or a passcode scoped to less than IMAP and SMTP)."""
    settings = config.mail_settings
    handoffs = Handoffs(clock)

    def offer(made: Mapping[str, Any]) -> str | None:
        scope = set(made.get("services") or ())
        user, binding = session.get("user"), session.get("csrf")
        passcode, passcode_id = made.get("passcode"), made.get("id")
        if (
            settings is None
            or (scope and not _NEEDED.issubset(scope))
            or not all(isinstance(v, str) for v in (user, binding, passcode, passcode_id))
        ):
            return None
        label = str(made.get("label") or "")
        return handoffs.offer(str(user), str(binding), str(passcode), label, str(passcode_id))

    def gone(why: str) -> tuple[str, int]:
        log.info("mail set-up download refused: %s", why)
        flash(
            "This set-up file can be downloaded only once, within 10 minutes of creating "
            "the passcode, from the browser that created it. Create a new passcode to get "
            "a new file (and revoke the old one if you no longer need it)."
        )
        title = "This download is no longer available"
        return render_template("error.html", title=title, code=410), 410

    def passcode_download() -> Any:
        kind = request.form.get("format", "")
        handle = request.form.get("handle", "")
        if kind not in _FORMATS:
            abort(400)
        if settings is None or len(handle) != _HANDLE_LENGTH or not handle.isascii():
            return gone("no such handle")
        user = str(session.get("user"))
        # As this session: one ended elsewhere gets nothing (SessionEnded signs it out).
        status = for_user("status")["status"]
        held = handoffs.take(handle, user, str(session.get("csrf", "")))
        if held is None:
            return gone("unknown, used, expired or of another session")
        if not any(p.get("id") == held.passcode_id for p in status.get("passcodes", ())):
            return gone("the passcode was revoked")
        made = _FORMATS[kind](settings, user, held.passcode, held.label)
        log.info("mail set-up file (%s) downloaded by %s", kind, user)
        response = Response(made.body, content_type=made.content_type)
        response.headers["Content-Disposition"] = f'attachment; filename="{made.filename}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    app.add_url_rule(
        "/passcodes/download",
        "passcode_download",
        signed_in(passcode_download),
        methods=["POST"],
    )
    return offer
