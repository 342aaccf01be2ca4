"""``twostep policy``: the policies (classes of service) and which one an account is under.

Settings are parsed here, as ``name=value`` pairs, by the same function that reads them
from the configuration, so a misspelt setting is a usage error before twostepd is asked.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..core.policy import overrides_from_strings
from ._base import EXIT_OK, EXIT_USAGE, CommandError, Commands, Output, _ask
from ._text import _policy_text

__all__ = ["register", "cmd_policy"]


def _settings(pairs: Sequence[str]) -> dict[str, bool | int | None]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(
                EXIT_USAGE, f"{pair!r}: write settings as name=value (name= removes it)", "usage"
            )
        values[key.strip()] = value.strip()
    try:
        return overrides_from_strings(values)
    except ValueError as exc:
        raise CommandError(EXIT_USAGE, str(exc), "usage") from None


def cmd_policy(args: argparse.Namespace, out: Output) -> int:
    if args.action == "list":
        policies = _ask(args, {"op": "policy-list"})["policies"]
        out.result(
            {"policies": policies},
            lambda: "\n".join(_policy_text(p) for p in policies) or "no policies",
        )
    elif args.action == "show":
        policy = _ask(args, {"op": "policy-show", "name": args.name})["policy"]
        out.result({"policy": policy}, lambda: _policy_text(policy))
    elif args.action in ("create", "set"):
        settings = _settings(args.settings)
        if args.action == "set" and not settings:
            raise CommandError(EXIT_USAGE, "nothing to set: give name=value pairs", "usage")
        policy = _ask(
            args, {"op": f"policy-{args.action}", "name": args.name, "settings": settings}
        )["policy"]
        out.result({"policy": policy}, lambda: _policy_text(policy))
    else:
        request: dict[str, object] = {"op": "policy-assign", "user": args.user}
        if not args.default:
            if not args.name:
                raise CommandError(EXIT_USAGE, "name a policy, or give --default", "usage")
            request["name"] = args.name
        _ask(args, request)
        target = "the default policy" if args.default else f"policy {args.name!r}"
        out.result(
            {"user": args.user, "policy": None if args.default else args.name},
            lambda: f"{args.user}: now under {target}",
        )
    return EXIT_OK


def register(commands: Commands) -> None:
    """policy list, show, create, set and assign."""
    policy, actions = commands.group("policy", "policies (classes of service)")
    commands.action(actions, "list")
    commands.action(actions, "show").add_argument("name")
    for name in ("create", "set"):
        sub = commands.action(actions, name)
        sub.add_argument("name")
        sub.add_argument("settings", nargs="*", metavar="SETTING=VALUE")
    assign = commands.action(actions, "assign")
    assign.add_argument("user")
    assign.add_argument("name", nargs="?")
    assign.add_argument("--default", action="store_true", help="back to the default policy")
    policy.set_defaults(func=cmd_policy)
