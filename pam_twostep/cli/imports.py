"""``twostep import``: authenticators brought over from google-authenticator, pam_oath
or Zimbra, a dry run unless ``--apply``.

The files are read here, where the administrator runs the command (they are theirs, not
the daemon's); each account found is then sent to twostepd, which writes and audits it
like any other change. The readers are in :mod:`pam_twostep.migrate`, imported by this
command alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CommandError, Commands, Output, _ask, _config
from ._text import _import_text, _progress_bar

__all__ = ["register", "cmd_import"]

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
            out.err.write(_progress_bar(done, len(items)))
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


def register(commands: Commands) -> None:
    """import google-authenticator, oath and zimbra."""
    _, sources = commands.group(
        "import",
        "bring authenticators over from google-authenticator, pam_oath or Zimbra",
        dest="source",
    )
    for name, what in (
        ("google-authenticator", "~/.google_authenticator files"),
        ("oath", "a pam_oath users file"),
        ("zimbra", "an LDIF export of Zimbra accounts and classes of service"),
    ):
        sub = commands.action(sources, name, help=what)
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
