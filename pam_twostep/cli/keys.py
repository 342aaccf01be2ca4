"""``twostep keys``: which encryption keys seal the TOTP secrets, and re-sealing them all
under the current key, so an old key's file can be removed once nothing needs it.
"""

from __future__ import annotations

import argparse

from ._base import EXIT_OK, EXIT_REFUSED, Commands, Output, _ask
from ._text import _keys_status_text, _reseal_text

__all__ = ["register", "cmd_keys"]

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


def register(commands: Commands) -> None:
    """keys status and keys reseal."""
    keys, actions = commands.group("keys", "encryption keys of TOTP secrets: status, re-seal")
    commands.action(actions, "status", help="sealed values per key")
    commands.action(actions, "reseal", help="re-seal every value under the current key")
    keys.set_defaults(func=cmd_keys)
