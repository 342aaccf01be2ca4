"""``twostep webmail list|end``: an account's open webmail sessions (issue 16), as
Account Security shows them, and ending one, which signs that browser out of the
webmail at its next page and stops its mail credential at once."""

from __future__ import annotations

import argparse

from ._base import EXIT_OK, Commands, Output, _ask
from ._text import _webmail_text

__all__ = ["register"]


def cmd_webmail(args: argparse.Namespace, out: Output) -> int:
    if args.action == "list":
        status = _ask(args, {"op": "status", "user": args.user})["status"]
        sessions = status["webmail_sessions"]
        out.result(
            {"user": args.user, "webmail_sessions": sessions}, lambda: _webmail_text(sessions)
        )
        return EXIT_OK
    _ask(args, {"op": "webmail-session-revoke", "user": args.user, "session_id": args.id})
    out.result(
        {"user": args.user, "ended": args.id},
        lambda: f"{args.user}: webmail session {args.id} ended",
    )
    return EXIT_OK


def register(commands: Commands) -> None:
    webmail, actions = commands.group("webmail", "open webmail sessions (Roundcube)")
    commands.action(actions, "list").add_argument("user")
    end = commands.action(actions, "end", help="end one: its browser is signed out")
    end.add_argument("user")
    end.add_argument("id")
    webmail.set_defaults(func=cmd_webmail)
