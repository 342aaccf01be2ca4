"""``twostep``: the command for administrators (and users at a terminal).

Every change goes through twostepd, so one code path applies it and audits it; the
daemon knows who is asking from the socket's peer credentials. Output is for people by
default and JSON with ``--json`` (stable keys, always an ``ok`` field).

Exit codes (sysexits.h where one fits):
  0   done
  1   refused: unknown user, label taken, limit reached, not allowed by policy, locked,
      wrong password or code, or not allowed to ask
  64  usage error: unknown command or option, malformed argument (e.g. a duration)
  75  temporary failure: twostepd or the directory is not answering; try again
  78  configuration error: twostep.yaml or a file it names cannot be used
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import config_path
from ..core.duration import parse_duration
from ..core.errors import ConfigError
from ..core.policy import overrides_from_strings
from ._base import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    CommandError,
    Output,
    _ask,
    _common_options,
    _config,
    _Parser,
    _secret,
)
from ._text import (
    _begin_text,
    _codes_text,
    _devices_text,
    _import_text,
    _keys_status_text,
    _passcodes_text,
    _policy_text,
    _reseal_text,
    _status_text,
    _when,
)

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_REFUSED", "EXIT_TEMPFAIL", "EXIT_USAGE", "main"]


# -- commands ------------------------------------------------------------------------------


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
    _ask(args, request)
    out.result(
        {"user": args.user},
        lambda: (
            f"{args.user}: two-step verification is off; "
            "passcodes, devices and backup codes are gone"
        ),
    )
    return EXIT_OK


def cmd_reset(args: argparse.Namespace, out: Output) -> int:
    _ask(args, {"op": "reset", "user": args.user})
    out.result(
        {"user": args.user},
        lambda: (
            f"{args.user}: all two-step state wiped "
            "(secret, backup codes, passcodes, devices, lock)"
        ),
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
        _ask(args, {"op": "passcode-revoke", "user": args.user, "label": args.label})
        out.result(
            {"user": args.user, "label": args.label},
            lambda: f"{args.user}: passcode {args.label!r} revoked",
        )
    else:
        _ask(args, {"op": "passcode-revoke-all", "user": args.user})
        out.result({"user": args.user}, lambda: f"{args.user}: every passcode revoked")
    return EXIT_OK


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


_RESEAL_TIMEOUT = 3600
"""Re-sealing reads and rewrites every account: allow an hour for a large directory."""


def cmd_keys(args: argparse.Namespace, out: Output) -> int:
    if args.action == "status":
        usage = _ask(args, {"op": "keys-status"}, _RESEAL_TIMEOUT)
        data = {k: usage[k] for k in ("current", "loaded", "values", "unreadable")}
        out.result(data, lambda: _keys_status_text(usage))
        return EXIT_OK
    report = _ask(args, {"op": "keys-reseal"}, _RESEAL_TIMEOUT)
    data = {k: report[k] for k in ("resealed", "already_current", "failed")}
    out.result(data, lambda: _reseal_text(report))
    return EXIT_REFUSED if report["failed"] else EXIT_OK


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    from ..check import run_checks  # noqa: PLC0415 - ldap3 only for this command

    config_file = config_path(args.config)
    password = _secret(f"Password for {args.user}: ") if args.user else None
    findings = run_checks(config_file, args.user, password, args.socket)
    problems = [f for f in findings if not f.ok]
    out.result(
        {"findings": [f.as_dict() for f in findings], "problems": len(problems)},
        lambda: "\n".join(str(f) for f in findings),
    )
    return EXIT_REFUSED if problems else EXIT_OK


_PROGRESS_FROM = 20
"""Inputs with at least this many users show a progress bar on a terminal."""


def _read_private(path: Path, limit: int) -> bytes:
    """A file holding secrets: refused when others may write it (someone could have
    planted a key in it) or when it is not a regular file."""
    try:
        info = path.stat()
    except OSError as exc:
        raise CommandError(EXIT_REFUSED, f"{path}: {exc.strerror}", "input") from None
    if not path.is_file():
        raise CommandError(EXIT_REFUSED, f"{path}: not a regular file", "input")
    if info.st_mode & 0o022:
        raise CommandError(
            EXIT_REFUSED, f"{path}: writable by others; its secrets cannot be trusted", "input"
        )
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CommandError(EXIT_REFUSED, f"{path}: larger than {limit >> 20} MiB", "input")
    return data


def cmd_import(args: argparse.Namespace, out: Output) -> int:
    """Bring authenticators over from google-authenticator, pam_oath or Zimbra."""
    from ..migrate import google, oath, runner, zimbra  # noqa: PLC0415 - only for this command

    match = args.match or _config(args).users.username_attribute
    plans: list[zimbra.PolicyPlan] = []
    if args.source == "google-authenticator":
        if args.user and len(args.files) > 1:
            raise CommandError(EXIT_USAGE, "--user names one user: give one file", "usage")
        if not args.user and not args.user_from_path:
            raise CommandError(
                EXIT_USAGE, "say whose files these are: --user NAME or --user-from-path", "usage"
            )
        items: list[Any] = [google.read(Path(f), args.user) for f in args.files]
    elif args.source == "oath":
        path = Path(args.files[0])
        items = list(oath.parse(_read_private(path, oath.MAX_FILE), str(path)))
    else:
        path = Path(args.files[0])
        data = _read_private(path, 1 << 30)
        try:
            ldif = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(EXIT_REFUSED, f"{path}: not UTF-8 LDIF", "input") from None
        found = zimbra.read(ldif, match)
        items, plans = found.candidates, found.policies
    items = list(runner.dedupe(items))

    def send(request: dict[str, object]) -> dict[str, Any]:
        try:
            return _ask(args, request)
        except CommandError as exc:
            if exc.code == EXIT_REFUSED:
                raise runner.Refusal(str(exc)) from None
            raise

    show_progress = (
        args.progress
        if args.progress is not None
        else (out.err.isatty() and len(items) >= _PROGRESS_FROM)
    )

    def progress(done: int) -> None:
        if show_progress:
            filled = done * 30 // max(len(items), 1)
            out.err.write(f"\r[{'#' * filled}{' ' * (30 - filled)}] {done}/{len(items)}")
            if done == len(items):
                out.err.write("\n")
            out.err.flush()

    policy_rows = list(runner.policy_rows(plans, send, apply=args.apply))
    rows = list(
        runner.import_rows(
            items,
            send,
            match_attribute=match,
            apply=args.apply,
            replace=args.replace,
            progress=progress,
        )
    )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    out.result(
        {
            "applied": args.apply,
            "policies": [r.as_dict() for r in policy_rows],
            "results": [r.as_dict() for r in rows],
            "counts": counts,
        },
        lambda: _import_text(policy_rows, rows, counts, args.apply),
    )
    return EXIT_REFUSED if counts.get("skipped") else EXIT_OK


# Somewhere the dovecot and postfix users can reach; the lab refuses one not its own.
DEFAULT_LAB = "/tmp/twostep-lab"  # noqa: S108


def cmd_portal(args: argparse.Namespace, out: Output) -> int:
    """Serve the self-service portal until stopped (SIGTERM, Ctrl-C)."""
    from ..portal import serve  # noqa: PLC0415 - Flask only for this command

    config = _config(args)
    if args.listen:
        try:
            listen = _listen_argument(args.listen)
        except ValueError as exc:
            raise CommandError(EXIT_USAGE, str(exc), "usage") from None
        config = dataclasses.replace(
            config, portal=dataclasses.replace(config.portal, listen=listen)
        )
    logging.basicConfig(
        level=config.log_level.upper(), format="twostep-portal: %(levelname)s %(message)s"
    )
    try:
        serve(config)
    except ConfigError as exc:
        raise CommandError(EXIT_CONFIG, str(exc), "configuration") from None
    except OSError as exc:
        raise CommandError(
            EXIT_TEMPFAIL, f"cannot listen: {exc.strerror or exc}", "listen"
        ) from None
    return EXIT_OK


def _listen_argument(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text[:60]!r}: give HOST:PORT")
    return host.strip("[]"), int(port)


def cmd_lab(args: argparse.Namespace, out: Output) -> int:
    from ..lab.stack import Lab, LabError  # noqa: PLC0415 - only for this command

    lab = Lab(Path(args.dir))
    try:
        if args.action == "up":
            ports = {
                "ldap": args.ldap_port,
                "imap": args.imap_port,
                "pop3": args.pop3_port,
                "smtp": args.smtp_port,
                "web": args.web_port,
            }
            info = lab.up(passdb=args.passdb, ports=ports, tls_proxy=args.tls_proxy)
            out.result(info, lambda: lab.describe(info))
        elif args.action == "status":
            state = lab.status()
            out.result(state, lambda: lab.describe_status(state))
        else:
            stopped = lab.down()
            out.result(
                {"stopped": stopped},
                lambda: f"stopped: {', '.join(stopped) or 'nothing was running'}",
            )
    except LabError as exc:
        raise CommandError(exc.code, str(exc), "lab") from None
    return EXIT_OK


# -- the parser ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = _common_options()

    parser = _Parser(
        prog="twostep",
        description="Manage two-step verification.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(
        name: str,
        handler: Callable[[argparse.Namespace, Output], int],
        help_text: str,
        user: bool = True,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        if user:
            sub.add_argument("user")
        sub.set_defaults(func=handler)
        return sub

    command("status", cmd_status, "show an account's two-step state")
    enroll = command("enroll", cmd_enroll, "turn two-step verification on (password, app, code)")
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
    disable = command("disable", cmd_disable, "turn two-step verification off")
    disable.add_argument(
        "--verify", action="store_true", help="as the user: ask for the password and a code first"
    )
    command("reset", cmd_reset, "wipe all two-step state, devices and passcodes")
    codes = command("codes", cmd_codes, "backup codes left, or a new set")
    codes.add_argument("--regenerate", action="store_true", help="replace them with a new set")
    command("unlock", cmd_unlock, "lift a lock-out and forget the failures")

    passcode = commands.add_parser(
        "passcode", help="application passcodes for mail programs", parents=[common]
    )
    actions = passcode.add_subparsers(dest="action", required=True, parser_class=_Parser)
    add = actions.add_parser("add", help="create a passcode (shown once)", parents=[common])
    add.add_argument("user")
    add.add_argument("label")
    add.add_argument("--services", help="comma-separated, e.g. imap,smtp (default: all mail)")
    add.add_argument("--expires", type=_duration, metavar="DURATION", help="e.g. 90d")
    for name in ("list", "revoke-all"):
        sub = actions.add_parser(name, parents=[common])
        sub.add_argument("user")
    revoke = actions.add_parser("revoke", parents=[common])
    revoke.add_argument("user")
    revoke.add_argument("label")
    passcode.set_defaults(func=cmd_passcode)

    device = commands.add_parser("device", help="trusted devices", parents=[common])
    device_actions = device.add_subparsers(dest="action", required=True, parser_class=_Parser)
    for name in ("list", "revoke-all"):
        sub = device_actions.add_parser(name, parents=[common])
        sub.add_argument("user")
    for name in ("revoke", "revoke-others"):
        sub = device_actions.add_parser(name, parents=[common])
        sub.add_argument("user")
        sub.add_argument("id")
    device.set_defaults(func=cmd_device)

    policy = commands.add_parser("policy", help="policies (classes of service)", parents=[common])
    policy_actions = policy.add_subparsers(dest="action", required=True, parser_class=_Parser)
    policy_actions.add_parser("list", parents=[common])
    show = policy_actions.add_parser("show", parents=[common])
    show.add_argument("name")
    for name in ("create", "set"):
        sub = policy_actions.add_parser(name, parents=[common])
        sub.add_argument("name")
        sub.add_argument("settings", nargs="*", metavar="SETTING=VALUE")
    assign = policy_actions.add_parser("assign", parents=[common])
    assign.add_argument("user")
    assign.add_argument("name", nargs="?")
    assign.add_argument("--default", action="store_true", help="back to the default policy")
    policy.set_defaults(func=cmd_policy)

    keys = commands.add_parser(
        "keys", help="encryption keys of TOTP secrets: status, re-seal", parents=[common]
    )
    keys_actions = keys.add_subparsers(dest="action", required=True, parser_class=_Parser)
    keys_actions.add_parser("status", parents=[common], help="sealed values per key")
    keys_actions.add_parser(
        "reseal", parents=[common], help="re-seal every value under the current key"
    )
    keys.set_defaults(func=cmd_keys)

    check = command(
        "check", cmd_check, "check configuration, directory, ACLs, keys, daemon", user=False
    )
    check.add_argument(
        "--user",
        help="also check that this ordinary user (password from "
        "stdin) cannot read their two-step attributes",
    )

    imports = commands.add_parser(
        "import",
        help="bring authenticators over from google-authenticator, pam_oath or Zimbra",
        parents=[common],
    )
    sources = imports.add_subparsers(dest="source", required=True, parser_class=_Parser)
    for name, what in (
        ("google-authenticator", "~/.google_authenticator files"),
        ("oath", "a pam_oath users file"),
        ("zimbra", "an LDIF export of Zimbra accounts and classes of service"),
    ):
        sub = sources.add_parser(name, parents=[common], help=what)
        many = "+" if name == "google-authenticator" else 1
        sub.add_argument("files", nargs=many, metavar="FILE")
        if name == "google-authenticator":
            whose = sub.add_mutually_exclusive_group()
            whose.add_argument("--user", help="the directory user the file belongs to")
            whose.add_argument(
                "--user-from-path",
                action="store_true",
                help="~NAME/.google_authenticator, or a file named NAME",
            )
        sub.add_argument("--match", metavar="ATTRIBUTE", help="directory attribute matching users")
        sub.add_argument("--apply", action="store_true", help="write (without it: a dry run)")
        sub.add_argument("--replace", action="store_true", help="overwrite two-step already on")
        sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
        sub.set_defaults(func=cmd_import)

    portal = command(
        "portal", cmd_portal, "serve the self-service web portal (Account Security)", user=False
    )
    portal.add_argument("--listen", help="HOST:PORT instead of portal.listen")

    lab = commands.add_parser(
        "lab", help="a private stack on loopback to try twostep", parents=[common]
    )
    lab_actions = lab.add_subparsers(dest="action", required=True, parser_class=_Parser)
    for name in ("up", "status", "down"):
        sub = lab_actions.add_parser(name, parents=[common])
        sub.add_argument("--dir", default=DEFAULT_LAB, help=f"where the lab lives ({DEFAULT_LAB})")
        if name == "up":
            sub.add_argument("--passdb", choices=("lua", "checkpassword"), default="lua")
            sub.add_argument(
                "--tls-proxy",
                action="store_true",
                help="the portal behind the lab's own nginx on HTTPS, as deployed",
            )
            for port in ("ldap", "imap", "pop3", "smtp", "web"):
                sub.add_argument(f"--{port}-port", type=int, default=0, metavar="PORT")
    lab.set_defaults(func=cmd_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, default in (("config", None), ("socket", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    out = Output(args.json, sys.stdout, sys.stderr)
    try:
        code: int = args.func(args, out)
    except CommandError as exc:
        out.failure(exc)
        return exc.code
    except KeyboardInterrupt:
        out.failure(CommandError(EXIT_REFUSED, "interrupted", "interrupted"))
        return EXIT_REFUSED
    except EOFError:
        out.failure(CommandError(EXIT_REFUSED, "input ended before the answer", "input"))
        return EXIT_REFUSED
    return code
