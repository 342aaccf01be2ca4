"""``twostep`` commands on one account: its state, enrollment, turning it off, backup
codes, the lock, application passcodes and trusted devices.

They are the engine's login and account operations seen from a terminal: each parses,
asks twostepd and prints, so the daemon alone decides, writes and audits, and knows who
asks from the socket's peer credentials.
"""

from __future__ import annotations

import argparse

from ..core.duration import parse_duration
from ._base import EXIT_OK, EXIT_REFUSED, CommandError, Commands, Output, _ask, _secret
from ._text import (
    _begin_text,
    _codes_text,
    _devices_text,
    _passcodes_text,
    _sessions_text,
    _status_text,
    _when,
)

__all__ = [
    "register",
    "cmd_status",
    "cmd_enroll",
    "cmd_disable",
    "cmd_reset",
    "cmd_codes",
    "cmd_unlock",
    "cmd_passcode",
    "cmd_device",
]


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    status = _ask(args, {"op": "status", "user": args.user})["status"]
    out.result(status, lambda: _status_text(status))
    return EXIT_OK


def cmd_enroll(args: argparse.Namespace, out: Output) -> int:
    from .. import qr  # noqa: PLC0415 - segno only for this command

    if args.confirm is not None:
        # Given bare, the code is read from stdin: in argv it shows in ps and shell history.
        code = args.confirm or _secret("Code shown by the app: ")
        reply = _ask(args, {"op": "enroll-confirm", "user": args.user, "code": code})
        data = {"user": reply["user"], "backup_codes": reply["backup_codes"]}
        out.result(
            data, lambda: "Two-step verification is on.\n" + _codes_text(data["backup_codes"])
        )
        return EXIT_OK
    password = _secret(f"Password for {args.user}: ")
    begin = _ask(args, {"op": "enroll-begin", "user": args.user, "password": password})
    data = {
        k: begin[k]
        for k in ("user", "secret", "key", "uri", "algorithm", "digits", "period", "expires")
    }
    if args.begin:
        out.result(
            data,
            lambda: (
                _begin_text(begin, qr.terminal(begin["uri"]))
                + f"\nThen: twostep enroll {args.user} --confirm (reads the code from stdin)"
            ),
        )
        return EXIT_OK
    out.out.write(_begin_text(begin, qr.terminal(begin["uri"])) + "\n\n")
    for attempt in range(3):
        code = input("Code shown by the app: ")
        try:
            reply = _ask(args, {"op": "enroll-confirm", "user": args.user, "code": code})
        except CommandError as exc:
            if exc.reason != "wrong-code" or attempt == 2:
                raise
            out.err.write(f"twostep: {exc}\n")
            continue
        out.out.write("Two-step verification is on.\n" + _codes_text(reply["backup_codes"]) + "\n")
        return EXIT_OK
    return EXIT_REFUSED  # pragma: no cover - the loop returns or raises


def cmd_disable(args: argparse.Namespace, out: Output) -> int:
    request: dict[str, object] = {"op": "disable", "user": args.user}
    if args.verify:
        request["password"] = _secret(f"Password for {args.user}: ")
        request["code"] = _secret("Verification or backup code: ")
    reply = _ask(args, request)
    _changed(
        out,
        reply,
        {"user": args.user},
        f"{args.user}: two-step verification is off; passcodes, devices and backup codes are gone",
    )
    return EXIT_OK


def cmd_reset(args: argparse.Namespace, out: Output) -> int:
    reply = _ask(args, {"op": "reset", "user": args.user})
    _changed(
        out,
        reply,
        {"user": args.user},
        (f"{args.user}: all two-step state wiped (secret, backup codes, passcodes, devices, lock)"),
    )
    return EXIT_OK


def cmd_codes(args: argparse.Namespace, out: Output) -> int:
    if args.regenerate:
        codes = _ask(args, {"op": "codes-regenerate", "user": args.user})["backup_codes"]
        out.result(
            {"user": args.user, "backup_codes": codes},
            lambda: "New set; the old codes no longer work.\n" + _codes_text(codes),
        )
    else:
        remaining = _ask(args, {"op": "codes", "user": args.user})["remaining"]
        out.result(
            {"user": args.user, "remaining": remaining},
            lambda: f"{args.user}: {remaining} backup codes left",
        )
    return EXIT_OK


def _duration(text: str) -> int:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a lifetime must be positive")
    return seconds


def cmd_passcode(args: argparse.Namespace, out: Output) -> int:
    if args.action == "add":
        request: dict[str, object] = {"op": "passcode-add", "user": args.user, "label": args.label}
        if args.services:
            request["services"] = args.services
        if args.expires:
            request["lifetime"] = args.expires
        reply = _ask(args, request)
        data = {k: reply[k] for k in ("passcode", "id", "label", "services", "created", "expires")}
        out.result(
            {"user": args.user, **data},
            lambda: "\n".join(
                [
                    f"Application passcode for {data['label']!r} "
                    f"({', '.join(data['services']) or 'all mail services'}):",
                    "",
                    f"    {data['passcode']}",
                    "",
                    "Type it into the mail program instead of your password (capitals, dashes and",
                    "spaces do not matter). It is shown only this once; it stops working when you",
                    f"revoke it (twostep passcode revoke {args.user} {data['label']!r}), "
                    "when your password changes"
                    + (f", or on {_when(data['expires'])}." if data["expires"] else "."),
                ]
            ),
        )
    elif args.action == "list":
        status = _ask(args, {"op": "status", "user": args.user})["status"]
        out.result(
            {"user": args.user, "passcodes": status["passcodes"]},
            lambda: _passcodes_text(status["passcodes"]),
        )
    elif args.action == "revoke":
        reply = _ask(args, {"op": "passcode-revoke", "user": args.user, "label": args.label})
        _changed(
            out,
            reply,
            {"user": args.user, "label": args.label},
            f"{args.user}: passcode {args.label!r} revoked",
        )
    else:
        reply = _ask(args, {"op": "passcode-revoke-all", "user": args.user})
        _changed(out, reply, {"user": args.user}, f"{args.user}: every passcode revoked")
    return EXIT_OK


def _changed(out: Output, reply: dict[str, object], data: dict[str, object], text: str) -> None:
    """A change's result, with the mail sessions it ended; a server that could not be
    asked is a warning on stderr (the change stands: the exit status is still 0)."""
    sessions = reply.get("sessions")
    if isinstance(sessions, dict):
        data = {**data, "sessions": sessions}
        failed = sessions.get("failed") or []
        if failed and not out.as_json:
            out.err.write(
                "twostep: warning: could not end open mail sessions on "
                + "; ".join(str(f) for f in failed)
                + " (they stay open until their clients disconnect)\n"
            )
    out.result(data, lambda: text + _sessions_text(sessions))


def cmd_device(args: argparse.Namespace, out: Output) -> int:
    if args.action == "list":
        status = _ask(args, {"op": "status", "user": args.user})["status"]
        out.result(
            {"user": args.user, "devices": status["devices"]},
            lambda: _devices_text(status["devices"]),
        )
        return EXIT_OK
    op = {
        "revoke": "device-revoke",
        "revoke-others": "device-revoke-others",
        "revoke-all": "device-revoke-all",
    }[args.action]
    request: dict[str, object] = {"op": op, "user": args.user}
    if args.action != "revoke-all":
        request["device"] = args.id
    _ask(args, request)
    device = getattr(args, "id", "")
    what = {
        "revoke": f"device {device} is",
        "revoke-others": f"every device but {device} is",
        "revoke-all": "every device is",
    }[args.action]
    out.result({"user": args.user}, lambda: f"{args.user}: {what} no longer trusted")
    return EXIT_OK


def cmd_unlock(args: argparse.Namespace, out: Output) -> int:
    _ask(args, {"op": "unlock", "user": args.user})
    out.result({"user": args.user}, lambda: f"{args.user}: unlocked, failures forgotten")
    return EXIT_OK


def cmd_end_mail_password(args: argparse.Namespace, out: Output) -> int:
    reply = _ask(args, {"op": "mail-password-end", "user": args.user})
    _changed(
        out, reply, {"user": args.user}, f"{args.user}: mail services take passcodes only, from now"
    )
    return EXIT_OK


def register(commands: Commands) -> None:
    """status, enroll, disable, reset, codes, unlock, passcode and device, in that order
    (the order ``twostep --help`` lists them)."""
    commands.command("status", cmd_status, "show an account's two-step state")
    enroll = commands.command(
        "enroll", cmd_enroll, "turn two-step verification on (password, app, code)"
    )
    mode = enroll.add_mutually_exclusive_group()
    mode.add_argument(
        "--begin",
        action="store_true",
        help="first half only: show the key (password read from stdin)",
    )
    mode.add_argument(
        "--confirm",
        metavar="CODE",
        nargs="?",
        const="",
        help="second half: confirm with a code (read from stdin when not given)",
    )
    disable = commands.command("disable", cmd_disable, "turn two-step verification off")
    disable.add_argument(
        "--verify", action="store_true", help="as the user: ask for the password and a code first"
    )
    commands.command("reset", cmd_reset, "wipe all two-step state, devices and passcodes")
    codes = commands.command("codes", cmd_codes, "backup codes left, or a new set")
    codes.add_argument("--regenerate", action="store_true", help="replace them with a new set")
    commands.command("unlock", cmd_unlock, "lift a lock-out and forget the failures")
    commands.command(
        "end-mail-password",
        cmd_end_mail_password,
        "end the grace in which mail takes the password (passcodes only from now)",
    )

    passcode, actions = commands.group("passcode", "application passcodes for mail programs")
    add = commands.action(actions, "add", help="create a passcode (shown once)")
    add.add_argument("user")
    add.add_argument("label")
    add.add_argument("--services", help="comma-separated, e.g. imap,smtp (default: all mail)")
    add.add_argument("--expires", type=_duration, metavar="DURATION", help="e.g. 90d")
    for name in ("list", "revoke-all"):
        commands.action(actions, name).add_argument("user")
    revoke = commands.action(actions, "revoke")
    revoke.add_argument("user")
    revoke.add_argument("label")
    passcode.set_defaults(func=cmd_passcode)

    device, device_actions = commands.group("device", "trusted devices")
    for name in ("list", "revoke-all"):
        commands.action(device_actions, name).add_argument("user")
    for name in ("revoke", "revoke-others"):
        sub = commands.action(device_actions, name)
        sub.add_argument("user")
        sub.add_argument("id")
    device.set_defaults(func=cmd_device)
