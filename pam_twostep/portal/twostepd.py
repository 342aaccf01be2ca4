"""The portal's side of the twostepd protocol: requests in, replies or exceptions out.

Exceptions are shaped by what a page does next: ``Refusal`` is shown to the user as its
message (twostepd's refusals are written for people); ``Unavailable`` is the "try again
in a moment" page, whatever went wrong underneath, and never shows details;
``SessionEnded`` means twostepd no longer takes this browser's sign-in (signed out
elsewhere, the password changed, two-step disabled or reset): the portal signs it out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import wire

__all__ = ["Refusal", "SessionEnded", "Twostepd", "Unavailable"]

log = logging.getLogger(__name__)

Ask = Callable[[str, dict[str, object], float], dict[str, object]]


class Unavailable(Exception):
    """twostepd or the directory did not answer, or answered something unexpected."""


class SessionEnded(Exception):
    """twostepd refused the session proof a request carried (issue 14 M4)."""


class Refusal(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Twostepd:
    def __init__(self, socket: str, service: str, ask: Ask = wire.ask, timeout: float = 15) -> None:
        self._socket = socket
        self.service = service
        self._ask = ask
        self._timeout = timeout

    def _send(self, request: dict[str, object]) -> dict[str, Any]:
        try:
            return self._ask(self._socket, request, self._timeout)
        except (OSError, wire.ProtocolError) as exc:
            log.warning("twostepd did not answer %s: %s", request.get("op"), type(exc).__name__)
            raise Unavailable() from None

    def call(self, op: str, **fields: object) -> dict[str, Any]:
        """A management request; the reply of an ``ok``."""
        reply = self._send({"op": op, **{k: v for k, v in fields.items() if v is not None}})
        result = reply.get("result")
        if result == "ok":
            return reply
        if result == "refused":
            raise Refusal(str(reply.get("reason")), str(reply.get("message")))
        if result == "error" and reply.get("error") == "session-ended":
            raise SessionEnded()
        if result != "tempfail":
            log.error("twostepd answered %s to %s", reply.get("error", result), op)
        raise Unavailable()

    def auth(
        self,
        user: str,
        password: str,
        remote: str,
        *,
        code: str | None = None,
        device_token: str | None = None,
        trust_device: bool = False,
        device_label: str | None = None,
        continuation: str | None = None,
    ) -> dict[str, Any]:
        """A sign-in decision: the reply for accept, deny and challenge."""
        request: dict[str, object] = {
            "op": "auth",
            "user": user,
            "password": password,
            "service": self.service,
            "flow": "interactive",
            "remote": remote,
            "secured": True,
        }
        optional = {
            "code": code,
            "device_token": device_token,
            "device_label": device_label,
            "continuation": continuation,
        }
        request.update({k: v for k, v in optional.items() if v})
        if trust_device:
            request["trust_device"] = True
        reply = self._send(request)
        if reply.get("result") in ("accept", "deny", "challenge"):
            return reply
        if reply.get("result") != "tempfail":
            log.error("twostepd answered %s to a sign-in", reply.get("error", reply.get("result")))
        raise Unavailable()
