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

# The commands are grouped as the engine's concerns are, one module each (accounts,
# policies, keys, report, imports, check, and local for what runs here); each adds its commands
# with register(). The text above is also the epilog of ``twostep --help``.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import accounts, check, imports, keys, local, policies, report, staleclients, webmail
from ._base import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    CommandError,
    Commands,
    Output,
    _common_options,
    _Parser,
)

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_REFUSED", "EXIT_TEMPFAIL", "EXIT_USAGE", "main"]

_GROUPS = (accounts, webmail, staleclients, policies, keys, report, check, imports, local)
"""In the order ``twostep --help`` lists their commands."""


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
    for group in _GROUPS:
        group.register(Commands(commands, common))
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
