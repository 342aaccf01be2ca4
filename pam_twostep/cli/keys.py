"""``twostep keys``: which encryption keys seal the TOTP secrets, and re-sealing them all
under the current key, so an old key's file can be removed once nothing needs it.

Re-sealing asks for one batch of accounts at a time, so that a large directory shows its
progress and no single request runs for long; the batches together are the whole run.
At the end it counts, through this host's twostepd, what is still sealed with another
key or cannot be read (an account renamed behind the cursor, a value written meanwhile
by a twostepd not yet reloaded) and fails if anything is. It also fails when the
daemon's current key is not the configuration's (a reload not done, or refused). It
cannot see a host that never loaded the new key: ``twostep keys status`` on every host
says that, before re-sealing and again before the old key file goes.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._base import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TEMPFAIL,
    CommandError,
    Commands,
    Output,
    _ask,
    _config,
    next_page,
)
from ._text import _keys_status_text, _progress_bar, _reseal_text

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


def _nonsense(what: str) -> CommandError:
    return CommandError(EXIT_TEMPFAIL, f"twostepd answered nonsense ({what})", "daemon")


def _key_changed() -> CommandError:
    return CommandError(
        EXIT_TEMPFAIL, "twostepd's current key changed during the run (a reload?)", "daemon"
    )


def _count(report: dict[str, Any], key: str) -> int:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _nonsense(key)
    return value


def _usage(reply: dict[str, Any]) -> dict[str, Any]:
    """A ``keys-status`` reply, checked: the text and the re-seal's verdict read it."""
    current, loaded = reply.get("current"), reply.get("loaded")
    values, unreadable = reply.get("values"), reply.get("unreadable")
    if not isinstance(current, str) or not isinstance(loaded, list):
        raise _nonsense("current key")
    if not all(isinstance(k, str) for k in loaded) or not isinstance(values, dict):
        raise _nonsense("keys")
    for key_id in values:
        _count(values, key_id)
    if not isinstance(unreadable, list) or not all(isinstance(d, str) for d in unreadable):
        raise _nonsense("unreadable")
    return {"current": current, "loaded": loaded, "values": values, "unreadable": unreadable}


def _configured_key(args: argparse.Namespace) -> str | None:
    """``keys.current`` of the configuration this command reads; None when it was given
    only a socket."""
    if args.socket and args.config is None:
        return None
    return _config(args).keys.current


def _batches(args: argparse.Namespace, out: Output, total: dict[str, Any]) -> str:
    """Every batch in turn, adding to ``total``; the key they re-sealed under."""
    after: str | None = None
    current: str | None = None
    shown = False
    bound = 10
    try:
        while True:
            bound -= 1
            if bound < 0:
                raise CommandError(EXIT_TEMPFAIL, "twostepd's batches do not end", "daemon")
            request: dict[str, object] = {"op": "keys-reseal", "limit": args.batch}
            if after is not None:
                request["after"] = after
            report = _ask(args, request, _BATCH_TIMEOUT)
            failed = report.get("failed")
            if not isinstance(failed, list) or not all(isinstance(f, dict) for f in failed):
                raise _nonsense("failed")
            key = report.get("current")
            if not isinstance(key, str) or current not in (None, key):
                raise _key_changed()
            current = key
            total["resealed"] += _count(report, "resealed")
            total["already_current"] += _count(report, "already_current")
            total["failed"] += failed
            accounts, done = _count(report, "accounts"), _count(report, "done")
            if after is None:  # a run needs at most this many batches, and some slack
                bound = 2 * (accounts // args.batch + 1) + 10
            show = args.progress if args.progress is not None else out.err.isatty()
            if show and (args.progress or accounts >= _PROGRESS_FROM):
                out.err.write(_progress_bar(done, accounts))
                out.err.flush()
                shown = True
            after = next_page(report.get("next"), after, "batches")
            if after is None:
                return current
    finally:
        if shown:
            out.err.write("\n")


def _reseal(args: argparse.Namespace, out: Output) -> dict[str, Any]:
    """The batches, then the count of what is still sealed with another key or could not
    be read: the report of the whole run. An error midway says what the batches before
    it did."""
    configured = _configured_key(args)
    total: dict[str, Any] = {"resealed": 0, "already_current": 0, "failed": []}
    try:
        current = _batches(args, out, total)
        usage = _usage(_ask(args, {"op": "keys-status"}, _RESEAL_TIMEOUT))
        if usage["current"] != current:
            raise _key_changed()
    except CommandError as exc:
        if not total["resealed"] and not total["failed"]:
            raise
        raise CommandError(
            exc.code,
            f"{exc} ({total['resealed']} accounts were re-sealed and "
            f"{len(total['failed'])} could not be before that; run it again)",
            exc.reason,
        ) from None
    if configured is not None and configured != current:
        raise CommandError(
            EXIT_REFUSED,
            f"twostepd's current key is {current}, but the configuration says "
            f"{configured}: reload every twostepd (and check each with twostep keys "
            "status) before re-sealing",
            "not-reloaded",
        )
    total["current"] = current
    total["remaining"] = {k: v for k, v in usage["values"].items() if k != current and v}
    total["unreadable"] = usage["unreadable"]
    return total


def cmd_keys(args: argparse.Namespace, out: Output) -> int:
    if args.action == "status":
        usage = _usage(_ask(args, {"op": "keys-status"}, _RESEAL_TIMEOUT))
        out.result(usage, lambda: _keys_status_text(usage))
        return EXIT_OK
    report = _reseal(args, out)
    keys = ("current", "resealed", "already_current", "failed", "remaining", "unreadable")
    out.result({k: report[k] for k in keys}, lambda: _reseal_text(report))
    incomplete = report["failed"] or report["remaining"] or report["unreadable"]
    return EXIT_REFUSED if incomplete else EXIT_OK


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
