"""The portal's twostepd client: every reply that is not an answer becomes Unavailable."""

from __future__ import annotations

from typing import Any

import pytest

from pam_twostep import wire
from pam_twostep.portal.twostepd import Refusal, SessionEnded, Twostepd, Unavailable


def answering(reply: Any) -> Twostepd:
    def ask(path: str, request: dict[str, object], timeout: float) -> dict[str, object]:
        if isinstance(reply, BaseException):
            raise reply
        return dict(reply)

    return Twostepd("/nowhere", "web", ask)


def test_ok_and_refusals() -> None:
    assert answering({"result": "ok", "remaining": 3}).call("codes", user="a")["remaining"] == 3
    with pytest.raises(Refusal) as refused:
        answering({"result": "refused", "reason": "locked", "message": "locked"}).call("x")
    assert refused.value.reason == "locked"


@pytest.mark.parametrize(
    "reply",
    [
        {"result": "tempfail"},
        {"result": "error", "error": "malformed"},
        {"result": "accept"},
        ConnectionRefusedError(),
        TimeoutError(),
        wire.ProtocolError("nonsense"),
    ],
)
def test_anything_else_is_unavailable(reply: Any) -> None:
    with pytest.raises(Unavailable):
        answering(reply).call("status", user="a")


@pytest.mark.parametrize("result", ["accept", "deny", "challenge"])
def test_sign_in_answers_pass_through(result: str) -> None:
    assert answering({"result": result}).auth("a", "pw", "192.0.2.1")["result"] == result


@pytest.mark.parametrize("reply", [{"result": "ok"}, {"result": "tempfail"}, OSError()])
def test_sign_in_without_an_answer_is_unavailable(reply: Any) -> None:
    with pytest.raises(Unavailable):
        answering(reply).auth("a", "pw", "192.0.2.1")


def test_the_request_is_interactive_and_names_the_portal_service() -> None:
    seen: list[dict[str, object]] = []

    def ask(path: str, request: dict[str, object], timeout: float) -> dict[str, object]:
        seen.append(request)
        return {"result": "challenge"}

    Twostepd("/s", "web", ask).auth("a", "pw", "192.0.2.1", code=None, trust_device=True)
    assert seen[0]["flow"] == "interactive" and seen[0]["service"] == "web"
    assert seen[0]["trust_device"] is True and "code" not in seen[0]


def test_a_refused_session_proof_is_session_ended() -> None:
    """Issue 14 M4: twostepd no longer takes this browser's sign-in; the portal signs out."""
    with pytest.raises(SessionEnded):
        answering({"result": "error", "error": "session-ended"}).call("status", user="a")
