"""``twostep stale-clients list|dismiss``: mail programs still using a revoked passcode
or an old password (issue 17), as ``twostep status`` and Account Security show them,
and dismissing one (it stays recognised, and is not shown or told again)."""

from __future__ import annotations

import argparse

from ._base import EXIT_OK, Commands, Output, _ask
from ._text import _stale_text

__all__ = ["register"]


def cmd_stale_clients(args: argparse.Namespace, out: Output) -> int:
    if args.action == "list":
        status = _ask(args, {"op": "status", "user": args.user})["status"]
        clients = status["stale_clients"]
        out.result({"user": args.user, "stale_clients": clients}, lambda: _stale_text(clients))
        return EXIT_OK
    _ask(args, {"op": "stale-client-dismiss", "user": args.user, "stale_id": args.id})
    out.result(
        {"user": args.user, "dismissed": args.id},
        lambda: f"{args.user}: stale client {args.id} dismissed",
    )
    return EXIT_OK


def register(commands: Commands) -> None:
    group, actions = commands.group(
        "stale-clients", "mail programs still using a revoked passcode or an old password"
    )
    commands.action(actions, "list").add_argument("user")
    dismiss = commands.action(actions, "dismiss", help="hide one (it is still recognised)")
    dismiss.add_argument("user")
    dismiss.add_argument("id")
    group.set_defaults(func=cmd_stale_clients)
