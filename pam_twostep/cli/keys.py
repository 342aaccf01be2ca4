"""``twostep keys``: which encryption keys seal the TOTP secrets, and re-sealing them all
under the current key, so an old key's file can be removed once nothing needs it.

Re-sealing asks for one batch of accounts at a time, so that a large directory shows its
progress and no single request runs for long; the batches together are the whole run.
At the end it counts what is still sealed with another key (an account renamed behind
the cursor, a twostepd on another host not reloaded yet) and fails if anything is: the
old key file may go only when a run ends with success.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.rotation import order_key
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


def _count(report: dict[str, Any], key: str) -> int:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CommandError(EXIT_TEMPFAIL, f"twostepd answered nonsense ({key})", "daemon")
    return value


def _reseal(args: argparse.Namespace, out: Output) -> dict[str, Any]:
    """Every batch in turn, then the count of what is still sealed with another key:
    the report of the whole run. A batch that fails ends the run with what the earlier
    ones did said in the message."""
    total: dict[str, Any] = {"resealed": 0, "already_current": 0, "failed": []}
    after: str | None = None
    shown = False
    try:
        for _ in range(10_000_000):  # far beyond any directory; a daemon gone wrong ends
            request: dict[str, object] = {"op": "keys-reseal", "limit": args.batch}
            if after is not None:
                request["after"] = after
            report = _ask(args, request, _BATCH_TIMEOUT)
            failed = report.get("failed")
            if not isinstance(failed, list) or not all(isinstance(f, dict) for f in failed):
                raise CommandError(EXIT_TEMPFAIL, "twostepd answered nonsense (failed)", "daemon")
            total["resealed"] += _count(report, "resealed")
            total["already_current"] += _count(report, "already_current")
            total["failed"] += failed
            accounts, done = _count(report, "accounts"), _count(report, "done")
            show = args.progress if args.progress is not None else out.err.isatty()
            if show and (args.progress or accounts >= _PROGRESS_FROM):
                filled = min(done, accounts) * 30 // max(accounts, 1)
                out.err.write(f"\r[{'#' * filled}{' ' * (30 - filled)}] {done}/{accounts}")
                out.err.flush()
                shown = True
            following = report.get("next")
            if following is None:
                break
            if not isinstance(following, str) or (
                after is not None and order_key(following) <= order_key(after)
            ):
                raise CommandError(EXIT_TEMPFAIL, "twostepd's batches do not advance", "daemon")
            after = following
        else:
            raise CommandError(EXIT_TEMPFAIL, "twostepd's batches do not end", "daemon")
        usage = _ask(args, {"op": "keys-status"}, _RESEAL_TIMEOUT)
    except CommandError as exc:
        if shown:
            out.err.write("\n")
        raise CommandError(
            exc.code,
            f"{exc} (before that, {total['resealed']} accounts were re-sealed; run it again)",
            exc.reason,
        ) from None
    if shown:
        out.err.write("\n")
    values = usage.get("values")
    current = usage.get("current")
    if not isinstance(values, dict):
        raise CommandError(EXIT_TEMPFAIL, "twostepd answered nonsense (values)", "daemon")
    total["remaining"] = {k: v for k, v in values.items() if k != current and v}
    return total


def cmd_keys(args: argparse.Namespace, out: Output) -> int:
    if args.action == "status":
        usage = _ask(args, {"op": "keys-status"}, _RESEAL_TIMEOUT)
        data = {k: usage[k] for k in ("current", "loaded", "values", "unreadable")}
        out.result(data, lambda: _keys_status_text(usage))
        return EXIT_OK
    report = _reseal(args, out)
    data = {k: report[k] for k in ("resealed", "already_current", "failed", "remaining")}
    out.result(data, lambda: _reseal_text(report))
    return EXIT_REFUSED if report["failed"] or report["remaining"] else EXIT_OK


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
