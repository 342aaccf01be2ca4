"""``twostep keys``: which encryption keys seal the TOTP secrets, and re-sealing them all
under the current key, so an old key's file can be removed once nothing needs it.

Re-sealing asks for one batch of accounts at a time, so that a large directory shows its
progress and no single request runs for long; the batches together are the whole run.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._base import EXIT_OK, EXIT_REFUSED, EXIT_TEMPFAIL, CommandError, Commands, Output, _ask
from ._text import _keys_status_text, _reseal_text

__all__ = ["register", "cmd_keys"]

_RESEAL_TIMEOUT = 3600
"""Counting reads every account: allow an hour for a large directory."""
_BATCH = 500
"""Accounts re-sealed per request by default (a few seconds' work)."""
_BATCH_TIMEOUT = 600
_PROGRESS_FROM = 2000
"""Directories with at least this many accounts show a progress bar on a terminal."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError("from 1 to 100000")
    return value


def _reseal(args: argparse.Namespace, out: Output) -> dict[str, Any]:
    """Every batch in turn; the report of the whole run."""
    total: dict[str, Any] = {"resealed": 0, "already_current": 0, "failed": []}
    after: str | None = None
    shown = False
    while True:
        request: dict[str, object] = {"op": "keys-reseal", "limit": args.batch}
        if after is not None:
            request["after"] = after
        report = _ask(args, request, _BATCH_TIMEOUT)
        for key in ("resealed", "already_current"):
            total[key] += int(report[key])
        total["failed"] += report["failed"]
        accounts, done, following = report.get("accounts"), report.get("done"), report.get("next")
        if not isinstance(accounts, int) or not isinstance(done, int):
            raise CommandError(EXIT_TEMPFAIL, "twostepd did not report its progress", "daemon")
        show = args.progress if args.progress is not None else out.err.isatty()
        if show and (args.progress or accounts >= _PROGRESS_FROM):
            filled = done * 30 // max(accounts, 1)
            out.err.write(f"\r[{'#' * filled}{' ' * (30 - filled)}] {done}/{accounts}")
            out.err.flush()
            shown = True
        if following is None:
            break
        if not isinstance(following, str) or following == after:
            raise CommandError(EXIT_TEMPFAIL, "twostepd's batches do not advance", "daemon")
        after = following
    if shown:
        out.err.write("\n")
    return total


def cmd_keys(args: argparse.Namespace, out: Output) -> int:
    if args.action == "status":
        usage = _ask(args, {"op": "keys-status"}, _RESEAL_TIMEOUT)
        data = {k: usage[k] for k in ("current", "loaded", "values", "unreadable")}
        out.result(data, lambda: _keys_status_text(usage))
        return EXIT_OK
    report = _reseal(args, out)
    data = {k: report[k] for k in ("resealed", "already_current", "failed")}
    out.result(data, lambda: _reseal_text(report))
    return EXIT_REFUSED if report["failed"] else EXIT_OK


def register(commands: Commands) -> None:
    """keys status and keys reseal."""
    keys, actions = commands.group("keys", "encryption keys of TOTP secrets: status, re-seal")
    commands.action(actions, "status", help="sealed values per key")
    reseal = commands.action(actions, "reseal", help="re-seal every value under the current key")
    reseal.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on standard error (default: on a terminal, for large directories)",
    )
    reseal.add_argument(
        "--batch",
        type=_positive,
        default=_BATCH,
        metavar="N",
        help=f"accounts re-sealed per request to twostepd (default {_BATCH})",
    )
    keys.set_defaults(func=cmd_keys)
