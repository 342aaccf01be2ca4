"""What every ``twostep`` command shares: exit codes, errors, output, the daemon.

Each command raises :class:`CommandError` with the documented exit code and a reason,
and :func:`pam_twostep.cli.main` prints it once, as text or JSON, so no command writes
its own failure. Commands ask twostepd through :func:`_ask`, which turns every refusal
and outage of the daemon or the directory into one of those errors. :class:`Commands` is
where each group module's ``register`` adds its commands, with the options every command
takes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

from .. import wire
from ..config import Config, config_path, load_config
from ..core.errors import ConfigError
from ..core.rotation import order_key

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "EXIT_TEMPFAIL",
    "EXIT_CONFIG",
    "CommandError",
    "Commands",
    "Handler",
    "Output",
    "next_page",
    "_Parser",
    "_ask",
    "_common_options",
    "_config",
    "_secret",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 64
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78
_TIMEOUT = 30.0


def next_page(following: object, after: str | None, what: str) -> str | None:
    """Where twostepd's next page (of a paged answer: ``next``) begins, None at the end.

    A page that does not move on (not a name, or not after the last one) would loop for
    ever: it is a temporary failure, ``what`` saying of what."""
    if following is None:
        return None
    if not isinstance(following, str) or (
        after is not None and order_key(following) <= order_key(after)
    ):
        raise CommandError(EXIT_TEMPFAIL, f"twostepd's {what} do not advance", "daemon")
    return following


class CommandError(Exception):
    """A command that could not be done: its exit code, a stable ``reason`` for scripts
    reading --json, and the message for people."""

    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on the documented exit code."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class Output:
    """Where a command prints, so each writes its result once and --json is decided in
    one place: text for people, or JSON with sorted keys and an ``ok`` field."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err

    def result(self, data: dict[str, Any], human: Callable[[], str]) -> None:
        if self.as_json:
            self.out.write(json.dumps({"ok": True, **data}, indent=2, sort_keys=True) + "\n")
        else:
            text = human()
            if text:
                self.out.write(text.rstrip("\n") + "\n")

    def failure(self, error: CommandError) -> None:
        if self.as_json:
            self.out.write(
                json.dumps(
                    {
                        "ok": False,
                        "exit": error.code,
                        "reason": error.reason,
                        "message": str(error),
                    },
                    sort_keys=True,
                )
                + "\n"
            )
        else:
            self.err.write(f"twostep: {error}\n")


Handler = Callable[[argparse.Namespace, Output], int]
"""A command: the parsed arguments and where to print; returns the exit code."""


# -- the parser's parts --------------------------------------------------------------------


def _common_options() -> _Parser:
    """The options every command and action takes, before or after its own (as a parent
    parser: suppressed defaults, so a later parser does not reset an earlier value)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="configuration file (default: $TWOSTEP_CONFIG or /etc/twostep/twostep.yaml)",
    )
    common.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        help="twostepd's socket (default: daemon.socket from the configuration)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON with stable keys instead of text",
    )
    return common


class Commands:
    """The ``twostep`` subcommands, handed to each group module's ``register``: every
    parser made here takes the common options, and every action parser reports usage
    errors on the documented exit code."""

    def __init__(self, subparsers: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
        self.subparsers = subparsers
        self.common = common

    def command(
        self, name: str, handler: Handler, help_text: str, user: bool = True
    ) -> argparse.ArgumentParser:
        """A command without actions, with its help as its description; most name a user."""
        sub = self.subparsers.add_parser(
            name, help=help_text, description=help_text, parents=[self.common]
        )
        if user:
            sub.add_argument("user")
        sub.set_defaults(func=handler)
        return sub

    def group(
        self, name: str, help_text: str, dest: str = "action"
    ) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[_Parser]]:
        """A command whose first argument is one of its actions (``passcode add``)."""
        parser = self.subparsers.add_parser(name, help=help_text, parents=[self.common])
        return parser, parser.add_subparsers(dest=dest, required=True, parser_class=_Parser)

    def action(
        self, actions: argparse._SubParsersAction[_Parser], name: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        """One of a group's actions; ``help`` only where the group's help lists it."""
        return actions.add_parser(name, parents=[self.common], **kwargs)


# -- talking to the daemon ---------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(config_path(args.config))
    except ConfigError as exc:
        raise CommandError(EXIT_CONFIG, str(exc), "configuration") from None


def _ask(
    args: argparse.Namespace, request: dict[str, object], timeout: float = _TIMEOUT
) -> dict[str, Any]:
    socket_path = args.socket or str(_config(args).daemon.socket)
    try:
        reply = wire.ask(socket_path, request, timeout)
    except wire.ProtocolError as exc:
        raise CommandError(EXIT_TEMPFAIL, f"twostepd answered nonsense ({exc})", "daemon") from None
    except OSError as exc:
        raise CommandError(
            EXIT_TEMPFAIL,
            f"twostepd is not answering on {socket_path} ({exc.strerror or exc}); "
            "is it running? (systemctl status twostepd)",
            "daemon",
        ) from None
    result = reply.get("result")
    if result == "ok":
        return reply
    if result == "refused":
        raise CommandError(EXIT_REFUSED, str(reply.get("message")), str(reply.get("reason")))
    if result == "tempfail" and reply.get("reason") == "incomplete":
        raise CommandError(
            EXIT_TEMPFAIL,
            "the directory's answer was incomplete (a size or time limit): nothing was "
            "decided from it; give the service identity unlimited searches "
            "(ldap_schema/README.md, limits)",
            "incomplete",
        )
    if result == "tempfail":
        raise CommandError(EXIT_TEMPFAIL, "the directory did not answer; try again", "directory")
    if reply.get("error") == "forbidden":
        raise CommandError(
            EXIT_REFUSED,
            "you may not manage accounts: run as root, or as a user listed in daemon.manage",
            "forbidden",
        )
    raise CommandError(EXIT_TEMPFAIL, f"twostepd could not take the request ({reply})", "daemon")


def _secret(prompt: str) -> str:
    """A password or code: asked without echo on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line
