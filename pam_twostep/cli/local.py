"""``twostep`` commands that run here rather than ask twostepd: the self-service portal
and the lab.

Each imports what it runs (Flask, the lab's stack) inside the command, so the other
commands, which are started often and from scripts, never pay for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from ..core.errors import ConfigError
from ._base import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    CommandError,
    Commands,
    Output,
    _config,
)

__all__ = ["DEFAULT_LAB", "register", "cmd_portal", "cmd_lab"]

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
                "webmail": args.webmail_port,
            }
            info = lab.up(
                passdb=args.passdb, ports=ports, tls_proxy=args.tls_proxy, webmail=args.webmail
            )
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


def register(commands: Commands) -> None:
    """portal, then lab up, status and down."""
    portal = commands.command(
        "portal", cmd_portal, "serve the self-service web portal (Account Security)", user=False
    )
    portal.add_argument("--listen", help="HOST:PORT instead of portal.listen")

    lab, actions = commands.group("lab", "a private stack on loopback to try twostep")
    for name in ("up", "status", "down"):
        sub = commands.action(actions, name)
        sub.add_argument("--dir", default=DEFAULT_LAB, help=f"where the lab lives ({DEFAULT_LAB})")
        if name == "up":
            sub.add_argument("--passdb", choices=("lua", "checkpassword"), default="lua")
            sub.add_argument(
                "--tls-proxy",
                action="store_true",
                help="the portal behind the lab's own nginx on HTTPS, as deployed",
            )
            sub.add_argument(
                "--webmail",
                action="store_true",
                help="Debian's Roundcube with the twostep plugin, on HTTPS",
            )
            for port in ("ldap", "imap", "pop3", "smtp", "web", "webmail"):
                sub.add_argument(f"--{port}-port", type=int, default=0, metavar="PORT")
    lab.set_defaults(func=cmd_lab)
